"""The engine shared by every adapter: per-call invocation state, chain levels, outcome recording.

A client chain is cut into *levels* at each around-policy (retry): level 0 holds the policies before
the first around-policy, level 1 those after it, and so on; the last level ends at the wire. Each
level's ``run``/``run_async`` enters its policies, calls the around-policy (which calls the next
level's run once per attempt) or the wire, and finishes what it entered. Everything a level needs
is bound when the chain is composed, so a call allocates one :class:`Invocation` and nothing else
on the unary path.

The *wire* is a function supplied by the adapter (channel wrapper or grpcio interceptor). When the
wire hands back something that ends later (a response stream, a pending future) it sets
``inv.owe = []``; each level then appends ``(level, entered)`` instead of finishing, and
:class:`Deferred` finishes them, exactly once, when the call really ends.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import queue
import threading
import time
import weakref
from collections.abc import Callable, Sequence
from typing import Any

import grpc

from ._errors import LocalRpcError
from ._metadata_pairs import MetadataPairs
from ._policy import (
    CallShape,
    ClientCall,
    ClientPolicy,
    ServerCall,
    ServerPolicy,
    claim_call_options,
    overrides,
)
from ._response_metadata import ended_call_metadata, read_response_metadata

log = logging.getLogger("grpc_channel.interceptors")

monotonic = time.monotonic
OK = grpc.StatusCode.OK
CANCELLED = grpc.StatusCode.CANCELLED
UNKNOWN = grpc.StatusCode.UNKNOWN
DEADLINE_EXCEEDED = grpc.StatusCode.DEADLINE_EXCEEDED


class _Marker:
    __slots__ = ("name",)

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return self.name


NOTHING: Any = _Marker("NOTHING")  # no prefetched message
END: Any = _Marker("END")  # the prefetch found the end of the stream

Wire = Callable[["Invocation"], Any]


class Invocation(ClientCall):
    """A :class:`ClientCall` plus what the adapter needs to reach the wire (private)."""

    __slots__ = (
        "compression",
        "cont",
        "credentials",
        "first",
        "owe",
        "rcall",
        "ready",
        "request",
        "wait_for_ready",
        "wire",
        "with_call",
    )

    def __init__(
        self,
        method: str,
        shape: CallShape,
        metadata: list[tuple[str, str | bytes]],
        timeout: float | None,
        request: Any,
        credentials: Any,
        wait_for_ready: bool | None,
        compression: Any,
        wire: Wire,
    ) -> None:
        # ClientCall's fields, set here rather than through ClientCall.__init__: one Python frame
        # fewer on every call (keep in step with ClientCall.__init__).
        now = monotonic()
        self.method = method
        self.shape = shape
        self.metadata = metadata
        self.timeout = timeout
        self.deadline = None if timeout is None else now + timeout
        self.started = now
        self.attempt = 1
        self.replayable = True
        self.code = None
        self.details = ""
        self.initial_metadata = ()
        self.trailing_metadata = ()
        self.peer = ""
        self.error = None
        self.span = None
        self.notes = None
        self.options = claim_call_options(method)
        self.request = request
        self.credentials = credentials
        self.wait_for_ready = wait_for_ready
        self.compression = compression
        self.wire = wire
        self.owe: list[tuple[Level, int]] | None = None
        self.rcall: Any = None
        self.first: Any = NOTHING
        self.cont: Any = None
        self.ready: Any = None  # aio: a future set once ``rcall`` exists (writer-API calls)
        self.with_call = False


def remaining(inv: ClientCall) -> float | None:
    """Seconds left until ``inv.deadline`` (what travels as the timeout); refuses a passed one."""
    return time_left(inv.deadline)


def time_left(deadline: float | None) -> float | None:
    """Seconds left until ``deadline`` (``monotonic()``; None: no deadline, None back). Raises
    ``LocalRpcError`` DEADLINE_EXCEEDED once it has passed: the call must not be sent."""
    if deadline is None:
        return None
    left = deadline - monotonic()
    if left <= 0:
        raise LocalRpcError(DEADLINE_EXCEEDED, "Deadline Exceeded (before the call was sent)")
    return left


def outcome_code(exc: BaseException) -> grpc.StatusCode:
    """The status of a client call that raised ``exc``, as :func:`record_error` records it: the
    error's own code, CANCELLED for a cancellation or an interrupt, UNKNOWN for anything else."""
    if isinstance(exc, grpc.RpcError):
        code_of = getattr(exc, "code", None)
        if callable(code_of):
            try:
                code = code_of()
            except Exception:  # a half-built error object
                return UNKNOWN
            return code if isinstance(code, grpc.StatusCode) else UNKNOWN
    if isinstance(exc, (asyncio.CancelledError, KeyboardInterrupt)):
        return CANCELLED
    return UNKNOWN


