"""Reports of a run: a console table, JSON, CSV and a self-contained HTML page with SVG plots.

Every form names the command, the versions (python, grpcio, protobuf, OpenTelemetry SDK, ours) and
the machine (CPU count, platform). Latencies are shown in milliseconds; ratios are each arm's p50
over its baseline arm's p50 *in the same round*, summarised as the median with the min-max across
rounds. The HTML page has no external assets (inline CSS and SVG that this module draws).
"""

from __future__ import annotations

import bisect
import csv
import html
import io
import json
import math
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from .histogram import Histogram
from .runner import PERCENTILES, ArmResult, RunResult

__all__ = [
    "SCHEMA",
    "format_table",
    "to_csv",
    "to_html",
    "to_json",
    "write_reports",
]

SCHEMA = "grpc-channel-bench/1"
_PALETTE = (
    "#1f77b4",
    "#d62728",
    "#2ca02c",
    "#ff7f0e",
    "#9467bd",
    "#8c564b",
    "#e377c2",
    "#17becf",
    "#7f7f7f",
    "#bcbd22",
    "#393b79",
    "#ad494a",
    "#637939",
    "#843c39",
    "#7b4173",
    "#3182bd",
    "#e6550d",
    "#31a354",
    "#756bb1",
    "#636363",
)


def _ms(ns: float) -> float:
    return ns / 1e6


def _pkey(p: float) -> str:
    return f"p{p:g}".replace(".", "_")


def _fmt_ratio(arm: ArmResult) -> str:
    if arm.label == arm.baseline:
        return "1 (baseline)"
    if not arm.ratios:
        return "n/a"
    return f"{arm.ratio_median:.3f} ({arm.ratio_min:.3f}-{arm.ratio_max:.3f})"


def _cpu_over_baseline(result: RunResult, arm: ArmResult) -> float:
    """Client CPU per call beyond the baseline arm's, in microseconds (0 for the baseline)."""
    return arm.cpu_us_per_call - result.arm(arm.baseline).cpu_us_per_call


def _fmt_cpu(result: RunResult, arm: ArmResult) -> str:
    if arm.label == arm.baseline:
        return f"{arm.cpu_us_per_call:.0f}"
    return f"{arm.cpu_us_per_call:.0f} ({_cpu_over_baseline(result, arm):+.0f})"


def _fmt_rate_ratio(arm: ArmResult) -> str:
    if arm.label == arm.baseline:
        return "1"
    return f"{arm.throughput_ratio_median:.3f}" if arm.throughput_ratios else "n/a"


def _latency_cells(arm: ArmResult, digits: int = 3) -> list[str]:
    """p50 ... p99.9 and max in ms; "-" for an arm with no OK call (nothing to measure)."""
    if not arm.ok:
        return ["-"] * (len(PERCENTILES) + 1)
    p = arm.percentiles_ns()
    return [f"{_ms(v):.{digits}f}" for v in (*(p[q] for q in PERCENTILES), arm.latency.max)]


def _fmt_asked(result: RunResult) -> str:
    return "" if result.load.rate is None else f"{result.load.rate:g}"


def _codes_text(codes: dict[str, int]) -> str:
    return " ".join(f"{code}={count}" for code, count in codes.items())


# -- JSON ---------------------------------------------------------------------------------


