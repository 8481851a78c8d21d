"""The sidecar's transparent gRPC proxy: any method, any call shape, on raw bytes.

A :class:`Sidecar` serves a catch-all handler on a ``grpc.aio`` server. Every method is handled
as a bidirectional stream of raw bytes (the wire does not tell the shapes apart, so unary,
server-streaming, client-streaming and bidi calls all pass through one path, with no
descriptors). Per call:

1. the caller's ``dapr-api-token`` is checked against ``api_token`` (constant time; missing,
   repeated or wrong: UNAUTHENTICATED) and removed;
2. the target app id is ``dapr-callee-app-id``, else ``dapr-app-id`` (neither: INVALID_ARGUMENT);
3. the own app id goes to ``app_address`` with ``app_token`` (no ``app_address``:
   FAILED_PRECONDITION); any other id goes to that app's sidecar, found by the ``resolver``
   (unknown: NOT_FOUND naming it), with ``dapr-caller-app-id``/``dapr-callee-app-id`` and
   ``peer_token``;
4. at most ``max_in_flight`` calls (default 1000) are proxied at once; one more is refused at
   once with RESOURCE_EXHAUSTED (refused, not queued: a queue would hide overload from callers
   that can retry elsewhere, and grpc.aio starts failing calls with CANCELLED when thousands
   pile up on one channel).

The rest of the metadata, ``-bin`` values included, is forwarded unchanged (see
:func:`~grpc_channel.sidecar._routing.plan_route` for the hop keys that are not). The
upstream's headers are sent back as soon as they arrive; its messages, trailers (with
``grpc-status-details-bin``), status code and details are passed back exactly. The caller's
deadline travels as the upstream timeout; when the caller cancels, the upstream call is
cancelled; when the upstream fails (app gone: UNAVAILABLE), the caller's call ends with that
status.

Messages larger than ``max_message_bytes`` (default 4 MiB, both directions, both sides) fail
with RESOURCE_EXHAUSTED. Upstream channels are cached per address, at most ``max_channels``
(default 64; the least recently used one is closed, its calls given 30 s to finish).
:meth:`Sidecar.stop` refuses new calls and lets in-flight ones finish within ``grace``.
The server listens on ``host`` (default ``127.0.0.1``), plaintext.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable
from types import TracebackType
from typing import Any

import grpc
import grpc.aio

from ._routing import Route, RouteRefused, plan_route, response_metadata
from .resolver import Resolver, UnknownAppError, check_address
from .tokens import check_token_value

__all__ = [
    "DEFAULT_MAX_CHANNELS",
    "DEFAULT_MAX_IN_FLIGHT",
    "DEFAULT_MAX_MESSAGE_BYTES",
    "Sidecar",
]

DEFAULT_MAX_IN_FLIGHT = 1000
DEFAULT_MAX_MESSAGE_BYTES = 4 * 1024 * 1024
DEFAULT_MAX_CHANNELS = 64
_EVICTED_CHANNEL_GRACE = 30.0
_NO_DEADLINE = 1e8  # grpc reports "no deadline" as a huge time remaining

_log = logging.getLogger(__name__)

_Context = grpc.aio.ServicerContext[bytes, bytes]
_Proxy = Callable[[str, AsyncIterator[bytes], _Context], Awaitable[None]]


def _positive_int(value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return value


def _upstream_timeout(remaining: float | None) -> float | None:
    """The caller's time remaining as the upstream timeout (None: no deadline)."""
    if remaining is None or remaining > _NO_DEADLINE:
        return None
    return max(remaining, 0.0)


