"""aio client adapters: the channel wrapper (``Chain.wrap_aio``) and grpc.aio client interceptors.

The wrapper's multicallables return call objects that behave like grpc.aio's: awaitable (unary
response) or async-iterable with ``read()`` (streaming response), ``write()``/``done_writing()`` for
request streams fed by hand, and ``initial_metadata()``, ``trailing_metadata()``, ``code()``,
``details()``, ``cancel()``, ``done()``, ``add_done_callback()``. One difference: grpc.aio starts
a call when it is created; these start it when first awaited, iterated, read, written or asked
for metadata, because the chain's async steps (waiting for a concurrency slot) need a coroutine.

Locally refused calls raise :class:`~grpc_channel.interceptors._errors.LocalRpcError` from the
wrapper; the interceptor raises ``grpc.aio.AioRpcError`` instead, because grpc.aio's intercepted
call objects only know how to report that type.
"""

from __future__ import annotations

import asyncio
import functools
import weakref
from collections.abc import AsyncIterator, Callable, Generator
from typing import TYPE_CHECKING, Any

import grpc
import grpc.aio

from . import _grpc_types as _t
from ._client_shared import (
    US,
    UU,
    InterceptorBase,
    MultiCallableBase,
    ReplayBase,
    cancel_on_collection,
)
from ._client_shared import (
    request_of as _request_of,
)
from ._errors import LocalRpcError
from ._metadata_pairs import MetadataPairs
from ._policy import CallShape
from ._response_metadata import read_response_metadata, response_metadata_steps
from ._run import (
    CANCELLED,
    DEADLINE_EXCEEDED,
    END,
    NOTHING,
    OK,
    UNKNOWN,
    Deferred,
    Invocation,
    Level,
    monotonic,
    record_error,
    remaining,
)
from ._wrapped_channel import WrappedChannelBase

if TYPE_CHECKING:
    from ._chain import Chain

EOF: Any = grpc.aio.EOF  # type: ignore[attr-defined]
_Metadata = grpc.aio.Metadata


class AsyncReplay(ReplayBase):
    """:class:`ReplayBase` over a sync or async iterable, pulled from only when first iterated."""

    __slots__ = ("_iter", "_lock")

    def __init__(self, source: Any) -> None:
        super().__init__(source)
        self._iter: Any = None
        # Made in fresh(): an asyncio.Lock wants the running loop on older Pythons.
        self._lock: asyncio.Lock | None = None

    async def _pull(self) -> Any:
        """The next message of the source, or ``END``."""
        if self._iter is None:
            src = self._source
            self._iter = src.__aiter__() if hasattr(src, "__aiter__") else iter(src)
        it = self._iter
        if hasattr(it, "__anext__"):
            try:
                return await it.__anext__()
            except StopAsyncIteration:
                return END
        return next(it, END)

    async def fresh(self) -> AsyncIterator[Any]:
        """The messages from the first on: the kept ones, then more pulled from the source."""
        if self._lock is None:
            self._lock = asyncio.Lock()
        i = 0
        while True:
            async with self._lock:
                item = self._at(i)
                if item is NOTHING:
                    item = self._kept(await self._pull())
            if item is END:
                return
            i += 1
            yield item


def _metadata_of(inv: Invocation) -> Any:
    md = inv.metadata
    return _Metadata(*md) if md else None


def _as_metadata(pairs: Any) -> grpc.aio.Metadata:
    if isinstance(pairs, grpc.aio.Metadata):
        return pairs
    return grpc.aio.Metadata(*pairs) if pairs else grpc.aio.Metadata()


def _time_remaining(inv: Invocation) -> float | None:
    """Seconds left until the deadline, 0 once passed (None without one), as grpc.aio reports."""
    deadline = inv.deadline
    return None if deadline is None else max(0.0, deadline - monotonic())


def _signal_ready(inv: Invocation) -> None:
    ready = inv.ready
    if ready is not None and not ready.done():
        ready.set_result(None)


async def prefetch(inv: Invocation, rcall: Any) -> None:
    """Read the first response message (retry: an error before it means nothing was delivered)."""
    first = await rcall.read()
    inv.first = END if first is EOF else first