def _arm_json(result: RunResult, arm: ArmResult) -> dict[str, Any]:
    latency: dict[str, float | None]
    if arm.ok:
        latency = {_pkey(p): _ms(v) for p, v in arm.percentiles_ns().items()}
        latency.update(
            min=_ms(arm.latency.min),
            max=_ms(arm.latency.max),
            mean=_ms(arm.latency.mean),
        )
    else:
        # No call ended OK: no latency to report, rather than zeros that read as fast.
        latency = dict.fromkeys([*(_pkey(p) for p in PERCENTILES), "min", "max", "mean"])
    lag = None
    if arm.lag is not None:
        lag = {_pkey(p): _ms(v) for p, v in arm.lag.percentiles(PERCENTILES).items()}
        lag["max"] = _ms(arm.lag.max)
    return {
        "label": arm.label,
        "variant": arm.variant,
        "description": arm.description,
        "kind": arm.kind,
        "baseline": arm.baseline,
        "pause_ms": arm.pause_ms,
        "target": arm.target.describe(),
        "calls": arm.calls,
        "ok": arm.ok,
        "failed": arm.failed,
        "codes": arm.codes,
        "errors": arm.errors,
        "latency_ms": latency,
        "send_lag_ms": lag,
        "throughput_per_s": arm.throughput,
        "asked_rate_per_s": result.load.rate,
        "cpu_us_per_call": arm.cpu_us_per_call,
        "cpu_us_per_call_over_baseline": _cpu_over_baseline(result, arm),
        "ratio_to_baseline_p50": {
            "median": None if not arm.ratios else arm.ratio_median,
            "min": None if not arm.ratios else arm.ratio_min,
            "max": None if not arm.ratios else arm.ratio_max,
            "rounds": arm.ratios,
        },
        "ratio_to_baseline_throughput": {
            "median": None if not arm.throughput_ratios else arm.throughput_ratio_median,
            "min": None if not arm.throughput_ratios else min(arm.throughput_ratios),
            "max": None if not arm.throughput_ratios else max(arm.throughput_ratios),
            "rounds": arm.throughput_ratios,
        },
        "round_p50_ms": [None if v is None else _ms(v) for v in arm.round_p50_ns],
        "histogram_ns": arm.latency.to_dict(),
    }


def to_json(result: RunResult) -> dict[str, Any]:
    """The whole run as JSON-able data (``schema`` names the format)."""
    return {
        "schema": SCHEMA,
        "command": result.command,
        "started_at": result.started_at,
        "wall_seconds": result.wall_seconds,
        "environment": result.environment,
        "load": result.load.describe(),
        "notes": result.notes,
        "skipped": [{"variant": name, "reason": reason} for name, reason in result.skipped],
        "arms": [_arm_json(result, arm) for arm in result.arms],
    }


# -- console table ------------------------------------------------------------------------


def _table(headers: Sequence[str], rows: Iterable[Sequence[str]], right: set[int]) -> list[str]:
    rows = [list(r) for r in rows]
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(headers)]

    def line(cells: Sequence[str]) -> str:
        parts = [
            c.rjust(widths[i]) if i in right else c.ljust(widths[i]) for i, c in enumerate(cells)
        ]
        return "  ".join(parts).rstrip()

    return [line(headers), line(["-" * w for w in widths]), *(line(r) for r in rows)]


def _header_lines(result: RunResult) -> list[str]:
    env = result.environment
    versions = env["versions"]
    machine = env["machine"]
    load = result.load.describe()
    load_text = ", ".join(f"{k}={v}" for k, v in load.items() if v is not None)
    return [
        f"command: {result.command}",
        (
            f"versions: python {versions['python']}, grpcio {versions['grpcio']}, "
            f"protobuf {versions['protobuf']} ({versions['protobuf_backend']}), "
            f"opentelemetry-sdk {versions['opentelemetry_sdk']}, "
            f"grpc-channel {versions['grpc_channel']}"
        ),
        (
            f"machine: {machine['cpu_count']} CPUs ({machine['usable_cpus']} usable), "
            f"{machine['platform']}"
        ),
        f"load: {load_text}; started {result.started_at}, took {result.wall_seconds:.1f} s",
    ]


