"""The sidecar's transparent gRPC proxy: any method, any call shape, frame by frame.

A :class:`Sidecar` listens with a :class:`~grpc_channel.sidecar.frame_proxy.FrameProxy`: each
HTTP/2 stream a caller opens is one call, planned from its request headers and then relayed frame
by frame (messages as they are, header blocks re-encoded, deadlines, cancellation and flow control
end to end). The wire does not tell call shapes apart and neither does the proxy: unary,
server-streaming, client-streaming and bidi calls take one path, with no descriptors and nothing
to declare. Per call:

1. the caller's ``dapr-api-token`` is checked against ``api_token`` (constant time; missing,
   repeated or wrong: UNAUTHENTICATED) and removed;
2. the target app id is ``dapr-callee-app-id``, else ``dapr-app-id`` (neither: INVALID_ARGUMENT);
3. the own app id goes to ``app_address`` under the app channel's policies (the
   ``app_token`` once, as the app channel sends it, and an ``app_max_concurrency`` slot of
   :attr:`Sidecar.app_channel`'s limit held until the call ends, unary or stream; a call waiting
   for one gives up at its deadline; no ``app_address``: FAILED_PRECONDITION); any other id goes
   to that app's sidecar, found by the ``resolver`` (unknown: NOT_FOUND naming it), with
   ``dapr-caller-app-id``/``dapr-callee-app-id`` and ``peer_token``;
4. at most ``max_in_flight`` calls (default 1000) are proxied at once; one more is refused at
   once with RESOURCE_EXHAUSTED (refused, not queued: a queue would hide overload from callers
   that can retry elsewhere).

The rest of the metadata, ``-bin`` values included, is forwarded unchanged (see
:func:`~grpc_channel.sidecar._routing.plan_route` for the hop keys that are not); ``grpc-timeout``
travels as it came. The upstream's headers, messages and trailers (``grpc-status``,
``grpc-message``, ``grpc-status-details-bin``, the app's own) reach the caller unchanged. When the
caller cancels, the upstream stream is reset; when the upstream fails (app gone: UNAVAILABLE), the
caller's call ends with that status after the messages that did arrive.

Messages larger than ``max_message_bytes`` (default 4 MiB, both directions) fail with
RESOURCE_EXHAUSTED. Upstream connections are pooled per address, at most ``max_channels``
addresses (default 64; the least recently used pool closes once its calls are done, at most 30 s
later). :meth:`Sidecar.stop` sends GOAWAY, refuses new calls and lets in-flight ones finish
within ``grace``. The proxy listens on ``host`` (default ``127.0.0.1``), plaintext.

Seams: :meth:`Sidecar.add_services` serves other handlers (the Dapr API) on an internal loopback
``grpc.aio`` server, to which the proxy relays the methods they answer, unchanged;
:meth:`Sidecar.unary_call` (reply, headers and trailers) and :meth:`Sidecar.unary` (the reply)
call an app by id from in-process code with the proxy's routing rules; :meth:`Sidecar.admit`
lets an added service's call count against ``max_in_flight`` and reach the observer as a
proxied call does; an ``observer`` (:class:`~grpc_channel.sidecar.observer.ProxyObserver`) is
told of every accepted call and its final status.
"""

from __future__ import annotations

import asyncio
import base64
import logging
import os
import time
from collections import OrderedDict
from collections.abc import Iterable
from dataclasses import dataclass
from types import TracebackType
from typing import Any, TypedDict, Unpack

import grpc
import grpc.aio
from hpack import NeverIndexedHeaderTuple

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

