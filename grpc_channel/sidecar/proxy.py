"""The sidecar's transparent gRPC proxy: any method, any call shape, on raw bytes.

A :class:`Sidecar` serves a catch-all handler on a ``grpc.aio`` server. A method is handled as a
bidirectional stream of raw bytes (the wire does not tell the shapes apart, so unary,
server-streaming, client-streaming and bidi calls all pass through this one path, with no
descriptors), unless its shape is known for sure: the methods of
:data:`~grpc_channel.sidecar._routing.KNOWN_UNARY_METHODS` (Dapr's ``AppCallback`` and health
services, ``grpc.health.v1.Health/Check``) and those the operator declares with
``unary_methods=`` take a unary path (a unary handler and one unary upstream call: about a third
less time per call through grpc.aio than the stream path; the same rules below). Per call:

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
:meth:`Sidecar.unary_call` (reply, headers and trailers) and :meth:`Sidecar.unary` (the reply)
call an app by id from in-process code with the proxy's routing rules; :meth:`Sidecar.admit`
lets an added service's call count against ``max_in_flight`` and reach the observer as a
proxied call does; an ``observer`` (:class:`~grpc_channel.sidecar.observer.ProxyObserver`) is
told of every accepted call and its final status.
"""

from __future__ import annotations

import asyncio
import logging
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from dataclasses import dataclass
from types import TracebackType
from typing import Any, TypedDict, Unpack

import grpc
import grpc.aio

from grpc_channel.aio import AsyncChannel
from grpc_channel.aio import dial as aio_dial
from grpc_channel.call_options import header, trailer
from grpc_channel.dial_options import (
    DialOption,
    with_app_token,
    with_insecure,
    with_max_concurrency,
    with_max_recv_msg_size,
    with_max_send_msg_size,
)
from grpc_channel.interceptors import BoundedCache, MetadataPairs
from grpc_channel.invoke import check_method_path
from grpc_channel.metadata import Metadata

from ._routing import (
    APP_ID_KEY,
    CALLEE_KEY,
    CALLER_KEY,
    Route,
    RouteRefused,
    plan_route,
    response_metadata,
    unary_method_set,
)
from .observer import ProxiedCall, ProxyObserver
from .resolver import Resolver, UnknownAppError, check_address
from .tokens import check_token_value

__all__ = [
    "DEFAULT_MAX_CHANNELS",
    "DEFAULT_MAX_IN_FLIGHT",
    "DEFAULT_MAX_MESSAGE_BYTES",
    "AdmittedCall",
    "Sidecar",
    "UnaryCallOptions",
    "UnaryReply",
]

DEFAULT_MAX_IN_FLIGHT = 1000
DEFAULT_MAX_MESSAGE_BYTES = 4 * 1024 * 1024
DEFAULT_MAX_CHANNELS = 64
_EVICTED_CHANNEL_GRACE = 30.0
_NO_DEADLINE = 1e8  # grpc reports "no deadline" as a huge time remaining
_ROUTING_KEYS = frozenset({APP_ID_KEY, CALLEE_KEY, CALLER_KEY})

_log = logging.getLogger(__name__)

_Context = grpc.aio.ServicerContext[bytes, bytes]
_Proxy = Callable[[str, AsyncIterator[bytes], _Context], Awaitable[None]]
_UnaryProxy = Callable[[str, bytes, _Context], Awaitable[bytes]]
#: What an upstream unary call ended with: code, details, headers, trailers, the reply (OK only).
_UnaryOutcome = tuple[grpc.StatusCode, str | None, MetadataPairs, MetadataPairs, bytes]


def _positive_int(value: object, name: str) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
    return value


def _rpc_error(
    code: grpc.StatusCode,
    details: str,
    headers: MetadataPairs = (),
    trailers: MetadataPairs = (),
) -> grpc.aio.AioRpcError:
    """A failure of :meth:`Sidecar.unary_call` as the error a failed grpc.aio call raises."""
    return grpc.aio.AioRpcError(
        code,
        grpc.aio.Metadata(*headers),
        grpc.aio.Metadata(*trailers),
        details=details,
        debug_error_string=details,
    )


