"""A log-bucketed latency histogram in the HdrHistogram style, mergeable across processes.

Values are non-negative integers (the benchmark records nanoseconds). Below ``2**sub_bits`` every
value has its own bucket; above, each power-of-two range is split into ``2**(sub_bits - 1)`` equal
buckets, so a reported value is never further than ``relative_error`` (``2**-sub_bits`` of it, about
0.05 % for the default ``sub_bits=11``) from the recorded sample it stands for. Min, max, count and
sum are kept exactly.

Why our own and not the ``hdrhistogram`` package: the benchmark needs record, merge, percentile and
a JSON-able form, which fit in one small module with no compiled extension; merging works between
any two histograms with the same ``sub_bits`` (no fixed highest trackable value to agree on first).

Percentiles follow HdrHistogram's rank rule: the value at percentile ``p`` is the smallest recorded
value whose rank is at least ``ceil(p / 100 * count)`` (at least rank 1). ``percentile(100)`` is the
exact max.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Iterator, Mapping
from typing import Any

__all__ = ["DEFAULT_SUB_BITS", "Histogram", "HistogramError"]

DEFAULT_SUB_BITS = 11
"""Sub-bucket bits: 2048 exact buckets, then 1024 buckets per power of two (≈0.05 % resolution)."""


class HistogramError(ValueError):
    """A value, percentile, merge partner or serialised form that a histogram cannot take."""


class Histogram:
    """Counts of non-negative integer values in log-linear buckets.

    ``Histogram(sub_bits=11)``; ``sub_bits`` must be between 2 and 20. Not thread-safe: record into
    one histogram per thread (or a list of samples) and merge.
    """

    __slots__ = ("_counts", "_half", "_max", "_min", "_sub_bits", "_sum", "_total")

    def __init__(self, sub_bits: int = DEFAULT_SUB_BITS) -> None:
        if not isinstance(sub_bits, int) or not 2 <= sub_bits <= 20:
            raise HistogramError(f"sub_bits must be an int from 2 to 20, got {sub_bits!r}")
        self._sub_bits = sub_bits
        self._half = 1 << (sub_bits - 1)
        self._counts: dict[int, int] = {}
        self._total = 0
        self._sum = 0
        self._min = 0
        self._max = 0

    # -- buckets
    # -------------------------------------------------------------------------------------

    @property
    def sub_bits(self) -> int:
        return self._sub_bits

    @property
    def relative_error(self) -> float:
        """Largest relative distance between a recorded value and the value reported for its
        bucket."""
        return 1.0 / (1 << self._sub_bits)

    def bucket_index(self, value: int) -> int:
        """The bucket that ``value`` falls in (exposed for tests and plotting)."""
        shift = value.bit_length() - self._sub_bits
        if shift <= 0:
            return value
        # Above the exact range: ``value >> shift`` lies in [half, 2*half); one block of ``half``
        # buckets per extra bit.
        return (shift + 1) * self._half + ((value >> shift) - self._half)

    def bucket_bounds(self, index: int) -> tuple[int, int]:
        """Lowest and highest value (inclusive) that land in bucket ``index``."""
        full = self._half << 1
        if index < full:
            return index, index
        shift = index // self._half - 1
        low = ((index % self._half) + self._half) << shift
        return low, low + (1 << shift) - 1

    def _representative(self, index: int) -> int:
        low, high = self.bucket_bounds(index)
        return min(max((low + high) // 2, self._min), self._max)

    # -- recording
    # -----------------------------------------------------------------------------------

    def record(self, value: int, count: int = 1) -> None:
        """Record ``value`` (an int ≥ 0) ``count`` times (``count`` ≥ 1)."""
        if value < 0:
            raise HistogramError(f"values must be >= 0, got {value}")
        if count < 1:
            raise HistogramError(f"count must be >= 1, got {count}")
        index = self.bucket_index(value)
        self._counts[index] = self._counts.get(index, 0) + count
        if self._total == 0:
            self._min = self._max = value
        elif value < self._min:
            self._min = value
        elif value > self._max:
            self._max = value
        self._total += count
        self._sum += value * count

    def record_many(self, values: Iterable[int]) -> None:
        """Record every value of ``values`` once."""
        for value in values:
            self.record(value)

    def merge(self, other: Histogram) -> None:
        """Add ``other``'s counts into this histogram (both must have the same ``sub_bits``)."""
        if other._sub_bits != self._sub_bits:
            raise HistogramError(
                f"cannot merge histograms with sub_bits {other._sub_bits} into {self._sub_bits}"
            )
        if other._total == 0:
            return
        for index, count in other._counts.items():
            self._counts[index] = self._counts.get(index, 0) + count
        if self._total == 0:
            self._min, self._max = other._min, other._max
        else:
            self._min = min(self._min, other._min)
            self._max = max(self._max, other._max)
        self._total += other._total
        self._sum += other._sum

    @classmethod
    def merged(cls, histograms: Iterable[Histogram], sub_bits: int = DEFAULT_SUB_BITS) -> Histogram:
        """A new histogram holding the sum of ``histograms`` (empty when there are none)."""
        result = cls(sub_bits)
        for histogram in histograms:
            result.merge(histogram)
        return result

    # -- reading
    # -------------------------------------------------------------------------------------

    @property
    def count(self) -> int:
        return self._total

    @property
    def min(self) -> int:
        """Smallest recorded value (0 when empty)."""
        return self._min

    @property
    def max(self) -> int:
        """Largest recorded value (0 when empty)."""
        return self._max

    @property
    def total(self) -> int:
        """Sum of all recorded values."""
        return self._sum

    @property
    def mean(self) -> float:
        """Exact mean (0.0 when empty)."""
        return self._sum / self._total if self._total else 0.0

    def percentile(self, percentile: float) -> int:
        """The value at ``percentile`` (0 to 100); 0 when empty. See the module doc for the rank
        rule."""
        if not 0.0 <= percentile <= 100.0 or math.isnan(percentile):
            raise HistogramError(f"percentile must be within 0..100, got {percentile}")
        if self._total == 0:
            return 0
        if percentile >= 100.0:
            return self._max
        rank = max(1, math.ceil(percentile / 100.0 * self._total))
        seen = 0
        for index in sorted(self._counts):
            seen += self._counts[index]
            if seen >= rank:
                return self._representative(index)
        return self._max

    def percentiles(self, wanted: Iterable[float]) -> dict[float, int]:
        """Several percentiles in one pass over the buckets."""
        order = sorted(set(wanted))
        for p in order:
            if not 0.0 <= p <= 100.0 or math.isnan(p):
                raise HistogramError(f"percentile must be within 0..100, got {p}")
        result: dict[float, int] = {}
        if self._total == 0:
            return dict.fromkeys(order, 0)
        pending = iter(order)
        current = next(pending, None)
        seen = 0
        for index in sorted(self._counts):
            seen += self._counts[index]
            while current is not None and current < 100.0:
                if seen < max(1, math.ceil(current / 100.0 * self._total)):
                    break
                result[current] = self._representative(index)
                current = next(pending, None)
            if current is None:
                break
        for p in order:
            result.setdefault(p, self._max)
        return result

    @property
    def stddev(self) -> float:
        """Population standard deviation, with each bucket's samples taken at its reported value
        (so within ``relative_error`` of the exact figure); 0.0 when empty."""
        if self._total == 0:
            return 0.0
        mean = self.mean
        square_sum = sum(
            count * (self._representative(index) - mean) ** 2
            for index, count in self._counts.items()
        )
        return math.sqrt(square_sum / self._total)

    def percentile_distribution(
        self, ticks_per_half_distance: int = 5
    ) -> Iterator[tuple[int, float, int]]:
        """``(value, percentile, count_up_to_value)`` rows in HdrHistogram's percentile-iteration
        order (what its ``.hgrm`` output lists); nothing when empty.

        Percentile levels start at 0 and step by ``100 / (2 * ticks * 2**k)`` where ``k`` is how
        many times the remaining distance to 100 has halved: with the default 5 ticks, steps of
        10 up to 50, then 5 up to 75, 2.5 up to 87.5, and so on. Each row reports the first
        bucket whose cumulative count reaches the level (a bucket may answer several levels);
        the last row is percentile 100 at the exact max. Values follow ``percentile``'s rule.
        ``ticks_per_half_distance`` must be an int >= 1.
        """
        if not isinstance(ticks_per_half_distance, int) or ticks_per_half_distance < 1:
            raise HistogramError(
                f"ticks_per_half_distance must be an int >= 1, got {ticks_per_half_distance!r}"
            )
        if self._total == 0:
            return
        level = 0.0
        seen = 0
        for index in sorted(self._counts):
            seen += self._counts[index]
            # Several levels can fall in one bucket: report each, as HdrHistogram does. The last
            # bucket would answer every level short of 100 (an endless halving), so it gives one
            # row at the current level and the table ends with 100 at the exact max.
            while 100.0 * seen / self._total >= level:
                yield self._representative(index), level, seen
                halvings = math.floor(math.log2(100.0 / (100.0 - level)))
                level += 100.0 / (ticks_per_half_distance * 2 ** (halvings + 1))
                if seen == self._total:
                    break
        yield self._max, 100.0, self._total

    def buckets(self) -> Iterator[tuple[int, int, int]]:
        """``(low, high, count)`` for every non-empty bucket, lowest first."""
        for index in sorted(self._counts):
            low, high = self.bucket_bounds(index)
            yield low, high, self._counts[index]

    # -- serialised form (for worker processes and the JSON report)
    # ----------------------------------

    def to_dict(self) -> dict[str, Any]:
        """A JSON-able form; ``Histogram.from_dict`` reads it back exactly."""
        return {
            "sub_bits": self._sub_bits,
            "count": self._total,
            "sum": self._sum,
            "min": self._min,
            "max": self._max,
            "buckets": [[index, self._counts[index]] for index in sorted(self._counts)],
        }

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> Histogram:
        """Rebuild a histogram from ``to_dict`` output; a malformed form raises HistogramError."""
        try:
            histogram = cls(int(data["sub_bits"]))
            counts = {int(index): int(count) for index, count in data["buckets"]}
            total, value_sum = int(data["count"]), int(data["sum"])
            low, high = int(data["min"]), int(data["max"])
        except (KeyError, TypeError, ValueError) as exc:
            raise HistogramError(f"not a serialised histogram: {exc!r}") from exc
        if sum(counts.values()) != total or any(c < 1 or i < 0 for i, c in counts.items()):
            raise HistogramError("serialised histogram counts do not add up to its count")
        histogram._counts = counts
        histogram._total, histogram._sum = total, value_sum
        histogram._min, histogram._max = low, high
        return histogram

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Histogram):
            return NotImplemented
        return self.to_dict() == other.to_dict()

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return (
            f"Histogram(count={self._total}, min={self._min}, p50={self.percentile(50)}, "
            f"max={self._max}, sub_bits={self._sub_bits})"
        )
