"""Reports of a run: a console table, JSON, CSV and a self-contained HTML page with SVG charts.

Every form names the command, the versions (python, grpcio, protobuf, OpenTelemetry SDK, ours) and
the machine (CPU count, platform). Latencies are shown in milliseconds; ratios are each arm's p50
over its baseline arm's p50 *in the same round*, summarised as the median with the min-max across
rounds. The HTML page has no external assets (inline CSS, the SVG of ``charts`` and a few lines of
script for the legend toggles). Prometheus and HdrHistogram exports live in ``export``;
``write_reports`` writes any of them.
"""

from __future__ import annotations

import csv
import html
import io
import json
import math
import re
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

from . import charts
from .export import write_hdr, write_prometheus
from .runner import PERCENTILES, ArmResult, RunResult

__all__ = [
    "SCHEMA",
    "format_table",
    "to_csv",
    "to_html",
    "to_json",
    "variant_groups",
    "write_reports",
]

SCHEMA = "grpc-channel-bench/1"


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
    """The asked rate: ``-r``, or a load schedule's mean rate over the run."""
    asked = result.load.asked_rate
    return "" if asked is None else f"{asked:.6g}"


def _fmt_asked_range(result: RunResult) -> str:
    """The table's asked cell: the asked rate, and with a load schedule its first and last rate
    (``mean (first->last)``)."""
    load = result.load
    if load.schedule is None or not load.total_calls:
        return _fmt_asked(result)
    first, last, mean = load.schedule.rates(load.total_calls)
    return f"{mean:.4g} ({first:.4g}->{last:.4g})"


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
        # With a load schedule: its mean rate over the run; load.schedule_rates has the rest.
        "asked_rate_per_s": result.load.asked_rate,
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
            row.append(_fmt_asked_range(result))
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


# -- HTML ---------------------------------------------------------------------------------

_CSS = """
body{font-family:system-ui,-apple-system,Segoe UI,Roboto,sans-serif;margin:24px;color:#222;
max-width:1400px}
h1{font-size:20px;margin-bottom:4px}h2{font-size:16px;margin-top:28px}
p.run{margin:0 0 12px;color:#444;font-size:13px}
table{border-collapse:collapse;font-size:13px}
th,td{border:1px solid #ccc;padding:4px 8px;white-space:nowrap}th{background:#f3f3f3}
td.n{text-align:right;font-variant-numeric:tabular-nums}
code{background:#f6f6f6;padding:1px 4px}
.wide{overflow-x:auto}
.note{background:#fff8e1;border-left:4px solid #f0b400;padding:8px 12px;max-width:900px}
.grid{display:flex;flex-wrap:wrap;gap:16px}
figure.group{margin:0;border:1px solid #ddd;border-radius:6px;padding:8px;background:#fff;
width:420px}
figure.group figcaption{font-weight:bold;font-size:14px;margin-bottom:4px}
.legend{display:flex;flex-wrap:wrap;gap:4px;margin:4px 0 6px}
button.key{font:12px system-ui,sans-serif;border:1px solid #ccc;border-radius:12px;
background:#fafafa;padding:2px 8px;cursor:pointer}
button.key[aria-pressed=false]{opacity:.45;text-decoration:line-through}
.sw{display:inline-block;width:14px;height:3px;margin:0 6px 3px 0;vertical-align:middle}
.sw.dash{background-image:linear-gradient(90deg,transparent 60%,#fff 60%);
background-size:6px 3px}
svg.chart{display:block;font-family:system-ui,sans-serif}
svg .ct{font-size:13px;font-weight:bold}svg .tk{font-size:10px;fill:#555}
svg .al{font-size:11px;fill:#333}svg .bh{font-size:12px;font-weight:bold;fill:#333}
svg .rl{font-size:12px}svg .rv{font-size:11px;fill:#333;font-variant-numeric:tabular-nums}
svg .off{display:none}
details.env summary{cursor:pointer;font-weight:bold}
details.env td:first-child{font-weight:bold}
"""