# ---------------------------------------------------------------------------------------------
# Call objects of the channel wrapper


class _UnaryCallBase:
    """State machine of a unary-response call: not started → running → settled."""

    def __init__(self, level: Level, inv: Invocation, direct: Any = None) -> None:
        self._level = level
        self._inv = inv
        # The multicallable, when the chain has one level (no retry): __await__ then runs the
        # level and the wire itself instead of through two more coroutines.
        self._direct = direct
        self._state = 0
        self._runner: asyncio.Task[Any] | None = None
        self._result: Any = None
        self._exc: BaseException | None = None
        self._waiters: list[asyncio.Future[None]] | None = None
        self._callbacks: list[Callable[[Any], None]] | None = None

    async def _run(self) -> Any:
        self._state = 1
        self._runner = asyncio.current_task()
        try:
            result = await self._level.run_async(self._inv)
        except BaseException as exc:
            self._exc = exc
            raise
        else:
            self._result = result
            return result
        finally:
            self._state = 2
            self._runner = None
            if self._waiters or self._callbacks or self._inv.ready is not None:
                self._settled()

    def _settled(self) -> None:
        _signal_ready(self._inv)
        waiters = self._waiters
        if waiters:
            self._waiters = None
            for w in waiters:
                if not w.done():
                    w.set_result(None)
        callbacks = self._callbacks
        if callbacks:
            self._callbacks = None
            for cb in callbacks:
                cb(self)

    def _start_task(self) -> None:
        if self._state == 0:
            task = asyncio.ensure_future(self._run())
            # Consume the task's exception: the awaiter gets it through _outcome().
            task.add_done_callback(_swallow)
            self._state = 1

    async def _settle(self) -> None:
        if self._state == 2:
            return
        self._start_task()
        waiter = asyncio.get_running_loop().create_future()
        if self._waiters is None:
            self._waiters = []
        self._waiters.append(waiter)
        await waiter

    async def _outcome(self) -> Any:
        await self._settle()
        if self._exc is not None:
            raise self._exc
        return self._result

    def __await__(self) -> Generator[Any, None, Any]:
        if self._state != 0:
            return (yield from self._outcome().__await__())
        # The common case, inlined (one coroutine fewer than awaiting _run()).
        self._state = 1
        try:
            if self._direct is None:
                self._runner = asyncio.current_task()
                result = yield from self._level.run_async(self._inv).__await__()
            else:
                # _run_direct records the runner only where it can suspend before the grpcio
                # call exists (cancel() uses the grpcio call once there is one).
                result = yield from self._run_direct()
        except BaseException as exc:
            self._exc = exc
            raise
        else:
            self._result = result
            return result
        finally:
            self._state = 2
            self._runner = None
            if self._waiters or self._callbacks or self._inv.ready is not None:
                self._settled()

    def _run_direct(self) -> Generator[Any, None, Any]:
        """Level.run_async and the multicallable's wire as one generator (same semantics)."""
        inv = self._inv
        level = self._level
        mc = self._direct
        n = 0
        try:
            for try_acquire, acquire, start in level.enter_async:
                if acquire is not None and (try_acquire is None or not try_acquire(inv)):
                    if self._runner is None:
                        self._runner = asyncio.current_task()
                    yield from acquire(inv).__await__()
                if start is not None:
                    start(inv)
                n += 1
            deadline = inv.deadline
            if deadline is None:
                timeout = None
            else:
                timeout = deadline - monotonic()
                if timeout <= 0:
                    raise LocalRpcError(
                        DEADLINE_EXCEEDED, "Deadline Exceeded (before the call was sent)"
                    )
            md = inv.metadata
            rcall = mc._inner(
                inv.request,
                timeout=timeout,
                # A Metadata, not a tuple: grpc.aio would check a tuple against typing.Sequence
                # (slow) and copy it before building the same Metadata.
                metadata=_Metadata(*md) if md else None,
                credentials=inv.credentials,
                wait_for_ready=inv.wait_for_ready,
                compression=inv.compression,
            )
            inv.rcall = rcall
            if inv.ready is not None:
                _signal_ready(inv)
            response = yield from rcall.__await__()
            inv.code = OK
            if mc._wants:
                inv.initial_metadata, inv.trailing_metadata = yield from response_metadata_steps(
                    rcall
                )
        except BaseException as exc:
            record_error(inv, exc)
            level.finish_quiet(inv, n)
            raise
        level.finish(inv, n)
        return response

    # -- writer API (request streams without an iterator)
    async def _rcall_for_writing(self) -> Any:
        inv = self._inv
        if inv.rcall is None and self._state != 2:
            if inv.ready is None:
                inv.ready = asyncio.get_running_loop().create_future()
            self._start_task()
            await inv.ready
        if inv.rcall is None:
            if self._exc is not None:
                raise self._exc
            raise LocalRpcError(UNKNOWN, "the call ended before it could be written to")
        return inv.rcall

    async def write(self, request: Any) -> None:
        await (await self._rcall_for_writing()).write(request)

    async def done_writing(self) -> None:
        await (await self._rcall_for_writing()).done_writing()

    # -- grpc.aio.Call
    def cancelled(self) -> bool:
        return self._state == 2 and self._inv.code is CANCELLED

    def done(self) -> bool:
        return self._state == 2

    def time_remaining(self) -> float | None:
        return _time_remaining(self._inv)

    def cancel(self) -> bool:
        if self._state == 2:
            return False
        rcall = self._inv.rcall
        if rcall is not None:
            return bool(rcall.cancel())
        runner = self._runner
        if runner is not None:
            return runner.cancel()
        # Never started: nothing entered, nothing to finish.
        self._exc = asyncio.CancelledError()
        self._inv.code = CANCELLED
        self._inv.details = "Locally cancelled by application"
        self._state = 2
        self._settled()
        return True

    def add_done_callback(self, callback: Callable[[Any], None]) -> None:
        if self._state == 2:
            callback(self)
            return
        if self._callbacks is None:
            self._callbacks = []
        self._callbacks.append(callback)

    def response_metadata(
        self,
    ) -> tuple[MetadataPairs, MetadataPairs]:
        """The initial and trailing metadata as pairs, without awaiting: for a call that ended
        (after ``await call``) on a multicallable that records them (a chain with a policy that
        wants them, such as ``Capture``, or ``WrappedAioChannel.capturing_unary_unary``).
        Otherwise what was recorded so far (empty tuples for a call that never reached the
        wire)."""
        inv = self._inv
        return tuple(inv.initial_metadata), tuple(inv.trailing_metadata)

    async def initial_metadata(self) -> grpc.aio.Metadata:
        await self._settle()
        rcall = self._inv.rcall
        if rcall is not None:
            md: grpc.aio.Metadata = await rcall.initial_metadata()
            return md
        return _as_metadata(self._inv.initial_metadata)

    async def trailing_metadata(self) -> grpc.aio.Metadata:
        await self._settle()
        rcall = self._inv.rcall
        if rcall is not None:
            md: grpc.aio.Metadata = await rcall.trailing_metadata()
            return md
        return _as_metadata(self._inv.trailing_metadata)

    async def code(self) -> grpc.StatusCode:
        await self._settle()
        return self._inv.code or UNKNOWN

    async def details(self) -> str:
        await self._settle()
        return self._inv.details

    async def wait_for_connection(self) -> None:
        rcall = self._inv.rcall
        if rcall is None:
            await self._settle()
            rcall = self._inv.rcall
        if rcall is not None and not rcall.done():
            await rcall.wait_for_connection()


