"""The asyncio app channel: :class:`AsyncChannel` and its :func:`dial` (``grpc_channel.aio.dial``).

The same channel as :class:`grpc_channel.channel.Channel` over ``grpc.aio``, with the same
semantics (see that module), and coroutines for the I/O::

    from grpc_channel import aio
    from grpc_channel.invoke import InvokeMethodRequest
    from grpc_channel.dial_options import with_insecure, with_max_concurrency

    async with aio.dial("127.0.0.1:50001", with_insecure(), with_max_concurrency(8)) as app:
        await app.wait_until_ready(10)
        response = await app.invoke_method(InvokeMethodRequest("hello"))

``dial(...)`` returns an object that is both awaitable (``channel = await aio.dial(...)``) and an
async context manager (``async with aio.dial(...) as channel``). Opening a channel is a coroutine
because ``with_block`` waits for the connection; everything else happens when awaited.

Cancellation: cancelling the task that awaits ``invoke_method`` cancels the RPC (the app sees its
call cancelled), releases the concurrency slot, and raises ``asyncio.CancelledError`` in that task
as asyncio expects; it is not turned into a response. A task waiting for a slot stops waiting.
Closing the channel ends the calls in flight (and those waiting for a slot) with a CANCELLED
response, as in the sync channel; after or during :meth:`AsyncChannel.close` nothing raises
``grpc.aio.UsageError`` (``invoke`` raises a CANCELLED ``grpc.RpcError``, ``health_probe``
answers False, ``wait_until_ready`` raises :class:`AppNotReadyError` at once).
"""

from __future__ import annotations

import asyncio
from collections.abc import Generator
from time import monotonic
from types import TracebackType
from typing import Any, cast

import grpc
from google.protobuf.message import Message

from grpc_channel import _channel_core as core
from grpc_channel._channel_core import AsyncAppChannel
from grpc_channel._engine import AsyncEngine, CallPlan, Route
from grpc_channel.call_options import CallOption, header, timeout, trailer, wait_for_ready
from grpc_channel.dial_options import DialOption, fold_dial_options, with_insecure
from grpc_channel.dialing import open_aio_channel
from grpc_channel.interceptors import (
    AioUnaryUnaryCall,
    BoundedCache,
    ConcurrencyLimit,
    MetadataPairs,
    WrappedAioChannel,
    outcome_code,
    read_response_metadata,
    time_left,
)
from grpc_channel.invoke import InvokeMethodRequest, InvokeMethodResponse
from grpc_channel.metadata import Metadata
from grpc_channel.v1 import common_pb2

__all__ = ["AsyncAppChannel", "AsyncChannel", "dial"]

_InvokeResponse = common_pb2.InvokeResponse
_OK = grpc.StatusCode.OK


