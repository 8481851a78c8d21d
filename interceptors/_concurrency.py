"""``ConcurrencyLimit``: at most N calls in flight (client) or N handlers running (server).

A slot is taken before the call and given back, exactly once, when the call ends: success, error
status, exception, cancellation, deadline; a streaming call holds its slot until its stream ends.
A caller that finds no free slot waits in a FIFO queue:

- with ``max_queue`` set and that many already waiting, it is refused at once with
  RESOURCE_EXHAUSTED (``max_queue=0``: never wait);
- it gives up at its deadline with DEADLINE_EXCEEDED (client: the call's deadline; server: the
  deadline the client sent); without a deadline it waits until a slot frees up;
- a cancelled aio task leaves the queue (or gives back the slot it was just handed); a sync
  server handler leaves the queue when its client goes away (CANCELLED). A sync *client* caller
  blocked in the queue is released by a slot or its deadline (another thread cannot cancel it), so
  give such calls a deadline (:class:`~grpc_channel.interceptors._deadline.Deadline`);
- any exception that ends a wait (an aio task's cancellation, ``KeyboardInterrupt`` in the main
  thread, an ``OverflowError`` from a timeout too large for the lock) takes the waiter out of the
  queue, and a slot handed to it at that same moment goes back, so a slot never stays with a
  caller that is gone.

``limit`` may be an int (fixed) or an adaptive algorithm
(:class:`~grpc_channel.interceptors._limit.AimdLimit`,
:class:`~grpc_channel.interceptors._limit.GradientLimit`) that moves the limit after every finished
unary-response call from its latency and whether it was *dropped* (its code in ``drop_codes``,
default RESOURCE_EXHAUSTED, UNAVAILABLE, DEADLINE_EXCEEDED). Cancelled calls teach nothing;
streaming-response calls feed only drops (their duration is not a latency).

``limit``, ``in_flight`` and ``queued`` are readable at any time. With ``meter_provider`` they are
exported as OpenTelemetry instruments ``rpc.concurrency.limit`` (observable gauge),
``rpc.concurrency.in_flight`` and ``rpc.concurrency.queued`` (observable up-down counters), each
with the attribute ``concurrency.limiter`` = ``name``.

One instance is one pool of slots: composed into a client chain and a server chain it is shared by
both, so use separate instances for separate pools. The sync and aio forms share the same state
(one lock around a pure state machine), so one instance can serve threads and event loops.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Iterable
from typing import Any

import grpc

from ._errors import LocalRpcError
from ._limit import LimitAlgorithm, LimiterState, Waiter
from ._policy import ClientCall, ClientPolicy, ServerCall, ServerPolicy
from ._run import monotonic

__all__ = ["DEFAULT_DROP_CODES", "ConcurrencyLimit"]

DEFAULT_DROP_CODES = frozenset(
    {
        grpc.StatusCode.RESOURCE_EXHAUSTED,
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED,
    }
)

_CANCELLED = grpc.StatusCode.CANCELLED
# grpcio reports "no deadline" as a huge time_remaining(); treat anything beyond this as none.
_NO_DEADLINE = 1e8


def _wake_future(fut: asyncio.Future[None]) -> None:
    if not fut.done():
        fut.set_result(None)


class ConcurrencyLimit(ClientPolicy, ServerPolicy):
    """Limit concurrent calls (client) or running handlers (server).

    ``ConcurrencyLimit(limit, *, max_queue=None, name="default", drop_codes=DEFAULT_DROP_CODES,
    meter_provider=None)``; ``limit`` is an int >= 1 or an adaptive algorithm object.
    """

    __slots__ = ("_drop", "_lock", "_state", "_streaming_samples", "name")

    blocking = True

    def __init__(
        self,
        limit: int | LimitAlgorithm,
        *,
        max_queue: int | None = None,
        name: str = "default",
        drop_codes: Iterable[grpc.StatusCode] = DEFAULT_DROP_CODES,
        meter_provider: Any = None,
    ) -> None:
        algorithm: LimitAlgorithm | None
        if isinstance(limit, bool) or (isinstance(limit, int) and limit < 1):
            raise ValueError(
                f"limit must be an int >= 1 or an adaptive algorithm (AimdLimit, GradientLimit), "
                f"got {limit!r}"
            )
        if isinstance(limit, int):
            algorithm, initial = None, limit
        elif callable(getattr(limit, "update", None)) and isinstance(
            getattr(limit, "initial", None), int
        ):
            algorithm, initial = limit, limit.initial
        else:
            raise TypeError(
                "limit must be an int >= 1 or an adaptive algorithm (AimdLimit, GradientLimit), "
                f"got {type(limit).__name__}"
            )
        if max_queue is not None and (
            isinstance(max_queue, bool) or not isinstance(max_queue, int) or max_queue < 0
        ):
            raise ValueError(f"max_queue must be None or an int >= 0, got {max_queue!r}")
        if not isinstance(name, str) or not name:
            raise ValueError(f"name must be a non-empty str, got {name!r}")
        drop = frozenset(drop_codes)
        for code in drop:
            if not isinstance(code, grpc.StatusCode):
                raise TypeError(f"drop_codes must hold grpc.StatusCode values, got {code!r}")
        self.name = name
        self._drop = drop
        self._lock = threading.Lock()
        self._state = LimiterState(initial, max_queue, algorithm)
        if meter_provider is not None:
            self._export(meter_provider)

    # -- readable state
    @property
    def limit(self) -> int:
        """The current limit (moves in adaptive mode)."""
        return self._state.current_limit

    @property
    def in_flight(self) -> int:
        """Calls holding a slot now."""
        return self._state.in_flight

    @property
    def queued(self) -> int:
        """Callers waiting for a slot now."""
        return len(self._state.queue)

    @property
    def max_queue(self) -> int | None:
        return self._state.max_queue

    @property
    def adaptive(self) -> bool:
        return self._state.algorithm is not None

    def __repr__(self) -> str:
        algorithm = self._state.algorithm
        limit = repr(algorithm) if algorithm is not None else str(self.limit)
        return (
            f"ConcurrencyLimit({limit}, max_queue={self.max_queue}, name={self.name!r}, "
            f"in_flight={self.in_flight}, queued={self.queued})"
        )

    # -- OpenTelemetry
    def _export(self, meter_provider: Any) -> None:
        from opentelemetry.metrics import CallbackOptions, Observation

        meter = meter_provider.get_meter("grpc_channel.interceptors.concurrency")
        attrs = {"concurrency.limiter": self.name}

        def observe(value: Any) -> Any:
            def callback(options: CallbackOptions) -> Iterable[Observation]:
                return (Observation(value(), attrs),)

            return callback

        meter.create_observable_gauge(
            "rpc.concurrency.limit",
            callbacks=[observe(lambda: self.limit)],
            unit="{call}",
            description="Current concurrency limit",
        )
        meter.create_observable_up_down_counter(
            "rpc.concurrency.in_flight",
            callbacks=[observe(lambda: self.in_flight)],
            unit="{call}",
            description="Calls holding a concurrency slot",
        )
        meter.create_observable_up_down_counter(
            "rpc.concurrency.queued",
            callbacks=[observe(lambda: self.queued)],
            unit="{call}",
            description="Callers waiting for a concurrency slot",
        )

    # -- the shared core
    def _refuse_full(self) -> LocalRpcError:
        state = self._state
        return LocalRpcError(
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            f"concurrency limit {self.name!r} reached: {state.in_flight} in flight, "
            f"{len(state.queue)} queued (max_queue={state.max_queue})",
        )

    def _refuse_deadline(self) -> LocalRpcError:
        return LocalRpcError(
            grpc.StatusCode.DEADLINE_EXCEEDED,
            f"deadline passed while waiting for a slot of concurrency limit {self.name!r}",
        )

    def _wake(self, waiter: Waiter | None) -> None:
        # Called without the lock: wake each granted waiter, then try to grant more (an adaptive
        # limit may have grown by more than one).
        while waiter is not None:
            handle = waiter.wake
            if isinstance(handle, threading.Event):
                handle.set()
            elif handle is not None:
                loop: asyncio.AbstractEventLoop = handle[0]  # type: ignore[index]
                fut: asyncio.Future[None] = handle[1]  # type: ignore[index]
                try:
                    loop.call_soon_threadsafe(_wake_future, fut)
                except RuntimeError:  # loop closed: that waiter is gone; free its slot
                    with self._lock:
                        waiter = self._state.release(0.0, False, False)
                    continue
            with self._lock:
                waiter = self._state.grant_more()

    def _release(self, code: grpc.StatusCode | None, started: float, streaming: bool) -> None:
        state = self._state
        if state.algorithm is None:
            with self._lock:
                waiter = state.release(0.0, False, False)
        else:
            dropped = code in self._drop
            sample = code is not _CANCELLED and (dropped or not streaming)
            rtt = 0.0 if streaming else monotonic() - started
            with self._lock:
                waiter = state.release(rtt, dropped, sample)
        if waiter is not None:
            self._wake(waiter)

    def _give_up(self, waiter: Waiter) -> None:
        """A queued caller leaves on an exception: out of the queue, or, if a slot was handed to
        it meanwhile, that slot goes back (to the next waiter), so no slot stays with nobody."""
        with self._lock:
            gave_up = self._state.abandon(waiter)
        if not gave_up:
            self._release(_CANCELLED, 0.0, True)

    def _acquire_sync(self, timeout: float | None, context: Any = None) -> bool:
        """Take a slot, waiting up to ``timeout`` seconds; True if the caller had to queue."""
        state = self._state
        with self._lock:
            if state.try_acquire():
                return False
            if state.queue_full():
                raise self._refuse_full()
            waiter = Waiter()
            event = threading.Event()
            waiter.wake = event
            state.enqueue(waiter)
        # Whatever interrupts the wait (KeyboardInterrupt, an OverflowError from a timeout too
        # large for the lock, an exception raised into the thread) must not leave this waiter in
        # the queue: the next released slot would go to a caller that is gone, for good.
        try:
            if context is not None:
                # Sync server: wake up if the client goes away while we wait.
                context.add_callback(event.set)
            end = None if timeout is None else monotonic() + timeout
            while True:
                left = None if end is None else end - monotonic()
                woke = event.is_set() if left is not None and left <= 0 else event.wait(left)
                with self._lock:
                    if waiter.granted:
                        return True
                    if not woke or (context is not None and not context.is_active()):
                        state.abandon(waiter)
                        break
                    event.clear()
        except BaseException:
            self._give_up(waiter)
            raise
        if not woke:
            raise self._refuse_deadline()
        raise LocalRpcError(_CANCELLED, "the client went away while queued")

    async def _acquire_async(self, timeout: float | None) -> bool:
        state = self._state
        with self._lock:
            if state.try_acquire():
                return False
            if state.queue_full():
                raise self._refuse_full()
            loop = asyncio.get_running_loop()
            fut: asyncio.Future[None] = loop.create_future()
            waiter = Waiter()
            waiter.wake = (loop, fut)
            state.enqueue(waiter)
        try:
            if timeout is None:
                await fut
            else:
                await asyncio.wait_for(fut, max(timeout, 0.0))
        except TimeoutError:
            with self._lock:
                if state.abandon(waiter):
                    raise self._refuse_deadline() from None
            return True  # granted just as the time ran out: use it (the wire checks the deadline)
        except BaseException:
            # Cancelled task, KeyboardInterrupt, ...: leave the queue or give back the slot.
            self._give_up(waiter)
            raise
        return True

    def _try(self) -> bool:
        with self._lock:
            return self._state.try_acquire()

    # -- client
    def try_take(self, call: ClientCall | None = None) -> bool:
        """Take a free slot without waiting: False when none is free (or callers are queued).
        Every slot taken must be handed back (:meth:`give_back`, or the chain's finish). Also the
        chain's ``client_try_acquire`` (the aio fast path), which passes the call."""
        state = self._state
        with self._lock:
            if state.in_flight < state.cap and not state.queue:
                state.in_flight += 1
                return True
        return False

    client_try_acquire = try_take

    def client_acquire(self, call: ClientCall) -> None:
        state = self._state
        with self._lock:  # the uncontended case, inlined (as in take)
            if state.in_flight < state.cap and not state.queue:
                state.in_flight += 1
                return
        deadline = call.deadline
        if self._acquire_sync(None if deadline is None else deadline - monotonic()):
            call.note(self, monotonic())

    def take(self, deadline: float | None) -> float | None:
        """Take a slot for a client call, waiting until ``deadline`` (``time.monotonic()``; None:
        no limit) when none is free: :meth:`client_acquire` for code that holds a slot around
        work of its own, outside a chain.

        Returns None when a slot was free at once, else the ``monotonic()`` time the queued caller
        got one (its round trip starts then). Raises ``LocalRpcError`` RESOURCE_EXHAUSTED when the
        queue is full and DEADLINE_EXCEEDED when the deadline passes first; no slot is held then.
        Every slot taken must be handed back with :meth:`give_back`.
        """
        state = self._state
        with self._lock:  # the uncontended case, inlined
            if state.in_flight < state.cap and not state.queue:
                state.in_flight += 1
                return None
        if self._acquire_sync(None if deadline is None else deadline - monotonic()):
            return monotonic()
        return None

    def give_back(self, code: grpc.StatusCode, started: float) -> None:
        """Hand back the slot :meth:`take` gave a unary call that ended with ``code`` after a
        round trip that began at ``started`` (``monotonic()``, or what ``take`` returned); an
        adaptive limit learns from both."""
        state = self._state
        if state.algorithm is None:
            with self._lock:  # fixed limit and nobody waiting: just give the slot back
                if not state.queue:
                    state.in_flight -= 1
                    return
        self._release(code, started, False)

    async def client_acquire_async(self, call: ClientCall) -> None:
        granted = await self.take_async(call.deadline)
        if granted is not None:
            call.note(self, granted)

    async def take_async(self, deadline: float | None) -> float | None:
        """The asyncio form of :meth:`take` (try :meth:`try_take` first: this always runs a
        coroutine). Cancelling the waiting task leaves the queue and holds no slot."""
        if await self._acquire_async(None if deadline is None else deadline - monotonic()):
            return monotonic()
        return None

    def client_finish(self, call: ClientCall) -> None:
        state = self._state
        if state.algorithm is None:
            # give_back's fast path, inlined: every call through a chain ends here.
            with self._lock:  # fixed limit and nobody waiting: just give the slot back
                if not state.queue:
                    state.in_flight -= 1
                    return
        started = call.started if call.notes is None else call.noted(self, call.started)
        self._release(call.code, started, call.shape.response_streaming)

    # -- server
    @staticmethod
    def _server_timeout(context: Any) -> float | None:
        try:
            left = context.time_remaining()
        except Exception:
            return None
        if left is None or left > _NO_DEADLINE:
            return None
        return float(left)

    def server_try_acquire(self, call: ServerCall) -> bool:
        """Take a free slot without waiting (the aio chain's fast path); False if none."""
        return self._try()

    def server_acquire(self, call: ServerCall) -> None:
        context = call.context
        if self._acquire_sync(self._server_timeout(context), context):
            call.note(self, monotonic())

    async def server_acquire_async(self, call: ServerCall) -> None:
        if await self._acquire_async(self._server_timeout(call.context)):
            call.note(self, monotonic())

    def server_finish(self, call: ServerCall) -> None:
        started = call.started if call.notes is None else call.noted(self, call.started)
        self._release(call.code, started, call.shape.response_streaming)