def _swallow(task: asyncio.Future[Any]) -> None:
    if not task.cancelled():
        task.exception()


class AioUnaryUnaryCall(_UnaryCallBase, _t.AioUnaryUnaryCallBase):
    pass


class AioStreamUnaryCall(_UnaryCallBase, _t.AioStreamUnaryCallBase):
    pass


class _StreamCallBase:
    """A response stream run through the chain; finish hooks run when it ends."""

    def __init__(self, level: Level, inv: Invocation, wants: bool) -> None:
        self._level = level
        self._inv = inv
        self._deferred = Deferred(inv, wants)
        self._rcall: Any = None
        self._first: Any = NOTHING
        self._error: BaseException | None = None
        self._started = False
        self._starting: asyncio.Future[None] | None = None

    async def _ensure(self) -> None:
        if self._started:
            return
        starting = self._starting
        if starting is not None:
            await asyncio.shield(starting)
            return
        self._starting = starting = asyncio.get_running_loop().create_future()
        deferred = self._deferred
        try:
            rcall = await self._level.run_async(self._inv)
        except BaseException as exc:
            self._error = exc
            deferred.done = True  # the level finished what it entered
            if not isinstance(exc, grpc.RpcError):
                raise
        else:
            self._rcall = rcall
            self._first = self._inv.first
            self._inv.first = NOTHING
            deferred.watch(rcall)
            rcall.add_done_callback(deferred.on_aio_done)
        finally:
            self._started = True
            starting.set_result(None)

    async def read(self) -> Any:
        if not self._started:
            await self._ensure()
        if self._error is not None:
            raise self._error
        first = self._first
        if first is not NOTHING:
            self._first = NOTHING
            if first is END:
                await _complete_ok(self._rcall, self._deferred)
                return EOF
            return first
        rcall = self._rcall
        try:
            msg = await rcall.read()
        except grpc.RpcError as exc:
            self._deferred.complete_error(exc)
            raise
        except asyncio.CancelledError:
            rcall.cancel()
            self._deferred.complete_cancelled("Cancelled")
            raise
        if msg is EOF:
            await _complete_ok(rcall, self._deferred)
        return msg

    def __aiter__(self) -> AsyncIterator[Any]:
        return self._iterate()

    async def _iterate(self) -> AsyncIterator[Any]:
        while True:
            msg = await self.read()
            if msg is EOF:
                return
            yield msg

    async def write(self, request: Any) -> None:
        await self._ensure()
        if self._error is not None:
            raise self._error
        await self._rcall.write(request)

    async def done_writing(self) -> None:
        await self._ensure()
        if self._error is not None:
            raise self._error
        await self._rcall.done_writing()

    def __del__(self) -> None:
        cancel_on_collection(getattr(self, "_deferred", None), getattr(self, "_rcall", None))

    # -- grpc.aio.Call
    def cancelled(self) -> bool:
        if self._rcall is not None:
            return bool(self._rcall.cancelled())
        return isinstance(self._error, asyncio.CancelledError)

    def done(self) -> bool:
        if self._rcall is not None:
            return bool(self._rcall.done())
        return self._error is not None

    def time_remaining(self) -> float | None:
        return _time_remaining(self._inv)

    def cancel(self) -> bool:
        rcall = self._rcall
        if rcall is not None:
            cancelled = bool(rcall.cancel())
            if cancelled:
                self._deferred.complete_cancelled("Locally cancelled by application")
            return cancelled
        if self._started or self._starting is not None:
            return False
        self._error = asyncio.CancelledError()
        self._started = True
        self._deferred.done = True
        return True

    def add_done_callback(self, callback: Callable[[Any], None]) -> None:
        if self._rcall is not None:
            self._rcall.add_done_callback(lambda _c: callback(self))
        else:
            callback(self)

    async def initial_metadata(self) -> grpc.aio.Metadata:
        await self._ensure()
        if self._rcall is None:
            return _as_metadata(self._inv.initial_metadata)
        md: grpc.aio.Metadata = await self._rcall.initial_metadata()
        return md

    async def trailing_metadata(self) -> grpc.aio.Metadata:
        await self._ensure()
        if self._rcall is None:
            return _as_metadata(self._inv.trailing_metadata)
        md: grpc.aio.Metadata = await self._rcall.trailing_metadata()
        return md

    async def code(self) -> grpc.StatusCode:
        await self._ensure()
        if self._rcall is None:
            return self._inv.code or CANCELLED
        code: grpc.StatusCode = await self._rcall.code()
        return code

    async def details(self) -> str:
        await self._ensure()
        if self._rcall is None:
            return self._inv.details
        details: str = await self._rcall.details()
        return details

    async def wait_for_connection(self) -> None:
        await self._ensure()
        if self._rcall is not None:
            await self._rcall.wait_for_connection()