@dataclass(frozen=True, slots=True)
class UnaryReply:
    """What a unary call through :meth:`Sidecar.unary_call` answered: the ``reply`` bytes and
    the upstream's response ``headers`` and ``trailers``, without the transport's keys
    (:func:`~grpc_channel.sidecar._routing.response_metadata`; ``-bin`` values stay bytes)."""

    reply: bytes
    headers: MetadataPairs = ()
    trailers: MetadataPairs = ()


class AdmittedCall:
    """One call :meth:`Sidecar.admit` let in: it holds a ``max_in_flight`` place and the
    observer's record of the call until :meth:`end`.

    ``method``, ``target_app`` and ``local`` (the target is the sidecar's own app) say what was
    admitted. Pass it as ``admission=`` to :meth:`Sidecar.unary_call` for the upstream call made
    on its behalf: that call is then not counted again and carries the observer's metadata.
    """

    __slots__ = ("_observed", "_sidecar", "local", "method", "target_app")

    def __init__(
        self,
        sidecar: Sidecar,
        method: str,
        target_app: str,
        local: bool,
        observed: ProxiedCall | None,
    ) -> None:
        self._sidecar: Sidecar | None = sidecar
        self._observed = observed
        self.method = method
        self.target_app = target_app
        self.local = local

    def __repr__(self) -> str:
        state = "ended" if self._sidecar is None else "in flight"
        return f"AdmittedCall({self.method!r}, target_app={self.target_app!r}, {state})"

    @property
    def ended(self) -> bool:
        """True once :meth:`end` was called."""
        return self._sidecar is None

    def forward_metadata(self, pairs: MetadataPairs) -> MetadataPairs:
        """The metadata to send upstream: ``pairs`` with what the observer adds (trace
        context); ``pairs`` unchanged without an observer."""
        observed = self._observed
        return pairs if observed is None else observed.forward_metadata(pairs)

    def end(self, code: grpc.StatusCode) -> None:
        """The call ended with ``code`` (the status its caller receives): give back the place
        and tell the observer. Only the first call counts; later ones do nothing."""
        sidecar, self._sidecar = self._sidecar, None
        if sidecar is None:
            return
        sidecar._in_flight -= 1  # the admission is the sidecar's own record of the call
        if self._observed is not None:
            self._observed.end(code)


class UnaryCallOptions(TypedDict, total=False):
    """The keyword arguments of the unary call family, written once: :meth:`Sidecar.unary_call`
    spells them out with their defaults; :meth:`Sidecar.unary`, a
    :class:`~grpc_channel.sidecar.dapr_api.CallApp` and the ``call_app`` of
    :func:`~grpc_channel.sidecar.dapr_api.sidecar_call_app` take them as ``**options`` and pass
    them on unchanged. Each may be left out: ``metadata`` (default ``()``), ``timeout`` seconds
    (default None: no deadline), ``caller`` (default None: this app calls) and ``admission``
    (default None: not admitted). :meth:`Sidecar.unary_call` says what each means."""

    metadata: MetadataPairs
    timeout: float | None
    caller: str | None
    admission: AdmittedCall | None


class _Ending:
    """How a proxied call ends, as a ``with`` block around it: leaving the block ends
    ``admission`` (its place and its observer record) with :attr:`code`. The block sets
    :attr:`code` to the status the caller gets; until then it is CANCELLED (the task was
    cancelled: the caller went away or the server stopped), and any other error escaping the
    block makes it UNKNOWN."""

    __slots__ = ("admission", "code")

    def __init__(self, admission: AdmittedCall) -> None:
        self.admission = admission
        self.code = grpc.StatusCode.CANCELLED

    def __enter__(self) -> _Ending:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, *_: object) -> None:
        if exc_type is not None and not issubclass(exc_type, asyncio.CancelledError):
            self.code = grpc.StatusCode.UNKNOWN
        self.admission.end(self.code)


def _upstream_timeout(remaining: float | None) -> float | None:
    """The caller's time remaining as the upstream timeout (None: no deadline)."""
    if remaining is None or remaining > _NO_DEADLINE:
        return None
    return max(remaining, 0.0)