# Legend toggles: a click on a key hides or shows that series in every chart of its figure.
# ``#hide=a,b`` in the address hides series on load (a link to a view; the render test uses it).
_JS = """
(function(){
function toggle(b){
  var on=b.getAttribute('aria-pressed')!=='false',s=b.getAttribute('data-series');
  b.setAttribute('aria-pressed',on?'false':'true');
  b.closest('figure').querySelectorAll('svg [data-series]').forEach(function(el){
    if(el.getAttribute('data-series')===s){el.classList.toggle('off',on);}
  });
}
document.addEventListener('click',function(e){
  var b=e.target.closest&&e.target.closest('button.key');if(b){toggle(b);}
});
var m=/^#hide=(.*)$/.exec(location.hash);
if(m){decodeURIComponent(m[1]).split(',').forEach(function(s){
  document.querySelectorAll('button.key').forEach(function(b){
    if(b.getAttribute('data-series')===s){b.click();}
  });
});}
})();
"""

_PERCENTILE_MARKS = (
    (50.0, "p50"),
    (90.0, "p90"),
    (99.0, "p99"),
    (99.9, "p99.9"),
    (99.99, "p99.99"),
)
_FAMILY_NAMES = {"grpc": "bare grpcio"}
_SMALL = (420, 230)  # one small multiple: three figures side by side on a 1400 px screen


def _esc(text: object) -> str:
    return html.escape(str(text), quote=True)


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


def variant_groups(arms: Sequence[ArmResult]) -> list[tuple[str, list[ArmResult]]]:
    """Arms grouped for the small multiples: by kind (sync, aio) and the variant name's first
    word (``grpc``, ``intercept``, ``chain``, ``channel``: ``chain+tracing`` and ``chain-aio`` go
    with ``chain``), in order of first appearance. Titles read ``sync · chain``; the bare
    ``grpc-*`` stubs are ``bare grpcio``."""
    groups: dict[tuple[str, str], list[ArmResult]] = {}
    for arm in arms:
        match = re.match(r"[A-Za-z0-9]+", arm.variant)
        family = match.group(0) if match else arm.variant
        groups.setdefault((arm.kind, family), []).append(arm)
    return [
        (f"{kind} · {_FAMILY_NAMES.get(family, family)}", members)
        for (kind, family), members in groups.items()
    ]


def _ratio_rows(result: RunResult) -> list[charts.RatioRow]:
    """One row per arm compared with a baseline; the A/A band is ``<baseline>-again``'s min-max
    when that arm ran against the same baseline."""
    by_label = {arm.label: arm for arm in result.arms}
    compared = [a for a in result.arms if a.label != a.baseline and a.ratios]
    colors = charts.palette(len(compared))
    rows = []
    for arm, color in zip(compared, colors, strict=True):
        again = by_label.get(f"{arm.baseline}-again")
        band = None
        if again is not None and again.ratios and again.baseline == arm.baseline:
            band = (again.ratio_min, again.ratio_max)
        rows.append(
            charts.RatioRow(
                arm.label,
                arm.baseline,
                color,
                arm.ratio_median,
                arm.ratio_min,
                arm.ratio_max,
                len(arm.ratios),
                band,
            )
        )
    # Grouped under their baselines, in the order the baselines first appear.
    order = {b: i for i, b in enumerate(dict.fromkeys(r.baseline for r in rows))}
    return sorted(rows, key=lambda r: order[r.baseline])


def _ratio_section(result: RunResult) -> list[str]:
    rows = _ratio_rows(result)
    if not rows:
        if len(result.arms) == 1:
            arm = result.arms[0]
            text = (
                f"Only one variant ran (<code>{_esc(arm.label)}</code>): there is nothing to "
                "compare it with, so there is no ratio chart. Name two or more with "
                "<code>--variants</code> (for example <code>grpc-sync,grpc-sync-again</code> "
                "for an A/A check of the run's noise)."
            )
        else:
            text = (
                "No variant has a ratio to its baseline (every variant is its own baseline, or "
                "no round had OK calls of both), so there is nothing to compare."
            )
        return [f'<p class="note" id="no-ratio">{text}</p>']
    chart = charts.ratio_chart(rows, "p50 ratio to baseline: median, min-max over rounds")
    banded = sorted({r.baseline for r in rows if r.band is not None})
    if banded:
        explain = (
            "Grey band: the A/A noise of the run, the min-max ratio of "
            + ", ".join(f"<code>{_esc(b)}-again</code> to <code>{_esc(b)}</code>" for b in banded)
            + " (the same calls on a second channel). A variant inside it is not measurably "
            "different from its baseline."
        )
    else:
        explain = (
            "No A/A band: run <code>&lt;baseline&gt;-again</code> too (e.g. "
            "<code>grpc-sync-again</code>) to see how much the same calls differ by chance."
        )
    return [chart, f"<p>{explain} Hover a row for its numbers.</p>"]