class AioUnaryStreamCall(_StreamCallBase, _t.AioUnaryStreamCallBase):
    pass


class AioStreamStreamCall(_StreamCallBase, _t.AioStreamStreamCallBase):
    pass


# ---------------------------------------------------------------------------------------------
# Multicallables and the channel wrapper


class _AioMultiCallable(MultiCallableBase):
    __slots__ = ()

    _replay = AsyncReplay
    _writable = True

    def __init__(
        self, chain: Chain, inner: Any, method: str, shape: CallShape, capture: bool = False
    ) -> None:
        # ``capture``: record the response metadata on every call even when no policy wants it
        # (see WrappedAioChannel.capturing_unary_unary).
        super().__init__(chain, inner, method, shape, chain.wants_response_metadata or capture)
        self._wire = self._stream_wire if shape.response_streaming else self._unary_wire

    def _open(self, inv: Invocation) -> Any:
        return self._inner(
            _request_of(inv),
            timeout=remaining(inv),
            metadata=_metadata_of(inv),
            credentials=inv.credentials,
            wait_for_ready=inv.wait_for_ready,
            compression=inv.compression,
        )

    async def _unary_wire(self, inv: Invocation) -> Any:
        # _open() inlined (with remaining() and _metadata_of()): this runs on every call.
        deadline = inv.deadline
        if deadline is None:
            timeout = None
        else:
            timeout = deadline - monotonic()
            if timeout <= 0:
                raise LocalRpcError(
                    DEADLINE_EXCEEDED, "Deadline Exceeded (before the call was sent)"
                )
        request = inv.request
        if isinstance(request, AsyncReplay):
            request = request.fresh()
        md = inv.metadata
        rcall = self._inner(
            request,
            timeout=timeout,
            metadata=_Metadata(*md) if md else None,
            credentials=inv.credentials,
            wait_for_ready=inv.wait_for_ready,
            compression=inv.compression,
        )
        inv.rcall = rcall
        if inv.ready is not None:
            _signal_ready(inv)
        response = await rcall
        inv.code = OK
        if self._wants:
            inv.initial_metadata, inv.trailing_metadata = await read_response_metadata(rcall)
        return response

    async def _stream_wire(self, inv: Invocation) -> Any:
        rcall = self._open(inv)
        if self._around and inv.replayable:
            await prefetch(inv, rcall)
        inv.owe = []
        return rcall


