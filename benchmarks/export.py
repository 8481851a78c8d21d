"""Exports of a run for other tools: Prometheus text exposition and HdrHistogram ``.hgrm`` files.

``to_prometheus(result)`` is one text page in the Prometheus exposition format (version 0.0.4) that
a Pushgateway, ``promtool`` or a textfile collector reads: per arm, the latency as a summary
(quantiles 0.5 to 0.999, sum, count) and as a histogram (cumulative buckets on fixed 1-2-5 bounds
from 50 µs to 10 s, plus ``+Inf``), calls by status code, calls per second, client CPU per call and
the p50 ratio to the baseline. Latencies are in seconds, as Prometheus names them; every sample
carries ``variant`` (the arm's label), ``kind`` and ``baseline`` labels.

``to_hgrm(histogram)`` is HdrHistogram's percentile-distribution text (what its
``outputPercentileDistribution`` prints and its plotter reads): ``Value``, ``Percentile``,
``TotalCount`` and ``1/(1-Percentile)`` columns, then the Mean/StdDeviation, Max/Total count and
Buckets/SubBuckets footer. Values are in milliseconds by default.
``write_hdr(result, dir_or_prefix)`` writes one such file per arm.
"""

from __future__ import annotations

import math
import re
from collections.abc import Iterable, Sequence
from pathlib import Path

from .histogram import Histogram
from .runner import ArmResult, RunResult

__all__ = [
    "PROMETHEUS_BUCKETS_S",
    "PROMETHEUS_QUANTILES",
    "hdr_paths",
    "to_hgrm",
    "to_prometheus",
    "write_hdr",
    "write_prometheus",
]

PROMETHEUS_QUANTILES = (0.5, 0.9, 0.99, 0.999)
"""Summary quantiles exported per arm (the percentiles of the table)."""

PROMETHEUS_BUCKETS_S = tuple(
    # Parsed from text so the bounds print as 5e-05, not 5.000000000000001e-05.
    bound
    for bound in (float(f"{m}e{e}") for e in range(-5, 2) for m in (1, 2, 5))
    if 5e-5 <= bound <= 10.0
)
"""Histogram bucket upper bounds in seconds: 50 µs, 100 µs, 200 µs ... 5 s, 10 s (then +Inf)."""

_PREFIX = "grpc_channel_bench"


def _label_value(value: str) -> str:
    # The exposition format escapes exactly these three in label values.
    return value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\n")


def _labels(pairs: Iterable[tuple[str, str]]) -> str:
    inner = ",".join(f'{key}="{_label_value(value)}"' for key, value in pairs)
    return "{" + inner + "}"


def _number(value: float) -> str:
    if math.isnan(value):
        return "NaN"
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    return repr(float(value)) if not float(value).is_integer() else str(int(value))


def _cumulative(histogram: Histogram, bounds_ns: Sequence[float]) -> list[int]:
    """Counts of values at or below each bound; a bucket straddling a bound counts by its
    midpoint (within the histogram's ``relative_error``)."""
    counts = [0] * len(bounds_ns)
    for low, high, count in histogram.buckets():
        middle = (low + high) / 2
        for i, bound in enumerate(bounds_ns):
            if middle <= bound:
                counts[i] += count
    return counts


class _Family:
    """One metric family: HELP, TYPE and its samples, in the order they were added."""

    def __init__(self, name: str, kind: str, help_text: str) -> None:
        self.name = name
        self.lines = [f"# HELP {name} {help_text}", f"# TYPE {name} {kind}"]

    def sample(self, suffix: str, labels: Iterable[tuple[str, str]], value: float) -> None:
        self.lines.append(f"{self.name}{suffix}{_labels(labels)} {_number(value)}")


def to_prometheus(result: RunResult) -> str:
    """The run as Prometheus text exposition (see the module doc). An arm without an OK call has
    count 0 and no quantile samples (nothing was measured); its calls still show by code."""
    info = _Family(
        f"{_PREFIX}_info", "gauge", "The benchmark run: command and versions (always 1)."
    )
    versions = result.environment.get("versions", {})
    info.sample(
        "",
        [
            ("command", result.command),
            ("started_at", result.started_at),
            ("mode", result.load.mode),
            # Label names allow [a-zA-Z0-9_] only; version keys are names we chose, but say so.
            *(
                (re.sub(r"[^A-Za-z0-9_]", "_", key), str(value))
                for key, value in versions.items()
                if value is not None
            ),
        ],
        1,
    )
    summary = _Family(
        f"{_PREFIX}_latency_seconds", "summary", "Latency of calls that ended OK, in seconds."
    )
    histogram = _Family(
        f"{_PREFIX}_latency_histogram_seconds",
        "histogram",
        "Latency of calls that ended OK, in seconds, as cumulative buckets.",
    )
    # The text format's TYPE line names a counter as its samples do, _total included.
    calls = _Family(f"{_PREFIX}_calls_total", "counter", "Measured calls by gRPC status code.")
    rate = _Family(f"{_PREFIX}_throughput_calls_per_second", "gauge", "Calls completed per second.")
    cpu = _Family(f"{_PREFIX}_client_cpu_seconds_per_call", "gauge", "Client process CPU per call.")
    ratio = _Family(
        f"{_PREFIX}_p50_ratio_to_baseline",
        "gauge",
        "Per-round p50 over the baseline's p50 in the same round: median, min and max.",
    )
    bounds_ns = [bound * 1e9 for bound in PROMETHEUS_BUCKETS_S]
    for arm in result.arms:
        labels = [("variant", arm.label), ("kind", arm.kind), ("baseline", arm.baseline)]
        latency = arm.latency
        if arm.ok:
            values = latency.percentiles(q * 100 for q in PROMETHEUS_QUANTILES)
            for q in PROMETHEUS_QUANTILES:
                summary.sample("", [*labels, ("quantile", _number(q))], values[q * 100] / 1e9)
        summary.sample("_sum", labels, latency.total / 1e9)
        summary.sample("_count", labels, latency.count)
        for bound, count in zip(PROMETHEUS_BUCKETS_S, _cumulative(latency, bounds_ns), strict=True):
            histogram.sample("_bucket", [*labels, ("le", _number(bound))], count)
        histogram.sample("_bucket", [*labels, ("le", "+Inf")], latency.count)
        histogram.sample("_sum", labels, latency.total / 1e9)
        histogram.sample("_count", labels, latency.count)
        for code, count in arm.codes.items():
            calls.sample("", [*labels, ("code", code)], count)
        rate.sample("", labels, arm.throughput)
        cpu.sample("", labels, arm.cpu_us_per_call / 1e6)
        if arm.ratios:
            for stat, value in (
                ("median", arm.ratio_median),
                ("min", arm.ratio_min),
                ("max", arm.ratio_max),
            ):
                ratio.sample("", [*labels, ("stat", stat)], value)
    families = [info, summary, histogram, calls, rate, cpu, ratio]
    return "\n".join(line for family in families for line in family.lines) + "\n"


