"""The load generator: closed and open loop, interleaved rounds, worker processes, merged results.

A run compares *arms* (a variant against a target, with a label and a baseline arm). Every worker
builds all arms, warms each up, then runs ``rounds`` rounds; a round runs one *block* per arm, in an
order shuffled per round, so slow drift of the machine hits every arm alike. Workers start each
block together (a barrier), so with several workers all of them load the same arm at once.

Counts are exact: with ``LoadSpec(calls=N)`` each arm makes N measured calls, round ``k`` the
``k``-th share of N (the first ``N % rounds`` rounds one more), and the calls of the run are
numbered 0..N-1 and dealt to the workers in turn (call ``j`` to worker ``j % workers``). Warm-up
and the re-warm calls before each block are extra and never recorded.

Closed loop: each worker keeps ``concurrency`` calls in flight (threads for sync variants, tasks for
aio ones); latency is from send to completion. A block is a round's calls, or ``block_seconds`` of
calling.

Open loop: each arm has one schedule for the whole run (a :class:`Timeline` per worker): call ``j``
is due ``j / rate`` seconds after the arm's first call, on the arm's own clock. The clock runs while
the arm's blocks run and stops between them, while other arms run, so the schedule shifts by the
paused time; no due time is ever dropped or restarted. Calls still owed when a block ends (the
backlog a stall leaves) start the arm's next block already overdue by as much as when the block
ended, so the queueing delay is measured wherever the stall falls. Up to ``concurrency`` senders
per worker send the calls when due, and latency runs from the intended send time, not the actual
one (coordinated-omission correction, as wrk2 does). The send lag (actual minus intended send time)
is reported beside it. Sync senders sleep with ``time.sleep`` (about 0.1 ms late on Linux); aio
senders with the event loop's timer (up to about 1 ms late): this lag is part of the latency.

Only calls that end OK go into the latency histograms; every call is counted by status code, and
failed calls are reported apart (error messages too). Per block, each worker records the latency
histogram, status codes, error messages, wall time (open loop: the time the arm's clock ran) and
the process CPU time (``time.process_time``: every thread of the worker, grpc's included). The
parent merges them: per arm over everything, and per round over workers, which gives each round's
p50 and its ratio to the baseline arm's p50 in the same round.

A block's schedule and accounting (what each sender sends next, when, what it records, when the
block ends) are written once, as a generator of steps per sender (``_ClosedBlock``,
``_TimelineBlock``); threads (sync variants) and tasks (aio) only sleep, wait and call.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import dataclasses
import heapq
import itertools
import json
import math
import os
import pickle
import queue
import random
import shlex
import signal
import statistics
import subprocess
import sys
import threading
import time
import traceback
from collections import Counter
from collections.abc import Awaitable, Callable, Generator, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, Literal

import grpc

from .environment import environment
from .histogram import Histogram
from .progress import Progress
from .target import Target
from .variants import (
    AIO_BASELINES,
    SYNC_BASELINES,
    AsyncCaller,
    SyncCaller,
    Variant,
    VariantSettings,
    available_variants,
    get_variant,
    probe,
)

__all__ = [
    "PERCENTILES",
    "Arm",
    "ArmResult",
    "BlockStats",
    "ConcurrencySchedule",
    "LoadSchedule",
    "LoadSpec",
    "RunError",
    "RunResult",
    "Timeline",
    "arm_order",
    "closed_block_aio",
    "closed_block_sync",
    "cpu_busy",
    "intended_send_times",
    "open_block_aio",
    "open_block_sync",
    "plan_arms",
    "run",
    "timeline_block_aio",
    "timeline_block_sync",
]

Mode = Literal["closed", "open"]
PERCENTILES = (50.0, 90.0, 99.0, 99.9)
_MESSAGE_LIMIT = 200


class RunError(RuntimeError):
    """A run that could not be planned or finished (bad load settings, a failed worker)."""


# -- settings
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LoadSchedule:
    """An open-loop rate that changes over the run, as ghz's ``--load-schedule``.

    ``step``: ``start`` calls/s, changed by ``step`` every ``step_seconds``; ``line``: changed by
    ``step`` calls/s every second, continuously. Either way the rate stops changing at ``end``
    (None: never) and must stay above 0 (a falling schedule needs ``end``). Time is the arm's
    own clock (see :class:`Timeline`).
    """

    kind: Literal["step", "line"]
    start: float
    step: float
    end: float | None = None
    step_seconds: float = 1.0

    def __post_init__(self) -> None:
        if self.kind not in ("step", "line"):
            raise RunError(f"load schedule must be step or line, got {self.kind!r}")
        for name, value in (("start", self.start), ("end", self.end)):
            if value is not None and (not value > 0 or math.isinf(value)):
                raise RunError(f"load schedule {name} must be a finite rate > 0, got {value}")
        if math.isnan(self.step) or math.isinf(self.step):
            raise RunError(f"load schedule step must be finite, got {self.step}")
        if self.step < 0 and self.end is None:
            raise RunError("a falling load schedule (step < 0) needs an end rate")
        if self.kind == "step" and not self.step_seconds > 0:
            raise RunError(f"load step duration must be > 0, got {self.step_seconds}")

    def rate_at(self, seconds: float) -> float:
        """The rate (calls/s) ``seconds`` into the schedule."""
        # The nudge keeps a due time that lands on a step boundary (summed in floats, a hair
        # short of it) in the new step.
        steps = seconds if self.kind == "line" else math.floor(seconds / self.step_seconds + 1e-9)
        rate = self.start + self.step * steps
        if self.end is not None:
            rate = min(rate, self.end) if self.step >= 0 else max(rate, self.end)
        return rate

    def offsets_ns(self, count: int) -> list[int]:
        """When calls 0..count are due, in ns after call 0 (call j+1 follows call j by one
        interval at the rate when call j is due)."""
        offsets, at = [], 0.0
        for _ in range(count + 1):
            offsets.append(round(at * 1e9))
            at += 1.0 / self.rate_at(at)
        return offsets

    def rates(self, count: int) -> tuple[float, float, float]:
        """For a run of ``count`` calls (>= 1): the first rate, the rate when the last call is
        due, and the mean rate (``count`` over the time from call 0 until call ``count`` would be
        due)."""
        offsets = self.offsets_ns(count)
        last = self.rate_at(offsets[count - 1] / 1e9)
        return self.start, last, count / (offsets[count] / 1e9)

    def calls_within(self, seconds: float) -> int:
        """How many calls fall due in the first ``seconds`` of the schedule."""
        count, at = 0, 0.0
        while at < seconds:
            count += 1
            at += 1.0 / self.rate_at(at)
        return count

    def describe(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "start": self.start,
            "step": self.step,
            "end": self.end,
            "step_seconds": self.step_seconds if self.kind == "step" else None,
        }


@dataclass(frozen=True)
class ConcurrencySchedule:
    """Calls in flight that change over the run, as ghz's ``--concurrency-schedule`` (closed loop).

    ``step``: ``start`` senders, changed by ``step`` every ``step_seconds``; ``line``: changed by
    ``step`` senders per second (the level is rounded down). The level stops changing at ``end``
    (None: no end level) or after ``max_seconds`` (None: never), whichever comes first, and never
    drops below 1. A rising schedule needs ``end`` or ``max_seconds``, since the most senders a
    run needs must be known when it starts; a falling one stops at ``end``, else at 1. Time is
    each block's own clock, from its start (a load-tester run against ``--target`` is one block
    per variant).
    """

    kind: Literal["step", "line"]
    start: int
    step: int
    end: int | None = None
    step_seconds: float = 1.0
    max_seconds: float | None = None

    def __post_init__(self) -> None:
        if self.kind not in ("step", "line"):
            raise RunError(f"concurrency schedule must be step or line, got {self.kind!r}")
        if self.start < 1:
            raise RunError(f"concurrency schedule start must be >= 1, got {self.start}")
        if self.end is not None and self.end < 1:
            raise RunError(f"concurrency schedule end must be >= 1, got {self.end}")
        if self.step == 0:
            raise RunError("concurrency schedule step must not be 0 (that is const)")
        if self.end is not None and (self.end - self.start) * self.step <= 0:
            raise RunError(
                f"concurrency schedule end {self.end} is not reached from start {self.start} "
                f"with step {self.step:+d}"
            )
        if self.step > 0 and self.end is None and self.max_seconds is None:
            raise RunError("a rising concurrency schedule needs an end level or a max duration")
        if self.kind == "step" and not self.step_seconds > 0:
            raise RunError(f"concurrency step duration must be > 0, got {self.step_seconds}")
        if self.max_seconds is not None and not self.max_seconds > 0:
            raise RunError(f"concurrency max duration must be > 0, got {self.max_seconds}")

    def _steps(self, seconds: float) -> float:
        if self.max_seconds is not None:
            seconds = min(seconds, self.max_seconds)
        if self.kind == "line":
            return seconds
        # The nudge keeps a time summed in floats a hair short of a step boundary in the new step.
        return math.floor(seconds / self.step_seconds + 1e-9)

    def level_at(self, seconds: float) -> int:
        """Senders active ``seconds`` into the schedule."""
        level = math.floor(self.start + self.step * self._steps(seconds) + 1e-9)
        if self.end is not None:
            level = min(level, self.end) if self.step > 0 else max(level, self.end)
        return max(1, level)

    @property
    def final(self) -> int:
        """The level where the schedule stops changing."""
        if self.max_seconds is not None:
            return self.level_at(self.max_seconds)
        if self.end is not None:
            return self.end
        return 1  # falling with no end and no max duration: down to one sender

    @property
    def peak(self) -> int:
        """The most senders the schedule ever has active."""
        return self.start if self.step < 0 else self.final

    def _time_of(self, steps: float) -> float:
        """Seconds until ``steps`` steps (line: level units) have been made."""
        if self.kind == "line":
            return steps / abs(self.step)
        return math.ceil(steps / abs(self.step) - 1e-9) * self.step_seconds

    def active_between(self, sender: int) -> tuple[float, float]:
        """When sender number ``sender`` (0-based, over all workers) is active: from the first
        to the second time in seconds (``math.inf``: never starts, or never stops)."""
        if self.step > 0:
            if sender < self.start:
                return 0.0, math.inf
            if sender >= self.peak:
                return math.inf, math.inf
            return self._time_of(sender - self.start + 1), math.inf
        if sender >= self.start:
            return math.inf, math.inf
        if sender < self.final:
            return 0.0, math.inf
        return 0.0, self._time_of(self.start - sender)

    def describe(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "start": self.start,
            "step": self.step,
            "end": self.end,
            "step_seconds": self.step_seconds if self.kind == "step" else None,
            "max_seconds": self.max_seconds,
            "peak": self.peak,
            "final": self.final,
        }


@dataclass(frozen=True)
class LoadSpec:
    """How hard and how long to call. Counts and rates are totals over all workers.

    Defaults: closed loop, 1 call in flight, 40 rounds of 100-call blocks per arm, 200 warm-up
    calls per arm, one worker (in this process). Many short rounds rather than a few long ones:
    this host's load drifts over seconds, and the closer in time an arm's block is to its
    baseline's, the less of that drift lands in their ratio (benchmarks/README.md gives figures).
    Each round runs the arms in its own shuffled order (see :func:`arm_order`), and with several
    arms each measured block is preceded by ``rewarm_calls``
    unrecorded closed-loop calls of the same arm, because the switch from another variant leaves
    its threads and caches cold; a fixed order would charge that to the same arms every round.

    ``calls`` (instead of ``block_calls``) is the exact number of measured calls per arm over the
    whole run, split over the rounds (the first ``calls % rounds`` rounds make one more).
    ``block_seconds`` replaces both with a time slice per block (in the open loop: that slice's
    worth of calls at ``rate``). ``schedule`` (open loop, with ``calls``) varies the rate over the
    run; ``rate`` is then its start. Warm-up and re-warm calls come on top and are never recorded.
    Open loop needs ``rate`` (calls per second); there ``concurrency`` is the number of senders,
    which bounds the calls in flight (a late sender delays later sends, and latency from the
    intended time shows it).
    """

    mode: Mode = "closed"
    concurrency: int = 1
    rate: float | None = None
    rounds: int = 40
    block_calls: int = 100
    block_seconds: float | None = None
    warmup_calls: int = 200
    workers: int = 1
    rewarm_calls: int = 20
    calls: int | None = None
    schedule: LoadSchedule | None = None
    concurrency_schedule: ConcurrencySchedule | None = None

    def __post_init__(self) -> None:
        if self.mode not in ("closed", "open"):
            raise RunError(f"mode must be 'closed' or 'open', got {self.mode!r}")
        if self.workers < 1:
            raise RunError(f"workers must be >= 1, got {self.workers}")
        if self.concurrency < self.workers:
            raise RunError(
                f"concurrency ({self.concurrency}) must be >= workers ({self.workers}): "
                "every worker keeps at least one call in flight"
            )
        if self.rounds < 1:
            raise RunError(f"rounds must be >= 1, got {self.rounds}")
        if self.block_calls < 1:
            raise RunError(f"block_calls must be >= 1, got {self.block_calls}")
        if self.calls is not None:
            if self.block_seconds is not None:
                raise RunError("give calls or block_seconds, not both")
            if self.calls < self.rounds:
                raise RunError(
                    f"calls ({self.calls}) must be >= rounds ({self.rounds}): every round "
                    "measures at least one call per arm"
                )
        if self.block_seconds is not None and not self.block_seconds > 0:
            raise RunError(f"block_seconds must be > 0, got {self.block_seconds}")
        if self.warmup_calls < 0:
            raise RunError(f"warmup_calls must be >= 0, got {self.warmup_calls}")
        if self.rewarm_calls < 0:
            raise RunError(f"rewarm_calls must be >= 0, got {self.rewarm_calls}")
        if self.mode == "open":
            if self.rate is None or not self.rate > 0 or math.isinf(self.rate):
                raise RunError(f"open loop needs a rate > 0 calls/s, got {self.rate}")
        elif self.rate is not None:
            raise RunError("rate applies to the open loop only (mode='open')")
        if self.schedule is not None:
            if self.mode != "open":
                raise RunError("a load schedule applies to the open loop only (mode='open')")
            if self.calls is None:
                raise RunError("a load schedule needs calls (a count) to run")
        if self.concurrency_schedule is not None:
            if self.mode != "closed":
                raise RunError("a concurrency schedule applies to the closed loop only")
            if self.concurrency != self.concurrency_schedule.peak:
                raise RunError(
                    f"concurrency ({self.concurrency}) must be the concurrency schedule's peak "
                    f"({self.concurrency_schedule.peak})"
                )

    def share(self, total: int, worker: int) -> int:
        """Worker ``worker``'s share of ``total`` (shares differ by at most one)."""
        base, extra = divmod(total, self.workers)
        return base + (1 if worker < extra else 0)

    def round_calls(self, round_index: int) -> int | None:
        """Measured calls per arm in round ``round_index``, all workers (None: a time slice)."""
        if self.calls is not None:
            base, extra = divmod(self.calls, self.rounds)
            return base + (1 if round_index < extra else 0)
        if self.block_seconds is None:
            return self.block_calls
        if self.mode == "open":
            assert self.rate is not None
            return max(1, round(self.rate * self.block_seconds))
        return None

    @property
    def total_calls(self) -> int | None:
        """Measured calls per arm over the run (None: closed loop with time slices)."""
        counts = [self.round_calls(r) for r in range(self.rounds)]
        return None if None in counts else sum(c or 0 for c in counts)

    def round_span(self, round_index: int) -> range:
        """The run-wide numbers of round ``round_index``'s calls (empty for time slices)."""
        start = 0
        for r in range(round_index):
            start += self.round_calls(r) or 0
        return range(start, start + (self.round_calls(round_index) or 0))

    def worker_calls(self, round_index: int, worker: int) -> int | None:
        """Worker ``worker``'s calls in round ``round_index`` (calls are dealt ``j % workers``)."""
        if self.round_calls(round_index) is None:
            return None
        span = self.round_span(round_index)
        first = span.start + (worker - span.start) % self.workers
        return len(range(first, span.stop, self.workers))

    @property
    def asked_rate(self) -> float | None:
        """The rate asked for over the run: ``rate``, or a load schedule's mean rate over the
        run's calls (None: closed loop)."""
        if self.schedule is not None and self.total_calls:
            return self.schedule.rates(self.total_calls)[2]
        return self.rate

    def describe(self) -> dict[str, Any]:
        rates = None
        if self.schedule is not None and self.total_calls:
            first, last, mean = self.schedule.rates(self.total_calls)
            rates = {"first": first, "last": last, "mean": mean}
        return {
            "mode": self.mode,
            "concurrency": self.concurrency,
            "rate": self.rate,
            "asked_rate": self.asked_rate,
            "schedule_rates": rates,
            "rounds": self.rounds,
            "calls": self.total_calls,
            "block_calls": (
                self.block_calls if self.calls is None and self.block_seconds is None else None
            ),
            "block_seconds": self.block_seconds,
            "warmup_calls": self.warmup_calls,
            "rewarm_calls": self.rewarm_calls,
            "workers": self.workers,
            "schedule": None if self.schedule is None else self.schedule.describe(),
            "concurrency_schedule": (
                None if self.concurrency_schedule is None else self.concurrency_schedule.describe()
            ),
        }