from ._h2 import parse_timeout
from ._routing import (
    APP_ID_KEY,
    CALLEE_KEY,
    CALLER_KEY,
    Route,
    RouteRefused,
    plan_route,
    response_metadata,
)
from .frame_proxy import CallPlan, FrameProxy, Headers
from .observer import ProxiedCall, ProxyObserver
from .resolver import Resolver, UnknownAppError, check_address
from .tokens import APP_TOKEN_ENV, TOKEN_KEY, check_token_value

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
_ROUTING_KEYS = frozenset({APP_ID_KEY, CALLEE_KEY, CALLER_KEY})
#: Request headers of the transport that travel on unchanged (with ``:``-pseudo and ``grpc-*``).
_TRANSPORT_KEYS = frozenset({b"te", b"content-type", b"user-agent"})
TOKEN_KEY_WIRE = TOKEN_KEY.encode("ascii")
_UNINDEXED = frozenset({TOKEN_KEY_WIRE, b"traceparent", b"tracestate", b"grpc-timeout"})

_log = logging.getLogger(__name__)

#: What an upstream unary call ended with: code, details, headers, trailers, the reply (OK only).
_UnaryOutcome = tuple[grpc.StatusCode, str | None, MetadataPairs, MetadataPairs, bytes]


class _Details:
    """The call details an added service is asked about (only the method is known then)."""

    __slots__ = ("invocation_metadata", "method")

    def __init__(self, method: str) -> None:
        self.method = method
        self.invocation_metadata: MetadataPairs = ()


def _wire_pair(key: str, value: str | bytes) -> tuple[bytes, bytes]:
    """A metadata pair as its header: text as it came (latin-1 both ways, so any byte survives),
    a bytes value of a ``-bin`` key base64-encoded; the token and the trace context never indexed
    by HPACK (:func:`_unindexed`)."""
    name = key.encode("latin-1")
    if isinstance(value, bytes):
        wire = base64.b64encode(value).rstrip(b"=") if key.endswith("-bin") else value
    else:
        wire = value.encode("latin-1")
    if name in _UNINDEXED:
        return _unindexed(name, wire)
    return (name, wire)


