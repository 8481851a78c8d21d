"""The concurrency limiter's pure state machine and its adaptive limit algorithms.

:class:`LimiterState` knows the limit, the calls in flight and the queue of waiters, and decides who
gets a slot; it never blocks, sleeps or locks. The sync and aio shells in
``grpc_channel.interceptors._concurrency`` hold one lock around it and only do the waiting (a
``threading.Event`` or an ``asyncio.Future`` per queued caller), so one limiter serves threads and
event loops alike.

Adaptive algorithms, in the spirit of Netflix's concurrency-limits library:

- :class:`AimdLimit`: additive increase, multiplicative decrease. A dropped call (a code in the
  limiter's ``drop_codes``) or one slower than ``timeout`` multiplies the limit by
  ``backoff_ratio``; a good call adds 1 when the limiter is busy enough to need more (at least half
  the limit in flight), so an idle client does not inflate its limit.
- :class:`GradientLimit`: compares each call's latency with a long-term average. While latency
  stays within ``tolerance`` times the average the limit grows by about ``queue_size`` per sample
  (smoothed); when latency rises the limit shrinks in proportion (never by more than half per
  sample); a dropped call counts as the worst gradient (0.5).

An algorithm object keeps state between samples: give each limiter its own.
"""

from __future__ import annotations

import contextlib
import math
from collections import deque
from typing import Protocol

__all__ = ["AimdLimit", "GradientLimit", "LimitAlgorithm", "LimiterState", "Waiter"]


class LimitAlgorithm(Protocol):
    """What an adaptive algorithm offers the limiter."""

    initial: int
    min_limit: int
    max_limit: int

    def update(self, limit: float, rtt: float, in_flight: int, dropped: bool) -> float:
        """The new limit after a call that took ``rtt`` seconds (0.0 when not measured) with
        ``in_flight`` calls running (itself included) and was or was not dropped."""
        ...


def _check_bounds(initial: int, min_limit: int, max_limit: int) -> None:
    for name, value in (("initial", initial), ("min_limit", min_limit), ("max_limit", max_limit)):
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be an int >= 1, got {value!r}")
    if not min_limit <= initial <= max_limit:
        raise ValueError(
            f"need min_limit <= initial <= max_limit, got {min_limit} <= {initial} <= {max_limit}"
        )


def _check_positive(name: str, value: float) -> None:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not value > 0:
        raise ValueError(f"{name} must be a number > 0, got {value!r}")
    if math.isinf(value):
        raise ValueError(f"{name} must be finite, got {value!r}")


class AimdLimit:
    """Additive-increase / multiplicative-decrease limit.

    Defaults: ``initial=20``, ``min_limit=1``, ``max_limit=200``, ``backoff_ratio=0.9`` (in
    (0, 1)), ``timeout=5.0`` seconds (a slower call counts as dropped).
    """

    __slots__ = ("backoff_ratio", "initial", "max_limit", "min_limit", "timeout")

    def __init__(
        self,
        initial: int = 20,
        *,
        min_limit: int = 1,
        max_limit: int = 200,
        backoff_ratio: float = 0.9,
        timeout: float = 5.0,
    ) -> None:
        _check_bounds(initial, min_limit, max_limit)
        if not isinstance(backoff_ratio, (int, float)) or not 0 < backoff_ratio < 1:
            raise ValueError(f"backoff_ratio must be in (0, 1), got {backoff_ratio!r}")
        _check_positive("timeout", timeout)
        self.initial = initial
        self.min_limit = min_limit
        self.max_limit = max_limit
        self.backoff_ratio = float(backoff_ratio)
        self.timeout = float(timeout)

    def update(self, limit: float, rtt: float, in_flight: int, dropped: bool) -> float:
        if dropped or rtt > self.timeout:
            return max(float(self.min_limit), limit * self.backoff_ratio)
        if in_flight * 2 >= limit:
            return min(float(self.max_limit), limit + 1.0)
        return limit

    def __repr__(self) -> str:
        return (
            f"AimdLimit(initial={self.initial}, min_limit={self.min_limit}, "
            f"max_limit={self.max_limit}, backoff_ratio={self.backoff_ratio}, "
            f"timeout={self.timeout})"
        )