@dataclass(frozen=True)
class Arm:
    """One column of the comparison: ``variant`` calling ``target``, compared with arm ``baseline``
    (a label; the baseline arm names itself).

    ``pause_ms`` (closed loop only; default 0) makes each sender idle that long before every call,
    outside the measured latency: a client that calls now and then rather than back to back, whose
    calls pay the wake-up costs of idle threads and CPUs.
    """

    label: str
    variant: str
    target: Target
    baseline: str
    pause_ms: float = 0.0

    def __post_init__(self) -> None:
        if not self.pause_ms >= 0 or math.isinf(self.pause_ms):
            raise RunError(f"pause_ms must be a finite number >= 0, got {self.pause_ms}")


def plan_arms(
    target: Target,
    variants: Sequence[str] | None = None,
    baseline: str | None = None,
    *,
    strict: bool = True,
) -> tuple[list[Arm], list[tuple[str, str]]]:
    """Arms for ``variants`` (default: every available one) against one target, and the skipped.

    Without ``baseline``, a variant compares with the first of its own ``baselines`` in the run,
    else sync variants with the first available of ``grpc-sync``, ``grpc-sync-raw``, aio variants
    with ``grpc-aio``, ``grpc-aio-raw`` (else the sync baseline).
    A named variant that cannot run raises RunError (with ``strict=False`` it is skipped too);
    unnamed ones are skipped with their reason. "Cannot run" covers a module that is missing or
    does not import, a target it does not apply to, and a caller that cannot be built (each
    candidate is built once and closed, see ``grpc_channel.bench.variants.probe``).
    """
    usable, skipped = available_variants(target)
    wanted: set[str] | None = None
    if variants is not None:
        wanted = {*variants, *([baseline] if baseline is not None else [])}
    for variant in list(usable):
        if wanted is not None and variant.name not in wanted:
            continue
        reason = probe(variant, target)
        if reason is not None:
            usable.remove(variant)
            skipped.append((variant.name, reason))
    by_name = {v.name: v for v in usable}
    if variants is None:
        # Sync family first, then aio, each in registration order (bare variants first).
        chosen = sorted(usable, key=lambda v: v.kind == "aio")
    else:
        chosen = []
        reasons = dict(skipped)
        for name in variants:
            variant = get_variant(name)
            if name in reasons:
                if not strict:
                    continue
                raise RunError(f"variant {name!r} cannot run: {reasons[name]}")
            if variant not in chosen:
                chosen.append(variant)
        skipped = [(n, r) for n, r in skipped if n in variants]
    if not chosen:
        raise RunError("no variant can run against this target")
    names = [v.name for v in chosen]
    if baseline is not None and baseline not in names:
        if baseline not in by_name:
            raise RunError(f"baseline {baseline!r} is not an available variant")
        chosen.insert(0, by_name[baseline])
        names.insert(0, baseline)

    def pick(variant: Variant) -> str:
        if baseline is not None:
            return baseline
        family: tuple[str, ...] = (
            SYNC_BASELINES if variant.kind == "sync" else (*AIO_BASELINES, *SYNC_BASELINES)
        )
        preferred: tuple[str, ...] = (*variant.baselines, *family)
        for name in preferred:
            if name in names:
                return name
        return names[0]

    arms = [Arm(v.name, v.name, target, pick(v)) for v in chosen]
    return arms, skipped