class AioUnaryUnaryMultiCallable(_AioMultiCallable, _t.AioUnaryUnaryMultiCallableBase):
    __slots__ = ()

    def __call__(  # type: ignore[override]  # grpc.aio: keyword-only
        self,
        request: Any,
        *,
        timeout: float | None = None,
        metadata: Any = None,
        credentials: Any = None,
        wait_for_ready: bool | None = None,
        compression: Any = None,
    ) -> AioUnaryUnaryCall:
        inv = Invocation(
            self._method,
            UU,
            list(metadata) if metadata else [],
            timeout,
            request,
            credentials,
            wait_for_ready,
            compression,
            self._wire,
        )
        return AioUnaryUnaryCall(self._level, inv, None if self._around else self)


class _AioRequestStreamMultiCallable(_AioMultiCallable):
    """stream-unary and stream-stream: one ``__call__`` (positional, as grpc.aio's); each class
    says which call object it opens."""

    __slots__ = ()

    def _opened(self, inv: Invocation) -> Any:
        raise NotImplementedError

    def __call__(
        self,
        request_iterator: Any = None,
        timeout: float | None = None,
        metadata: Any = None,
        credentials: Any = None,
        wait_for_ready: bool | None = None,
        compression: Any = None,
    ) -> Any:
        return self._opened(
            self._invocation(
                request_iterator,
                timeout,
                metadata,
                credentials,
                wait_for_ready,
                compression,
                self._wire,
            )
        )


class AioStreamUnaryMultiCallable(
    _AioRequestStreamMultiCallable, _t.AioStreamUnaryMultiCallableBase
):
    __slots__ = ()

    def _opened(self, inv: Invocation) -> AioStreamUnaryCall:
        return AioStreamUnaryCall(self._level, inv, None if self._around else self)