def format_table(result: RunResult) -> str:
    """A plain-text report: header, one row per arm, then skipped variants, errors and notes."""
    open_loop = result.load.mode == "open"
    headers = ["variant", "calls", "p50 ms", "p90 ms", "p99 ms", "p99.9 ms", "max ms", "calls/s"]
    if open_loop:
        headers += ["asked/s"]
    headers += ["CPU us/call (+vs)", "vs", "p50 ratio (min-max)", "rps ratio", "failed"]
    if open_loop:
        headers += ["lag p99 ms"]
    rows = []
    for arm in result.arms:
        row = [arm.label, str(arm.calls), *_latency_cells(arm), f"{arm.throughput:.0f}"]
        if open_loop:
            row.append(_fmt_asked(result))
        row += [
            _fmt_cpu(result, arm),
            arm.baseline,
            _fmt_ratio(arm),
            _fmt_rate_ratio(arm),
            str(arm.failed),
        ]
        if open_loop:
            lag = arm.lag.percentile(99) if arm.lag is not None else 0
            row.append(f"{_ms(lag):.3f}")
        rows.append(row)
    lines = _header_lines(result)
    lines.append("")
    left = {"variant", "vs", "p50 ratio (min-max)"}
    right = {i for i, h in enumerate(headers) if h not in left}
    lines += _table(headers, rows, right=right)
    for name, reason in result.skipped:
        lines.append(f"skipped {name}: {reason}")
    for arm in result.arms:
        if arm.failed:
            lines.append(f"{arm.label} status codes: {_codes_text(arm.codes)}")
            if not arm.ok:
                lines.append(f"  {arm.label}: no call ended OK, so no latency is reported")
            for message, count in arm.errors.items():
                lines.append(f"  {count} x {message}")
    lines += [f"note: {note}" for note in result.notes]
    return "\n".join(lines) + "\n"


# -- CSV ----------------------------------------------------------------------------------

_CSV_FIELDS = [
    "label",
    "variant",
    "kind",
    "baseline",
    "calls",
    "ok",
    "failed",
    "p50_ms",
    "p90_ms",
    "p99_ms",
    "p99_9_ms",
    "min_ms",
    "max_ms",
    "mean_ms",
    "throughput_per_s",
    "asked_rate_per_s",
    "cpu_us_per_call",
    "cpu_us_per_call_over_baseline",
    "ratio_median",
    "ratio_min",
    "ratio_max",
    "throughput_ratio_median",
    "lag_p50_ms",
    "lag_p99_ms",
    "codes",
    "mode",
    "concurrency",
    "rate",
    "workers",
    "command",
    "python",
    "grpcio",
    "protobuf",
    "grpc_channel",
    "cpu_count",
    "platform",
]


def to_csv(result: RunResult) -> str:
    """One row per arm; every row repeats the command, versions and machine (self-describing)."""
    out = io.StringIO()
    writer = csv.DictWriter(out, fieldnames=_CSV_FIELDS, lineterminator="\n")
    writer.writeheader()
    versions = result.environment["versions"]
    machine = result.environment["machine"]
    for arm in result.arms:
        p = arm.percentiles_ns()
        lag = arm.lag.percentiles((50.0, 99.0)) if arm.lag is not None else None

        def ms(ns: float, arm: ArmResult = arm) -> str:
            return f"{_ms(ns):.4f}" if arm.ok else ""

        writer.writerow(
            {
                "label": arm.label,
                "variant": arm.variant,
                "kind": arm.kind,
                "baseline": arm.baseline,
                "calls": arm.calls,
                "ok": arm.ok,
                "failed": arm.failed,
                "p50_ms": ms(p[50.0]),
                "p90_ms": ms(p[90.0]),
                "p99_ms": ms(p[99.0]),
                "p99_9_ms": ms(p[99.9]),
                "min_ms": ms(arm.latency.min),
                "max_ms": ms(arm.latency.max),
                "mean_ms": ms(arm.latency.mean),
                "throughput_per_s": f"{arm.throughput:.1f}",
                "asked_rate_per_s": _fmt_asked(result),
                "cpu_us_per_call": f"{arm.cpu_us_per_call:.1f}",
                "cpu_us_per_call_over_baseline": f"{_cpu_over_baseline(result, arm):.1f}",
                "ratio_median": "" if not arm.ratios else f"{arm.ratio_median:.4f}",
                "ratio_min": "" if not arm.ratios else f"{arm.ratio_min:.4f}",
                "ratio_max": "" if not arm.ratios else f"{arm.ratio_max:.4f}",
                "throughput_ratio_median": (
                    "" if not arm.throughput_ratios else f"{arm.throughput_ratio_median:.4f}"
                ),
                "lag_p50_ms": "" if lag is None else f"{_ms(lag[50.0]):.4f}",
                "lag_p99_ms": "" if lag is None else f"{_ms(lag[99.0]):.4f}",
                "codes": ";".join(f"{k}={v}" for k, v in arm.codes.items()),
                "mode": result.load.mode,
                "concurrency": result.load.concurrency,
                "rate": "" if result.load.rate is None else result.load.rate,
                "workers": result.load.workers,
                "command": result.command,
                "python": versions["python"],
                "grpcio": versions["grpcio"],
                "protobuf": versions["protobuf"],
                "grpc_channel": versions["grpc_channel"],
                "cpu_count": machine["cpu_count"],
                "platform": machine["platform"],
            }
        )
    return out.getvalue()


