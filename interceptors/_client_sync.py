"""Sync client adapters: the channel wrapper (``Chain.wrap``) and the grpcio client interceptor.

Both feed one :class:`~grpc_channel.interceptors._run.Invocation` through the chain's levels; they
differ only in the *wire*: the wrapper calls the real multicallable (cached per method), the
interceptor calls grpcio's ``continuation``.

Calls with a streaming response return a :class:`ClientStream`: an iterator that is also a
``grpc.Call`` and ``grpc.Future`` like grpcio's own. The chain's finish hooks run when the stream
ends: exhausted, failed, cancelled with ``cancel()``, terminated by the deadline while nobody reads
(a ``grpc.RpcContext.add_callback`` backstop), or garbage collected (the call is cancelled then).
"""

from __future__ import annotations

import collections
import concurrent.futures
import threading
import types
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING, Any

import grpc

from . import _grpc_types as _t
from ._client_shared import (
    SU,
    InterceptorBase,
    MultiCallableBase,
    ReplayBase,
    cancel_on_collection,
)
from ._client_shared import (
    request_of as _request_of,
)
from ._errors import LocalRpcError
from ._policy import CallShape
from ._response_metadata import ended_call_metadata
from ._run import (
    DEADLINE_EXCEEDED,
    END,
    NOTHING,
    OK,
    Deferred,
    Invocation,
    Level,
    monotonic,
    remaining,
)
from ._wrapped_channel import WrappedChannelBase

if TYPE_CHECKING:
    from ._chain import Chain


class Replay(ReplayBase):
    """:class:`ReplayBase` over a sync iterable; attempts may iterate from different threads."""

    __slots__ = ("_lock",)

    def __init__(self, source: Any) -> None:
        super().__init__(iter(source))
        self._lock = threading.Lock()

    def fresh(self) -> Iterator[Any]:
        """The messages from the first on: the kept ones, then more pulled from the source."""
        i = 0
        while True:
            with self._lock:
                item = self._at(i)
                if item is NOTHING:
                    item = self._kept(next(self._source, END))
            if item is END:
                return
            i += 1
            yield item


def _metadata_of(inv: Invocation) -> Any:
    md = inv.metadata
    return tuple(md) if md else None


class _CallGetters:
    """``grpc.Call``'s metadata and status getters, answered by the object :meth:`_call` names
    (the grpcio call underneath, or the error that stands for a call that never ran)."""

    def _call(self) -> Any:
        raise NotImplementedError

    def initial_metadata(self) -> Any:
        return self._call().initial_metadata()

    def trailing_metadata(self) -> Any:
        return self._call().trailing_metadata()

    def code(self) -> grpc.StatusCode:
        code: grpc.StatusCode = self._call().code()
        return code

    def details(self) -> str:
        details: str = self._call().details()
        return details