def _pairs(md: Any) -> MetadataPairs:
    if not md:
        return ()
    return tuple(md)


def record_error(call: ClientCall, exc: BaseException) -> None:
    """Fill the outcome fields of ``call`` from ``exc`` (idempotent for the same exception)."""
    if call.error is exc:
        return
    call.error = exc
    call.code = outcome_code(exc)
    if isinstance(exc, grpc.RpcError) and callable(getattr(exc, "code", None)):
        try:
            err: Any = exc
            call.details = err.details() or ""
            call.initial_metadata = _pairs(err.initial_metadata())
            call.trailing_metadata = _pairs(err.trailing_metadata())
            peer = getattr(exc, "peer", None)
            if callable(peer):
                call.peer = peer() or ""
        except Exception:  # a half-built error object; keep what we have
            pass
        return
    if call.code is CANCELLED:
        call.details = "Cancelled"
    else:
        call.details = f"{type(exc).__name__} raised in the client"


def reset_outcome(call: ClientCall) -> None:
    """Clear the outcome of a failed attempt before the next one."""
    call.code = None
    call.details = ""
    call.error = None
    call.initial_metadata = ()
    call.trailing_metadata = ()
    call.peer = ""


def _hook(policy: object, base: type, name: str) -> Any:
    return getattr(policy, name) if overrides(policy, base, name) else None


def finish_logged(finishes: tuple[Any, ...], call: object, n: int, hook: str) -> None:
    """Run the finish hooks of the first ``n`` entered policies, innermost first; one that raises
    is logged and the others still run (slots, spans)."""
    for i in range(n - 1, -1, -1):
        f = finishes[i]
        if f is not None:
            try:
                f(call)
            except Exception:
                log.exception("%s of %r raised", hook, f)


def _bound_hooks(
    policies: Sequence[object], base: type, side: str
) -> tuple[tuple[Any, ...], tuple[Any, ...], tuple[Any, ...]]:
    """The bound hooks a runner calls, one entry per policy, for ``side`` ("client"/"server"):
    ``(acquire, start)`` for sync, ``(try_acquire, acquire_async, start)`` for aio (acquire
    hooks only for ``blocking`` policies), and the finish hooks. Hooks a policy does not
    override are None; an all-None finish tuple becomes () so finishing costs a falsy check."""
    enter = []
    enter_async = []
    for p in policies:
        blocking = bool(getattr(p, "blocking", False))
        start = _hook(p, base, f"{side}_start")
        enter.append((getattr(p, f"{side}_acquire") if blocking else None, start))
        enter_async.append(
            (
                getattr(p, f"{side}_try_acquire", None) if blocking else None,
                getattr(p, f"{side}_acquire_async") if blocking else None,
                start,
            )
        )
    finishes = tuple(_hook(p, base, f"{side}_finish") for p in policies)
    return (
        tuple(enter),
        tuple(enter_async),
        finishes if any(f is not None for f in finishes) else (),
    )


class Level:
    """A run of client policies up to (and including the call of) the next around-policy."""

    __slots__ = (
        "around",
        "around_async",
        "enter",
        "enter_async",
        "finishes",
        "index",
        "next_run",
        "next_run_async",
    )

    def __init__(
        self, index: int, policies: Sequence[ClientPolicy], around: ClientPolicy | None
    ) -> None:
        self.index = index
        self.enter, self.enter_async, self.finishes = _bound_hooks(policies, ClientPolicy, "client")
        self.around = around.client_around if around is not None else None
        self.around_async = around.client_around_async if around is not None else None
        # Bound by build_levels: the next level's run methods (the ``attempt`` of the around).
        self.next_run: Any = None
        self.next_run_async: Any = None

    def finish(self, call: ClientCall, n: int) -> None:
        finishes = self.finishes
        if finishes:
            failed: BaseException | None = None
            for i in range(n - 1, -1, -1):
                f = finishes[i]
                if f is not None:
                    try:
                        f(call)
                    except Exception as exc:  # the others must still run (slots, spans)
                        if failed is None:
                            failed = exc
            if failed is not None:
                raise failed

    def finish_quiet(self, call: ClientCall, n: int) -> None:
        """Finish on a failure path: a raising finish hook must not mask the call's error."""
        if self.finishes:
            finish_logged(self.finishes, call, n, "client_finish")

    def _failed(self, inv: Invocation, n: int, exc: BaseException) -> None:
        record_error(inv, exc)
        self.finish_quiet(inv, n)

    def _ended(self, inv: Invocation, n: int) -> None:
        # A call that ends later (a stream, a future) owes its finish to the Deferred.
        owe = inv.owe
        if owe is None:
            self.finish(inv, n)
        else:
            owe.append((self, n))

    # run and run_async differ only in awaiting: entering (an aio acquire may wait) and the wire.
    def run(self, inv: Invocation) -> Any:
        if self.index:
            reset_outcome(inv)
        n = 0
        try:
            for acquire, start in self.enter:
                if acquire is not None:
                    acquire(inv)
                if start is not None:
                    start(inv)
                n += 1
            around = self.around
            result = inv.wire(inv) if around is None else around(inv, self.next_run)
        except BaseException as exc:
            self._failed(inv, n, exc)
            raise
        self._ended(inv, n)
        return result

    async def run_async(self, inv: Invocation) -> Any:
        if self.index:
            reset_outcome(inv)
        n = 0
        try:
            for try_acquire, acquire, start in self.enter_async:
                # The optional sync fast path spares a coroutine when a slot is free.
                if acquire is not None and (try_acquire is None or not try_acquire(inv)):
                    await acquire(inv)
                if start is not None:
                    start(inv)
                n += 1
            around = self.around_async
            if around is None:
                result = await inv.wire(inv)
            else:
                result = await around(inv, self.next_run_async)
        except BaseException as exc:
            self._failed(inv, n, exc)
            raise
        self._ended(inv, n)
        return result