# -- one block
# ----------------------------------------------------------------------------------------


@dataclass
class BlockStats:
    """What one worker measured in one block: latencies (ns) of the calls that ended OK, the send
    lags of every open-loop call, and every call's status code."""

    latencies: list[int] = field(default_factory=list)
    lags: list[int] | None = None
    codes: Counter[str] = field(default_factory=Counter)
    errors: Counter[str] = field(default_factory=Counter)
    elapsed_ns: int = 0
    cpu_ns: int = 0

    @property
    def calls(self) -> int:
        return sum(self.codes.values())

    def absorb(self, other: BlockStats) -> None:
        self.latencies.extend(other.latencies)
        if other.lags is not None:
            self.lags = (self.lags or []) + other.lags
        self.codes.update(other.codes)
        self.errors.update(other.errors)


def _classify(exc: BaseException) -> tuple[str, str]:
    """Status code name and a short message for a failed call."""
    if isinstance(exc, grpc.RpcError):
        code_fn = getattr(exc, "code", None)
        code = code_fn() if callable(code_fn) else None
        name = code.name if isinstance(code, grpc.StatusCode) else "UNKNOWN"
        details_fn = getattr(exc, "details", None)
        details = details_fn() if callable(details_fn) else str(exc)
        return name, f"{name}: {details}"[:_MESSAGE_LIMIT]
    return "CLIENT_ERROR", f"{type(exc).__name__}: {exc}"[:_MESSAGE_LIMIT]


def intended_send_times(start_ns: int, rate: float, count: int) -> list[int]:
    """The open-loop schedule: call ``i`` is due at ``start_ns + i * 1e9 / rate`` (ns, rounded)."""
    _check_rate(rate)
    if count < 0:
        raise RunError(f"count must be >= 0, got {count}")
    interval = 1e9 / rate
    return [start_ns + round(i * interval) for i in range(count)]


def _check_rate(rate: float) -> None:
    if not rate > 0 or math.isinf(rate):
        raise RunError(f"rate must be a finite number > 0, got {rate}")


