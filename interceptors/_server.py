"""Server adapters: the chain as a ``grpc.ServerInterceptor`` and a ``grpc.aio.ServerInterceptor``.

``intercept_service`` runs on grpcio's dispatch path, so it only swaps the method handler for one
whose behaviour runs the chain; all per-call work happens in the handler's own thread (sync) or task
(aio). Wrapped handlers are cached per method and reused while the inner handler object is the same
(generated servicers and ``grpc.method_handlers_generic_handler`` return the same object each
time), so a call allocates one :class:`~grpc_channel.interceptors._policy.ServerCall` and nothing
else. The cache is a :class:`~grpc_channel.interceptors._bounded.BoundedCache`: a catch-all handler
serves any path a caller sends, and each path must not stay in memory for good.

Context: when any server policy sets ``needs_context = True`` (tracing does), a sync handler's
policies, the handler and every step of its response stream run inside one per-call copy of the
``contextvars`` context, so what a policy attaches (the current span) is seen by the handler and
never leaks into the next call on the same pooled thread. aio handlers run in their own task
already; the policies and the handler share it.

In aio servers a handler written as a plain function is called on the event loop by the wrapped
(async) handler.
"""

from __future__ import annotations

import contextvars
import inspect
from collections.abc import AsyncIterator, Generator, Iterator
from typing import Any

import grpc
import grpc.aio

from . import _grpc_types as _t
from ._bounded import BoundedCache
from ._errors import LocalRpcError
from ._policy import CallShape, ServerCall
from ._run import ServerRun, monotonic

_SHAPES = {
    (False, False): CallShape.UNARY_UNARY,
    (False, True): CallShape.UNARY_STREAM,
    (True, False): CallShape.STREAM_UNARY,
    (True, True): CallShape.STREAM_STREAM,
}


def _behavior(handler: Any) -> Any:
    return (
        handler.unary_unary or handler.unary_stream or handler.stream_unary or handler.stream_stream
    )


def _metadata(context: Any) -> tuple[tuple[str, str | bytes], ...]:
    md = context.invocation_metadata()
    if not md:
        return ()
    return md if isinstance(md, tuple) else tuple(md)


class _SyncMethod:
    """Per-method wrapped behaviour for sync servers."""

    __slots__ = ("behavior", "method", "run", "shape")

    def __init__(self, run: ServerRun, method: str, shape: CallShape, behavior: Any) -> None:
        self.run = run
        self.method = method
        self.shape = shape
        self.behavior = behavior

    def _enter(self, call: ServerCall) -> int:
        """Enter the policies; on refusal finish what entered and abort (raises)."""
        run = self.run
        n = 0
        try:
            for acquire, start in run.enter:
                if acquire is not None:
                    acquire(call)
                if start is not None:
                    start(call)
                n += 1
        except LocalRpcError as exc:
            run.record_refusal(call, exc)
            run.finish(call, n)
            call.context.abort(exc.code(), exc.details())
            raise  # abort raised already; kept for the type checker
        except BaseException as exc:
            run.record_error(call, exc)
            run.finish(call, n)
            raise
        return n

    def unary(self, request: Any, context: Any) -> Any:
        call = ServerCall(self.method, self.shape, _metadata(context), context, monotonic())
        n = self._enter(call)
        try:
            response = self.behavior(request, context)
        except BaseException as exc:
            self.run.record_error(call, exc)
            self.run.finish(call, n)
            raise
        self.run.record_ok(call)
        self.run.finish(call, n)
        return response

    def stream(self, request: Any, context: Any) -> Generator[Any, None, None]:
        call = ServerCall(self.method, self.shape, _metadata(context), context, monotonic())
        n = self._enter(call)
        try:
            yield from self.behavior(request, context)
        except BaseException as exc:
            self.run.record_error(call, exc)
            self.run.finish(call, n)
            raise
        self.run.record_ok(call)
        self.run.finish(call, n)

    # -- the same inside a per-call contextvars copy
    def unary_ctx(self, request: Any, context: Any) -> Any:
        return contextvars.copy_context().run(self.unary, request, context)

    def stream_ctx(self, request: Any, context: Any) -> Iterator[Any]:
        ctx = contextvars.copy_context()
        steps = self.stream(request, context)
        try:
            while True:
                try:
                    item = ctx.run(next, steps)
                except StopIteration:
                    return
                yield item
        finally:
            # Closing (client gone) must also run inside the call's context.
            ctx.run(steps.close)