def build_levels(policies: Sequence[ClientPolicy]) -> list[Level]:
    levels: list[Level] = []
    current: list[ClientPolicy] = []
    for p in policies:
        is_around = overrides(p, ClientPolicy, "client_around") or overrides(
            p, ClientPolicy, "client_around_async"
        )
        if is_around:
            # The around-policy's own start/finish belong to the outer level.
            current.append(p)
            levels.append(Level(len(levels), current, p))
            current = []
        else:
            current.append(p)
    levels.append(Level(len(levels), current, None))
    for outer, inner in itertools.pairwise(levels):
        outer.next_run = inner.run
        outer.next_run_async = inner.run_async
    return levels


class Deferred:
    """Finishes the owed levels of a call that ends after its adapter returned, exactly once.

    Holds the grpcio call only weakly: the backstop callback registered on that call must not keep
    an abandoned call alive (grpcio cancels calls whose object is garbage collected).
    """

    __slots__ = ("__weakref__", "done", "inv", "lock", "rcall_ref", "wants")

    def __init__(self, inv: Invocation, wants: bool) -> None:
        self.inv = inv
        self.wants = wants
        self.lock = threading.Lock()
        self.done = False
        self.rcall_ref: Callable[[], Any] | None = None

    def watch(self, rcall: Any) -> None:
        self.rcall_ref = weakref.ref(rcall)

    def _finish_locked(self) -> None:
        self.done = True
        owe = self.inv.owe
        if owe:
            for level, n in owe:
                level.finish_quiet(self.inv, n)

    def complete_ok(
        self,
        initial: Any = None,
        trailing: Any = None,
    ) -> None:
        with self.lock:
            if self.done:
                return
            inv = self.inv
            inv.code = OK
            if initial is not None:
                inv.initial_metadata = _pairs(initial)
            if trailing is not None:
                inv.trailing_metadata = _pairs(trailing)
            self._finish_locked()

    def complete_error(self, exc: BaseException) -> None:
        with self.lock:
            if self.done:
                return
            record_error(self.inv, exc)
            self._finish_locked()

    def complete_cancelled(self, details: str) -> None:
        with self.lock:
            if self.done:
                return
            inv = self.inv
            inv.code = CANCELLED
            inv.details = details
            self._finish_locked()

    def complete_from_sync_call(self, rcall: Any) -> None:
        """Record the outcome of a terminated sync grpcio call (a Call that is also an RpcError)."""
        if self.done:
            return
        code = rcall.code()
        if code is OK:
            if self.wants:
                self.complete_ok(*ended_call_metadata(rcall))
            else:
                self.complete_ok()
        else:
            self.complete_error(rcall)

    def on_sync_terminated(self) -> None:
        """``add_callback`` backstop for sync streams: the call ended (maybe unobserved).

        Runs on grpcio's channel thread, which must never block (it delivers the events that
        reading metadata waits for), so the recording is handed to a helper thread.
        """
        if self.done:
            return
        rcall = self.rcall_ref() if self.rcall_ref is not None else None
        if rcall is None:
            self.complete_cancelled("Cancelled upon garbage collection")
        else:
            offload(self.complete_from_sync_call, rcall)

    def on_future_done(self, fut: Any) -> None:
        """``add_done_callback`` for sync futures (grpcio's channel thread: see above)."""
        if not self.done:
            offload(self.complete_from_future, fut)

    def complete_from_future(self, fut: Any) -> None:
        if self.done:
            return
        if fut.cancelled():
            self.complete_cancelled("Locally cancelled by application")
            return
        exc = fut.exception()
        if exc is not None:
            self.complete_error(exc)
        elif self.wants:
            self.complete_ok(*ended_call_metadata(fut))
        else:
            self.complete_ok()

    async def complete_from_aio_call(self, rcall: Any) -> None:
        if self.done:
            return
        code = await rcall.code()
        if code is OK:
            if self.wants:
                self.complete_ok(*await read_response_metadata(rcall))
            else:
                self.complete_ok()
            return
        initial, trailing = await read_response_metadata(rcall)
        self.complete_error(
            LocalRpcError(
                code,
                await rcall.details() or "",
                initial_metadata=initial,
                trailing_metadata=trailing,
            )
        )

    def on_aio_done(self, rcall: Any) -> None:
        """``add_done_callback`` backstop for aio streams (runs on the loop)."""
        if self.done:
            return
        task = asyncio.ensure_future(self.complete_from_aio_call(rcall))
        _BACKGROUND.add(task)
        task.add_done_callback(_BACKGROUND.discard)