def _taker(calls: int | None, seconds: float | None) -> Callable[[], bool]:
    if calls is not None:
        counter = itertools.count()
        return lambda: next(counter) < calls
    if seconds is None:
        raise RunError("a block needs calls or seconds")
    deadline = time.perf_counter_ns() + int(seconds * 1e9)
    return lambda: time.perf_counter_ns() < deadline


# A call sent ahead of its round: index, code, intended, sent and end times (ns), error message.
_Sent = tuple[int, str, int, int, int, str | None]
# What one sender measured: its own calls, and those it sent ahead of the block's round.
_Part = tuple[BlockStats, list[_Sent]]

# A sender's steps (see _Block.sender): make the call now (the driver sends back the outcome),
# sleep this long, or wait this long unless the block's own calls are all done first.
_CALL, _SLEEP, _WAIT = 0, 1, 2
_Step = tuple[int, float]
_CALL_NOW: _Step = (_CALL, 0.0)
# A call's outcome: status code, error message (None when OK), sent and end times (ns).
_Outcome = tuple[str, str | None, int, int]
_Steps = Generator[_Step, _Outcome, _Part]


def _record(
    part: BlockStats, code: str, latency: int, lag: int | None, message: str | None
) -> None:
    """Count one call; only calls that ended OK have a latency."""
    if code == "OK":
        part.latencies.append(latency)
    if lag is not None:
        assert part.lags is not None
        part.lags.append(lag)
    part.codes[code] += 1
    if message is not None:
        part.errors[message] += 1


class Timeline:
    """One arm's open-loop schedule over a whole run, in one worker.

    Call ``j`` (numbered over the whole run and all workers; this worker sends ``indices``) is due
    ``j / rate`` seconds after call 0, on the arm's own clock. ``resume`` restarts the clock
    ``lead_ns`` later (time for the senders to get going; the first time, call 0 is due then, or
    at ``start_ns``), and ``pause`` stops it. The schedule shifts by the time the clock stood, but
    no call is dropped or re-timed: a call overdue by D when the clock stopped is overdue by D when
    it restarts, and is sent then. ``due`` gives a call's intended send time on
    ``time.perf_counter_ns``'s clock under the current shift, ``restart_ns`` when the clock last
    restarted (nothing is sent before), ``running_ns`` how long the clock has run.

    Calls a block sent ahead of their round (see :func:`timeline_block_sync`) are kept here and
    reported by the block they belong to.
    """

    def __init__(
        self,
        rate: float,
        indices: Iterable[int],
        *,
        start_ns: int | None = None,
        lead_ns: int = 1_000_000,
        offsets_ns: Sequence[int] | None = None,
    ) -> None:
        _check_rate(rate)
        self.rate = rate
        self._interval = 1e9 / rate
        # A load schedule's due times (call j at offsets_ns[j]); None: one every 1/rate.
        self._offsets = offsets_ns
        self._pending = list(indices)
        heapq.heapify(self._pending)
        self._origin = start_ns
        self._lead = lead_ns
        self._paused_at: int | None = None
        self.restart_ns = 0
        self.running_ns = 0
        self._ahead: list[_Sent] = []

    @property
    def pending(self) -> int:
        """Calls not sent yet."""
        return len(self._pending)

    @property
    def sent_ahead(self) -> int:
        """Calls sent ahead of their round and not reported yet."""
        return len(self._ahead)

    def resume(self, now_ns: int) -> None:
        restart = now_ns + self._lead
        if self._origin is None:
            self._origin = restart
        elif self._paused_at is not None:
            # Never earlier than where the clock stopped: the schedule only ever moves later.
            restart = max(restart, self._paused_at)
            self._origin += restart - self._paused_at
        else:
            restart = min(restart, self._origin)
        self._paused_at = None
        self.restart_ns = restart

    def pause(self, at_ns: int) -> None:
        self._paused_at = at_ns
        self.running_ns += max(0, at_ns - self.restart_ns)

    def due(self, index: int) -> int:
        if self._origin is None:
            raise RunError("the timeline has not started (call resume first)")
        if self._offsets is not None:
            return self._origin + self._offsets[index]
        return self._origin + round(index * self._interval)

    def _take(self, until: int, done: bool) -> int | None:
        """The next call to send, or None: nothing left, or only calls past ``until`` once the
        block's own calls are done."""
        if not self._pending or (done and self._pending[0] >= until):
            return None
        return heapq.heappop(self._pending)

    def _give_back(self, index: int) -> None:
        heapq.heappush(self._pending, index)

    def _owed(self, until: int) -> int:
        return sum(1 for j in self._pending if j < until)

    def _finish(
        self, parts: Sequence[tuple[BlockStats, list[_Sent]]], last_ns: int, until: int
    ) -> BlockStats:
        """Merge a block's parts with the calls below ``until`` sent ahead by earlier blocks, keep
        the rest of those sent ahead for later blocks, and stop the clock: when the block's last
        call ended, or when call ``until`` falls due if that is later (the block's share of the
        schedule; with several workers, this keeps their schedules in step). The stats'
        ``elapsed_ns`` is the time the clock ran in this block."""
        stats = BlockStats(lags=[])
        ahead = self._ahead
        for own, sent_ahead in parts:
            stats.absorb(own)
            ahead.extend(sent_ahead)
        self._ahead = [sent for sent in ahead if sent[0] >= until]
        for index, code, intended, sent_ns, ended, message in ahead:
            if index < until:
                _record(stats, code, ended - intended, sent_ns - intended, message)
        stop = max(last_ns, self.due(until))
        before = self.running_ns
        self.pause(stop)
        stats.elapsed_ns = self.running_ns - before
        return stats


class _Block:
    """One block's schedule and accounting, written once for threads and tasks (sans I/O).

    A driver calls ``start`` with its lock (a no-op context for tasks, which share one thread) and
    a function that wakes senders in a ``_WAIT`` step, runs ``sender()`` in each of its senders (a
    generator of steps: what to send, when, and what to record), and merges their parts with
    ``finish``. Only the driver sleeps, waits and calls.
    """

    _lock: contextlib.AbstractContextManager[Any]

    def start(self, lock: contextlib.AbstractContextManager[Any], wake: Callable[[], None]) -> None:
        self._lock = lock
        self._cpu0 = time.process_time_ns()

    def sender(self) -> _Steps:
        raise NotImplementedError

    def finish(self, parts: Sequence[_Part]) -> BlockStats:
        raise NotImplementedError


class _ClosedBlock(_Block):
    """Back to back: each sender calls as soon as its previous call ended (after ``pause``)."""

    def __init__(
        self,
        calls: int | None,
        seconds: float | None,
        pause: float,
        stop: threading.Event | None = None,
        window: Callable[[int], tuple[float, float]] | None = None,
    ) -> None:
        """``window`` maps a sender's number in this block (0, 1, ...) to the seconds after the
        block's start between which it sends (a concurrency schedule); None: always."""
        take = _taker(calls, seconds)
        # A stop request (Ctrl-C) ends the block early: calls in flight end, no new ones start.
        self._take = take if stop is None else (lambda: not stop.is_set() and take())
        self._stopped: Callable[[], bool] = (lambda: False) if stop is None else stop.is_set
        self._pause = pause
        self._window = window
        self._numbers = itertools.count()

    def start(self, lock: contextlib.AbstractContextManager[Any], wake: Callable[[], None]) -> None:
        super().start(lock, wake)
        self._wake = wake
        self._spent = False
        self._t0 = time.perf_counter_ns()

    def _run_out(self) -> None:
        with self._lock:
            if not self._spent:
                self._spent = True
                self._wake()  # senders waiting for their turn (a concurrency schedule) give up

    def sender(self) -> _Steps:
        part = BlockStats()
        take, pause = self._take, self._pause
        begin, end = 0.0, math.inf
        if self._window is not None:
            begin, end = self._window(next(self._numbers))
        while True:
            if begin > 0 or end < math.inf:
                now = (time.perf_counter_ns() - self._t0) / 1e9
                if now >= end or begin == math.inf:
                    break
                if now < begin:
                    if self._spent or self._stopped():
                        break
                    # Short slices, so a stop request is seen soon even without a wake-up.
                    yield _WAIT, min(begin - now, 0.25)
                    continue
            if not take():
                self._run_out()
                break
            if pause:
                yield _SLEEP, pause
            code, message, sent, ended = yield _CALL_NOW
            _record(part, code, ended - sent, None, message)
        return part, []

    def finish(self, parts: Sequence[_Part]) -> BlockStats:
        stats = BlockStats(
            elapsed_ns=time.perf_counter_ns() - self._t0,
            cpu_ns=time.process_time_ns() - self._cpu0,
        )
        for own, _ in parts:
            stats.absorb(own)
        return stats