class ClientStream(_CallGetters, grpc.Call, _t.Future):
    """A response stream run through the chain (iterator + ``grpc.Call`` + ``grpc.Future``)."""

    def __init__(self, level: Level, inv: Invocation, wants: bool) -> None:
        self._deferred = deferred = Deferred(inv, wants)
        self._inv = inv
        self._rcall: Any = None
        self._error: BaseException | None = None
        self._first: Any = NOTHING
        try:
            rcall = level.run(inv)
        except grpc.RpcError as exc:
            # Refused locally or failed before any message: grpcio's streams raise on iteration.
            self._error = exc
            deferred.done = True
            return
        self._rcall = rcall
        self._first = inv.first
        inv.first = NOTHING
        deferred.watch(rcall)
        add_callback = getattr(rcall, "add_callback", None)
        if add_callback is not None:
            add_callback(deferred.on_sync_terminated)

    # -- iteration
    def __iter__(self) -> ClientStream:
        return self

    def __next__(self) -> Any:
        if self._error is not None:
            raise self._error
        first = self._first
        if first is not NOTHING:
            self._first = NOTHING
            if first is not END:
                return first
            self._complete_ok()
            raise StopIteration
        try:
            return next(self._rcall)
        except StopIteration:
            self._complete_ok()
            raise
        except grpc.RpcError as exc:
            self._deferred.complete_error(exc)
            raise
        except BaseException as exc:
            self._rcall.cancel()
            self._deferred.complete_error(exc)
            raise

    next = __next__

    def _complete_ok(self) -> None:
        deferred = self._deferred
        if deferred.done:
            return
        if deferred.wants:
            rcall = self._rcall
            deferred.complete_ok(*ended_call_metadata(rcall))
        else:
            deferred.complete_ok()

    def __del__(self) -> None:
        cancel_on_collection(getattr(self, "_deferred", None), getattr(self, "_rcall", None))

    # -- grpc.RpcContext / grpc.Call
    def is_active(self) -> bool:
        return self._rcall is not None and bool(self._rcall.is_active())

    def time_remaining(self) -> Any:
        if self._rcall is None:
            return None
        return self._rcall.time_remaining()

    def cancel(self) -> bool:
        if self._rcall is None:
            return False
        cancelled = bool(self._rcall.cancel())
        if cancelled:
            self._deferred.complete_cancelled("Locally cancelled by application")
        return cancelled

    def add_callback(self, callback: Callable[[], None]) -> bool:
        if self._rcall is None:
            callback()
            return True
        return bool(self._rcall.add_callback(callback))

    def _call(self) -> Any:
        # Without a grpcio call (refused, or failed before one existed) the error answers.
        return self._error if self._rcall is None else self._rcall

    # -- grpc.Future (as grpcio's stream objects offer it)
    def cancelled(self) -> bool:
        return self._rcall is not None and bool(self._rcall.cancelled())

    def running(self) -> bool:
        return self._rcall is not None and bool(self._rcall.running())

    def done(self) -> bool:
        return self._rcall is None or bool(self._rcall.done())

    def result(self, timeout: float | None = None) -> Any:
        if self._rcall is None:
            raise self._call()
        return self._rcall.result(timeout)

    def exception(self, timeout: float | None = None) -> Any:
        if self._rcall is None:
            return self._error
        return self._rcall.exception(timeout)

    def traceback(self, timeout: float | None = None) -> types.TracebackType | None:
        if self._rcall is None:
            return self._error.__traceback__ if self._error is not None else None
        tb: types.TracebackType | None = self._rcall.traceback(timeout)
        return tb

    def add_done_callback(self, fn: Callable[[Any], None]) -> None:
        if self._rcall is None:
            fn(self)
            return
        self._rcall.add_done_callback(lambda _f: fn(self))


class ChainFuture(_CallGetters, grpc.Call, _t.Future):
    """The future of a unary-response call: grpcio's future, with the chain finished before
    ``result()``/``exception()`` return (so a limiter's slot is free when the caller resumes)."""

    def __init__(self, inner: Any, deferred: Deferred | None) -> None:
        self._inner = inner
        self._deferred = deferred

    def _settle(self) -> None:
        deferred = self._deferred
        if deferred is not None and not deferred.done and self._inner.done():
            deferred.complete_from_future(self._inner)

    def result(self, timeout: float | None = None) -> Any:
        try:
            return self._inner.result(timeout)
        finally:
            self._settle()

    def exception(self, timeout: float | None = None) -> Any:
        try:
            return self._inner.exception(timeout)
        finally:
            self._settle()

    def traceback(self, timeout: float | None = None) -> types.TracebackType | None:
        try:
            tb: types.TracebackType | None = self._inner.traceback(timeout)
            return tb
        finally:
            self._settle()

    def cancel(self) -> bool:
        return bool(self._inner.cancel())

    def cancelled(self) -> bool:
        return bool(self._inner.cancelled())

    def running(self) -> bool:
        return bool(self._inner.running())

    def done(self) -> bool:
        return bool(self._inner.done())

    def add_done_callback(self, fn: Callable[[Any], None]) -> None:
        self._inner.add_done_callback(lambda _f: fn(self))

    def is_active(self) -> bool:
        return bool(getattr(self._inner, "is_active", lambda: False)())

    def time_remaining(self) -> Any:
        return getattr(self._inner, "time_remaining", lambda: None)()

    def add_callback(self, callback: Callable[[], None]) -> bool:
        return bool(self._inner.add_callback(callback))

    def _call(self) -> Any:
        return self._inner