# Strong references to backstop tasks until they end (asyncio only keeps weak ones).
_BACKGROUND: set[asyncio.Future[None]] = set()

_offload_lock = threading.Lock()
_offload_queue: queue.SimpleQueue[tuple[Callable[..., None], tuple[Any, ...]]] | None = None
_OFFLOAD_WORKERS = 4


def offload(fn: Callable[..., None], *args: Any) -> None:
    """Run ``fn(*args)`` on a few daemon helper threads (work grpcio callbacks must not do).

    Daemon threads, so a job stuck on a call that never completes can never hold up interpreter
    exit.
    """
    global _offload_queue
    jobs = _offload_queue
    if jobs is None:
        with _offload_lock:
            if _offload_queue is None:
                fresh: queue.SimpleQueue[tuple[Callable[..., None], tuple[Any, ...]]] = (
                    queue.SimpleQueue()
                )
                for i in range(_OFFLOAD_WORKERS):
                    threading.Thread(
                        target=_worker, args=(fresh,), name=f"interceptors-finish-{i}", daemon=True
                    ).start()
                _offload_queue = fresh
            jobs = _offload_queue
    jobs.put((fn, args))


def _worker(jobs: queue.SimpleQueue[tuple[Callable[..., None], tuple[Any, ...]]]) -> None:
    while True:
        fn, args = jobs.get()
        _logged(fn, *args)


def _logged(fn: Callable[..., None], *args: Any) -> None:
    try:
        fn(*args)
    except Exception:
        log.exception("finishing a call failed")


# ---------------------------------------------------------------------------------------------
# Server side


def _server_code(context: Any) -> grpc.StatusCode | None:
    try:
        code = context.code()
    except Exception:
        return None
    return code if isinstance(code, grpc.StatusCode) else None


def _server_details(context: Any) -> str:
    try:
        details = context.details()
    except Exception:
        return ""
    if isinstance(details, bytes):
        return details.decode("utf-8", "replace")
    return details or ""


class ServerRun:
    """The server policies of a chain, bound once; the server adapters run these per call."""

    __slots__ = ("enter", "enter_async", "finishes", "policies")

    def __init__(self, policies: Sequence[ServerPolicy]) -> None:
        self.policies = tuple(policies)
        self.enter, self.enter_async, self.finishes = _bound_hooks(policies, ServerPolicy, "server")

    def finish(self, call: ServerCall, n: int) -> None:
        if self.finishes:
            finish_logged(self.finishes, call, n, "server_finish")

    @staticmethod
    def record_ok(call: ServerCall) -> None:
        context = call.context
        code = _server_code(context)
        if code is None or code is OK:
            # The handler returned but the client may be gone (cancelled or out of time).
            active = getattr(context, "is_active", None)
            if active is not None and not active():
                call.code = CANCELLED
                call.details = "The client went away"
                return
            call.code = OK
        else:
            call.code = code
            call.details = _server_details(context)

    @staticmethod
    def record_error(call: ServerCall, exc: BaseException) -> None:
        call.error = exc
        code = _server_code(call.context)
        if isinstance(exc, (asyncio.CancelledError, GeneratorExit)) and (
            code is None or code is OK
        ):
            # (An abort that raced with the client closing keeps its own code.)
            call.code = CANCELLED
            call.details = "Cancelled"
            return
        if code is None or code is OK:
            call.code = UNKNOWN
            call.details = f"{type(exc).__name__} raised in the handler"
        else:
            call.code = code
            call.details = _server_details(call.context)

    @staticmethod
    def record_refusal(call: ServerCall, exc: LocalRpcError) -> None:
        call.error = exc
        call.code = exc.code()
        call.details = exc.details()