def _percentile_curve(arm: ArmResult, x_max: float) -> list[tuple[float, float] | None]:
    steps = 80
    xs = [x_max * k / steps for k in range(steps + 1)]
    qs = [min(100.0, 100.0 * (1.0 - 10.0**-x)) for x in xs]
    values = arm.latency.percentiles(qs)
    return [(x, _ms(values[q])) for x, q in zip(xs, qs, strict=True)]


def _latency_range(values: Iterable[float]) -> tuple[float, float]:
    positive = [v for v in values if v > 0]
    if not positive:
        return 0.001, 1.0
    # Round outwards to quarter decades so the curves never touch the frame.
    low = 10.0 ** (math.floor(math.log10(min(positive)) * 4) / 4)
    high = 10.0 ** (math.ceil(math.log10(max(positive)) * 4) / 4)
    return (low, high) if high > low else (low, low * 10)


def _group_figures(result: RunResult) -> list[str]:
    """One figure per variant group: latency by percentile and p50 per round, its baselines from
    other groups drawn dashed for reference, one legend that toggles both charts."""
    drawable = [arm for arm in result.arms if arm.ok]
    if not drawable:
        return ['<p class="note">No variant had an OK call: there is no latency to plot.</p>']
    by_label = {arm.label: arm for arm in drawable}
    most = max(arm.ok for arm in drawable)
    x_max = max(1.0, min(5.0, math.log10(max(most, 10))))
    curves = {arm.label: _percentile_curve(arm, x_max) for arm in drawable}
    y_pct = _latency_range(p[1] for curve in curves.values() for p in curve if p is not None)
    round_ms = {
        arm.label: [None if v is None else _ms(v) for v in arm.round_p50_ns] for arm in drawable
    }
    all_rounds = [v for values in round_ms.values() for v in values if v is not None]
    r_low, r_high = (min(all_rounds), max(all_rounds)) if all_rounds else (0.0, 1.0)
    # One stall 20x the usual p50 would flatten every other line on a linear axis: past a 3x
    # spread the axis turns logarithmic, where the stall still stands out.
    rounds_log = r_low > 0 and r_high / r_low > 3.0
    if rounds_log:
        y_rounds = _latency_range((r_low, r_high))
    else:
        r_pad = (r_high - r_low) * 0.08 or r_high * 0.1 or 0.1
        y_rounds = (max(0.0, r_low - r_pad), r_high + r_pad)
    rounds = max((len(v) for v in round_ms.values()), default=1)
    pct_ticks = [
        (float(x), label)
        for x, label in enumerate(("0%", "90%", "99%", "99.9%", "99.99%", "99.999%"))
        if x <= x_max + 1e-9
    ]
    ms_ticks = [(t, f"{t:g}") for t in charts.log_ticks(*y_pct)]
    round_y_ticks = [
        (t, f"{t:g}")
        for t in (charts.log_ticks(*y_rounds) if rounds_log else charts.nice_ticks(*y_rounds, 6))
    ]
    round_x_ticks = [(float(r), str(r)) for r in charts.round_ticks(rounds)]
    figures = []
    for name, members in variant_groups(result.arms):
        shown = [arm for arm in members if arm.ok]
        if not shown:
            continue
        labels = [arm.label for arm in shown]
        references = [
            by_label[arm.baseline]
            for arm in shown
            if arm.baseline in by_label and arm.baseline not in labels
        ]
        references = list({arm.label: arm for arm in references}.values())
        series = [(arm, False) for arm in shown] + [(arm, True) for arm in references]
        colors = charts.palette(len(series))
        pct_lines, round_lines, keys = [], [], []
        for (arm, is_reference), color in zip(series, colors, strict=True):
            shown_label = f"{arm.label} (baseline)" if is_reference else arm.label
            marks_p = arm.latency.percentiles(p for p, _ in _PERCENTILE_MARKS)
            marks = [
                (
                    math.log10(100.0 / (100.0 - p)),
                    _ms(marks_p[p]),
                    f"{arm.label} {name_p}: {_ms(marks_p[p]):.3f} ms",
                )
                for p, name_p in _PERCENTILE_MARKS
                if math.log10(100.0 / (100.0 - p)) <= x_max + 1e-9
            ]
            pct_lines.append(
                charts.Line(arm.label, color, curves[arm.label], marks, dashed=is_reference)
            )
            per_round = round_ms[arm.label]
            round_lines.append(
                charts.Line(
                    arm.label,
                    color,
                    [None if v is None else (float(r + 1), v) for r, v in enumerate(per_round)],
                    [
                        (float(r + 1), v, f"{arm.label} round {r + 1}: p50 {v:.3f} ms")
                        for r, v in enumerate(per_round)
                        if v is not None
                    ],
                    dashed=is_reference,
                )
            )
            dash = " dash" if is_reference else ""
            keys.append(
                f'<button type="button" class="key" data-series="{_esc(arm.label)}" '
                f'aria-pressed="true" title="click to hide or show">'
                f'<span class="sw{dash}" style="background-color:{color}"></span>'
                f"{_esc(shown_label)}</button>"
            )
        pct = charts.line_chart(
            title="Latency by percentile",
            lines=pct_lines,
            x_range=(0.0, x_max),
            y_range=y_pct,
            x_ticks=pct_ticks,
            y_ticks=ms_ticks,
            x_label="percentile",
            y_label="ms (log)",
            y_log=True,
            css_class="percentiles",
            size=_SMALL,
        )
        per_round_chart = charts.line_chart(
            title="p50 per round (a stall shows as a spike)",
            lines=round_lines,
            x_range=(0.5, rounds + 0.5),
            y_range=y_rounds,
            x_ticks=round_x_ticks,
            y_ticks=round_y_ticks,
            x_label="round",
            y_label="p50 ms (log)" if rounds_log else "p50 ms",
            y_log=rounds_log,
            css_class="rounds",
            size=_SMALL,
        )
        figures.append(
            f'<figure class="group" data-group="{_esc(name)}"><figcaption>{_esc(name)}'
            f"</figcaption>"
            f'<div class="legend">{"".join(keys)}</div>'
            f"{pct}{per_round_chart}</figure>"
        )
    return ['<div class="grid groups">', *figures, "</div>"]