def _unindexed(name: bytes, value: bytes) -> tuple[bytes, bytes]:
    """A header HPACK must not add to its table: a secret (the token), or a value that changes
    with every call (``grpc-timeout``, trace context), which would only churn the table."""
    pair: tuple[bytes, bytes] = NeverIndexedHeaderTuple(name, value)
    return pair


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

    Every method and every call shape takes the same path (:mod:`~grpc_channel.sidecar.frame_proxy`
    relays the call's HTTP/2 frames): nothing needs declaring, no descriptors are needed.
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
        self._server: grpc.aio.Server | None = None  # the added services, on loopback
        self._internal: str | None = None  # its address
        self._own_paths: BoundedCache[str, bool] = BoundedCache()
        self._frames: FrameProxy | None = None
        self._app_token_wire: bytes | None = None
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
        """Serve ``handlers`` ahead of the proxy (first added, first asked): a method they answer
        is theirs, every other goes to the proxy. They run on an internal ``grpc.aio`` server on
        loopback; the proxy relays their calls there unchanged (the token check is theirs). Each
        is asked once per method path, with only ``details.method`` set: its ``service()`` must
        decide on the path alone. Before :meth:`start` only (RuntimeError after); a handler that
        is not a ``grpc.GenericRpcHandler`` raises TypeError."""
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
        """Dial the app (when ``app_address`` is set), serve the added services on an internal
        loopback port, listen on ``host:port`` (0: an ephemeral port) and return the port. Once
        only (RuntimeError after)."""
        if self._started:
            raise RuntimeError("the sidecar is already started")
        self._started = True
        # The token the app channel sends, sent the same way on proxied calls to the app.
        token = self._app_token or os.environ.get(APP_TOKEN_ENV) or None
        self._app_token_wire = None if token is None else token.encode("latin-1")
        if self.app_address is not None:
            self._app = await aio_dial(self.app_address, *self._app_dial_options())
        frames = FrameProxy(
            self._plan_call,
            max_message_bytes=self.max_message_bytes,
            max_addresses=self._max_channels,
        )
        try:
            if self._services:
                server = grpc.aio.server(options=self._size_options())
                server.add_generic_rpc_handlers(tuple(self._services))
                internal = server.add_insecure_port("127.0.0.1:0")
                if internal == 0:
                    raise OSError("cannot listen on an internal loopback port")
                await server.start()
                self._server, self._internal = server, f"127.0.0.1:{internal}"
            bound = await frames.start(self.host, port)
        except BaseException:
            await self._close_all(None)
            raise
        self._frames, self._port = frames, bound
        return bound

    async def stop(self, grace: float | None = 5.0) -> None:
        """Refuse new calls, let in-flight ones finish within ``grace`` seconds (None: cancel
        them now), then close the app channel and the upstream channels. Safe to call twice."""
        frames, self._frames = self._frames, None
        await asyncio.gather(
            *([] if frames is None else [frames.stop(grace)]),
            self._close_all(grace, close_channels=False),
        )
        await self._close_all(grace)

    async def _close_all(self, grace: float | None, *, close_channels: bool = True) -> None:
        server, self._server = self._server, None
        if server is not None:
            await server.stop(grace)
        if not close_channels:
            return
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

    def _serves_itself(self, method: str) -> bool:
        """Whether an added service (the Dapr API) answers ``method`` (asked once per path)."""
        known = self._own_paths.data.get(method)
        if known is None:
            details: Any = _Details(method)  # all a HandlerCallDetails has then
            known = any(handler.service(details) is not None for handler in self._services)
            self._own_paths.setdefault(method, known)
        return known

    def _plan_call(self, block: Headers) -> CallPlan:
        """The frame proxy's planner: the routing rules of :func:`plan_route` on a call's request
        headers, the cap on calls in flight, the observer, and the header block for the next
        hop (RouteRefused to refuse the call)."""
        path = b""
        timeout: float | None = None
        for name, value in block:
            if name == b":path":
                path = value
            elif name == b"grpc-timeout":
                timeout = parse_timeout(value)
        deadline = None if timeout is None else time.monotonic() + timeout
        method = path.decode("latin-1")
        if not method.startswith("/"):
            raise RouteRefused(grpc.StatusCode.UNIMPLEMENTED, f"no gRPC method path: {method!r}")
        if self._internal is not None and self._serves_itself(method):
            return CallPlan(self._internal, block, "the sidecar's API", deadline=deadline)
        pairs = [(name.decode("latin-1"), value.decode("latin-1")) for name, value in block]
        route = plan_route(
            pairs, own_app_id=self.app_id, api_token=self._api_token, peer_token=self._peer_token
        )
        address = self._address_of(route)
        if self._in_flight >= self.max_in_flight:
            raise RouteRefused(grpc.StatusCode.RESOURCE_EXHAUSTED, self._cap_message())
        admission = self._count_in(method, route.target, route.local, pairs)
        try:
            out = [
                (name, address.encode("latin-1") if name == b":authority" else value)
                for name, value in block
                if name[:1] == b":"
            ]
            out += [
                _unindexed(name, value) if name == b"grpc-timeout" else (name, value)
                for name, value in block
                if name in _TRANSPORT_KEYS or name.startswith(b"grpc-")
            ]
            forwarded = admission.forward_metadata(route.metadata)
            out += [_wire_pair(key, value) for key, value in forwarded]
            limit = None
            if route.local:
                if self._app_token_wire is not None:
                    out.append(_unindexed(TOKEN_KEY_WIRE, self._app_token_wire))
                app = self._app
                limit = None if app is None else app.concurrency_limit
                what = f"app {self.app_id!r}"
            else:
                what = f"the sidecar of app {route.target!r}"
        except BaseException:
            admission.end(grpc.StatusCode.INTERNAL)
            raise
        return CallPlan(address, tuple(out), what, admission, limit, deadline)

    def _cap_message(self) -> str:
        return (
            f"sidecar of {self.app_id!r} has {self.max_in_flight} calls in flight already "
            f"(max_in_flight={self.max_in_flight})"
        )


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
