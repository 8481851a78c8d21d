"""The log-bucketed histogram: percentiles against a plain sort, merging, its serialised form."""

from __future__ import annotations

import bisect
import json
import math
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from grpc_channel.bench.histogram import Histogram, HistogramError

PERCENTILES = (0.0, 1.0, 25.0, 50.0, 90.0, 99.0, 99.9, 99.99, 100.0)


def exact_percentile(sorted_values: list[int], p: float) -> int:
    """The plain-sort answer with the same rank rule (smallest value of rank >= ceil(p*n))."""
    rank = max(1, math.ceil(p / 100.0 * len(sorted_values)))
    return sorted_values[rank - 1]


def latencies(seed: int, n: int) -> list[int]:
    rng = random.Random(seed)
    # Log-normal around 600 us with a long tail: what loopback unary latencies look like.
    return [int(rng.lognormvariate(math.log(600_000), 0.6)) for _ in range(n)]


@pytest.mark.parametrize("sub_bits", [4, 7, 11])
def test_percentiles_match_a_plain_sort_within_the_bucket_resolution(sub_bits: int) -> None:
    values = latencies(seed=sub_bits, n=20_000)
    histogram = Histogram(sub_bits)
    histogram.record_many(values)
    ordered = sorted(values)
    for p in PERCENTILES:
        exact = exact_percentile(ordered, p)
        got = histogram.percentile(p)
        assert abs(got - exact) <= exact * histogram.relative_error, (p, got, exact)
    assert histogram.percentile(100) == ordered[-1]
    assert histogram.min == ordered[0]
    assert histogram.count == len(values)
    assert histogram.mean == pytest.approx(sum(values) / len(values))


@settings(max_examples=150, deadline=None)
@given(
    values=st.lists(st.integers(min_value=0, max_value=10**12), min_size=1, max_size=400),
    p=st.floats(min_value=0.0, max_value=100.0, allow_nan=False),
)
def test_any_samples_any_percentile(values: list[int], p: float) -> None:
    histogram = Histogram(8)
    histogram.record_many(values)
    exact = exact_percentile(sorted(values), p)
    assert abs(histogram.percentile(p) - exact) <= exact * histogram.relative_error
    assert histogram.percentiles([p])[p] == histogram.percentile(p)


def test_values_below_the_sub_bucket_range_are_exact() -> None:
    histogram = Histogram(6)
    histogram.record_many(range(64))
    ordered = list(range(64))
    for p in PERCENTILES:
        assert histogram.percentile(p) == exact_percentile(ordered, p)


def test_merge_equals_recording_everything_in_one() -> None:
    values = latencies(seed=7, n=9_000)
    whole = Histogram()
    whole.record_many(values)
    parts = [Histogram() for _ in range(3)]
    for i, value in enumerate(values):
        parts[i % 3].record(value)
    merged = Histogram.merged(parts)
    assert merged == whole
    assert merged.percentiles(PERCENTILES) == whole.percentiles(PERCENTILES)
    assert (merged.min, merged.max, merged.count, merged.total) == (
        min(values),
        max(values),
        len(values),
        sum(values),
    )


def test_merge_through_the_serialised_form_as_worker_processes_do() -> None:
    values = latencies(seed=11, n=3_000)
    wire = []
    for chunk in (values[:1000], values[1000:2500], values[2500:]):
        histogram = Histogram()
        histogram.record_many(chunk)
        wire.append(json.loads(json.dumps(histogram.to_dict())))
    merged = Histogram.merged(Histogram.from_dict(d) for d in wire)
    ordered = sorted(values)
    for p in PERCENTILES:
        exact = exact_percentile(ordered, p)
        assert abs(merged.percentile(p) - exact) <= exact * merged.relative_error


def test_merging_an_empty_histogram_changes_nothing_and_empty_reads_zero() -> None:
    empty = Histogram()
    assert (empty.percentile(50), empty.min, empty.max, empty.mean) == (0, 0, 0, 0.0)
    histogram = Histogram()
    histogram.record(5_000)
    histogram.merge(Histogram())
    assert histogram.count == 1
    empty.merge(histogram)
    assert (empty.min, empty.max, empty.count) == (5_000, 5_000, 1)


def test_buckets_cover_their_values_and_do_not_overlap() -> None:
    histogram = Histogram(5)
    previous_high = -1
    for index in range(histogram.bucket_index(10**9) + 1):
        low, high = histogram.bucket_bounds(index)
        assert low == previous_high + 1
        assert histogram.bucket_index(low) == index == histogram.bucket_index(high)
        previous_high = high


def test_bad_input_is_refused_with_a_clear_error() -> None:
    histogram = Histogram()
    with pytest.raises(HistogramError, match=">= 0"):
        histogram.record(-1)
    with pytest.raises(HistogramError, match=r"0\.\.100"):
        histogram.percentile(100.5)
    with pytest.raises(HistogramError, match="sub_bits"):
        Histogram(1)
    with pytest.raises(HistogramError, match="cannot merge"):
        histogram.merge(Histogram(5))
    with pytest.raises(HistogramError, match="do not add up"):
        Histogram.from_dict(
            {"sub_bits": 11, "count": 3, "sum": 1, "min": 0, "max": 1, "buckets": [[1, 1]]}
        )
    with pytest.raises(HistogramError, match="not a serialised histogram"):
        Histogram.from_dict({"count": 1})


def _hdr_levels(ticks: int, below: float) -> list[float]:
    """HdrHistogram's percentile levels below ``below``: ``ticks`` steps per half distance."""
    levels, level = [], 0.0
    while level < below:
        levels.append(level)
        level += 100.0 / (ticks * 2 ** (math.floor(math.log2(100.0 / (100.0 - level))) + 1))
    return levels


@pytest.mark.parametrize("ticks", [1, 5])
def test_percentile_distribution_follows_hdrhistograms_levels_and_our_rank_rule(
    ticks: int,
) -> None:
    values = latencies(seed=3, n=5_000)
    histogram = Histogram()
    histogram.record_many(values)
    rows = list(histogram.percentile_distribution(ticks))
    *inner, last = rows
    indices = sorted(histogram.bucket_index(v) for v in values)
    assert last == (max(values), 100.0, len(values))
    levels = [level for _, level, _ in inner]
    assert levels == _hdr_levels(ticks, levels[-1] + 1e-12)
    if ticks == 5:
        assert levels[:8] == [0.0, 10.0, 20.0, 30.0, 40.0, 50.0, 55.0, 60.0]
    for value, level, seen in inner:
        assert value == histogram.percentile(level)  # the same value the reports show
        assert 100.0 * seen / len(values) >= level
        # The count is every sample up to and including the reported value's bucket.
        assert seen == bisect.bisect_right(indices, histogram.bucket_index(value))
    counts = [seen for _, _, seen in rows]
    assert counts == sorted(counts)


def test_percentile_distribution_edges_and_stddev() -> None:
    assert list(Histogram().percentile_distribution()) == []
    one = Histogram()
    one.record(7_000)
    assert list(one.percentile_distribution()) == [(7_000, 0.0, 1), (7_000, 100.0, 1)]
    with pytest.raises(HistogramError, match="ticks_per_half_distance"):
        list(one.percentile_distribution(0))
    values = latencies(seed=9, n=4_000)
    histogram = Histogram()
    histogram.record_many(values)
    mean = sum(values) / len(values)
    exact = math.sqrt(sum((v - mean) ** 2 for v in values) / len(values))
    assert histogram.stddev == pytest.approx(exact, rel=0.01)
    assert (Histogram().stddev, one.stddev) == (0.0, 0.0)