class AsyncChannel:
    """An asyncio channel to an app's ``AppCallback`` service; build it with :func:`dial` or
    :meth:`AsyncChannel.local`. Use it from the event loop it was opened on. An async context
    manager: leaving the block closes it."""

    __slots__ = (
        "_captures",
        "_closed",
        "_direct",
        "_engine",
        "_fast",
        "_grpc",
        "_health_engine",
        "_health_route",
        "_invoke_mc",
        "_invoke_route",
        "_limit",
        "_plan",
        "_raise",
        "_raw_routes",
        "_target",
    )

    def __init__(
        self, target: str, grpc_channel: grpc.aio.Channel, plan: CallPlan, raise_errors: bool
    ) -> None:
        """Internal: use :func:`dial` / :meth:`local`, which open the grpcio channel."""
        self._grpc = grpc_channel
        self._target = target
        self._raise = raise_errors
        self._plan = plan
        self._engine = AsyncEngine(grpc_channel, plan)
        # Bounded: a proxy's callers choose the paths (hits read the plain dict, .data).
        self._raw_routes: BoundedCache[str, Route] = BoundedCache()
        self._limit, health = core.aio_health_channel(grpc_channel)
        self._health_engine = (
            AsyncEngine(health, plan) if health is not grpc_channel else self._engine
        )
        # HealthCheck speaks protobuf too, whatever codec is dialled.
        self._health_route = core.health_route(
            health.unary_unary(
                core.HEALTH_CHECK_PATH, core.serialize_empty, core.parse_health_response
            )
        )
        # OnInvoke always speaks protobuf (the AppCallback contract), whatever codec is dialled;
        # calls without call options skip the engine's per-call record when the dial-level plan
        # needs none (the hot path), the others go through the engine.
        invoke_mc = grpc_channel.unary_unary(
            core.ON_INVOKE_PATH, core.serialize_invoke_request, core.parse_invoke_response
        )
        self._invoke_route = core.invoke_route(invoke_mc)
        # The fast path reads headers and trailers of every call: over our policies, from the
        # call's own record (no extra awaits); over a bare grpc.aio channel, by awaiting them.
        self._captures = isinstance(grpc_channel, WrappedAioChannel)
        self._invoke_mc = (
            grpc_channel.capturing_unary_unary(
                core.ON_INVOKE_PATH, core.serialize_invoke_request, core.parse_invoke_response
            )
            if isinstance(grpc_channel, WrappedAioChannel)
            else invoke_mc
        )
        self._fast = plan.plain
        # On that path, a limit and a token (the usual policies) run inline, without the chain.
        self._direct = core.direct_invoke(grpc_channel) if self._fast else None
        self._closed = False

    @classmethod
    async def open(cls, target: str, *dial_options: DialOption) -> AsyncChannel:
        """Open a channel to ``target`` (what :func:`dial` awaits)."""
        own, rest = core.split_dial_options(dial_options)
        settings = fold_dial_options(*rest)
        grpc_channel = await open_aio_channel(target, settings)
        return cls(target, grpc_channel, core.call_plan(settings, target), own.raise_errors)

    @classmethod
    def local(cls, port: int, *dial_options: DialOption) -> _Dialing:
        """A channel to ``127.0.0.1:port``, plaintext unless ``dial_options`` choose transport
        credentials; awaitable and an async context manager, like :func:`dial`. ``port`` must be
        1-65535 (``ValueError`` at once otherwise)."""
        port = core.check_port(port)
        return _Dialing(f"{core.LOCAL_HOST}:{port}", (with_insecure(), *dial_options))

    # -- the AppChannel protocol -------------------------------------------------------------------

    @property
    def base_address(self) -> str:
        """The dialled target, e.g. ``"127.0.0.1:50001"``."""
        return self._target

    async def invoke_method(
        self, request: InvokeMethodRequest, *call_options: CallOption
    ) -> InvokeMethodResponse:
        """Call the app's ``OnInvoke``; see :meth:`grpc_channel.channel.Channel.invoke_method` for
        the response, the errors, the token rule, local refusals (their call options run) and
        ``with_raise_errors``. Cancelling the awaiting task cancels the RPC and raises
        ``asyncio.CancelledError``."""
        core.check_request(request)
        if self._closed:
            return core.refused(self._plan, call_options, core.closed_error(), self._raise)
        refusal = core.version_error(request)
        if refusal is not None:
            return core.refused(self._plan, call_options, refusal, self._raise)
        try:
            # The fast path: no call options, or just timeout(s) (see core.timeout_only).
            if self._fast and (not call_options or core.timeout_only(call_options)):
                plan = self._plan
                direct = self._direct
                if direct is not None:
                    return await self._call_direct(
                        direct,
                        request.to_invoke_request(),
                        core.fast_timeout(call_options, plan.template.timeout),
                        direct.metadata(request, plan.template.metadata),
                    )
                call = self._invoke_mc(
                    request.to_invoke_request(),
                    timeout=core.fast_timeout(call_options, plan.template.timeout),
                    metadata=core.call_pairs(request, plan.template.metadata) or None,
                    **plan.fast_kwargs,
                )
                reply = await call
                if self._captures:
                    headers_md, trailers_md = cast(AioUnaryUnaryCall, call).response_metadata()
                else:
                    headers_md, trailers_md = await read_response_metadata(call)
                return core.reply_response(reply, headers_md, trailers_md)
            headers, trailers = Metadata(), Metadata()
            reply = await self._engine.call_unary(
                self._invoke_route,
                request.to_invoke_request(),
                (*call_options, header(headers), trailer(trailers), core.TOKEN_GUARD),
                metadata=core.request_pairs(request),
            )
        except grpc.RpcError as error:
            return self._failure(error)
        except (ValueError, grpc.aio.UsageError, asyncio.CancelledError) as exc:
            # grpc.aio refuses calls on a closed channel (also calls that waited for a slot) and
            # ends those in flight with CancelledError: the channel's doing, not a cancellation of
            # this task, so CANCELLED as in sync. (The engine did that already for its calls.)
            closed = core.closed_failure(exc) if self._closed else None
            if closed is None:
                raise
            return self._failure(closed)
        response = core.reply_response(reply, None, None)
        response.headers, response.trailers = headers, trailers
        return response

    async def _call_direct(
        self,
        direct: core.DirectInvoke,
        message: common_pb2.InvokeRequest,
        timeout: float | None,
        metadata: MetadataPairs,
    ) -> InvokeMethodResponse:
        """``OnInvoke`` through the channel's limit run inline (see
        :func:`~grpc_channel._channel_core.direct_invoke`), ``metadata`` already carrying its
        token: the chain's outcome, without it."""
        limit = direct.limit
        started = monotonic()
        granted = None
        if limit is not None and not limit.try_take():
            granted = await limit.take_async(None if timeout is None else started + timeout)
        try:
            if granted is not None:  # it queued: the round trip starts now, with less time left
                deadline = None if timeout is None else started + timeout
                started = granted
                timeout = time_left(deadline)
            call = direct.mc(
                message, timeout=timeout, metadata=metadata or None, **self._plan.fast_kwargs
            )
            reply = await call
            headers, trailers = await read_response_metadata(call)
        except BaseException as exc:
            if limit is not None:
                limit.give_back(outcome_code(exc), started)
            raise
        if limit is not None:
            limit.give_back(_OK, started)
        return core.reply_response(reply, headers, trailers)

    async def health_probe(self, timeout: float | None = None) -> bool:
        """As :meth:`grpc_channel.channel.Channel.health_probe`: False also on a closed
        channel."""
        seconds = (
            core.DEFAULT_PROBE_TIMEOUT
            if timeout is None
            else core.check_timeout("timeout", timeout, allow_zero=False)
        )
        if self._closed:
            return False
        try:
            await self._health(seconds, ready_wait=False)
        except grpc.RpcError:
            return False
        return True

    async def wait_until_ready(self, timeout: float) -> None:
        """As :meth:`grpc_channel.channel.Channel.wait_until_ready`: raises
        :class:`AppNotReadyError` when the app has not answered within ``timeout`` seconds, and
        at once, saying so, when the channel is closed (before the call or while it waits)."""
        wait = core.ReadyWait(self._target, timeout)
        while True:
            seconds = wait.attempt(self._closed)
            try:
                await self._health(seconds, ready_wait=True)
                return
            except grpc.RpcError as exc:
                pause = wait.failed(exc, self._closed)
                if pause is None:
                    return
            if pause > 0:
                await asyncio.sleep(pause)

    async def close(self) -> None:
        """Close the channel (idempotent). Calls in flight end with CANCELLED."""
        if self._closed:
            return
        self._closed = True
        # Before grpcio closes: the engines then turn its refusals into CANCELLED.
        self._engine.closed = self._health_engine.closed = True
        await self._grpc.close(None)

    @property
    def concurrency_limit(self) -> ConcurrencyLimit | None:
        """As :attr:`grpc_channel.channel.Channel.concurrency_limit`."""
        return self._limit

    # -- the generic path --------------------------------------------------------------------------

    async def invoke(
        self,
        method: str,
        payload: bytes | Message,
        *call_options: CallOption,
        response_type: type[Message] | None = None,
    ) -> Any:
        """As :meth:`grpc_channel.channel.Channel.invoke`: bytes in and out, or a message encoded
        with the channel's codec and decoded into ``response_type``. Failures raise
        ``grpc.RpcError`` (CANCELLED on a closed channel)."""
        core.check_method_path(method)
        if isinstance(payload, bytes | bytearray | memoryview):
            if response_type is not None:
                raise TypeError("invoke: response_type is for message payloads; bytes come back")
            if self._closed:
                raise core.refuse(self._plan, method, call_options, core.closed_error())
            route = self._raw_routes.data.get(method)
            if route is None:
                route = core.raw_route(method, self._grpc.unary_unary(method, None, None))
                self._raw_routes[method] = route
            return await self._engine.call_unary(
                route, bytes(payload), core.raw_options(call_options)
            )
        if not isinstance(payload, Message):
            raise TypeError(
                f"invoke: payload must be bytes or a protobuf message, got {type(payload).__name__}"
            )
        if response_type is None:
            raise TypeError("invoke: pass response_type= (a message class) for a message payload")
        if self._closed:
            raise core.refuse(self._plan, method, call_options, core.closed_error())
        return await self._engine.unary_unary(
            method, payload, response_type, *core.invoke_options(self._plan, call_options)
        )

    # -- helpers -------------------------------------------------------------------------------

    def _failure(self, error: grpc.RpcError) -> InvokeMethodResponse:
        if self._raise:
            raise error
        return core.error_response(error)

    async def _health(self, seconds: float, *, ready_wait: bool) -> None:
        options: tuple[CallOption, ...] = (
            (timeout(seconds), wait_for_ready(), core.TOKEN_GUARD)
            if ready_wait
            else (timeout(seconds), core.TOKEN_GUARD)
        )
        await self._health_engine.call_unary(self._health_route, core.EMPTY, options)

    async def __aenter__(self) -> AsyncChannel:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"AsyncChannel({self._target!r}, {state})"


class _Dialing:
    """What :func:`dial` returns: ``await`` it for the channel, or ``async with`` it to have the
    channel closed at the end of the block."""

    __slots__ = ("_channel", "_options", "_target")

    def __init__(self, target: str, options: tuple[DialOption, ...]) -> None:
        self._target = target
        self._options = options
        self._channel: AsyncChannel | None = None

    def __await__(self) -> Generator[Any, None, AsyncChannel]:
        return AsyncChannel.open(self._target, *self._options).__await__()

    async def __aenter__(self) -> AsyncChannel:
        self._channel = await AsyncChannel.open(self._target, *self._options)
        return self._channel

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        channel, self._channel = self._channel, None
        if channel is not None:
            await channel.close()


def dial(target: str, *dial_options: DialOption) -> _Dialing:
    """Open an :class:`AsyncChannel` to ``target``: ``await dial(...)`` or
    ``async with dial(...) as channel``. ``dial_options`` as for
    :func:`grpc_channel.channel.dial` (``with_insecure()`` or transport credentials required;
    :meth:`AsyncChannel.local` defaults to plaintext), including ``with_raise_errors()``. Bad
    options raise ``OptionError`` when awaited."""
    return _Dialing(target, dial_options)