# -- SVG plots ----------------------------------------------------------------------------

_W, _H = 760, 380
_LEFT, _RIGHT, _TOP, _BOTTOM = 70, 190, 20, 50


def _esc(text: object) -> str:
    return html.escape(str(text), quote=True)


def _log_ticks(low: float, high: float) -> list[float]:
    """1-2-5 ticks between ``low`` and ``high`` (both > 0)."""
    ticks: list[float] = []
    exponent = math.floor(math.log10(low))
    while True:
        for m in (1, 2, 5):
            value = m * 10.0**exponent
            if value > high * 1.0001:
                return ticks
            if value >= low * 0.9999:
                ticks.append(value)
        exponent += 1


def _tick_label(value: float) -> str:
    return f"{value:g}"


class _Plot:
    """A plot area with a log (or linear) y axis and a linear x axis, drawn as SVG text."""

    def __init__(
        self,
        title: str,
        x_range: tuple[float, float],
        y_range: tuple[float, float],
        *,
        y_log: bool,
        x_label: str,
        y_label: str,
    ) -> None:
        self.parts: list[str] = []
        self.x0, self.x1 = x_range
        self.y0, self.y1 = y_range
        self.y_log = y_log
        self.width = _W - _LEFT - _RIGHT
        self.height = _H - _TOP - _BOTTOM
        self.parts.append(
            f'<svg xmlns="http://www.w3.org/2000/svg" viewBox="0 0 {_W} {_H}" '
            f'width="{_W}" height="{_H}" role="img" aria-label="{_esc(title)}">'
        )
        self.parts.append(f'<rect x="0" y="0" width="{_W}" height="{_H}" fill="#fff"/>')
        self.parts.append(
            f'<text x="{_LEFT}" y="14" font-size="13" font-weight="bold">{_esc(title)}</text>'
        )
        self.parts.append(
            f'<text x="{_LEFT + self.width / 2}" y="{_H - 8}" font-size="12" '
            f'text-anchor="middle">{_esc(x_label)}</text>'
        )
        self.parts.append(
            f'<text x="14" y="{_TOP + self.height / 2}" font-size="12" text-anchor="middle" '
            f'transform="rotate(-90 14 {_TOP + self.height / 2})">{_esc(y_label)}</text>'
        )
        self.parts.append(
            f'<rect x="{_LEFT}" y="{_TOP}" width="{self.width}" height="{self.height}" '
            'fill="none" stroke="#999"/>'
        )

    def sx(self, x: float) -> float:
        span = (self.x1 - self.x0) or 1.0
        return _LEFT + (x - self.x0) / span * self.width

    def sy(self, y: float) -> float:
        if self.y_log:
            low, high = math.log10(self.y0), math.log10(self.y1)
            value = math.log10(max(y, self.y0))
        else:
            low, high, value = self.y0, self.y1, y
        span = (high - low) or 1.0
        return _TOP + self.height - (value - low) / span * self.height

    def x_tick(self, x: float, label: str) -> None:
        px = self.sx(x)
        bottom = _TOP + self.height
        self.parts.append(
            f'<line x1="{px:.1f}" y1="{_TOP}" x2="{px:.1f}" y2="{bottom}" stroke="#eee"/>'
        )
        self.parts.append(
            f'<text x="{px:.1f}" y="{bottom + 16}" font-size="11" '
            f'text-anchor="middle">{_esc(label)}</text>'
        )

    def y_tick(self, y: float, label: str) -> None:
        py = self.sy(y)
        right = _LEFT + self.width
        self.parts.append(
            f'<line x1="{_LEFT}" y1="{py:.1f}" x2="{right}" y2="{py:.1f}" stroke="#eee"/>'
        )
        self.parts.append(
            f'<text x="{_LEFT - 6}" y="{py + 4:.1f}" font-size="11" '
            f'text-anchor="end">{_esc(label)}</text>'
        )

    def line(self, points: Sequence[tuple[float, float]], color: str, dash: bool = False) -> None:
        if not points:
            return
        path = " ".join(f"{self.sx(x):.1f},{self.sy(y):.1f}" for x, y in points)
        style = ' stroke-dasharray="5,4"' if dash else ""
        self.parts.append(
            f'<polyline points="{path}" fill="none" stroke="{color}" stroke-width="1.8"{style}/>'
        )

    def dot(self, x: float, y: float, color: str) -> None:
        self.parts.append(
            f'<circle cx="{self.sx(x):.1f}" cy="{self.sy(y):.1f}" r="3.2" fill="{color}"/>'
        )

    def legend(self, entries: Sequence[tuple[str, str]]) -> None:
        x = _LEFT + self.width + 12
        for i, (label, color) in enumerate(entries):
            y = _TOP + 12 + i * 17
            self.parts.append(
                f'<line x1="{x}" y1="{y - 4}" x2="{x + 18}" y2="{y - 4}" stroke="{color}" '
                'stroke-width="3"/>'
            )
            self.parts.append(f'<text x="{x + 24}" y="{y}" font-size="11">{_esc(label)}</text>')

    def svg(self) -> str:
        return "".join(self.parts) + "</svg>"