class _TimelineBlock(_Block):
    """The calls of ``timeline`` numbered below ``until`` (see :func:`timeline_block_sync`)."""

    def __init__(self, timeline: Timeline, until: int) -> None:
        self._timeline = timeline
        self._until = until

    def start(self, lock: contextlib.AbstractContextManager[Any], wake: Callable[[], None]) -> None:
        super().start(lock, wake)
        timeline = self._timeline
        timeline.resume(time.perf_counter_ns())
        self._restart = self._stop = timeline.restart_ns
        self._owed = timeline._owed(self._until)
        self._wake = wake
        # True once the block's own calls have all ended: no more sending ahead.
        self._done = self._owed == 0
        if self._done:
            wake()

    def sender(self) -> _Steps:
        own, ahead = BlockStats(lags=[]), list[_Sent]()
        timeline, until, restart, lock = self._timeline, self._until, self._restart, self._lock
        perf = time.perf_counter_ns
        while True:
            with lock:
                index = timeline._take(until, self._done)
            if index is None:
                break
            intended = timeline.due(index)
            mine = index < until
            # An overdue call goes out when the clock restarts, its lateness kept.
            wait = max(intended, restart) - perf()
            if mine:
                if wait > 0:
                    yield _SLEEP, wait / 1e9
            else:
                # Sent ahead only while this block's own calls are still in flight.
                if wait > 0:
                    yield _WAIT, wait / 1e9
                with lock:
                    if self._done:
                        timeline._give_back(index)
                        break
            code, message, sent, ended = yield _CALL_NOW
            if not mine:
                ahead.append((index, code, intended, sent, ended, message))
                continue
            _record(own, code, ended - intended, sent - intended, message)
            with lock:
                self._owed -= 1
                if self._owed == 0:
                    self._stop = ended
                    self._done = True
                    self._wake()
        return own, ahead

    def finish(self, parts: Sequence[_Part]) -> BlockStats:
        stats = self._timeline._finish(parts, self._stop, self._until)
        stats.cpu_ns = time.process_time_ns() - self._cpu0
        return stats


# -- the drivers: threads (sync) and tasks (aio) run a block's senders and do their I/O


def _send_sync(call: Callable[[], str]) -> _Outcome:
    sent = time.perf_counter_ns()
    try:
        code, message = call(), None
    except Exception as exc:
        code, message = _classify(exc)
    return code, message, sent, time.perf_counter_ns()


def _drive_sync(steps: _Steps, call: Callable[[], str], woken: threading.Event) -> _Part:
    try:
        kind, arg = next(steps)
        while True:
            if kind == _CALL:
                kind, arg = steps.send(_send_sync(call))
                continue
            if kind == _SLEEP:
                time.sleep(arg)
            else:
                woken.wait(arg)
            kind, arg = next(steps)
    except StopIteration as end:
        part: _Part = end.value
        return part


def _threads(
    block: _Block,
    call: Callable[[], str],
    concurrency: int,
    executor: ThreadPoolExecutor | None,
) -> BlockStats:
    woken = threading.Event()
    block.start(threading.Lock(), woken.set)

    def sender() -> _Part:
        return _drive_sync(block.sender(), call, woken)

    if concurrency == 1 or executor is None:
        parts = [sender()]
    else:
        futures = [executor.submit(sender) for _ in range(concurrency)]
        parts = [f.result() for f in futures]
    return block.finish(parts)


async def _send_aio(call: Callable[[], Awaitable[str]]) -> _Outcome:
    sent = time.perf_counter_ns()
    try:
        code, message = await call(), None
    except Exception as exc:
        code, message = _classify(exc)
    return code, message, sent, time.perf_counter_ns()


async def _drive_aio(
    steps: _Steps, call: Callable[[], Awaitable[str]], woken: asyncio.Future[None]
) -> _Part:
    try:
        kind, arg = next(steps)
        while True:
            if kind == _CALL:
                kind, arg = steps.send(await _send_aio(call))
                continue
            if kind == _SLEEP:
                await asyncio.sleep(arg)
            else:
                await asyncio.wait((woken,), timeout=arg)
            kind, arg = next(steps)
    except StopIteration as end:
        part: _Part = end.value
        return part


async def _tasks(block: _Block, call: Callable[[], Awaitable[str]], concurrency: int) -> BlockStats:
    # One future for all senders waiting to send ahead: set when the block's own calls are done.
    woken: asyncio.Future[None] = asyncio.get_running_loop().create_future()
    block.start(contextlib.nullcontext(), lambda: woken.set_result(None))
    if concurrency == 1:
        parts = [await _drive_aio(block.sender(), call, woken)]
    else:
        senders = (_drive_aio(block.sender(), call, woken) for _ in range(concurrency))
        parts = list(await asyncio.gather(*senders))
    return block.finish(parts)


def closed_block_sync(
    call: Callable[[], str],
    *,
    calls: int | None = None,
    seconds: float | None = None,
    concurrency: int = 1,
    executor: ThreadPoolExecutor | None = None,
    pause: float = 0.0,
) -> BlockStats:
    """``calls`` calls (or ``seconds`` of calling) with ``concurrency`` threads back to back.

    ``executor`` must have at least ``concurrency`` threads when ``concurrency`` > 1. ``pause``
    (seconds) idles each thread before every call, outside the measured latency.
    """
    return _threads(_ClosedBlock(calls, seconds, pause), call, concurrency, executor)


async def closed_block_aio(
    call: Callable[[], Awaitable[str]],
    *,
    calls: int | None = None,
    seconds: float | None = None,
    concurrency: int = 1,
    pause: float = 0.0,
) -> BlockStats:
    """The aio form of ``closed_block_sync``: ``concurrency`` tasks calling back to back."""
    return await _tasks(_ClosedBlock(calls, seconds, pause), call, concurrency)


def timeline_block_sync(
    call: Callable[[], str],
    timeline: Timeline,
    until: int,
    *,
    concurrency: int = 1,
    executor: ThreadPoolExecutor | None = None,
) -> BlockStats:
    """One open-loop block on ``timeline``: its calls numbered below ``until``, by ``concurrency``
    threads (``executor`` needs that many when ``concurrency`` > 1).

    The block ends when its last call has completed; the clock stops then (or when call ``until``
    falls due, if that is later). While some of its calls are still in flight, senders that are
    free go on with the calls due next, as one unbroken schedule would (with one sender this never
    happens: the sender is the one busy); the timeline keeps those for the block they belong to.
    Calls still owed when the clock stops are overdue by as much when the next block restarts it.
    """
    return _threads(_TimelineBlock(timeline, until), call, concurrency, executor)