class FailedFuture(_CallGetters, grpc.Call, _t.Future):
    """What ``future()`` returns when the chain refused the call before the wire."""

    def __init__(self, error: grpc.RpcError) -> None:
        self._error: Any = error

    def result(self, timeout: float | None = None) -> Any:
        raise self._error

    def exception(self, timeout: float | None = None) -> Any:
        return self._error

    def traceback(self, timeout: float | None = None) -> types.TracebackType | None:
        tb: types.TracebackType | None = self._error.__traceback__
        return tb

    def cancel(self) -> bool:
        return False

    def cancelled(self) -> bool:
        return False

    def running(self) -> bool:
        return False

    def done(self) -> bool:
        return True

    def add_done_callback(self, fn: Callable[[Any], None]) -> None:
        fn(self)

    def is_active(self) -> bool:
        return False

    def time_remaining(self) -> Any:
        return None

    def add_callback(self, callback: Callable[[], None]) -> bool:
        return False

    def _call(self) -> Any:
        return self._error


class ThreadFuture(FailedFuture):
    """``future()`` of a chain with a retry policy: the whole retrying call runs on a worker
    thread (grpcio futures cannot be re-issued from a done callback)."""

    def __init__(self, inner: concurrent.futures.Future[tuple[Any, Any]]) -> None:
        self._inner = inner

    def _call(self) -> Any:
        exc = self._inner.exception()
        if exc is not None:
            return exc
        return self._inner.result()[1]

    def result(self, timeout: float | None = None) -> Any:
        try:
            return self._inner.result(timeout)[0]
        except concurrent.futures.TimeoutError:
            raise grpc.FutureTimeoutError() from None
        except concurrent.futures.CancelledError:
            raise grpc.FutureCancelledError() from None

    def exception(self, timeout: float | None = None) -> Any:
        try:
            return self._inner.exception(timeout)
        except concurrent.futures.TimeoutError:
            raise grpc.FutureTimeoutError() from None
        except concurrent.futures.CancelledError:
            raise grpc.FutureCancelledError() from None

    def traceback(self, timeout: float | None = None) -> types.TracebackType | None:
        exc = self.exception(timeout)
        return exc.__traceback__ if exc is not None else None

    def cancel(self) -> bool:
        return self._inner.cancel()

    def cancelled(self) -> bool:
        return self._inner.cancelled()

    def running(self) -> bool:
        return self._inner.running()

    def done(self) -> bool:
        return self._inner.done()

    def add_done_callback(self, fn: Callable[[Any], None]) -> None:
        self._inner.add_done_callback(lambda _f: fn(self))

    def code(self) -> grpc.StatusCode:
        exc = self._inner.exception()
        if exc is None:
            return OK
        code: grpc.StatusCode = getattr(exc, "code", lambda: grpc.StatusCode.UNKNOWN)()
        return code

    def details(self) -> str:
        exc = self._inner.exception()
        if exc is None:
            return ""
        details: str = getattr(exc, "details", lambda: str(exc))()
        return details


_executor_lock = threading.Lock()
_executor: concurrent.futures.ThreadPoolExecutor | None = None


def _retry_executor() -> concurrent.futures.ThreadPoolExecutor:
    global _executor
    with _executor_lock:
        if _executor is None:
            _executor = concurrent.futures.ThreadPoolExecutor(
                max_workers=16, thread_name_prefix="interceptors-retry"
            )
        return _executor


# ---------------------------------------------------------------------------------------------
# Channel wrapper


