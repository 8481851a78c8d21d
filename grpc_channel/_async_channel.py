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
from collections.abc import AsyncIterable, Generator, Iterable
from types import TracebackType
from typing import Any

import grpc
from google.protobuf.message import Message

from grpc_channel import _channel_core as core
from grpc_channel._channel_core import AsyncAppChannel
from grpc_channel._engine import AsyncEngine, AsyncResponseStream, CallPlan
from grpc_channel.call_options import CallOption
from grpc_channel.dial_options import DialOption, fold_dial_options, with_insecure
from grpc_channel.dialing import open_aio_channel
from grpc_channel.interceptors import MetadataPairs
from grpc_channel.invoke import InvokeMethodRequest, InvokeMethodResponse
from grpc_channel.v1 import appcallback_pb2, common_pb2

__all__ = ["AsyncAppChannel", "AsyncChannel", "dial"]

_InvokeResponse = common_pb2.InvokeResponse
_OK = grpc.StatusCode.OK


class AsyncChannel(core.ChannelBase):
    """An asyncio channel to an app's ``AppCallback`` service; build it with :func:`dial` or
    :meth:`AsyncChannel.local`. Use it from the event loop it was opened on. An async context
    manager: leaving the block closes it."""

    __slots__ = ()

    def __init__(
        self, target: str, grpc_channel: grpc.aio.Channel, plan: CallPlan, raise_errors: bool
    ) -> None:
        """Internal: use :func:`dial` / :meth:`local`, which open the grpcio channel."""
        super().__init__(target, grpc_channel, plan, raise_errors, AsyncEngine)

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

    async def invoke_method(
        self, request: InvokeMethodRequest, *call_options: CallOption
    ) -> InvokeMethodResponse:
        """Call the app's ``OnInvoke``; see :meth:`grpc_channel.channel.Channel.invoke_method` for
        the response, the errors, the token rule, local refusals (their call options run) and
        ``with_raise_errors``. Cancelling the awaiting task cancels the RPC and raises
        ``asyncio.CancelledError``."""
        refusal = self._refusal(request, call_options)
        if refusal is not None:
            return refusal
        try:
            reply, headers, trailers = await self._engine.call_unary(
                self._invoke_route,
                request.to_invoke_request(),
                call_options,
                metadata=core.request_pairs(request),
                capture=True,
            )
        except grpc.RpcError as error:
            return self._failure(error)
        return core.reply_response(reply, headers, trailers)

    async def health_probe(self, timeout: float | None = None) -> bool:
        """As :meth:`grpc_channel.channel.Channel.health_probe`: False also on a closed
        channel."""
        seconds = self._probe_seconds(timeout)
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
        while wait.waiting:
            pause = wait.after(await self._probe(wait.attempt(self._closed)), self._closed)
            if pause > 0:
                await asyncio.sleep(pause)

    async def close(self) -> None:
        """Close the channel (idempotent). Calls in flight end with CANCELLED."""
        if self._mark_closed():
            await self._grpc.close(None)

    # -- pub/sub ----------------------------------------------------------------------------------

    async def list_topic_subscriptions(
        self, *call_options: CallOption
    ) -> list[appcallback_pb2.TopicSubscription]:
        """As :meth:`grpc_channel.channel.Channel.list_topic_subscriptions`."""
        try:
            reply = await self._health_engine.call_unary(self._list_route, core.EMPTY, call_options)
        except grpc.RpcError as error:
            if error.code() is not grpc.StatusCode.UNIMPLEMENTED:
                raise
            reply = None
        return core.subscriptions_of(reply)

    async def on_topic_event(
        self,
        event: appcallback_pb2.TopicEventRequest,
        *call_options: CallOption,
        timeout: float | None = None,
        metadata: MetadataPairs | None = None,
    ) -> appcallback_pb2.TopicEventResponse:
        """As :meth:`grpc_channel.channel.Channel.on_topic_event`; cancelling the awaiting task
        cancels the RPC."""
        response: appcallback_pb2.TopicEventResponse = await self._engine.call_unary(
            self._topic_route,
            core.check_topic_event(event),
            call_options,
            timeout=timeout,
            metadata=metadata,
        )
        return response

    # -- the generic path --------------------------------------------------------------------------

    async def invoke(
        self,
        method: str,
        payload: bytes | Message,
        *call_options: CallOption,
        response_type: type[Message] | None = None,
        timeout: float | None = None,
        metadata: MetadataPairs | None = None,
    ) -> Any:
        """As :meth:`grpc_channel.channel.Channel.invoke`: bytes in and out, or a message encoded
        with the channel's codec and decoded into ``response_type``, ``timeout``/``metadata`` as
        grpcio's keywords. Failures raise ``grpc.RpcError`` (CANCELLED on a closed channel)."""
        route, request, options = self._generic(method, payload, call_options, response_type)
        return await self._engine.call_unary(
            route, request, options, timeout=timeout, metadata=metadata
        )

    def stream(
        self,
        method: str,
        requests: AsyncIterable[bytes] | Iterable[bytes],
        *call_options: CallOption,
        timeout: float | None = None,
        metadata: MetadataPairs | None = None,
    ) -> AsyncResponseStream:
        """As :meth:`grpc_channel.channel.Channel.stream`, on ``grpc.aio``: ``requests`` may be
        an async or a plain iterable of bytes; iterate the result with ``async for`` (or
        ``await stream.read()``); ``await stream.initial_metadata()``, ``trailing_metadata()``,
        ``code()``, ``details()`` and ``cancel()`` are the grpc.aio call's. Not a coroutine:
        the call starts at once. The concurrency slot is held until the stream ends, fails or is
        cancelled (also when the task reading it is cancelled), and the slot wait honours the
        call's deadline and the task's cancellation."""
        route = self._stream_route(method)
        stream: AsyncResponseStream = self._engine.call_stream(
            route, requests, self._stream_options(call_options), timeout=timeout, metadata=metadata
        )
        return stream

    async def _probe(self, seconds: float) -> grpc.RpcError | None:
        """One readiness attempt: the error it failed with, or None when the app answered OK."""
        try:
            await self._health(seconds, ready_wait=True)
        except grpc.RpcError as error:
            return error
        return None

    async def _health(self, seconds: float, *, ready_wait: bool) -> None:
        options = self._health_options(seconds, ready_wait)
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