async def timeline_block_aio(
    call: Callable[[], Awaitable[str]],
    timeline: Timeline,
    until: int,
    *,
    concurrency: int = 1,
) -> BlockStats:
    """The aio form of ``timeline_block_sync``: ``concurrency`` tasks send on the timeline."""
    return await _tasks(_TimelineBlock(timeline, until), call, concurrency)


def open_block_sync(
    call: Callable[[], str],
    *,
    rate: float,
    calls: int,
    concurrency: int = 1,
    executor: ThreadPoolExecutor | None = None,
    start_ns: int | None = None,
) -> BlockStats:
    """``calls`` calls scheduled at ``rate`` per second, sent by ``concurrency`` threads: a block
    on a timeline of its own (a run keeps one per arm, see :class:`Timeline`).

    Latency is measured from each call's intended send time (see the module doc). The schedule
    starts at ``start_ns`` (``time.perf_counter_ns`` clock; default: 1 ms from now).
    """
    timeline = Timeline(rate, range(calls), start_ns=start_ns)
    return timeline_block_sync(call, timeline, calls, concurrency=concurrency, executor=executor)


async def open_block_aio(
    call: Callable[[], Awaitable[str]],
    *,
    rate: float,
    calls: int,
    concurrency: int = 1,
    start_ns: int | None = None,
) -> BlockStats:
    """The aio form of ``open_block_sync``: ``concurrency`` tasks send on the schedule."""
    timeline = Timeline(rate, range(calls), start_ns=start_ns)
    return await timeline_block_aio(call, timeline, calls, concurrency=concurrency)


# -- one worker
# ---------------------------------------------------------------------------------------


@dataclass(frozen=True)
class _WorkerPlan:
    index: int
    arms: tuple[Arm, ...]
    load: LoadSpec
    modules: tuple[str, ...]


def arm_order(arm_count: int, round_index: int) -> list[int]:
    """The order in which round ``round_index`` runs the arms: a shuffle seeded by the round, so
    every worker process runs the same order (their blocks start together) and no arm always
    follows the same neighbour or always runs first."""
    order = list(range(arm_count))
    random.Random(round_index).shuffle(order)
    return order


def _run_worker(
    plan: _WorkerPlan,
    wait_all: Callable[[], None],
    progress: Callable[[int], None],
    stop: threading.Event | None = None,
) -> list[dict[str, Any]]:
    """Build every arm's caller, warm up, run the rounds; return one record per block.

    ``stop`` (set from another thread or a signal handler) ends the run early: a closed-loop block
    stops starting calls, an open-loop one runs to its end, and no further block starts; the
    records of what was measured are returned.
    """
    stopped = stop.is_set if stop is not None else (lambda: False)
    import importlib

    for module in plan.modules:
        importlib.import_module(module)
    load, index = plan.load, plan.index
    concurrency = load.share(load.concurrency, index)
    warmup_calls = load.share(load.warmup_calls, index)
    settings = VariantSettings(concurrency=concurrency)
    loop = asyncio.new_event_loop()
    executor = ThreadPoolExecutor(concurrency, "bench") if concurrency > 1 else None
    callers: list[SyncCaller | AsyncCaller] = []
    records: list[dict[str, Any]] = []
    try:
        variants: list[Variant] = [get_variant(arm.variant) for arm in plan.arms]
        for arm, variant in zip(plan.arms, variants, strict=True):
            # Request numbers (templates) unique over the run: worker i of n numbers i, i+n, ...
            target = dataclasses.replace(arm.target, number_start=index, number_stride=load.workers)
            try:
                if variant.sync_factory is not None:
                    callers.append(variant.sync_factory(target, settings))
                else:
                    assert variant.aio_factory is not None
                    factory = variant.aio_factory(target, settings)
                    callers.append(loop.run_until_complete(factory))
            except Exception as exc:
                raise RunError(
                    f"variant {variant.name!r} could not be built: {type(exc).__name__}: {exc}"
                ) from exc

        def measure(caller: SyncCaller | AsyncCaller, block: _Block) -> BlockStats:
            if isinstance(caller, SyncCaller):
                return _threads(block, caller.call, concurrency, executor)
            return loop.run_until_complete(_tasks(block, caller.call, concurrency))

        def closed(
            caller: SyncCaller | AsyncCaller,
            calls: int | None,
            pause: float,
            window: Callable[[int], tuple[float, float]] | None = None,
        ) -> BlockStats:
            seconds = load.block_seconds if calls is None else None
            return measure(caller, _ClosedBlock(calls, seconds, pause, stop, window))

        # A concurrency schedule numbers senders over all workers: this worker's k-th sender is
        # sender index + k * workers (the same dealing as the calls).
        window = None
        schedule = load.concurrency_schedule
        if schedule is not None:
            window = lambda k: schedule.active_between(index + k * load.workers)  # noqa: E731

        for caller in callers:
            if warmup_calls:
                closed(caller, max(warmup_calls, concurrency), 0.0)
            progress(1)
        # Open loop: one schedule per arm for the whole run; this worker sends calls j % workers.
        timelines: list[Timeline] = []
        if load.mode == "open":
            assert load.rate is not None and load.total_calls is not None
            mine = range(index, load.total_calls, load.workers)
            offsets = None
            if load.schedule is not None:
                offsets = load.schedule.offsets_ns(load.total_calls)
            timelines = [Timeline(load.rate, mine, offsets_ns=offsets) for _ in callers]
        rewarm = load.share(load.rewarm_calls, index) if len(callers) > 1 else 0
        for round_index in range(load.rounds):
            if stopped():
                break
            for arm_index in arm_order(len(callers), round_index):
                if stopped():
                    break
                caller = callers[arm_index]
                if rewarm:
                    closed(caller, max(rewarm, concurrency), 0.0)
                wait_all()
                if stopped():  # a stop request that came while waiting for the other workers
                    break
                if timelines:
                    until = load.round_span(round_index).stop
                    stats = measure(caller, _TimelineBlock(timelines[arm_index], until))
                else:
                    pause = plan.arms[arm_index].pause_ms / 1000.0
                    stats = closed(caller, load.worker_calls(round_index, index), pause, window)
                records.append(_block_record(index, round_index, arm_index, stats))
                progress(1)
    finally:
        for caller in callers:
            with contextlib.suppress(Exception):
                if isinstance(caller, SyncCaller):
                    caller.close()
                else:
                    loop.run_until_complete(caller.close())
        if executor is not None:
            executor.shutdown(wait=True)
        loop.close()
    return records


def _block_record(worker: int, round_index: int, arm: int, stats: BlockStats) -> dict[str, Any]:
    latency = Histogram()
    latency.record_many(stats.latencies)
    lag: dict[str, Any] | None = None
    if stats.lags is not None:
        lag_histogram = Histogram()
        lag_histogram.record_many(max(0, v) for v in stats.lags)
        lag = lag_histogram.to_dict()
    return {
        "worker": worker,
        "round": round_index,
        "arm": arm,
        "latency": latency.to_dict(),
        "lag": lag,
        "codes": dict(stats.codes),
        "errors": dict(stats.errors),
        "elapsed_ns": stats.elapsed_ns,
        "cpu_ns": stats.cpu_ns,
    }


class _Aborted(Exception):
    """Another worker failed; this one stops at its next block."""