def _env_value(value: object) -> str:
    if value is None:
        return "<i>unknown</i>"
    if isinstance(value, list | tuple):
        return _esc(", ".join(str(v) for v in value))
    if isinstance(value, dict):
        return _esc(", ".join(f"{k}: {v}" for k, v in value.items()))
    return _esc(value)


def _environment(result: RunResult) -> str:
    """The environment as a collapsed key/value table (sections as sub-headings)."""
    env = result.environment
    versions = env.get("versions", {})
    machine = env.get("machine", {})
    summary = ", ".join(
        text
        for text in (
            f"python {versions.get('python')}" if versions.get("python") else "",
            f"grpcio {versions.get('grpcio')}" if versions.get("grpcio") else "",
            f"{machine.get('cpu_count')} CPUs" if machine.get("cpu_count") else "",
        )
        if text
    )
    rows = []
    for section, values in env.items():
        rows.append(f'<tr><th colspan="2">{_esc(section.replace("_", " "))}</th></tr>')
        if isinstance(values, dict):
            rows += [
                f"<tr><td>{_esc(str(k).replace('_', ' '))}</td><td>{_env_value(v)}</td></tr>"
                for k, v in values.items()
            ]
        else:
            rows.append(f"<tr><td>{_esc(section)}</td><td>{_env_value(values)}</td></tr>")
    targets = sorted({f"{a.target.describe()['address']} {a.target.method}" for a in result.arms})
    rows.append('<tr><th colspan="2">target</th></tr>')
    rows += [f"<tr><td>called</td><td><code>{_esc(t)}</code></td></tr>" for t in targets]
    return (
        f'<details class="env"><summary>{_esc(summary or "versions and machine")} '
        "(click for the full list)"
        f"</summary><table>{''.join(rows)}</table></details>"
    )