def _colors(result: RunResult) -> list[str]:
    return [_PALETTE[i % len(_PALETTE)] for i in range(len(result.arms))]


def _y_range(values: Iterable[float]) -> tuple[float, float]:
    positive = [v for v in values if v > 0]
    if not positive:
        return 0.001, 1.0
    # Round outwards to quarter decades so the curves never touch the frame.
    low = 10.0 ** (math.floor(math.log10(min(positive)) * 4) / 4)
    high = 10.0 ** (math.ceil(math.log10(max(positive)) * 4) / 4)
    if high <= low:
        high = low * 10
    return low, high


_Series = Sequence[tuple[ArmResult, str]]


def _series(result: RunResult) -> list[tuple[ArmResult, str]]:
    """Arms with their colours, leaving out arms without an OK call (no latency to draw)."""
    return [(a, c) for a, c in zip(result.arms, _colors(result), strict=True) if a.ok]


def percentile_plot(series: _Series, title: str = "Latency by percentile") -> str:
    """Latency by percentile (HdrHistogram style: x is log10(1 / (1 - q)), 0 to 99.999 %)."""
    most = max((arm.ok for arm, _ in series), default=1)
    x_max = max(1.0, min(5.0, math.log10(max(most, 10))))
    steps = 120
    curves: list[list[tuple[float, float]]] = []
    for arm, _ in series:
        xs = [x_max * k / steps for k in range(steps + 1)]
        qs = [min(100.0, 100.0 * (1.0 - 10.0**-x)) for x in xs]
        values = arm.latency.percentiles(qs)
        curves.append([(x, _ms(values[q])) for x, q in zip(xs, qs, strict=True)])
    y_low, y_high = _y_range(y for curve in curves for _, y in curve)
    plot = _Plot(
        title,
        (0.0, x_max),
        (y_low, y_high),
        y_log=True,
        x_label="percentile",
        y_label="latency (ms, log scale)",
    )
    labels = ("0%", "90%", "99%", "99.9%", "99.99%", "99.999%")
    for x, label in enumerate(labels):
        if x <= x_max + 1e-9:
            plot.x_tick(x, label)
    for tick in _log_ticks(y_low, y_high):
        plot.y_tick(tick, _tick_label(tick))
    for curve, (_, color) in zip(curves, series, strict=True):
        plot.line(curve, color)
    plot.legend([(arm.label, color) for arm, color in series])
    return plot.svg()