def worker_main(stdin: IO[str] | None = None, stdout: IO[str] | None = None) -> int:
    """Body of a worker process (``python -m grpc_channel.bench._worker``).

    Reads one line (the pickled plan) from stdin, then speaks JSON lines on stdout: ``sync`` before
    every block (and waits for ``go`` on stdin), ``progress``, and finally ``result`` or ``error``.
    """
    stdin = stdin or sys.stdin
    stdout = stdout or sys.stdout
    # Anything else the process prints must not corrupt the protocol.
    sys.stdout = sys.stderr

    def send(kind: str, payload: Any) -> None:
        stdout.write(json.dumps([kind, payload]) + "\n")
        stdout.flush()

    def wait_all() -> None:
        send("sync", None)
        if stdin.readline().strip() != "go":
            raise _Aborted

    # SIGINT (Ctrl-C at the terminal reaches every process of the group; the parent also
    # forwards its own) ends the run early: this worker finishes its calls in flight and sends
    # what it measured, like a single-worker run.
    stop = threading.Event()
    if threading.current_thread() is threading.main_thread():
        signal.signal(signal.SIGINT, lambda signum, frame: stop.set())
    try:
        plan = pickle.loads(base64.b64decode(stdin.readline()))
        records = _run_worker(plan, wait_all, lambda steps: send("progress", steps), stop)
    except _Aborted:
        send("error", "stopped: another worker failed")
        return 1
    except BaseException:
        send("error", traceback.format_exc())
        return 1
    send("result", records)
    return 0


def _child_env() -> dict[str, str]:
    env = dict(os.environ)
    # The same import path as this process, so variant modules resolve alike in the workers.
    paths = [str(Path(__file__).resolve().parent.parent), *(p for p in sys.path if p)]
    env["PYTHONPATH"] = os.pathsep.join(dict.fromkeys(paths))
    return env


def _run_processes(
    plans: list[_WorkerPlan], progress: Progress, stop: threading.Event | None = None
) -> list[dict[str, Any]]:
    """Run one worker process per plan; the parent is the barrier between blocks.

    When ``stop`` is set, every worker is sent SIGINT: each ends its run early and sends what it
    measured. The barrier then lets waiting workers go once every other worker has sent its
    result (they see the stop and send theirs)."""
    env = _child_env()
    lines: queue.Queue[tuple[int, str | None]] = queue.Queue()
    processes: list[subprocess.Popen[str]] = []
    results: dict[int, list[dict[str, Any]]] = {}

    def pump(index: int, stream: IO[str]) -> None:
        for line in stream:
            lines.put((index, line))
        lines.put((index, None))

    def tell_all(word: str) -> None:
        for process in processes:
            if process.poll() is None and process.stdin is not None:
                with contextlib.suppress(OSError, ValueError):
                    process.stdin.write(word + "\n")
                    process.stdin.flush()

    try:
        for plan in plans:
            process = subprocess.Popen(
                [sys.executable, "-m", "grpc_channel.bench._worker"],
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
                text=True,
                env=env,
            )
            processes.append(process)
            assert process.stdin is not None and process.stdout is not None
            threading.Thread(
                target=pump, args=(plan.index, process.stdout), name="bench-pump", daemon=True
            ).start()
            process.stdin.write(base64.b64encode(pickle.dumps(plan)).decode() + "\n")
            process.stdin.flush()
        waiting: set[int] = set()
        forwarded = False

        def release() -> None:
            # Every worker still running waits at the barrier: let them go.
            if waiting and len(waiting) + len(results) == len(plans):
                waiting.clear()
                tell_all("go")

        while len(results) < len(plans):
            if stop is not None and stop.is_set() and not forwarded:
                forwarded = True
                for process in processes:
                    if process.poll() is None:
                        with contextlib.suppress(OSError):
                            process.send_signal(signal.SIGINT)
            try:
                index, line = lines.get(timeout=0.1 if stop is not None else 0.5)
            except queue.Empty:
                continue
            if line is None:
                if index in results:
                    continue
                if stop is not None and stop.is_set():
                    # Stopped before it could answer (Ctrl-C while it started up): it measured
                    # nothing; the others' results still make the partial report.
                    processes[index].wait()
                    results[index] = []
                    release()
                    continue
                tell_all("abort")
                code = processes[index].wait()
                raise RunError(f"worker {index} ended without results (exit code {code})")
            kind, payload = json.loads(line)
            if kind == "sync":
                waiting.add(index)
                release()
            elif kind == "progress":
                progress.advance(int(payload))
            elif kind == "result":
                results[index] = payload
                release()
            else:
                tell_all("abort")
                raise RunError(f"worker {index} failed:\n{payload}")
    finally:
        for process in processes:
            if process.stdin is not None:
                with contextlib.suppress(OSError):
                    process.stdin.close()
            try:
                process.wait(timeout=10.0)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
            if process.stdout is not None:
                process.stdout.close()
    return [record for index in sorted(results) for record in results[index]]


# -- results
# ------------------------------------------------------------------------------------------


@dataclass
class ArmResult:
    """Merged measurements of one arm. Latencies in ns, of the calls that ended OK only (failed
    calls are in ``codes`` and ``errors``); ``lag`` only for the open loop. ``round_p50_ns`` is
    None for a round without an OK call."""

    label: str
    variant: str
    description: str
    kind: str
    baseline: str
    target: Target
    latency: Histogram
    lag: Histogram | None
    codes: dict[str, int]
    errors: dict[str, int]
    elapsed_ns: int
    cpu_ns: int
    round_p50_ns: list[int | None]
    ratios: list[float]
    throughput_ratios: list[float] = field(default_factory=list)
    pause_ms: float = 0.0

    @property
    def calls(self) -> int:
        """Every measured call, whatever its status."""
        return sum(self.codes.values())

    @property
    def ok(self) -> int:
        """Calls that ended OK: the ones the latency figures describe."""
        return self.codes.get("OK", 0)

    @property
    def failed(self) -> int:
        return self.calls - self.ok

    @property
    def failed_codes(self) -> dict[str, int]:
        return {code: n for code, n in self.codes.items() if code != "OK"}

    @property
    def throughput(self) -> float:
        """Calls completed (failed ones too) per second of the arm's running time: its blocks'
        wall time, the slowest worker's per block; in the open loop, the time its clock ran. In
        the open loop this is the achieved rate, to read beside the rate asked for."""
        return self.calls / (self.elapsed_ns / 1e9) if self.elapsed_ns else 0.0

    @property
    def cpu_us_per_call(self) -> float:
        """Client CPU (all threads of all workers) per measured call, in microseconds."""
        return self.cpu_ns / 1e3 / self.calls if self.calls else 0.0

    @property
    def ratio_median(self) -> float:
        return statistics.median(self.ratios) if self.ratios else math.nan

    @property
    def ratio_min(self) -> float:
        return min(self.ratios) if self.ratios else math.nan

    @property
    def ratio_max(self) -> float:
        return max(self.ratios) if self.ratios else math.nan

    @property
    def throughput_ratio_median(self) -> float:
        """Median over rounds of this arm's calls/s over the baseline's in the same round."""
        return statistics.median(self.throughput_ratios) if self.throughput_ratios else math.nan

    def percentiles_ns(self) -> dict[float, int]:
        return self.latency.percentiles(PERCENTILES)


@dataclass
class RunResult:
    """Everything a report shows."""

    arms: list[ArmResult]
    skipped: list[tuple[str, str]]
    load: LoadSpec
    command: str
    environment: dict[str, Any]
    started_at: str
    wall_seconds: float
    notes: list[str] = field(default_factory=list)
    interrupted: bool = False

    def arm(self, label: str) -> ArmResult:
        for arm in self.arms:
            if arm.label == label:
                return arm
        raise KeyError(label)