class _CatchAll(grpc.GenericRpcHandler):  # type: ignore[type-arg]
    """Answers every method path with a raw-bytes handler bound to that path: unary for the paths
    in ``unary_methods``, bidi for every other (the shape a transparent proxy can always serve).
    Handlers are built once per path (at most :class:`BoundedCache`'s capacity are kept)."""

    def __init__(
        self, stream_proxy: _Proxy, unary_proxy: _UnaryProxy, unary_methods: frozenset[str]
    ) -> None:
        self._stream_proxy = stream_proxy
        self._unary_proxy = unary_proxy
        self._unary_methods = unary_methods
        self._handlers: BoundedCache[str, grpc.RpcMethodHandler[Any, Any]] = BoundedCache()

    def service(self, details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler[Any, Any]:
        method: str = details.method
        handler = self._handlers.data.get(method)
        if handler is None:
            handler = self._handlers.setdefault(method, self._build(method))
        return handler

    def _build(self, method: str) -> grpc.RpcMethodHandler[Any, Any]:
        # Coroutine functions (not async generators): grpc.aio then awaits them on the loop (a
        # plain function would go to a thread) and lets them end the call with the upstream's
        # status. No (de)serializers: the messages stay bytes.
        if method in self._unary_methods:
            unary_proxy = self._unary_proxy

            async def handle_unary(request: bytes, context: _Context) -> bytes:
                return await unary_proxy(method, request, context)

            return grpc.unary_unary_rpc_method_handler(handle_unary)
        stream_proxy = self._stream_proxy

        async def handle(requests: AsyncIterator[bytes], context: _Context) -> None:
            await stream_proxy(method, requests, context)

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

    ``unary_methods`` (default None: none declared) names full method paths the operator knows
    to be unary-unary; they, and the methods of :data:`KNOWN_UNARY_METHODS` (Dapr's
    ``AppCallback`` and health services, ``grpc.health.v1.Health/Check``), take the unary path,
    which passes headers, trailers, status details, the deadline and cancellation exactly as the
    stream path does, with less work per call. Declare only what you know: a declared method
    that is not unary breaks (a server-streaming one ends only at the caller's deadline or
    cancellation, DEADLINE_EXCEEDED or CANCELLED, grpc's unary call waiting for replies it
    never reads; of a client stream, grpc's unary handler keeps the first message and drops the
    rest). Every other method takes the stream path, which serves all four shapes. A path that
    is not ``"/pkg.Service/Method"`` raises ValueError, a single string TypeError.
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
        unary_methods: Iterable[str] | None = None,
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
        self.unary_methods = unary_method_set(unary_methods)
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
        """Calls being proxied now, calls let in by :meth:`admit` not yet ended (the Dapr API's),
        and :meth:`unary_call` calls running without an admission."""
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
            catch_all = _CatchAll(self._proxy, self._proxy_unary, self.unary_methods)
            server.add_generic_rpc_handlers((*self._services, catch_all))
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

    def admit(self, method: str, target_app: str, incoming: MetadataPairs = ()) -> AdmittedCall:
        """Let in a call this sidecar serves itself (an added service: the Dapr API) as a proxied
        call is let in: it counts against ``max_in_flight`` and is reported to the observer
        (``begin(method, target_app, local, incoming)``, ``local`` meaning ``target_app`` is
        this sidecar's app). End it with :meth:`AdmittedCall.end` and the caller's final status,
        whatever way the call ends.

        With ``max_in_flight`` calls in flight already, raises ``grpc.aio.AioRpcError``
        RESOURCE_EXHAUSTED naming the cap (refused, not queued, as the proxy does). A bad
        ``method`` raises ValueError, an empty ``target_app`` ValueError.
        """
        check_method_path(method)
        if not isinstance(target_app, str) or not target_app.strip():
            raise ValueError(f"admit: target_app must be a non-empty app id, got {target_app!r}")
        if self._in_flight >= self.max_in_flight:
            raise _rpc_error(grpc.StatusCode.RESOURCE_EXHAUSTED, self._cap_message())
        return self._count_in(method, target_app, target_app == self.app_id, incoming)

    def _count_in(
        self,
        method: str,
        target_app: str,
        local: bool,
        incoming: Iterable[tuple[str, str | bytes]],
    ) -> AdmittedCall:
        """Take a ``max_in_flight`` place and the observer's record (``incoming``: the caller's
        metadata) for a call already let in; the one start of every call the sidecar counts,
        proxied or admitted (:meth:`AdmittedCall.end` is the one end)."""
        self._in_flight += 1
        observed: ProxiedCall | None = None
        if self._observer is not None:
            try:
                observed = self._observer.begin(method, target_app, local, tuple(incoming))
            except BaseException:
                self._in_flight -= 1
                raise
        return AdmittedCall(self, method, target_app, local, observed)

    async def unary(
        self, app_id: str, method: str, request: bytes, **options: Unpack[UnaryCallOptions]
    ) -> bytes:
        """:meth:`unary_call`'s reply bytes alone (the same arguments, defaults, rules and
        errors)."""
        return (await self.unary_call(app_id, method, request, **options)).reply

    async def unary_call(
        self,
        app_id: str,
        method: str,
        request: bytes,
        *,
        metadata: MetadataPairs = (),
        timeout: float | None = None,
        caller: str | None = None,
        admission: AdmittedCall | None = None,
    ) -> UnaryReply:
        """Call unary ``method`` of app ``app_id`` with raw ``request`` bytes; return the reply
        with the upstream's response headers and trailers (:class:`UnaryReply`).

        The proxy's routing rules without the caller token check (in-process callers are
        trusted): the own id goes through :attr:`app_channel` (its token, its concurrency
        limit); another id to its sidecar, found by the resolver, with
        ``dapr-caller-app-id`` = this app, ``dapr-callee-app-id`` and the peer token. Hop keys
        in ``metadata`` (``dapr-api-token``, ``dapr-app-id``, ``dapr-caller-app-id``,
        ``grpc-*``...) are dropped. ``timeout`` in seconds (None: no deadline).

        ``caller`` (default None) is the ``dapr-caller-app-id`` of the previous hop, for a call
        another sidecar forwarded here: it is honoured as the proxy honours that key, i.e. only
        on delivery to the own app (the app sees it as ``dapr-caller-app-id``); a call to
        another app always names this app as its caller. None: this app is the caller.

        ``admission`` (default None) is the :meth:`admit` record of the call this one is made
        for: the call then uses that record's place and observer (its metadata is forwarded)
        and is not counted again. Without it the call counts in :attr:`in_flight` while it runs
        and is neither capped nor observed (in-process callers are trusted).

        Failures raise ``grpc.aio.AioRpcError`` with the upstream's code, details, headers
        (``initial_metadata()``) and trailers: NOT_FOUND naming an unknown id,
        FAILED_PRECONDITION when the own app has no address or the sidecar is not started. A
        bad ``method``, ``request``, ``app_id`` or ``caller`` raises ValueError / TypeError; an
        ``admission`` already ended raises ValueError.
        """
        check_method_path(method)
        if not isinstance(request, bytes | bytearray | memoryview):
            raise TypeError(f"unary: request must be bytes, got {type(request).__name__}")
        if not isinstance(app_id, str) or not app_id.strip():
            raise ValueError(f"unary: app_id must be a non-empty app id, got {app_id!r}")
        if caller is not None and (
            not isinstance(caller, str) or not caller.strip() or caller != caller.strip()
        ):
            raise ValueError(
                f"unary: caller must be an app id without blanks or None, got {caller!r}"
            )
        if admission is not None and (not isinstance(admission, AdmittedCall) or admission.ended):
            raise ValueError(
                f"unary: admission must be an AdmittedCall of admit() still in flight, got "
                f"{admission!r}"
            )
        # The ids are the arguments, not the metadata: routing keys there would be ambiguous.
        incoming = [(k, v) for k, v in metadata if k not in _ROUTING_KEYS]
        if caller is None:
            incoming.append((APP_ID_KEY, app_id))
        else:
            # As a peer sidecar's forwarded call: plan_route honours the caller only for the
            # own app, exactly as for calls through the proxy.
            incoming += [(CALLEE_KEY, app_id), (CALLER_KEY, caller)]
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
        pairs = route.metadata
        if admission is None:
            self._in_flight += 1
        else:
            pairs = admission.forward_metadata(pairs)
        try:
            if app is not None and route.local:
                outcome = await _app_unary(app, method, bytes(request), timeout, pairs)
            else:
                mc = self._channel_for(address).unary_unary(method, None, None)
                outcome = await _plain_unary(mc(bytes(request), timeout=timeout, metadata=pairs))
        finally:
            if admission is None:
                self._in_flight -= 1
        code, details, headers, trailers, reply = outcome
        if code is not grpc.StatusCode.OK:
            raise _rpc_error(code, details or "", headers, trailers)
        return UnaryReply(reply, headers, trailers)

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

    async def _admit(self, method: str, context: _Context) -> tuple[Route, str]:
        """The call's route and upstream address, or the call ended (``context.abort`` raises)
        with the refusal: token, target, resolver, or ``max_in_flight`` reached."""
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
            raise  # not reached: abort raises
        if self._in_flight >= self.max_in_flight:
            await context.abort(grpc.StatusCode.RESOURCE_EXHAUSTED, self._cap_message())
        return route, address

    def _cap_message(self) -> str:
        return (
            f"sidecar of {self.app_id!r} has {self.max_in_flight} calls in flight already "
            f"(max_in_flight={self.max_in_flight})"
        )

    async def _proxy(self, method: str, requests: AsyncIterator[bytes], context: _Context) -> None:
        route, address = await self._admit(method, context)
        incoming = context.invocation_metadata() or ()
        with _Ending(self._count_in(method, route.target, route.local, incoming)) as ending:
            metadata = ending.admission.forward_metadata(route.metadata)
            app = self._app
            try:
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
                ending.code, details, trailers = await self._relay(call, context)
            except grpc.RpcError as err:  # the call could not start (app channel closed, refused)
                ending.code, details, trailers = _error_status(err)
        if ending.code is grpc.StatusCode.OK:
            context.set_trailing_metadata(trailers)
        else:
            await context.abort(ending.code, details or "", trailers)

    async def _proxy_unary(self, method: str, request: bytes, context: _Context) -> bytes:
        """The unary path: one request, one upstream unary call, one reply. The same admission,
        observer, status, headers and trailers as :meth:`_proxy`, without the stream machinery
        (no request iterator, no per-message reads and writes)."""
        route, address = await self._admit(method, context)
        incoming = context.invocation_metadata() or ()
        with _Ending(self._count_in(method, route.target, route.local, incoming)) as ending:
            metadata = ending.admission.forward_metadata(route.metadata)
            timeout = _upstream_timeout(context.time_remaining())
            app = self._app
            if route.local and app is not None:
                outcome = await _app_unary(app, method, request, timeout, metadata)
            else:
                mc = self._channel_for(address).unary_unary(method, None, None)
                outcome = await _plain_unary(mc(request, timeout=timeout, metadata=metadata))
            ending.code, details, headers, trailers, reply = outcome
        if headers:
            await context.send_initial_metadata(headers)
        if ending.code is not grpc.StatusCode.OK:
            await context.abort(ending.code, details or "", trailers)
        context.set_trailing_metadata(trailers)
        return reply

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


async def _plain_unary(call: Any) -> _UnaryOutcome:
    """Await a grpc.aio unary call; its status, headers, trailers and reply, failures included."""
    try:
        reply: bytes = await call
        headers = response_metadata(await call.initial_metadata())
        trailers = response_metadata(await call.trailing_metadata())
        return grpc.StatusCode.OK, None, headers, trailers, reply
    except grpc.RpcError as err:
        code, details, trailers = _error_status(err)
        headers_of = getattr(err, "initial_metadata", None)
        headers = response_metadata(headers_of() if callable(headers_of) else None)
        return code, details, headers, trailers, b""
    finally:
        # The caller went away (this task is cancelled): end the upstream call too.
        if not call.done():
            call.cancel()


async def _app_unary(
    app: AsyncChannel, method: str, request: bytes, timeout: float | None, md: MetadataPairs
) -> _UnaryOutcome:
    """One unary call to the own app through its channel (app token, concurrency slot); its
    status, headers, trailers and reply, failures (the channel's refusals too) included."""
    headers, trailers = Metadata(), Metadata()
    try:
        reply: bytes = await app.invoke(
            method, request, header(headers), trailer(trailers), timeout=timeout, metadata=md
        )
    except grpc.RpcError as err:
        code, details, _ = _error_status(err)
        return code, details, headers.to_grpc(), trailers.to_grpc(), b""
    return grpc.StatusCode.OK, None, headers.to_grpc(), trailers.to_grpc(), reply


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
