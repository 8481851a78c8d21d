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

A call's flow (enter the policies, run the handler, record the outcome, finish) is written once in
``_Method``; ``_SyncMethod`` and ``_AioMethod`` add only the I/O: waiting for a slot, aborting,
and the handler's sync or async form.
"""

from __future__ import annotations

import contextvars
import inspect
from collections.abc import AsyncIterator, Awaitable, Callable, Generator, Iterator
from typing import Any, NoReturn

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

# One policy's entry: (acquire, start). ``acquire`` returns False when permission needs waiting.
_Step = tuple[Callable[[ServerCall], Any] | None, Callable[[ServerCall], Any] | None]


def _behavior(handler: Any) -> Any:
    return (
        handler.unary_unary or handler.unary_stream or handler.stream_unary or handler.stream_stream
    )


def _no_slot(call: ServerCall) -> bool:
    # An aio blocking policy without server_try_acquire always waits.
    return False


class _Method:
    """One method's wrapped behaviour: every decision a call makes, for either driver.

    A call is ``enter`` (build the ServerCall, acquire and start each policy in order), the
    behaviour, then ``failed`` or the run's ``record_ok`` and ``finish`` (record the outcome,
    finish the entered policies in reverse; called inline by the drivers, as one more frame costs
    2-3% of a call in a tight loop). The drivers below add only what differs: waiting
    (aio), aborting (sync ``abort`` raises, aio's is awaited), the behaviour's own form and the
    context copy.
    """

    __slots__ = ("behavior", "method", "run", "shape", "steps", "waits")

    def __init__(
        self,
        run: ServerRun,
        method: str,
        shape: CallShape,
        behavior: Any,
        steps: tuple[_Step, ...],
        waits: tuple[Any, ...] = (),
    ) -> None:
        self.run = run
        self.method = method
        self.shape = shape
        self.behavior = behavior
        self.steps = steps
        self.waits = waits  # aio: what to await when ``steps[i]`` found no permission

    def enter(
        self, context: Any, call: ServerCall | None = None, n: int = 0
    ) -> tuple[ServerCall, int]:
        """Build the call (unless resuming ``call``), enter the policies from the ``n``-th on,
        and return the call and how many policies have entered.

        Stops early at a policy whose acquire returned False (aio: no permission without
        waiting); the aio driver waits, then resumes here with the call, past that acquire. On a
        refusal or an error, records it, finishes what entered and re-raises.
        """
        if call is None:
            md = context.invocation_metadata()
            if not md:
                md = ()
            elif not isinstance(md, tuple):
                md = tuple(md)
            call = ServerCall(self.method, self.shape, md, context, monotonic())
            steps = self.steps
        else:
            # Resuming: policy ``n`` has its permission now, so its acquire is left out.
            rest = self.steps[n:]
            steps = ((None, rest[0][1]), *rest[1:])
        try:
            for acquire, start in steps:
                if acquire is not None and acquire(call) is False:
                    return call, n
                if start is not None:
                    start(call)
                n += 1
        except BaseException as exc:
            self.stopped(call, n, exc)
            raise
        return call, n

    def stopped(self, call: ServerCall, n: int, exc: BaseException) -> None:
        """Entering ended in a refusal (``LocalRpcError``) or an error."""
        if isinstance(exc, LocalRpcError):
            self.run.record_refusal(call, exc)
        else:
            self.run.record_error(call, exc)
        self.run.finish(call, n)

    def failed(self, call: ServerCall, n: int, exc: BaseException) -> None:
        self.run.record_error(call, exc)
        self.run.finish(call, n)


class _SyncMethod(_Method):
    """The sync driver: runs in the handler's pooled thread."""

    __slots__ = ()

    def stopped(self, call: ServerCall, n: int, exc: BaseException) -> None:
        _Method.stopped(self, call, n, exc)
        if isinstance(exc, LocalRpcError):
            call.context.abort(exc.code(), exc.details())  # raises

    def unary(self, request: Any, context: Any) -> Any:
        call, n = self.enter(context)
        try:
            response = self.behavior(request, context)
        except BaseException as exc:
            self.failed(call, n, exc)
            raise
        self.run.record_ok(call)
        self.run.finish(call, n)
        return response

    def stream(self, request: Any, context: Any) -> Generator[Any, None, None]:
        call, n = self.enter(context)
        try:
            yield from self.behavior(request, context)
        except BaseException as exc:
            self.failed(call, n, exc)
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


class _AioMethod(_Method):
    """The aio driver: runs in the call's own task."""

    __slots__ = ()

    def _admit(self, context: Any) -> tuple[ServerCall, int] | Awaitable[tuple[ServerCall, int]]:
        """Enter every policy: the call and the count, or an awaitable for them when a policy
        must wait for permission or a refusal must be aborted (no coroutine on the common
        path)."""
        try:
            entered = self.enter(context)
        except LocalRpcError as exc:
            return self._abort(context, exc)
        return entered if entered[1] == len(self.steps) else self._wait(*entered)

    async def _wait(self, call: ServerCall, n: int) -> tuple[ServerCall, int]:
        try:
            while n < len(self.steps):
                try:
                    await self.waits[n](call)
                except BaseException as exc:
                    self.stopped(call, n, exc)
                    raise
                call, n = self.enter(call.context, call, n)
        except LocalRpcError as exc:
            await self._abort(call.context, exc)
        return call, n

    @staticmethod
    async def _abort(context: Any, exc: LocalRpcError) -> NoReturn:
        await context.abort(exc.code(), exc.details())
        raise exc  # abort raised already

    async def unary(self, request: Any, context: Any) -> Any:
        entered = self._admit(context)
        if not isinstance(entered, tuple):
            entered = await entered
        call, n = entered
        try:
            response = self.behavior(request, context)
            if inspect.isawaitable(response):
                response = await response
        except BaseException as exc:
            self.failed(call, n, exc)
            raise
        self.run.record_ok(call)
        self.run.finish(call, n)
        return response

    async def stream(self, request: Any, context: Any) -> AsyncIterator[Any]:
        entered = self._admit(context)
        if not isinstance(entered, tuple):
            entered = await entered
        call, n = entered
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
            self.failed(call, n, exc)
            raise
        self.run.record_ok(call)
        self.run.finish(call, n)


def _rebuild(handler: Any, shape: CallShape, behavior: Any) -> grpc.RpcMethodHandler[Any, Any]:
    des = handler.request_deserializer
    ser = handler.response_serializer
    if shape is CallShape.UNARY_UNARY:
        return grpc.unary_unary_rpc_method_handler(behavior, des, ser)
    if shape is CallShape.UNARY_STREAM:
        return grpc.unary_stream_rpc_method_handler(behavior, des, ser)
    if shape is CallShape.STREAM_UNARY:
        return grpc.stream_unary_rpc_method_handler(behavior, des, ser)
    return grpc.stream_stream_rpc_method_handler(behavior, des, ser)


class _Handlers:
    """The wrapped-handler cache both adapters keep; a miss builds through ``_behaviour``."""

    def __init__(self, run: ServerRun) -> None:
        self._run = run
        # method -> (inner handler, wrapped handler); hits read the plain dict ``_wrapped``.
        self._cache: BoundedCache[str, tuple[Any, Any]] = BoundedCache()
        self._wrapped = self._cache.data
        self._passthrough = not run.policies

    def _behaviour(self, method: str, shape: CallShape, inner: Any) -> Any:
        raise NotImplementedError

    def _add(self, method: str, handler: Any) -> Any:
        shape = _SHAPES[(bool(handler.request_streaming), bool(handler.response_streaming))]
        wrapped = _rebuild(handler, shape, self._behaviour(method, shape, _behavior(handler)))
        self._cache[method] = (handler, wrapped)
        return wrapped


class ServerInterceptor(_Handlers, _t.ServerInterceptorBase):
    """The chain's server policies as one ``grpc.ServerInterceptor`` (for ``grpc.server``)."""

    def __init__(self, run: ServerRun, needs_context: bool) -> None:
        super().__init__(run)
        self._needs_context = needs_context

    def _behaviour(self, method: str, shape: CallShape, inner: Any) -> Any:
        m = _SyncMethod(self._run, method, shape, inner, self._run.enter)
        if shape.response_streaming:
            return m.stream_ctx if self._needs_context else m.stream
        return m.unary_ctx if self._needs_context else m.unary

    def intercept_service(self, continuation: Any, handler_call_details: Any) -> Any:
        handler = continuation(handler_call_details)
        if handler is None or self._passthrough:
            return handler
        method = handler_call_details.method
        hit = self._wrapped.get(method)
        if hit is not None and hit[0] is handler:
            return hit[1]
        return self._add(method, handler)


class AioServerInterceptor(_Handlers, _t.AioServerInterceptorBase):
    """The chain's server policies as one ``grpc.aio.ServerInterceptor`` (``grpc.aio.server``)."""

    def __init__(self, run: ServerRun) -> None:
        super().__init__(run)
        # Acquire by try_acquire (False: wait on the matching entry of ``_waits``).
        self._steps = tuple(
            (None if acquire is None else try_acquire or _no_slot, start)
            for try_acquire, acquire, start in run.enter_async
        )
        self._waits = tuple(acquire for _, acquire, _ in run.enter_async)

    def _behaviour(self, method: str, shape: CallShape, inner: Any) -> Any:
        m = _AioMethod(self._run, method, shape, inner, self._steps, self._waits)
        return m.stream if shape.response_streaming else m.unary

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
        return self._add(method, handler)