class _AioMethod:
    """Per-method wrapped behaviour for aio servers (one task per call already)."""

    __slots__ = ("behavior", "method", "run", "shape")

    def __init__(self, run: ServerRun, method: str, shape: CallShape, behavior: Any) -> None:
        self.run = run
        self.method = method
        self.shape = shape
        self.behavior = behavior

    async def _enter(self, call: ServerCall) -> int:
        run = self.run
        n = 0
        try:
            for try_acquire, acquire, start in run.enter_async:
                if acquire is not None and (try_acquire is None or not try_acquire(call)):
                    await acquire(call)
                if start is not None:
                    start(call)
                n += 1
        except LocalRpcError as exc:
            run.record_refusal(call, exc)
            run.finish(call, n)
            await call.context.abort(exc.code(), exc.details())
            raise  # abort raised already
        except BaseException as exc:
            run.record_error(call, exc)
            run.finish(call, n)
            raise
        return n

    async def unary(self, request: Any, context: Any) -> Any:
        call = ServerCall(self.method, self.shape, _metadata(context), context, monotonic())
        n = await self._enter(call)
        try:
            response = self.behavior(request, context)
            if inspect.isawaitable(response):
                response = await response
        except BaseException as exc:
            self.run.record_error(call, exc)
            self.run.finish(call, n)
            raise
        self.run.record_ok(call)
        self.run.finish(call, n)
        return response

    async def stream(self, request: Any, context: Any) -> AsyncIterator[Any]:
        call = ServerCall(self.method, self.shape, _metadata(context), context, monotonic())
        n = await self._enter(call)
        try:
            produced = self.behavior(request, context)
            if hasattr(produced, "__aiter__"):
                async for item in produced:
                    yield item
            elif inspect.isawaitable(produced):
                # A handler that writes with context.write() and returns nothing.
                await produced
            elif produced is not None:
                for item in produced:
                    yield item
        except BaseException as exc:
            self.run.record_error(call, exc)
            self.run.finish(call, n)
            raise
        self.run.record_ok(call)
        self.run.finish(call, n)


def _rebuild(handler: Any, behavior: Any) -> grpc.RpcMethodHandler[Any, Any]:
    shape = _SHAPES[(bool(handler.request_streaming), bool(handler.response_streaming))]
    des = handler.request_deserializer
    ser = handler.response_serializer
    if shape is CallShape.UNARY_UNARY:
        return grpc.unary_unary_rpc_method_handler(behavior, des, ser)
    if shape is CallShape.UNARY_STREAM:
        return grpc.unary_stream_rpc_method_handler(behavior, des, ser)
    if shape is CallShape.STREAM_UNARY:
        return grpc.stream_unary_rpc_method_handler(behavior, des, ser)
    return grpc.stream_stream_rpc_method_handler(behavior, des, ser)


class ServerInterceptor(_t.ServerInterceptorBase):
    """The chain's server policies as one ``grpc.ServerInterceptor`` (for ``grpc.server``)."""

    def __init__(self, run: ServerRun, needs_context: bool) -> None:
        self._run = run
        self._needs_context = needs_context
        # method -> (inner handler, wrapped handler); hits read the plain dict ``_wrapped``.
        self._cache: BoundedCache[str, tuple[Any, Any]] = BoundedCache()
        self._wrapped = self._cache.data
        self._passthrough = not run.policies

    def intercept_service(self, continuation: Any, handler_call_details: Any) -> Any:
        handler = continuation(handler_call_details)
        if handler is None or self._passthrough:
            return handler
        method = handler_call_details.method
        hit = self._wrapped.get(method)
        if hit is not None and hit[0] is handler:
            return hit[1]
        shape = _SHAPES[(bool(handler.request_streaming), bool(handler.response_streaming))]
        m = _SyncMethod(self._run, method, shape, _behavior(handler))
        if shape.response_streaming:
            behavior = m.stream_ctx if self._needs_context else m.stream
        else:
            behavior = m.unary_ctx if self._needs_context else m.unary
        wrapped = _rebuild(handler, behavior)
        self._cache[method] = (handler, wrapped)
        return wrapped


class AioServerInterceptor(_t.AioServerInterceptorBase):
    """The chain's server policies as one ``grpc.aio.ServerInterceptor`` (``grpc.aio.server``)."""

    def __init__(self, run: ServerRun) -> None:
        self._run = run
        self._cache: BoundedCache[str, tuple[Any, Any]] = BoundedCache()
        self._wrapped = self._cache.data
        self._passthrough = not run.policies

    async def intercept_service(self, continuation: Any, handler_call_details: Any) -> Any:
        handler = await continuation(handler_call_details)
        if handler is None or self._passthrough:
            return handler
        method = handler_call_details.method
        if isinstance(method, bytes):
            method = method.decode()
        hit = self._wrapped.get(method)
        if hit is not None and hit[0] is handler:
            return hit[1]
        shape = _SHAPES[(bool(handler.request_streaming), bool(handler.response_streaming))]
        m = _AioMethod(self._run, method, shape, _behavior(handler))
        wrapped = _rebuild(handler, m.stream if shape.response_streaming else m.unary)
        self._cache[method] = (handler, wrapped)
        return wrapped