def to_hgrm(histogram: Histogram, *, unit_ns: float = 1e6, ticks_per_half_distance: int = 5) -> str:
    """HdrHistogram's percentile distribution text for ``histogram`` (see the module doc).

    ``unit_ns`` is the output unit in the histogram's units (ns): 1e6 (default) prints
    milliseconds, 1e3 microseconds. Values print with 3 decimals. The last row (percentile 1.0)
    has no ``1/(1-Percentile)`` column, as in HdrHistogram's own output. An empty histogram gives
    the header and a footer of zeros. ``Buckets`` counts the power-of-two ranges up to the max
    (ours has no fixed highest trackable value); ``SubBuckets`` is ``2**sub_bits``.
    """
    if not unit_ns > 0:
        raise ValueError(f"unit_ns must be > 0, got {unit_ns!r}")
    lines = [f"{'Value':>12} {'Percentile':>14} {'TotalCount':>10} {'1/(1-Percentile)':>14}", ""]
    for value, percentile, count in histogram.percentile_distribution(ticks_per_half_distance):
        fraction = percentile / 100.0
        row = f"{value / unit_ns:12.3f} {fraction:2.12f} {count:10d}"
        if fraction < 1.0:
            row += f" {1.0 / (1.0 - fraction):14.2f}"
        lines.append(row)
    sub_buckets = 1 << histogram.sub_bits
    buckets = max(1, histogram.max.bit_length() - histogram.sub_bits + 1)
    lines += [
        f"#[Mean    = {histogram.mean / unit_ns:12.3f}, "
        f"StdDeviation   = {histogram.stddev / unit_ns:12.3f}]",
        f"#[Max     = {histogram.max / unit_ns:12.3f}, Total count    = {histogram.count:12d}]",
        f"#[Buckets = {buckets:12d}, SubBuckets     = {sub_buckets:12d}]",
    ]
    return "\n".join(lines) + "\n"


def _file_part(label: str) -> str:
    # Variant labels hold '+' and may hold anything a plug-in chose: keep names portable.
    return re.sub(r"[^A-Za-z0-9._-]+", "_", label).strip("_") or "arm"


def hdr_paths(result: RunResult, dir_or_prefix: str | Path) -> list[tuple[ArmResult, Path]]:
    """Where ``write_hdr`` puts each arm's file: ``DIR/<label>.hgrm`` when ``dir_or_prefix`` is an
    existing folder or ends with a path separator, else ``<prefix><label>.hgrm`` (so
    ``out/run1-`` gives ``out/run1-grpc-sync.hgrm``). Labels are made file-name safe; two labels
    that clash after that get ``-2``, ``-3`` ... suffixes."""
    text = str(dir_or_prefix)
    is_dir = Path(text).is_dir() or text.endswith(("/", "\\"))
    taken: set[str] = set()
    paths = []
    for arm in result.arms:
        stem = _file_part(arm.label)
        name, n = stem, 1
        while name in taken:
            n += 1
            name = f"{stem}-{n}"
        taken.add(name)
        paths.append((arm, Path(text) / f"{name}.hgrm" if is_dir else Path(f"{text}{name}.hgrm")))
    return paths


def write_hdr(result: RunResult, dir_or_prefix: str | Path) -> list[Path]:
    """One ``.hgrm`` file per arm (see ``hdr_paths``); a folder given with a trailing separator
    is created, a prefix's folder must exist. Returns the paths written."""
    text = str(dir_or_prefix)
    if text.endswith(("/", "\\")):
        Path(text).mkdir(parents=True, exist_ok=True)
    written = []
    for arm, path in hdr_paths(result, dir_or_prefix):
        path.write_text(to_hgrm(arm.latency), encoding="utf-8")
        written.append(path)
    return written


def write_prometheus(result: RunResult, path: str | Path) -> Path:
    """Write ``to_prometheus(result)`` to ``path`` (its folder must exist); return the path."""
    target = Path(path)
    target.write_text(to_prometheus(result), encoding="utf-8")
    return target