class AioUnaryStreamMultiCallable(_AioMultiCallable, _t.AioUnaryStreamMultiCallableBase):
    __slots__ = ()

    def __call__(  # type: ignore[override]  # grpc.aio: keyword-only
        self,
        request: Any,
        *,
        timeout: float | None = None,
        metadata: Any = None,
        credentials: Any = None,
        wait_for_ready: bool | None = None,
        compression: Any = None,
    ) -> AioUnaryStreamCall:
        inv = self._invocation(
            request, timeout, metadata, credentials, wait_for_ready, compression, self._wire
        )
        return AioUnaryStreamCall(self._level, inv, self._wants)


class AioStreamStreamMultiCallable(
    _AioRequestStreamMultiCallable, _t.AioStreamStreamMultiCallableBase
):
    __slots__ = ()

    def _opened(self, inv: Invocation) -> AioStreamStreamCall:
        return AioStreamStreamCall(self._level, inv, self._wants)


class WrappedAioChannel(WrappedChannelBase, grpc.aio.Channel):
    """A ``grpc.aio.Channel`` whose multicallables run a chain around the wrapped channel's own,
    cached per (method, serializer, deserializer). Closing closes the wrapped channel."""

    multicallable_classes = (
        AioUnaryUnaryMultiCallable,
        AioUnaryStreamMultiCallable,
        AioStreamUnaryMultiCallable,
        AioStreamStreamMultiCallable,
    )

    def __init__(self, channel: grpc.aio.Channel, chain: Chain) -> None:
        super().__init__(channel, chain)

    @property
    def wrapped(self) -> grpc.aio.Channel:
        """The channel underneath."""
        channel: grpc.aio.Channel = self._channel
        return channel

    def capturing_unary_unary(
        self, method: str, request_serializer: Any = None, response_deserializer: Any = None
    ) -> AioUnaryUnaryMultiCallable:
        """:meth:`unary_unary` whose calls always record the response metadata, so that after
        ``await call`` it is read with ``call.response_metadata()`` at no extra await (the app
        channel's hot path reads headers and trailers of every call). Cached like the others."""

        key = ("unary_unary+capture", method, request_serializer, response_deserializer)
        hit = self._cache.get(key)
        if hit is not None:
            cached: AioUnaryUnaryMultiCallable = hit
            return cached
        inner = self._channel.unary_unary(method, request_serializer, response_deserializer)
        made = AioUnaryUnaryMultiCallable(self._chain, inner, method, UU, capture=True)
        self._store(key, made)
        return made

    async def __aenter__(self) -> WrappedAioChannel:
        return self

    async def __aexit__(self, *exc_info: object) -> None:
        await self._channel.close(None)

    async def close(self, grace: float | None = None) -> None:
        await self._channel.close(grace)

    def get_state(self, try_to_connect: bool = False) -> grpc.ChannelConnectivity:
        state: grpc.ChannelConnectivity = self._channel.get_state(try_to_connect)
        return state

    async def wait_for_state_change(self, last_observed_state: grpc.ChannelConnectivity) -> None:
        await self._channel.wait_for_state_change(last_observed_state)

    async def channel_ready(self) -> None:
        await self._channel.channel_ready()


# ---------------------------------------------------------------------------------------------
# grpc.aio client interceptor


def _aio_error(exc: LocalRpcError) -> grpc.aio.AioRpcError:
    return grpc.aio.AioRpcError(
        exc.code(),
        _as_metadata(exc.initial_metadata()),
        _as_metadata(exc.trailing_metadata()),
        exc.details(),
        None,
    )