def _assemble(
    arms: Sequence[Arm], load: LoadSpec, records: list[dict[str, Any]]
) -> list[ArmResult]:
    results: list[ArmResult] = []
    round_p50: dict[tuple[int, int], int | None] = {}
    round_rate: dict[tuple[int, int], float] = {}
    per_arm: list[dict[str, Any]] = []
    for arm_index in range(len(arms)):
        mine = [r for r in records if r["arm"] == arm_index]
        latency = Histogram.merged(Histogram.from_dict(r["latency"]) for r in mine)
        lags = [Histogram.from_dict(r["lag"]) for r in mine if r["lag"] is not None]
        codes: Counter[str] = Counter()
        errors: Counter[str] = Counter()
        elapsed = 0
        for round_index in range(load.rounds):
            in_round = [r for r in mine if r["round"] == round_index]
            merged = Histogram.merged(Histogram.from_dict(r["latency"]) for r in in_round)
            round_p50[(arm_index, round_index)] = merged.percentile(50) if merged.count else None
            calls = sum(sum(r["codes"].values()) for r in in_round)
            slowest = max((r["elapsed_ns"] for r in in_round), default=0)
            round_rate[(arm_index, round_index)] = calls / slowest if slowest else 0.0
            elapsed += slowest
        for record in mine:
            codes.update(record["codes"])
            errors.update(record["errors"])
        per_arm.append(
            {
                "latency": latency,
                "lag": Histogram.merged(lags) if lags else None,
                "codes": dict(codes.most_common()),
                "errors": dict(errors.most_common(10)),
                "elapsed": elapsed,
                "cpu": sum(r["cpu_ns"] for r in mine),
            }
        )
    labels = [arm.label for arm in arms]
    for arm_index, arm in enumerate(arms):
        base_index = labels.index(arm.baseline)
        p50s = [round_p50[(arm_index, r)] for r in range(load.rounds)]
        ratios = []
        for r in range(load.rounds):
            # A round where either arm has no OK call has no p50 to compare.
            mine_p50, base_p50 = round_p50[(arm_index, r)], round_p50[(base_index, r)]
            if mine_p50 is not None and base_p50:
                ratios.append(mine_p50 / base_p50)
        rate_ratios = [
            round_rate[(arm_index, r)] / round_rate[(base_index, r)]
            for r in range(load.rounds)
            if round_rate[(base_index, r)] > 0
        ]
        variant = get_variant(arm.variant)
        data = per_arm[arm_index]
        results.append(
            ArmResult(
                label=arm.label,
                variant=arm.variant,
                description=variant.description,
                kind=variant.kind,
                baseline=arm.baseline,
                target=arm.target,
                latency=data["latency"],
                lag=data["lag"],
                codes=data["codes"],
                errors=data["errors"],
                elapsed_ns=data["elapsed"],
                cpu_ns=data["cpu"],
                round_p50_ns=p50s,
                ratios=ratios,
                throughput_ratios=rate_ratios,
                pause_ms=arm.pause_ms,
            )
        )
    return results


def _load_average() -> list[float] | None:
    try:
        return [round(v, 2) for v in os.getloadavg()]
    except OSError:
        return None


def cpu_busy(seconds: float = 0.2) -> float | None:
    """Share of all CPUs busy over ``seconds`` (from /proc/stat; None where there is none)."""

    def sample() -> tuple[int, int]:
        with open("/proc/stat", encoding="ascii") as stat:
            fields = [int(v) for v in stat.readline().split()[1:]]
        idle = fields[3] + (fields[4] if len(fields) > 4 else 0)
        return sum(fields), idle

    try:
        total0, idle0 = sample()
        time.sleep(seconds)
        total1, idle1 = sample()
    except (OSError, ValueError, IndexError):
        return None
    total = total1 - total0
    return round(1.0 - (idle1 - idle0) / total, 3) if total > 0 else None


def run(
    arms: Sequence[Arm],
    load: LoadSpec | None = None,
    *,
    skipped: Sequence[tuple[str, str]] = (),
    command: str | None = None,
    progress: bool | None = None,
    busy_before: float | None = None,
    stop: threading.Event | None = None,
) -> RunResult:
    """Run ``arms`` under ``load`` and return the merged result.

    One worker runs in this process; more are spawned processes (each builds its own channels).
    ``progress`` draws a bar on stderr (None: only when stderr is a terminal). ``command`` is what
    the report names as the command (default: this process's command line). ``busy_before`` is
    the share of CPUs other work kept busy before the run (see ``cpu_busy``; measured here when
    not given: pass it when the run starts servers of its own first).

    ``stop`` ends the run early when set, for example by a SIGINT handler: worker processes are
    sent SIGINT, every worker finishes its calls in flight, and the result holds what all of them
    measured, ``interrupted`` is True and a note says so.
    """
    load = load or LoadSpec()
    if not arms:
        raise RunError("nothing to run: no arms")
    labels = [arm.label for arm in arms]
    if len(set(labels)) != len(labels):
        raise RunError(f"arm labels must be unique, got {labels}")
    for arm in arms:
        if arm.baseline not in labels:
            raise RunError(f"arm {arm.label!r} compares with {arm.baseline!r}, which is not an arm")
        if arm.pause_ms and load.mode == "open":
            raise RunError(f"arm {arm.label!r}: pause_ms applies to the closed loop only")
        reason = get_variant(arm.variant).unavailable(arm.target)
        if reason is not None:
            raise RunError(f"variant {arm.variant!r} cannot run: {reason}")
    modules = tuple(sorted({get_variant(arm.variant).module for arm in arms}))
    if load.workers > 1 and "__main__" in modules:
        raise RunError(
            "worker processes import the modules that register the variants; variants registered "
            "in __main__ (a script) run with workers=1 only: move them into an importable module"
        )
    plans = [_WorkerPlan(i, tuple(arms), load, modules) for i in range(load.workers)]
    steps = load.workers * len(arms) * (load.rounds + 1)
    bar = Progress(steps, enabled=progress)
    started = datetime.now(UTC).isoformat(timespec="seconds")
    load_before = _load_average()
    busy_before = cpu_busy() if busy_before is None else busy_before
    t0 = time.monotonic()
    try:
        if load.workers == 1:
            records = _run_worker(plans[0], lambda: None, bar.advance, stop)
        else:
            records = _run_processes(plans, bar, stop)
    finally:
        bar.close()
    wall = time.monotonic() - t0
    notes: list[str] = []
    interrupted = stop is not None and stop.is_set()
    if interrupted:
        measured = sum(sum(record["codes"].values()) for record in records)
        notes.append(
            f"interrupted after {wall:.1f} s: a partial report of the {measured} calls measured "
            "by then"
        )
    env = environment()
    env["machine"]["load_average_before"] = load_before
    env["machine"]["load_average_after"] = _load_average()
    env["machine"]["cpu_busy_before"] = busy_before
    if busy_before is not None and busy_before >= 0.2:
        notes.append(
            f"other work kept {busy_before * 100:.0f} % of the CPUs busy just before the run: "
            "expect noisier latencies and wider ratio ranges"
        )
    if load.mode == "open":
        notes.append(
            "open loop: latency is measured from each call's intended send time on one schedule "
            "per variant for the whole run (coordinated-omission corrected; the schedule pauses "
            "while other variants run, and calls owed when a block ends stay owed); the send lag "
            "column shows how late senders were, calls/s is the rate achieved against the asked."
        )
        if any(get_variant(arm.variant).kind == "aio" for arm in arms):
            notes.append(
                "open loop, aio variants: senders wake on the event loop's timer, which rounds "
                "waits up to whole milliseconds; that lateness is part of their latency."
            )
    assembled = _assemble(arms, load, records)
    if any(arm.failed for arm in assembled):
        notes.append(
            "latency figures cover the calls that ended OK; failed calls are counted apart, by "
            "status code"
        )
    return RunResult(
        arms=assembled,
        skipped=list(skipped),
        load=load,
        command=command if command is not None else shlex.join(sys.argv),
        environment=env,
        started_at=started,
        wall_seconds=wall,
        notes=notes,
        interrupted=interrupted,
    )