class GradientLimit:
    """Latency-gradient limit (after Netflix's Gradient2).

    Defaults: ``initial=20``, ``min_limit=1``, ``max_limit=200``, ``smoothing=0.2`` (weight of the
    new estimate, in (0, 1]), ``tolerance=1.5`` (latency may reach 1.5 times the long-term average
    before the limit shrinks; >= 1), ``long_window=600`` samples (the long-term average's
    horizon), ``queue_size=4`` (growth allowance per sample).
    """

    __slots__ = (
        "initial",
        "long_rtt",
        "long_window",
        "max_limit",
        "min_limit",
        "queue_size",
        "smoothing",
        "tolerance",
    )

    def __init__(
        self,
        initial: int = 20,
        *,
        min_limit: int = 1,
        max_limit: int = 200,
        smoothing: float = 0.2,
        tolerance: float = 1.5,
        long_window: int = 600,
        queue_size: int = 4,
    ) -> None:
        _check_bounds(initial, min_limit, max_limit)
        if not isinstance(smoothing, (int, float)) or not 0 < smoothing <= 1:
            raise ValueError(f"smoothing must be in (0, 1], got {smoothing!r}")
        if not isinstance(tolerance, (int, float)) or not 1 <= tolerance < math.inf:
            raise ValueError(f"tolerance must be a finite number >= 1, got {tolerance!r}")
        if isinstance(long_window, bool) or not isinstance(long_window, int) or long_window < 1:
            raise ValueError(f"long_window must be an int >= 1, got {long_window!r}")
        if isinstance(queue_size, bool) or not isinstance(queue_size, int) or queue_size < 0:
            raise ValueError(f"queue_size must be an int >= 0, got {queue_size!r}")
        self.initial = initial
        self.min_limit = min_limit
        self.max_limit = max_limit
        self.smoothing = float(smoothing)
        self.tolerance = float(tolerance)
        self.long_window = long_window
        self.queue_size = queue_size
        self.long_rtt = 0.0

    def update(self, limit: float, rtt: float, in_flight: int, dropped: bool) -> float:
        if dropped:
            gradient = 0.5
        else:
            if rtt <= 0:
                return limit
            long_rtt = self.long_rtt
            if long_rtt == 0.0:
                long_rtt = rtt
            else:
                long_rtt += (rtt - long_rtt) / self.long_window
                if long_rtt / rtt > 2.0:
                    # Latency fell a lot: let the long-term average catch up faster.
                    long_rtt *= 0.95
            self.long_rtt = long_rtt
            if in_flight * 2 < limit:
                return limit  # app-limited: no evidence either way
            gradient = max(0.5, min(1.0, self.tolerance * long_rtt / rtt))
        estimate = limit * gradient + self.queue_size
        new = limit * (1.0 - self.smoothing) + estimate * self.smoothing
        return max(float(self.min_limit), min(float(self.max_limit), new))

    def __repr__(self) -> str:
        return (
            f"GradientLimit(initial={self.initial}, min_limit={self.min_limit}, "
            f"max_limit={self.max_limit}, smoothing={self.smoothing}, "
            f"tolerance={self.tolerance}, long_window={self.long_window}, "
            f"queue_size={self.queue_size})"
        )


class Waiter:
    """A queued caller. ``granted`` is set (under the shell's lock) when a slot was handed to it;
    the shell then wakes it."""

    __slots__ = ("granted", "wake")

    def __init__(self) -> None:
        self.granted = False
        self.wake: object = None  # the shell's wake-up handle: an Event or (loop, future)


class LimiterState:
    """Limit, in-flight count and FIFO queue. Not thread-safe: the shell locks around every call.

    A released slot goes straight to the oldest waiter (``in_flight`` does not drop and rise), so
    a newcomer can never overtake the queue.
    """

    __slots__ = ("algorithm", "cap", "in_flight", "limit", "max_queue", "queue")

    def __init__(self, limit: int, max_queue: int | None, algorithm: LimitAlgorithm | None) -> None:
        self.limit = float(limit)  # the algorithm's value (fractional in adaptive mode)
        self.cap = max(1, int(limit))  # slots actually granted: int(limit), at least 1
        self.max_queue = max_queue
        self.algorithm = algorithm
        self.in_flight = 0
        self.queue: deque[Waiter] = deque()

    @property
    def current_limit(self) -> int:
        return self.cap

    def try_acquire(self) -> bool:
        """Take a slot now if one is free and nobody is queued."""
        if self.in_flight < self.cap and not self.queue:
            self.in_flight += 1
            return True
        return False

    def queue_full(self) -> bool:
        max_queue = self.max_queue
        return max_queue is not None and len(self.queue) >= max_queue

    def enqueue(self, waiter: Waiter) -> None:
        self.queue.append(waiter)

    def abandon(self, waiter: Waiter) -> bool:
        """A waiter gives up (deadline, cancellation, any exception that ended its wait). True if
        it still owns no slot and left the queue; False if a slot was granted meanwhile (the
        caller then owns it, and must give it back if it is leaving)."""
        if waiter.granted:
            return False
        with contextlib.suppress(ValueError):
            self.queue.remove(waiter)
        return True

    def release(self, rtt: float, dropped: bool, sample: bool) -> Waiter | None:
        """Give a slot back, feeding the algorithm; returns the first waiter granted a slot (the
        shell wakes it and then calls :meth:`grant_more` for any further ones)."""
        algorithm = self.algorithm
        if algorithm is not None and sample:
            self.limit = algorithm.update(self.limit, rtt, self.in_flight, dropped)
            self.cap = max(1, int(self.limit))
        self.in_flight -= 1
        return self.grant_more()

    def grant_more(self) -> Waiter | None:
        """Hand one free slot to the oldest waiter, if any (None when nothing to hand out)."""
        queue = self.queue
        if queue and self.in_flight < self.cap:
            waiter = queue.popleft()
            waiter.granted = True
            self.in_flight += 1
            return waiter
        return None