class AioClientInterceptor(InterceptorBase):
    """The whole chain as grpc.aio client interceptors.

    grpc.aio files each interceptor object under the *first* of the four interceptor classes it
    is an instance of, so one object cannot serve all shapes: :meth:`Chain.aio_client_interceptors`
    returns four, one per shape (:class:`AioUnaryUnaryInterceptor` and friends), sharing the chain.
    The ``intercept_*`` methods return the coroutines of :meth:`_unary`/:meth:`_stream`, which
    grpc.aio awaits.
    """

    _replay = AsyncReplay

    def __init__(self, chain: Chain) -> None:
        super().__init__(chain)
        self._finishes = chain.has_client_finish

    @staticmethod
    def _details(inv: Invocation) -> grpc.aio.ClientCallDetails:
        return grpc.aio.ClientCallDetails(
            inv.method.encode(),  # type: ignore[arg-type]  # grpc.aio's core wants bytes here
            remaining(inv),
            grpc.aio.Metadata(*inv.metadata),  # grpc.aio's calls need a Metadata, never None
            inv.credentials,
            inv.wait_for_ready,
        )

    async def _wire_unary(self, inv: Invocation) -> Any:
        rcall = await inv.cont(self._details(inv), _request_of(inv))
        inv.rcall = rcall
        response = await rcall
        inv.code = OK
        if self._wants:
            inv.initial_metadata, inv.trailing_metadata = await read_response_metadata(rcall)
        return response

    async def _wire_stream(self, inv: Invocation) -> Any:
        rcall = await inv.cont(self._details(inv), _request_of(inv))
        if self._around:
            await prefetch(inv, rcall)
        inv.owe = []
        return rcall

    async def _unary(self, inv: Invocation) -> Any:
        try:
            await self._level.run_async(inv)
        except LocalRpcError as exc:
            raise _aio_error(exc) from None
        return inv.rcall

    async def _stream(self, inv: Invocation) -> Any:
        try:
            rcall = await self._level.run_async(inv)
        except LocalRpcError as exc:
            raise _aio_error(exc) from None
        first = inv.first
        inv.first = NOTHING
        if not self._finishes and first is NOTHING:
            return rcall  # nothing to run at the end: hand grpc its own call back
        # The stream is committed (no retry sends it again). The live grpcio call holds the
        # Deferred below until it ends; through inv, grpc's continuation and write-API request
        # generator would hold grpc's intercepted call and keep a dropped stream alive.
        inv.cont = None
        inv.request = None
        deferred = Deferred(inv, self._wants)
        deferred.watch(rcall)
        rcall.add_done_callback(deferred.on_aio_done)
        if inv.shape is US:
            return _InterceptedUnaryStream(rcall, first, deferred)
        return _InterceptedStreamStream(rcall, first, deferred)


def _fire_done(ref: Callable[[], _InterceptedStream | None], _rcall: Any) -> None:
    stream = ref()
    if stream is not None:
        stream._run_callbacks()


class _InterceptedStream:
    """The call the interceptor hands grpc.aio for a response stream with finish hooks.

    Not a bare async iterator: grpc.aio would wrap one together with the grpcio call underneath
    and register the intercepted call's done callbacks (the channel's own among them) on that
    call, which grpc keeps alive until the RPC ends. The intercepted call, our responses and the
    slot would then stay for good once the caller dropped the stream. Here those callbacks are
    kept on this object and the grpcio call only holds it weakly, so a dropped stream is garbage,
    and being collected cancels the RPC and finishes the chain (grpc's intercepted call cancels
    this object in its ``__del__``; this object's own ``__del__`` is the backstop).
    """

    __slots__ = ("__weakref__", "_callbacks", "_deferred", "_rcall", "_responses")

    def __init__(self, rcall: Any, first: Any, deferred: Deferred) -> None:
        self._rcall = rcall
        self._deferred = deferred
        self._responses = _responses(rcall, first, deferred)
        self._callbacks: list[Callable[[Any], None]] | None = None

    def _run_callbacks(self) -> None:
        callbacks = self._callbacks
        if callbacks:
            self._callbacks = None
            for callback in callbacks:
                callback(self)

    def __del__(self) -> None:
        deferred = getattr(self, "_deferred", None)
        if deferred is None:
            return
        rcall = self._rcall
        if not deferred.done and not rcall.done():
            # Recorded first, so the done callback cancel() fires finds nothing left to do (it
            # would start a task, and a collection may run where no event loop is).
            deferred.complete_cancelled("Cancelled upon garbage collection")
            rcall.cancel()
        if self._callbacks:
            # The grpcio call could not reach this object any more to run them.
            self._run_callbacks()

    # -- grpc.aio.Call
    def cancel(self) -> bool:
        cancelled = bool(self._rcall.cancel())
        if cancelled:
            self._deferred.complete_cancelled("Locally cancelled by application")
        return cancelled

    def cancelled(self) -> bool:
        return bool(self._rcall.cancelled())

    def done(self) -> bool:
        return bool(self._rcall.done())

    def add_done_callback(self, callback: Callable[[Any], None]) -> None:
        if self._rcall.done():
            callback(self)
            return
        if self._callbacks is None:
            self._callbacks = []
            self._rcall.add_done_callback(functools.partial(_fire_done, weakref.ref(self)))
        self._callbacks.append(callback)

    def time_remaining(self) -> float | None:
        remaining_time: float | None = self._rcall.time_remaining()
        return remaining_time

    async def initial_metadata(self) -> grpc.aio.Metadata:
        md: grpc.aio.Metadata = await self._rcall.initial_metadata()
        return md

    async def trailing_metadata(self) -> grpc.aio.Metadata:
        md: grpc.aio.Metadata = await self._rcall.trailing_metadata()
        return md

    async def code(self) -> grpc.StatusCode:
        code: grpc.StatusCode = await self._rcall.code()
        return code

    async def details(self) -> str:
        details: str = await self._rcall.details()
        return details

    async def debug_error_string(self) -> str | None:
        text: str | None = await self._rcall.debug_error_string()
        return text

    async def wait_for_connection(self) -> None:
        await self._rcall.wait_for_connection()

    def __aiter__(self) -> AsyncIterator[Any]:
        return self._responses

    async def read(self) -> Any:
        try:
            return await self._responses.__anext__()
        except StopAsyncIteration:
            return EOF

    # grpc.aio's intercepted stream-stream call feeds write() through its own request iterator;
    # these serve anyone holding this object directly.
    async def write(self, request: Any) -> None:
        await self._rcall.write(request)

    async def done_writing(self) -> None:
        await self._rcall.done_writing()

    @property
    def _done_writing_flag(self) -> bool:
        flag: bool = self._rcall._done_writing_flag
        return flag