def to_html(result: RunResult) -> str:
    """A self-contained HTML report that opens with the ratio chart.

    In order: the run line (command, start, wall time, load); the per-variant p50 ratio to the
    baseline (median dot, min-max whisker, the A/A band shaded; a note instead when nothing can
    be compared, e.g. a single-variant run); one figure per variant group with latency by
    percentile and p50 per round (legend keys hide/show series, marks show values on hover);
    the summary table; open-loop send lag; status codes; variants; skipped variants; notes; and
    the environment in a collapsed ``<details>``. Inline CSS, SVG and a few lines of script
    only: no external asset, so the file works offline.
    """
    load_text = ", ".join(f"{k}={v}" for k, v in result.load.describe().items() if v is not None)
    open_loop = result.load.mode == "open"
    headers = ["variant", "calls", "p50 ms", "p90 ms", "p99 ms", "p99.9 ms", "max ms", "calls/s"]
    if open_loop:
        headers += ["asked/s"]
    headers += ["CPU µs/call (+vs)", "vs", "p50 ratio median (min-max)", "rps ratio", "failed"]
    rows = []
    for arm in result.arms:
        row = [_esc(arm.label), str(arm.calls), *_latency_cells(arm), f"{arm.throughput:.0f}"]
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
    if open_loop:
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
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        "<title>grpc-channel benchmark report</title>",
        f"<style>{_CSS}</style></head><body>",
        "<h1>grpc-channel invoke-latency benchmark</h1>",
        f'<p class="run"><code>{_esc(result.command)}</code> · started {_esc(result.started_at)}'
        f" · took {result.wall_seconds:.1f} s · {len(result.arms)} "
        f"variant{'' if len(result.arms) == 1 else 's'} · "
        f"{_esc(load_text)}</p>",
        '<section id="ratio"><h2>Ratio to baseline</h2>',
        *_ratio_section(result),
        "</section>",
        '<section id="groups"><h2>Latency per variant group</h2>',
        "<p>Each figure: its variants and, dashed, their baselines. Click a legend key to hide or "
        "show that series; hover a dot for its value. All figures share their axes.</p>",
        *_group_figures(result),
        "</section>",
        "<h2>Summary</h2>",
        f'<div class="wide">{summary}</div>',
        "<p>Latencies: calls that ended OK only; failed calls are counted under Status codes "
        "(a variant without an OK call shows none). Ratios: each round's p50 of the variant over "
        "the p50 of its baseline in the same round; median and min-max over rounds. rps ratio: "
        "the same for calls per second (median). calls/s: calls completed per second the variant "
        "ran (open loop: the rate achieved, beside the rate asked). CPU: client process CPU (all "
        "threads) per call.</p>",
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
    parts += ["<h2>Environment</h2>", _environment(result), f"<script>{_JS}</script>"]
    parts.append("</body></html>")
    return "\n".join(parts) + "\n"


def write_reports(
    result: RunResult,
    *,
    html_path: str | Path | None = None,
    json_path: str | Path | None = None,
    csv_path: str | Path | None = None,
    prometheus_path: str | Path | None = None,
    hdr_out: str | Path | None = None,
) -> list[Path]:
    """Write the requested report files; return their paths. Parent folders must exist, except
    an ``hdr_out`` folder given with a trailing separator (created). ``hdr_out`` is a folder or a
    file-name prefix for one ``.hgrm`` file per arm (see ``export.hdr_paths``)."""
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
    if prometheus_path is not None:
        written.append(write_prometheus(result, prometheus_path))
    if hdr_out is not None:
        written.extend(write_hdr(result, hdr_out))
    return written
