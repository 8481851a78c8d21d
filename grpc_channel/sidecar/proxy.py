"""The sidecar's transparent gRPC proxy: any method, any call shape, on raw bytes.

A :class:`Sidecar` serves a catch-all handler on a ``grpc.aio`` server. Every method is handled
as a bidirectional stream of raw bytes (the wire does not tell the shapes apart, so unary,
server-streaming, client-streaming and bidi calls all pass through one path, with no
descriptors). Per call:

1. the caller's ``dapr-api-token`` is checked against ``api_token`` (constant time; missing,
   repeated or wrong: UNAUTHENTICATED) and removed;
2. the target app id is ``dapr-callee-app-id``, else ``dapr-app-id`` (neither: INVALID_ARGUMENT);
3. the own app id goes to ``app_address`` through the sidecar's app channel
   (:attr:`Sidecar.app_channel`, a :class:`~grpc_channel.aio.AsyncChannel` dialled once on
   start: it sends ``app_token`` and holds an ``app_max_concurrency`` slot per call, unary or
   stream, until the call ends; no ``app_address``: FAILED_PRECONDITION); any other id goes to
   that app's sidecar over a plain cached ``grpc.aio`` channel, found by the ``resolver``
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

Seams: :meth:`Sidecar.add_services` serves other handlers ahead of the catch-all (the Dapr API);
:meth:`Sidecar.unary` calls an app by id from in-process code with the proxy's routing rules; an
``observer`` (:class:`~grpc_channel.sidecar.observer.ProxyObserver`) is told of every accepted
call and its final status.
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

from grpc_channel.aio import AsyncChannel
from grpc_channel.aio import dial as aio_dial
from grpc_channel.dial_options import (
    DialOption,
    with_app_token,
    with_insecure,
    with_max_concurrency,
    with_max_recv_msg_size,
    with_max_send_msg_size,
)
from grpc_channel.interceptors import MetadataPairs
from grpc_channel.invoke import check_method_path

from ._routing import APP_ID_KEY, CALLEE_KEY, Route, RouteRefused, plan_route, response_metadata
from .observer import ProxiedCall, ProxyObserver
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


def _rpc_error(code: grpc.StatusCode, details: str) -> grpc.aio.AioRpcError:
    """A refusal of :meth:`Sidecar.unary` as the error a failed grpc.aio call raises."""
    return grpc.aio.AioRpcError(
        code, grpc.aio.Metadata(), grpc.aio.Metadata(), details=details, debug_error_string=details
    )


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
    environment with :meth:`~grpc_channel.sidecar.tokens.SidecarTokens.from_env`; with
    ``app_token`` None the app channel still sends a non-empty ``APP_API_TOKEN`` from the
    environment, as every app channel does). ``app_max_concurrency`` (default None: unlimited)
    caps the calls at the app: unary calls and streams hold a slot until they end, a waiting
    call gives up at its deadline (DEADLINE_EXCEEDED) and a cancelled one frees its place.
    ``observer`` (default None) is told of every accepted call. Use as an async context manager
    (``start(0)`` on entry, ``stop()`` on exit) or call :meth:`start` and :meth:`stop`. One
    sidecar serves one event loop.
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
        app_max_concurrency: int | None = None,
        observer: ProxyObserver | None = None,
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
        self.app_max_concurrency = (
            None
            if app_max_concurrency is None
            else _positive_int(app_max_concurrency, "app_max_concurrency (None: unlimited)")
        )
        if observer is not None and not callable(getattr(observer, "begin", None)):
            raise TypeError(
                f"observer must be a ProxyObserver (with begin()) or None, got "
                f"{type(observer).__name__}"
            )
        self._observer = observer
        if not isinstance(host, str) or not host:
            raise ValueError(f"host must be a non-empty host name or address, got {host!r}")
        self.host = host
        self._in_flight = 0
        self._channels: OrderedDict[str, grpc.aio.Channel] = OrderedDict()
        self._closing: set[asyncio.Task[None]] = set()
        self._services: list[grpc.GenericRpcHandler] = []  # type: ignore[type-arg]
        self._app: AsyncChannel | None = None
        self._server: grpc.aio.Server | None = None
        self._port: int | None = None
        self._started = False

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
        """Calls being proxied now (and :meth:`unary` calls running)."""
        return self._in_flight

    @property
    def app_channel(self) -> AsyncChannel | None:
        """The channel to the own app, dialled on :meth:`start` (None before start, after stop,
        or without ``app_address``). Share it (pub/sub deliveries, say) so that
        ``app_max_concurrency`` and the app token cover those calls too; do not close it."""
        return self._app

    def add_services(self, *handlers: grpc.GenericRpcHandler) -> None:  # type: ignore[type-arg]
        """Serve ``handlers`` ahead of the proxy's catch-all (first added, first asked): a method
        they answer is theirs, every other goes to the proxy. Before :meth:`start` only
        (RuntimeError after: grpc.aio cannot add handlers to a running server); a handler that is
        not a ``grpc.GenericRpcHandler`` raises TypeError."""
        if self._started:
            raise RuntimeError("add_services: the sidecar is already started; add them before")
        for handler in handlers:
            if not isinstance(handler, grpc.GenericRpcHandler):
                raise TypeError(
                    "add_services takes grpc.GenericRpcHandler objects, got "
                    f"{type(handler).__name__}"
                )
        self._services.extend(handlers)

    def _size_options(self) -> list[tuple[str, Any]]:
        return [
            ("grpc.max_send_message_length", self.max_message_bytes),
            ("grpc.max_receive_message_length", self.max_message_bytes),
        ]

    def _app_dial_options(self) -> list[DialOption]:
        options: list[DialOption] = [
            with_insecure(),
            with_max_recv_msg_size(self.max_message_bytes),
            with_max_send_msg_size(self.max_message_bytes),
        ]
        if self._app_token is not None:
            options.append(with_app_token(self._app_token))
        if self.app_max_concurrency is not None:
            options.append(with_max_concurrency(self.app_max_concurrency))
        return options

    async def start(self, port: int = 0) -> int:
        """Dial the app (when ``app_address`` is set), listen on ``host:port`` (0: an ephemeral
        port) and return the port. Once only (RuntimeError after)."""
        if self._started:
            raise RuntimeError("the sidecar is already started")
        self._started = True
        if self.app_address is not None:
            self._app = await aio_dial(self.app_address, *self._app_dial_options())
        try:
            server = grpc.aio.server(options=self._size_options())
            server.add_generic_rpc_handlers((*self._services, _CatchAll(self._proxy)))
            host = f"[{self.host}]" if ":" in self.host else self.host
            bound = server.add_insecure_port(f"{host}:{port}")
            if bound == 0:
                raise OSError(f"cannot listen on {host}:{port}")
            await server.start()
        except BaseException:
            app, self._app = self._app, None
            if app is not None:
                await app.close()
            raise
        self._server, self._port = server, bound
        return bound

    async def stop(self, grace: float | None = 5.0) -> None:
        """Refuse new calls, let in-flight ones finish within ``grace`` seconds (None: cancel
        them now), then close the app channel and the upstream channels. Safe to call twice."""
        server, self._server = self._server, None
        if server is not None:
            await server.stop(grace)
        app, self._app = self._app, None
        if app is not None:
            await app.close()
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

    # --- in-process callers -----------------------------------------------------------------

    async def unary(
        self,
        app_id: str,
        method: str,
        request: bytes,
        *,
        metadata: MetadataPairs = (),
        timeout: float | None = None,
    ) -> bytes:
        """Call unary ``method`` of app ``app_id`` with raw ``request`` bytes; return the reply.

        The proxy's routing rules without the caller token check (in-process callers are
        trusted): the own id goes through :attr:`app_channel` (its token, its concurrency
        limit); another id to its sidecar, found by the resolver, with
        ``dapr-caller-app-id`` = this app, ``dapr-callee-app-id`` and the peer token. Hop keys
        in ``metadata`` (``dapr-api-token``, ``dapr-app-id``, ``grpc-*``...) are dropped.
        ``timeout`` in seconds (None: no deadline). Failures raise ``grpc.RpcError`` (a
        ``grpc.aio.AioRpcError`` for upstream and routing failures) with the code, details and
        trailing metadata: NOT_FOUND naming an unknown id, FAILED_PRECONDITION when the own app
        has no address or the sidecar is not started. A bad ``method`` or ``request`` raises
        ValueError / TypeError.
        """
        check_method_path(method)
        if not isinstance(request, bytes | bytearray | memoryview):
            raise TypeError(f"unary: request must be bytes, got {type(request).__name__}")
        if not isinstance(app_id, str) or not app_id.strip():
            raise ValueError(f"unary: app_id must be a non-empty app id, got {app_id!r}")
        # The id is the argument, not the metadata: a routing key there would be ambiguous.
        incoming = [(k, v) for k, v in metadata if k != APP_ID_KEY and k != CALLEE_KEY]
        incoming.append((APP_ID_KEY, app_id))
        try:
            route = plan_route(
                incoming, own_app_id=self.app_id, api_token=None, peer_token=self._peer_token
            )
            address = self._address_of(route)
            app = self._app
            if route.local and app is None:
                raise RouteRefused(
                    grpc.StatusCode.FAILED_PRECONDITION,
                    f"sidecar of {self.app_id!r} is not started (no app channel)",
                )
        except RouteRefused as refused:
            raise _rpc_error(refused.code, refused.message) from None
        self._in_flight += 1
        try:
            if app is not None and route.local:
                reply: bytes = await app.invoke(
                    method, bytes(request), timeout=timeout, metadata=route.metadata
                )
                return reply
            mc = self._channel_for(address).unary_unary(method, None, None)
            remote: bytes = await mc(bytes(request), timeout=timeout, metadata=route.metadata)
            return remote
        finally:
            self._in_flight -= 1

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
        incoming = context.invocation_metadata() or ()
        try:
            route = plan_route(
                incoming,
                own_app_id=self.app_id,
                api_token=self._api_token,
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
        observed: ProxiedCall | None = None
        metadata = route.metadata
        # What the caller ends with if we never get to set it: the task was cancelled (the
        # caller went away or the server stopped).
        code = grpc.StatusCode.CANCELLED
        try:
            if self._observer is not None:
                observed = self._observer.begin(method, route.target, route.local, tuple(incoming))
                metadata = observed.forward_metadata(metadata)
            app = self._app
            if route.local and app is not None:
                call: Any = app.stream(
                    method,
                    requests,
                    timeout=_upstream_timeout(context.time_remaining()),
                    metadata=metadata,
                )
            else:
                call = self._channel_for(address).stream_stream(method, None, None)(
                    requests,
                    timeout=_upstream_timeout(context.time_remaining()),
                    metadata=metadata,
                )
            code, details, trailers = await self._relay(call, context)
        except grpc.RpcError as err:  # the call could not start (app channel closed, refused)
            code, details, trailers = _error_status(err)
        except asyncio.CancelledError:
            raise
        except BaseException:
            code = grpc.StatusCode.UNKNOWN
            raise
        finally:
            self._in_flight -= 1
            if observed is not None:
                observed.end(code)
        if code is grpc.StatusCode.OK:
            context.set_trailing_metadata(trailers)
        else:
            await context.abort(code, details or "", trailers)

    @staticmethod
    async def _relay(
        call: Any, context: _Context
    ) -> tuple[grpc.StatusCode, str | None, MetadataPairs]:
        """Pass the upstream's headers and messages back; return its status and trailers."""
        try:
            headers = response_metadata(await call.initial_metadata())
            if headers:
                await context.send_initial_metadata(headers)
            async for reply in call:
                await context.write(reply)
            code: grpc.StatusCode = await call.code()
            details: str | None = await call.details()
            return code, details, response_metadata(await call.trailing_metadata())
        except grpc.RpcError as err:
            return _error_status(err)
        finally:
            # The caller went away (this task is cancelled) or we failed: end the upstream too.
            if not call.done():
                call.cancel()


def _error_status(err: grpc.RpcError) -> tuple[grpc.StatusCode, str | None, MetadataPairs]:
    """The status, details and trailers to end the caller's call with, from ``err`` (a
    grpc.aio error, or the channel's local refusal)."""
    code_of = getattr(err, "code", None)
    code = code_of() if callable(code_of) else grpc.StatusCode.UNKNOWN
    details_of = getattr(err, "details", None)
    details = details_of() if callable(details_of) else str(err)
    trailers_of = getattr(err, "trailing_metadata", None)
    trailers = response_metadata(trailers_of() if callable(trailers_of) else None)
    return code, details, trailers