class _InterceptedUnaryStream(_InterceptedStream, _t.AioUnaryStreamCallBase):
    __slots__ = ()


class _InterceptedStreamStream(_InterceptedStream, _t.AioStreamStreamCallBase):
    __slots__ = ()


async def _responses(rcall: Any, first: Any, deferred: Deferred) -> AsyncIterator[Any]:
    """The response messages of an intercepted stream; finishes the chain when they end."""
    try:
        if first is not NOTHING:
            if first is END:
                await _complete_ok(rcall, deferred)
                return
            yield first
        while True:
            msg = await rcall.read()
            if msg is EOF:
                await _complete_ok(rcall, deferred)
                return
            yield msg
    except grpc.RpcError as exc:
        deferred.complete_error(exc)
        raise
    except (asyncio.CancelledError, GeneratorExit):
        rcall.cancel()
        deferred.complete_cancelled("Cancelled")
        raise


async def _complete_ok(rcall: Any, deferred: Deferred) -> None:
    if deferred.done:
        return
    if deferred.wants:
        deferred.complete_ok(*await read_response_metadata(rcall))
    else:
        deferred.complete_ok()


class AioUnaryUnaryInterceptor(AioClientInterceptor, _t.AioUnaryUnaryClientInterceptor):
    """The chain for unary-unary calls of a grpc.aio channel."""


class AioUnaryStreamInterceptor(AioClientInterceptor, _t.AioUnaryStreamClientInterceptor):
    """The chain for unary-stream calls of a grpc.aio channel."""


class AioStreamUnaryInterceptor(AioClientInterceptor, _t.AioStreamUnaryClientInterceptor):
    """The chain for stream-unary calls of a grpc.aio channel."""


class AioStreamStreamInterceptor(AioClientInterceptor, _t.AioStreamStreamClientInterceptor):
    """The chain for stream-stream calls of a grpc.aio channel."""


def aio_client_interceptors(chain: Chain) -> list[AioClientInterceptor]:
    """The four per-shape grpc.aio interceptors of ``chain``."""
    return [
        AioUnaryUnaryInterceptor(chain),
        AioUnaryStreamInterceptor(chain),
        AioStreamUnaryInterceptor(chain),
        AioStreamStreamInterceptor(chain),
    ]