def density_plot(series: _Series, title: str = "Latency distribution", bins: int = 60) -> str:
    """Share of calls per latency bin (log-spaced bins up to the highest p99.9), one line per arm.

    Calls slower than the right edge are left out of the plot (the percentile plot shows them).
    """
    histograms = [arm.latency for arm, _ in series if arm.ok]
    low = min((_ms(h.min) for h in histograms), default=0.001)
    high = max((_ms(h.percentile(99.9)) for h in histograms), default=1.0)
    low, high = max(low, 1e-3), max(high, low * 1.01)
    edges = [low * (high / low) ** (i / bins) for i in range(bins + 1)]
    centres = [math.sqrt(edges[i] * edges[i + 1]) for i in range(bins)]
    curves: list[list[tuple[float, float]]] = []
    peak = 0.0
    for arm, _ in series:
        shares = _binned(arm.latency, edges)
        peak = max(peak, *shares) if shares else peak
        curves.append(list(zip(centres, shares, strict=True)))
    plot = _Plot(
        title,
        (math.log10(low), math.log10(high)),
        (0.0, max(peak, 1e-9) * 1.05),
        y_log=False,
        x_label="latency (ms, log scale; up to the highest p99.9)",
        y_label="share of calls per bin",
    )
    for tick in _log_ticks(low, high):
        plot.x_tick(math.log10(tick), _tick_label(tick))
    for i in range(5):
        value = peak * 1.05 * i / 4
        plot.y_tick(value, f"{value * 100:.0f}%")
    for curve, (_, color) in zip(curves, series, strict=True):
        plot.line([(math.log10(x), y) for x, y in curve], color)
    plot.legend([(arm.label, color) for arm, color in series])
    return plot.svg()


def _binned(histogram: Histogram, edges_ms: Sequence[float]) -> list[float]:
    counts = [0] * (len(edges_ms) - 1)
    if not histogram.count:
        return [0.0] * len(counts)
    for low, high, count in histogram.buckets():
        centre = _ms((low + high) / 2)
        index = min(max(bisect.bisect_right(edges_ms, centre) - 1, 0), len(counts) - 1)
        if centre <= edges_ms[-1]:
            counts[index] += count
    return [c / histogram.count for c in counts]


def ratio_plot(result: RunResult) -> str:
    """Each round's p50 ratio to the baseline, one row of dots per non-baseline arm."""
    colors = _colors(result)
    compared = [
        (arm, color)
        for arm, color in zip(result.arms, colors, strict=True)
        if arm.label != arm.baseline and arm.ratios
    ]
    ratios = [r for arm, _ in compared for r in arm.ratios] or [1.0]
    low = min(0.95, min(ratios) - 0.02)
    high = max(1.05, max(ratios) + 0.02)
    rounds = max(len(arm.ratios) for arm, _ in compared) if compared else 1
    plot = _Plot(
        "p50 ratio to baseline, per round",
        (-0.5, rounds - 0.5),
        (low, high),
        y_log=False,
        x_label="round",
        y_label="p50 / baseline p50",
    )
    for r in range(rounds):
        plot.x_tick(r, str(r + 1))
    step = 0.05 if high - low < 0.6 else 0.25 if high - low < 3 else 1.0
    tick = math.ceil(low / step) * step
    while tick <= high:
        plot.y_tick(tick, f"{tick:.2f}")
        tick += step
    plot.line([(-0.5, 1.0), (rounds - 0.5, 1.0)], "#444", dash=True)
    for arm, color in compared:
        for r, ratio in enumerate(arm.ratios):
            plot.dot(r, ratio, color)
        plot.line([(-0.5, arm.ratio_median), (rounds - 0.5, arm.ratio_median)], color, dash=True)
    plot.legend([(arm.label, color) for arm, color in compared])
    return plot.svg()