class _UnaryResponseMultiCallable(MultiCallableBase):
    """unary-unary and stream-unary: ``__call__``, ``with_call``, ``future`` like grpcio."""

    __slots__ = ("_wire_f",)

    _replay = Replay

    def __init__(self, chain: Chain, inner: Any, method: str, shape: CallShape) -> None:
        super().__init__(chain, inner, method, shape, chain.wants_response_metadata)
        self._wire = self._call_wire
        self._wire_f = self._future_wire

    def _call_wire(self, inv: Invocation) -> Any:
        # remaining(), _request_of() and _metadata_of() inlined: this runs on every call.
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
        if self._around and isinstance(request, Replay):
            request = request.fresh()
        md = inv.metadata
        metadata = tuple(md) if md else None
        if inv.with_call or self._wants:
            response, rcall = self._inner.with_call(
                request, timeout, metadata, inv.credentials, inv.wait_for_ready, inv.compression
            )
            inv.rcall = rcall
            if self._wants:
                inv.initial_metadata, inv.trailing_metadata = ended_call_metadata(rcall)
        else:
            response = self._inner(
                request, timeout, metadata, inv.credentials, inv.wait_for_ready, inv.compression
            )
        inv.code = OK
        return response

    def _future_wire(self, inv: Invocation) -> Any:
        timeout = remaining(inv)
        fut = self._inner.future(
            _request_of(inv),
            timeout,
            _metadata_of(inv),
            inv.credentials,
            inv.wait_for_ready,
            inv.compression,
        )
        inv.owe = []
        return fut

    def __call__(
        self,
        request: Any,
        timeout: float | None = None,
        metadata: Any = None,
        credentials: Any = None,
        wait_for_ready: bool | None = None,
        compression: Any = None,
    ) -> Any:
        if self._around and self._shape is SU:
            request = Replay(request)
        inv = Invocation(
            self._method,
            self._shape,
            list(metadata) if metadata else [],
            timeout,
            request,
            credentials,
            wait_for_ready,
            compression,
            self._wire,
        )
        return self._level.run(inv)

    def with_call(
        self,
        request: Any,
        timeout: float | None = None,
        metadata: Any = None,
        credentials: Any = None,
        wait_for_ready: bool | None = None,
        compression: Any = None,
    ) -> tuple[Any, Any]:
        inv = self._invocation(
            request, timeout, metadata, credentials, wait_for_ready, compression, self._wire
        )
        inv.with_call = True
        response = self._level.run(inv)
        return response, inv.rcall

    def future(
        self,
        request: Any,
        timeout: float | None = None,
        metadata: Any = None,
        credentials: Any = None,
        wait_for_ready: bool | None = None,
        compression: Any = None,
    ) -> Any:
        if self._around:
            return ThreadFuture(
                _retry_executor().submit(
                    self.with_call,
                    request,
                    timeout,
                    metadata,
                    credentials,
                    wait_for_ready,
                    compression,
                )
            )
        inv = self._invocation(
            request, timeout, metadata, credentials, wait_for_ready, compression, self._wire_f
        )
        try:
            fut = self._level.run(inv)
        except grpc.RpcError as exc:
            return FailedFuture(exc)
        deferred = Deferred(inv, self._wants)
        fut.add_done_callback(deferred.on_future_done)
        return ChainFuture(fut, deferred)


class UnaryUnaryMultiCallable(_UnaryResponseMultiCallable, _t.UnaryUnaryMultiCallableBase):
    __slots__ = ()


class StreamUnaryMultiCallable(_UnaryResponseMultiCallable, _t.StreamUnaryMultiCallableBase):
    __slots__ = ()


class _StreamResponseMultiCallable(MultiCallableBase):
    """unary-stream and stream-stream: calling returns a :class:`ClientStream`."""

    __slots__ = ()

    _replay = Replay

    def __init__(self, chain: Chain, inner: Any, method: str, shape: CallShape) -> None:
        super().__init__(chain, inner, method, shape, chain.wants_response_metadata)
        self._wire = self._stream_wire

    def _stream_wire(self, inv: Invocation) -> Any:
        timeout = remaining(inv)
        rcall = self._inner(
            _request_of(inv),
            timeout,
            _metadata_of(inv),
            inv.credentials,
            inv.wait_for_ready,
            inv.compression,
        )
        if self._around:
            prefetch(inv, rcall)
        inv.owe = []
        return rcall

    def __call__(
        self,
        request: Any,
        timeout: float | None = None,
        metadata: Any = None,
        credentials: Any = None,
        wait_for_ready: bool | None = None,
        compression: Any = None,
    ) -> Any:
        inv = self._invocation(
            request, timeout, metadata, credentials, wait_for_ready, compression, self._wire
        )
        return ClientStream(self._level, inv, self._wants)