class _CatchAll(grpc.GenericRpcHandler):  # type: ignore[type-arg]
    """Answers every method path with a raw-bytes bidi handler bound to that path."""

    def __init__(self, proxy: _Proxy) -> None:
        self._proxy = proxy

    def service(self, details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler[Any, Any]:
        method: str = details.method
        proxy = self._proxy

        # A coroutine function (not an async generator): grpc.aio then lets it write responses
        # through the context and end the call with the upstream's status.
        async def handle(requests: AsyncIterator[bytes], context: _Context) -> None:
            await proxy(method, requests, context)

        # No (de)serializers: the messages stay bytes.
        return grpc.stream_stream_rpc_method_handler(handle)


class Sidecar:
    """A transparent gRPC proxy for app ``app_id`` (see the module docs for the rules).

    ``api_token``/``app_token``/``peer_token`` are ``None`` for none (build them from the
    environment with :meth:`~grpc_channel.sidecar.tokens.SidecarTokens.from_env`). Use as an
    async context manager (``start(0)`` on entry, ``stop()`` on exit) or call :meth:`start` and
    :meth:`stop`. One sidecar serves one event loop.
    """

    def __init__(
        self,
        app_id: str,
        *,
        resolver: Resolver,
        app_address: str | None = None,
        api_token: str | None = None,
        app_token: str | None = None,
        peer_token: str | None = None,
        max_in_flight: int = DEFAULT_MAX_IN_FLIGHT,
        max_message_bytes: int = DEFAULT_MAX_MESSAGE_BYTES,
        max_channels: int = DEFAULT_MAX_CHANNELS,
        host: str = "127.0.0.1",
    ) -> None:
        if not isinstance(app_id, str) or not app_id.strip() or app_id != app_id.strip():
            raise ValueError(f"app_id must be a non-empty id without blanks, got {app_id!r}")
        self.app_id = app_id
        self.app_address = None if app_address is None else check_address(app_address, "app")
        self._resolver = resolver
        self._api_token = check_token_value(api_token, "api_token")
        self._app_token = check_token_value(app_token, "app_token")
        self._peer_token = check_token_value(peer_token, "peer_token")
        self.max_in_flight = _positive_int(max_in_flight, "max_in_flight")
        self.max_message_bytes = _positive_int(max_message_bytes, "max_message_bytes")
        self._max_channels = _positive_int(max_channels, "max_channels")
        if not isinstance(host, str) or not host:
            raise ValueError(f"host must be a non-empty host name or address, got {host!r}")
        self.host = host
        self._in_flight = 0
        self._channels: OrderedDict[str, grpc.aio.Channel] = OrderedDict()
        self._closing: set[asyncio.Task[None]] = set()
        self._server: grpc.aio.Server | None = None
        self._port: int | None = None

    def __repr__(self) -> str:
        return f"Sidecar({self.app_id!r}, port={self._port}, in_flight={self._in_flight})"

    @property
    def port(self) -> int:
        """The port it listens on; RuntimeError before :meth:`start`."""
        if self._port is None:
            raise RuntimeError("the sidecar is not started")
        return self._port

    @property
    def in_flight(self) -> int:
        """Calls being proxied now."""
        return self._in_flight

    def _size_options(self) -> list[tuple[str, Any]]:
        return [
            ("grpc.max_send_message_length", self.max_message_bytes),
            ("grpc.max_receive_message_length", self.max_message_bytes),
        ]

    async def start(self, port: int = 0) -> int:
        """Listen on ``host:port`` (0: an ephemeral port); return the port. Once only."""
        if self._server is not None:
            raise RuntimeError("the sidecar is already started")
        server = grpc.aio.server(options=self._size_options())
        server.add_generic_rpc_handlers((_CatchAll(self._proxy),))
        host = f"[{self.host}]" if ":" in self.host else self.host
        bound = server.add_insecure_port(f"{host}:{port}")
        if bound == 0:
            raise OSError(f"cannot listen on {host}:{port}")
        await server.start()
        self._server, self._port = server, bound
        return bound

    async def stop(self, grace: float | None = 5.0) -> None:
        """Refuse new calls, let in-flight ones finish within ``grace`` seconds (None: cancel
        them now), then close the upstream channels. Safe to call twice."""
        server, self._server = self._server, None
        if server is not None:
            await server.stop(grace)
        channels = list(self._channels.values())
        self._channels.clear()
        await asyncio.gather(*(channel.close(None) for channel in channels))
        await asyncio.gather(*self._closing, return_exceptions=True)

    async def __aenter__(self) -> Sidecar:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    # --- the proxy --------------------------------------------------------------------------

    def _address_of(self, route: Route) -> str:
        if not route.local:
            try:
                return self._resolver.resolve(route.target)
            except UnknownAppError as err:
                raise RouteRefused(
                    grpc.StatusCode.NOT_FOUND, f"app id {route.target!r} is unknown: {err}"
                ) from err
        if self.app_address is None:
            raise RouteRefused(
                grpc.StatusCode.FAILED_PRECONDITION,
                f"sidecar of {self.app_id!r} has no app address to deliver to",
            )
        return self.app_address

    def _channel_for(self, address: str) -> grpc.aio.Channel:
        channel = self._channels.get(address)
        if channel is not None:
            self._channels.move_to_end(address)
            return channel
        channel = grpc.aio.insecure_channel(address, options=self._size_options())
        self._channels[address] = channel
        if len(self._channels) > self._max_channels:
            _, evicted = self._channels.popitem(last=False)
            task = asyncio.get_running_loop().create_task(evicted.close(_EVICTED_CHANNEL_GRACE))
            self._closing.add(task)
            task.add_done_callback(self._closing.discard)
        return channel

    async def _proxy(self, method: str, requests: AsyncIterator[bytes], context: _Context) -> None:
        try:
            route = plan_route(
                context.invocation_metadata() or (),
                own_app_id=self.app_id,
                api_token=self._api_token,
                app_token=self._app_token,
                peer_token=self._peer_token,
            )
            address = self._address_of(route)
        except RouteRefused as refused:
            _log.debug("refused %s: %s", method, refused.code.name)
            await context.abort(refused.code, refused.message)
            return
        if self._in_flight >= self.max_in_flight:
            await context.abort(
                grpc.StatusCode.RESOURCE_EXHAUSTED,
                f"sidecar of {self.app_id!r} has {self.max_in_flight} calls in flight already",
            )
            return
        self._in_flight += 1
        try:
            await self._forward(method, route, address, requests, context)
        finally:
            self._in_flight -= 1

    async def _forward(
        self,
        method: str,
        route: Route,
        address: str,
        requests: AsyncIterator[bytes],
        context: _Context,
    ) -> None:
        call = self._channel_for(address).stream_stream(method, None, None)(
            requests,
            timeout=_upstream_timeout(context.time_remaining()),
            metadata=route.metadata,
        )
        try:
            headers = response_metadata(await call.initial_metadata())
            if headers:
                await context.send_initial_metadata(headers)
            async for reply in call:
                await context.write(reply)
            code: grpc.StatusCode = await call.code()
            details: str | None = await call.details()
            trailers = response_metadata(await call.trailing_metadata())
        except grpc.aio.AioRpcError as err:
            code, details = err.code(), err.details()
            trailers = response_metadata(err.trailing_metadata())
        finally:
            # The caller went away (this task is cancelled) or we failed: end the upstream too.
            if not call.done():
                call.cancel()
        if code is grpc.StatusCode.OK:
            context.set_trailing_metadata(trailers)
        else:
            await context.abort(code, details or "", trailers)