# -- HTML ---------------------------------------------------------------------------------

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px;color:#222}
h1{font-size:20px}h2{font-size:16px;margin-top:28px}
table{border-collapse:collapse;font-size:13px}
th,td{border:1px solid #ccc;padding:4px 8px;white-space:nowrap}th{background:#f3f3f3}
td.n{text-align:right;font-variant-numeric:tabular-nums}
code{background:#f6f6f6;padding:1px 4px}
.meta td:first-child{font-weight:bold}
.swatch{display:inline-block;width:10px;height:10px;margin-right:6px}
"""


def _html_table(headers: Sequence[str], rows: Iterable[Sequence[str]], numeric: set[int]) -> str:
    head = "".join(f"<th>{_esc(h)}</th>" for h in headers)
    body = []
    for row in rows:
        cells = "".join(
            f'<td class="n">{c}</td>' if i in numeric else f"<td>{c}</td>"
            for i, c in enumerate(row)
        )
        body.append(f"<tr>{cells}</tr>")
    return f"<table><thead><tr>{head}</tr></thead><tbody>{''.join(body)}</tbody></table>"


def to_html(result: RunResult) -> str:
    """A self-contained HTML report: meta data, summary table, three SVG plots, errors."""
    env = result.environment
    colors = _colors(result)
    series = _series(result)
    kinds = sorted({arm.kind for arm in result.arms}, key=lambda k: k == "aio")
    # One plot per family when both are there: sixteen curves in one plot help nobody.
    groups = (
        [(f", {kind} variants", [(a, c) for a, c in series if a.kind == kind]) for kind in kinds]
        if len(kinds) > 1
        else [("", series)]
    )
    meta_rows = [
        ("command", f"<code>{_esc(result.command)}</code>"),
        ("started", _esc(result.started_at)),
        ("wall time", f"{result.wall_seconds:.1f} s"),
        ("load", _esc(", ".join(f"{k}={v}" for k, v in result.load.describe().items()))),
    ]
    meta_rows += [(f"version: {k}", _esc(v)) for k, v in env["versions"].items()]
    meta_rows += [(f"machine: {k}", _esc(v)) for k, v in env["machine"].items()]
    targets = {arm.target.describe()["address"] + " " + arm.target.method for arm in result.arms}
    meta_rows += [("target", _esc(t)) for t in sorted(targets)]
    meta = "".join(f"<tr><td>{_esc(k)}</td><td>{v}</td></tr>" for k, v in meta_rows)
    open_loop = result.load.mode == "open"
    headers = ["variant", "calls", "p50 ms", "p90 ms", "p99 ms", "p99.9 ms", "max ms", "calls/s"]
    if open_loop:
        headers += ["asked/s"]
    headers += ["CPU µs/call (+vs)", "vs", "p50 ratio median (min-max)", "rps ratio", "failed"]
    rows = []
    for arm, color in zip(result.arms, colors, strict=True):
        row = [
            f'<span class="swatch" style="background:{color}"></span>{_esc(arm.label)}',
            str(arm.calls),
            *_latency_cells(arm),
            f"{arm.throughput:.0f}",
        ]
        if open_loop:
            row.append(_fmt_asked(result))
        row += [
            _esc(_fmt_cpu(result, arm)),
            _esc(arm.baseline),
            _esc(_fmt_ratio(arm)),
            _esc(_fmt_rate_ratio(arm)),
            str(arm.failed),
        ]
        rows.append(row)
    numeric = {i for i, h in enumerate(headers) if h not in ("variant", "vs")}
    summary = _html_table(headers, rows, numeric=numeric)
    described = _html_table(
        ["variant", "kind", "what it calls"],
        ([_esc(a.label), a.kind, _esc(a.description)] for a in result.arms),
        numeric=set(),
    )
    extra: list[str] = []
    if result.load.mode == "open":
        lag_rows = []
        for arm in result.arms:
            if arm.lag is None:
                continue
            lp = arm.lag.percentiles((50.0, 99.0))
            lag_rows.append(
                [
                    _esc(arm.label),
                    f"{_ms(lp[50.0]):.3f}",
                    f"{_ms(lp[99.0]):.3f}",
                    f"{_ms(arm.lag.max):.3f}",
                ]
            )
        extra.append("<h2>Open loop: send lag (actual minus intended send time)</h2>")
        extra.append(
            _html_table(["variant", "lag p50 ms", "lag p99 ms", "lag max ms"], lag_rows, {1, 2, 3})
        )
    code_rows = [
        [
            _esc(arm.label),
            _esc(_codes_text(arm.codes)),
            _esc("; ".join(f"{n} x {m}" for m, n in arm.errors.items())),
        ]
        for arm in result.arms
    ]
    skipped = "".join(
        f"<li><code>{_esc(name)}</code>: {_esc(reason)}</li>" for name, reason in result.skipped
    )
    notes = "".join(f"<li>{_esc(note)}</li>" for note in result.notes)
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        "<title>grpc-channel benchmark report</title>",
        f"<style>{_CSS}</style></head><body>",
        "<h1>grpc-channel invoke-latency benchmark</h1>",
        f'<table class="meta">{meta}</table>',
        "<h2>Summary</h2>",
        summary,
        "<p>Latencies: calls that ended OK only; failed calls are counted under Status codes "
        "(a variant without an OK call shows none). Ratios: each round's p50 of the variant over "
        "the p50 of its baseline in the same round; median and min-max over rounds. rps ratio: "
        "the same for calls per second (median). calls/s: calls completed per second the variant "
        "ran (open loop: the rate achieved, beside the rate asked). CPU: client process CPU (all "
        "threads) per call.</p>",
        "<h2>Latency by percentile</h2>",
        *(percentile_plot(group, f"Latency by percentile{name}") for name, group in groups),
        "<h2>Latency distribution</h2>",
        *(density_plot(group, f"Latency distribution{name}") for name, group in groups),
        "<h2>Ratio to baseline per round</h2>",
        ratio_plot(result),
        *extra,
        "<h2>Status codes and errors</h2>",
        _html_table(["variant", "status codes", "errors (top 10)"], code_rows, set()),
        "<h2>Variants</h2>",
        described,
    ]
    if skipped:
        parts += ["<h2>Skipped variants</h2>", f"<ul>{skipped}</ul>"]
    if notes:
        parts += ["<h2>Notes</h2>", f"<ul>{notes}</ul>"]
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def write_reports(
    result: RunResult,
    *,
    html_path: str | Path | None = None,
    json_path: str | Path | None = None,
    csv_path: str | Path | None = None,
) -> list[Path]:
    """Write the requested report files (parent folders must exist); return their paths."""
    written: list[Path] = []
    if html_path is not None:
        path = Path(html_path)
        path.write_text(to_html(result), encoding="utf-8")
        written.append(path)
    if json_path is not None:
        path = Path(json_path)
        path.write_text(json.dumps(to_json(result), indent=2) + "\n", encoding="utf-8")
        written.append(path)
    if csv_path is not None:
        path = Path(csv_path)
        path.write_text(to_csv(result), encoding="utf-8")
        written.append(path)
    return written