def prefetch(inv: Invocation, rcall: Any) -> None:
    """Read the first response message so a retry policy knows whether the response began; an
    error before it propagates (the attempt failed and nothing reached the caller)."""
    try:
        inv.first = next(rcall)
    except StopIteration:
        inv.first = END


class UnaryStreamMultiCallable(_StreamResponseMultiCallable, _t.UnaryStreamMultiCallableBase):
    __slots__ = ()


class StreamStreamMultiCallable(_StreamResponseMultiCallable, _t.StreamStreamMultiCallableBase):
    __slots__ = ()


class WrappedChannel(WrappedChannelBase, grpc.Channel):
    """A ``grpc.Channel`` whose multicallables run a chain around the wrapped channel's own.

    Multicallables are cached per (method, serializer, deserializer), so generated stubs and
    generic ``channel.unary_unary(path)`` calls share one. ``close()``, ``subscribe()`` and the
    context manager act on the wrapped channel.
    """

    multicallable_classes = (
        UnaryUnaryMultiCallable,
        UnaryStreamMultiCallable,
        StreamUnaryMultiCallable,
        StreamStreamMultiCallable,
    )

    def __init__(self, channel: grpc.Channel, chain: Chain) -> None:
        super().__init__(channel, chain)

    @property
    def wrapped(self) -> grpc.Channel:
        """The channel underneath."""
        channel: grpc.Channel = self._channel
        return channel

    def subscribe(
        self, callback: Callable[[grpc.ChannelConnectivity], None], try_to_connect: bool = False
    ) -> None:
        self._channel.subscribe(callback, try_to_connect)

    def unsubscribe(self, callback: Callable[[grpc.ChannelConnectivity], None]) -> None:
        self._channel.unsubscribe(callback)

    def close(self) -> None:
        self._channel.close()

    def __enter__(self) -> WrappedChannel:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._channel.close()


# ---------------------------------------------------------------------------------------------
# grpcio client interceptor


class _Details(
    collections.namedtuple(
        "_Details",
        ("method", "timeout", "metadata", "credentials", "wait_for_ready", "compression"),
    ),
    grpc.ClientCallDetails,
):
    pass


class ClientInterceptor(
    InterceptorBase,
    _t.UnaryUnaryClientInterceptor,
    _t.UnaryStreamClientInterceptor,
    _t.StreamUnaryClientInterceptor,
    _t.StreamStreamClientInterceptor,
):
    """The whole chain as one grpcio client interceptor, for ``grpc.intercept_channel``.

    With ``future()``, finish hooks run from grpcio's done callback (so they may lag the moment
    ``result()`` returns by a little); with a retry policy in the chain, ``future()`` waits for
    the retrying call inside the interceptor, because grpcio gives an interceptor no other way to
    decide on a retry.
    """

    _replay = Replay

    @staticmethod
    def _details(inv: Invocation) -> _Details:
        return _Details(
            inv.method,
            remaining(inv),
            _metadata_of(inv),
            inv.credentials,
            inv.wait_for_ready,
            inv.compression,
        )

    def _wire_unary(self, inv: Invocation) -> Any:
        outcome = inv.cont(self._details(inv), _request_of(inv))
        if not outcome.done() and not self._around:
            # future(): finish from the done callback registered by the caller of the chain.
            inv.owe = []
            return outcome
        exc = outcome.exception()
        if exc is not None:
            raise exc
        inv.rcall = outcome
        inv.code = OK
        if self._wants:
            inv.initial_metadata, inv.trailing_metadata = ended_call_metadata(outcome)
        return outcome

    def _wire_stream(self, inv: Invocation) -> Any:
        rcall = inv.cont(self._details(inv), _request_of(inv))
        if self._around:
            prefetch(inv, rcall)
        inv.owe = []
        return rcall

    def _unary(self, inv: Invocation) -> Any:
        outcome = self._level.run(inv)
        if inv.owe is not None:
            deferred = Deferred(inv, self._wants)
            outcome.add_done_callback(deferred.on_future_done)
        return outcome

    def _stream(self, inv: Invocation) -> ClientStream:
        return ClientStream(self._level, inv, self._wants)
