"""The pure logic of the app channel, shared by :class:`~grpc_channel.channel.Channel` (sync) and
:class:`~grpc_channel._async_channel.AsyncChannel` (asyncio). The shells only do I/O.

What lives here:

- the API-version gate: anything but V1 is refused with UNIMPLEMENTED
  ``"Unsupported spec version: N"`` (Dapr's message), before a slot is taken or a byte is sent;
- building the outgoing ``OnInvoke`` call: the ``InvokeRequest`` and the gRPC metadata converted
  from the request's internal metadata with HTTP-header conversion on (Dapr's rules, see
  :func:`grpc_channel.metadata.internal_to_grpc`);
- turning the outcome into an :class:`~grpc_channel.invoke.InvokeMethodResponse`: a reply with its
  headers and trailers, or a ``grpc.RpcError`` (an app error, a transport fault, or a local refusal
  such as a slot not found before the deadline) with its code, message, headers, trailers and the
  ``google.rpc.Status`` details (grpcio-status); unless the channel raises errors instead;
- the app-channel dial options (:func:`with_raise_errors`; ``APP_API_TOKEN`` as the default token)
  and the HealthCheck path, which shares the channel's connection and policies but not its
  concurrency limit (:func:`health_channel`);
- the wire format of the two AppCallback methods: always protobuf, whatever codec the channel is
  dialled with (:func:`invoke_route`, :func:`health_route`);
- the token rule: the app only ever receives the channel's own ``dapr-api-token`` (or none); one
  from any other metadata source is dropped (:func:`request_pairs`, and the engine plan's
  ``guarded`` key, :func:`call_plan`);
- an unsupported API version runs the call's hooks like any failed call (:func:`refused`);
- the readiness rules of ``wait_until_ready`` (:class:`ReadyWait`) and the :class:`AppChannel`
  protocol.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Callable, Iterable, Sequence
from time import monotonic
from typing import Any, Final, Protocol, TypeVar, cast, runtime_checkable

import grpc
from google.protobuf import empty_pb2
from google.protobuf.message import Message

from grpc_channel._engine import (
    CallPlan,
    Route,
    closed_error,
    closed_failure,
)
from grpc_channel.appcallback import (
    HEALTH_CHECK,
    LIST_TOPIC_SUBSCRIPTIONS,
    ON_INVOKE,
    ON_TOPIC_EVENT,
)
from grpc_channel.call_options import CallOption, force_codec
from grpc_channel.call_options import timeout as timeout_option
from grpc_channel.call_options import wait_for_ready as wait_for_ready_option
from grpc_channel.defaults import OptionError
from grpc_channel.dial_options import AppTokenDialOption, DialOption, DialSettings, with_app_token
from grpc_channel.encoding import get_codec
from grpc_channel.interceptors import (
    BoundedCache,
    CallShape,
    Chain,
    ConcurrencyLimit,
    LocalRpcError,
    MetadataPairs,
    WrappedAioChannel,
    WrappedChannel,
    compose,
)
from grpc_channel.interceptors import check_timeout as deadline_check_timeout
from grpc_channel.invoke import APIVersion, InvokeMethodRequest, InvokeMethodResponse
from grpc_channel.invoke import check_method_path as invoke_check_method_path
from grpc_channel.v1 import appcallback_pb2, common_pb2

__all__ = [
    "DEFAULT_PROBE_TIMEOUT",
    "LOCAL_HOST",
    "AppChannel",
    "AppNotReadyError",
    "AsyncAppChannel",
    "ChannelBase",
    "ChannelOptions",
    "RaiseErrorsDialOption",
    "ReadyWait",
    "SyncAppChannel",
    "call_plan",
    "check_method_path",
    "check_port",
    "check_request",
    "check_timeout",
    "check_topic_event",
    "closed_error",
    "closed_failure",
    "closed_not_ready",
    "describe",
    "error_response",
    "health_channel",
    "health_route",
    "invoke_route",
    "not_ready_error",
    "pubsub_routes",
    "raw_options",
    "raw_route",
    "raw_stream_route",
    "ready_answer",
    "refused",
    "reply_response",
    "request_pairs",
    "split_dial_options",
    "subscriptions_of",
    "version_error",
    "with_raise_errors",
]

LOCAL_HOST: Final = "127.0.0.1"
"""Where :meth:`Channel.local` dials: Dapr's default app channel address."""

DEFAULT_PROBE_TIMEOUT: Final = 5.0
"""Seconds one ``health_probe()`` waits for the app when no timeout is given."""

TOKEN_HEADER: Final = "dapr-api-token"
"""The metadata key the app token travels in."""

APP_TOKEN_ENV: Final = "APP_API_TOKEN"
"""The environment variable Dapr reads the app API token from."""

STATUS_DETAILS_KEY: Final = "grpc-status-details-bin"

# Serialisers of the two AppCallback methods the channel calls, shared by both shells.
ON_INVOKE_PATH: Final = ON_INVOKE
HEALTH_CHECK_PATH: Final = HEALTH_CHECK
serialize_invoke_request = common_pb2.InvokeRequest.SerializeToString
parse_invoke_response = common_pb2.InvokeResponse.FromString
serialize_empty = empty_pb2.Empty.SerializeToString
parse_health_response = appcallback_pb2.HealthCheckResponse.FromString
EMPTY: Final = empty_pb2.Empty()
_PROTO: Final = get_codec("proto")

# Why a codec call option cannot apply to the AppCallback methods (engine Route.pinned).
_INVOKE_PINNED: Final = (
    "not supported by invoke_method: OnInvoke always speaks protobuf (the AppCallback contract), "
    "whatever codec is chosen; call_content_subtype and force_codec apply to the generic "
    "invoke(method, message, response_type=...) with message payloads"
)
_HEALTH_PINNED: Final = (
    "not supported: HealthCheck always speaks protobuf (the AppCallback contract)"
)
_PUBSUB_PINNED: Final = (
    "not supported: ListTopicSubscriptions and OnTopicEvent always speak protobuf (the "
    "AppCallback contract)"
)
serialize_topic_event = appcallback_pb2.TopicEventRequest.SerializeToString
parse_topic_event_response = appcallback_pb2.TopicEventResponse.FromString
parse_subscriptions = appcallback_pb2.ListTopicSubscriptionsResponse.FromString

_READY_POLL: Final = 0.05  # seconds between HealthCheck attempts that got an answer other than "up"

# A server that answers HealthCheck at all is up: OK, or UNIMPLEMENTED from an app that serves no
# health service (Dapr only waits for the app's port in that case).
_READY_CODES: Final = frozenset({grpc.StatusCode.OK, grpc.StatusCode.UNIMPLEMENTED})


class RaiseErrorsDialOption(DialOption):
    """:func:`with_raise_errors`. Only a Channel reads it; :func:`fold_dial_options` refuses it."""

    __slots__ = ("enabled",)

    def __init__(self, enabled: bool) -> None:
        self.enabled = enabled

    def apply(self, settings: DialSettings) -> None:
        raise OptionError(
            "with_raise_errors: an app-channel option; pass it to grpc_channel.dial(), "
            "Channel.local() or grpc_channel.aio.dial(), not to open_channel()"
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, RaiseErrorsDialOption):
            return NotImplemented
        return self.enabled == other.enabled

    def __hash__(self) -> int:
        return hash((RaiseErrorsDialOption, self.enabled))

    def __repr__(self) -> str:
        return f"RaiseErrorsDialOption(enabled={self.enabled})"


def with_raise_errors(enabled: bool = True) -> RaiseErrorsDialOption:
    """Make ``invoke_method`` raise the call's ``grpc.RpcError`` (an app error, a transport fault
    or a local refusal such as the unsupported-version check) instead of returning it as an
    :class:`~grpc_channel.invoke.InvokeMethodResponse`. Default: off (Dapr's behaviour: failures are
    responses). ``health_probe`` and ``wait_until_ready`` are not affected."""
    if not isinstance(enabled, bool):
        raise OptionError(f"with_raise_errors: got {enabled!r}; pass True or False")
    return RaiseErrorsDialOption(enabled)


class ChannelOptions:
    """What the app-channel options (as opposed to the transport's) say: ``raise_errors``."""

    __slots__ = ("raise_errors",)

    def __init__(self) -> None:
        self.raise_errors = False


def split_dial_options(
    dial_options: tuple[object, ...],
) -> tuple[ChannelOptions, tuple[DialOption, ...]]:
    """Take the app-channel options out of ``dial_options`` (later wins); the rest, in order, is
    for :func:`~grpc_channel.dial_options.fold_dial_options` (which checks their types).

    The app token follows Dapr: without a ``with_app_token(...)`` option, a non-empty
    ``APP_API_TOKEN`` environment variable (read now) is sent; with neither, no token is sent.
    """
    own = ChannelOptions()
    rest: list[DialOption] = []
    has_token = False
    for opt in dial_options:
        if isinstance(opt, RaiseErrorsDialOption):
            own.raise_errors = opt.enabled
        else:
            has_token = has_token or isinstance(opt, AppTokenDialOption)
            rest.append(opt)  # type: ignore[arg-type]  # fold_dial_options refuses non-options
    if not has_token and os.environ.get(APP_TOKEN_ENV):
        rest.insert(0, with_app_token())
    return own, tuple(rest)


def check_port(port: object) -> int:
    """A TCP port 1-65535, else ``ValueError`` naming it."""
    if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
        raise ValueError(f"port must be an int from 1 to 65535, got {port!r}")
    return port


def check_request(request: object) -> InvokeMethodRequest:
    if not isinstance(request, InvokeMethodRequest):
        raise TypeError(f"invoke_method takes an InvokeMethodRequest, got {type(request).__name__}")
    return request


def check_method_path(method: object) -> str:
    """A full method path ``"/pkg.Service/Method"``, else ``ValueError`` naming it (the rule
    lives in :func:`grpc_channel.invoke.check_method_path`)."""
    return invoke_check_method_path(method)


class AppNotReadyError(TimeoutError):
    """``wait_until_ready(timeout)``: the app did not answer ``HealthCheck`` in time. The message
    names the target, the timeout and the last status seen."""


_V1 = APIVersion.V1


def version_error(request: InvokeMethodRequest) -> LocalRpcError | None:
    """``None`` for an API-V1 request; otherwise the UNIMPLEMENTED refusal Dapr gives."""
    ver = request.api_version
    if ver == _V1:
        return None
    return LocalRpcError(grpc.StatusCode.UNIMPLEMENTED, f"Unsupported spec version: {int(ver)}")


def invoke_route(multicallable: Any, *, captures: bool = False) -> Route:
    """The engine route of ``OnInvoke`` over ``multicallable`` (one that serialises protobuf
    itself): the codec stays protobuf whatever the channel's codec (``with_codec``, a default
    ``force_codec``), as the AppCallback contract requires; a call option choosing another codec
    is refused with an ``OptionError`` that says so."""
    return Route(
        ON_INVOKE,
        CallShape.UNARY_UNARY,
        multicallable,
        raw=False,
        serializer=serialize_invoke_request,
        deserializer=None,
        codec=_PROTO,
        pinned=_INVOKE_PINNED,
        captures=captures,
    )


def pubsub_routes(channel: Any, control: Any) -> tuple[Route, Route]:
    """The engine routes of ``OnTopicEvent`` over ``channel`` (deliveries take a concurrency slot,
    like invokes) and ``ListTopicSubscriptions`` over ``control`` (the probes' channel: a
    control call waits for no slot). Protobuf whatever the channel's codec."""
    event = Route(
        ON_TOPIC_EVENT,
        CallShape.UNARY_UNARY,
        channel.unary_unary(ON_TOPIC_EVENT, serialize_topic_event, parse_topic_event_response),
        raw=False,
        serializer=serialize_topic_event,
        deserializer=None,
        codec=_PROTO,
        pinned=_PUBSUB_PINNED,
    )
    listing = Route(
        LIST_TOPIC_SUBSCRIPTIONS,
        CallShape.UNARY_UNARY,
        control.unary_unary(LIST_TOPIC_SUBSCRIPTIONS, serialize_empty, parse_subscriptions),
        raw=False,
        serializer=serialize_empty,
        deserializer=None,
        codec=_PROTO,
        pinned=_PUBSUB_PINNED,
    )
    return event, listing


def check_topic_event(event: object) -> appcallback_pb2.TopicEventRequest:
    if not isinstance(event, appcallback_pb2.TopicEventRequest):
        raise TypeError(
            f"on_topic_event takes a grpc_channel.v1.appcallback_pb2.TopicEventRequest, got "
            f"{type(event).__name__}"
        )
    return event


def subscriptions_of(
    reply: appcallback_pb2.ListTopicSubscriptionsResponse | None,
) -> list[appcallback_pb2.TopicSubscription]:
    """The app's subscriptions from its reply (None: the app answered UNIMPLEMENTED, an app with
    no pub/sub; no subscriptions, as in Dapr)."""
    return [] if reply is None else list(reply.subscriptions)


def health_route(multicallable: Any) -> Route:
    """The engine route of ``HealthCheck`` over ``multicallable`` (built with
    :data:`serialize_empty` / :data:`parse_health_response`): protobuf whatever the channel's
    codec, like ``OnInvoke``."""
    return Route(
        HEALTH_CHECK,
        CallShape.UNARY_UNARY,
        multicallable,
        raw=False,
        serializer=serialize_empty,
        deserializer=None,
        codec=_PROTO,
        pinned=_HEALTH_PINNED,
    )


def raw_route(method: str, multicallable: Any) -> Route:
    """The engine route of the generic ``invoke`` for bytes: they pass through untouched."""
    return Route(
        method,
        CallShape.UNARY_UNARY,
        multicallable,
        raw=True,
        serializer=_identity,
        deserializer=_identity,
        codec=get_codec("raw"),
    )


def raw_stream_route(method: str, multicallable: Any) -> Route:
    """The engine route of the generic ``stream`` for bytes: a stream-stream call whose messages
    pass through untouched (any method shape travels as one on the wire)."""
    return Route(
        method,
        CallShape.STREAM_STREAM,
        multicallable,
        raw=True,
        serializer=_identity,
        deserializer=_identity,
        codec=get_codec("raw"),
    )


_RAW_CODEC: Final = force_codec(get_codec("raw"))


def raw_options(call_options: tuple[CallOption, ...]) -> tuple[CallOption, ...]:
    """Call options for a bytes call: the engine encodes with the channel's codec unless a call
    option chose another, so the raw codec is put first (a later ``force_codec`` still wins)."""
    return (_RAW_CODEC, *call_options)


def call_plan(settings: DialSettings, target: str) -> CallPlan:
    """The engine plan of an app channel: ``dapr-api-token`` is its guarded key, so none from
    the context, the default or the per-call metadata reaches the channel's policies (its own
    ``AppToken`` policy adds the only one the app receives)."""
    return CallPlan.from_settings(settings, target, guarded=TOKEN_HEADER)


_C = TypeVar("_C", grpc.Channel, grpc.aio.Channel)


def _identity(data: Any) -> Any:
    return data


def health_channel(channel: _C) -> tuple[ConcurrencyLimit | None, _C]:
    """Split the channel ``open_channel`` / ``open_aio_channel`` built: its ``ConcurrencyLimit``
    (``None`` without ``with_max_concurrency``) and the channel HealthCheck probes use: the same
    policies but the limit, over the same connection, so a probe never waits for a slot (Dapr's
    probe takes none)."""
    limit, rest = _split_limit(channel)
    if limit is None or not isinstance(channel, WrappedChannel | WrappedAioChannel):
        return limit, channel
    under: Any = channel.wrapped
    if rest is None:
        return limit, cast(_C, under)
    aio = isinstance(channel, WrappedAioChannel)
    return limit, cast(_C, rest.wrap_aio(under) if aio else rest.wrap(under))


def _split_limit(channel: object) -> tuple[ConcurrencyLimit | None, Chain | None]:
    if not isinstance(channel, WrappedChannel | WrappedAioChannel):
        return None, None  # no policies at all
    chain = channel.chain
    limit = next((p for p in chain.policies if isinstance(p, ConcurrencyLimit)), None)
    if limit is None:
        return None, None
    others = [p for p in chain.policies if p is not limit]
    return limit, compose(*others) if others else None


def refused(
    refuse: Callable[[str, Sequence[CallOption], LocalRpcError], LocalRpcError],
    call_options: tuple[CallOption, ...],
    error: LocalRpcError,
    raise_errors: bool,
) -> InvokeMethodResponse:
    """``invoke_method``'s answer to a call it refuses before the pipeline (an unsupported API
    version): the hooks run (the engine's ``refuse``), then the error is raised
    (``with_raise_errors()``) or returned as a response. When a ``before`` hook refuses the call
    with a ``grpc.RpcError`` first, that is the answer (``on_finish`` saw it)."""
    answer: grpc.RpcError = error
    try:
        refuse(ON_INVOKE, call_options, error)
    except grpc.RpcError as before_error:
        answer = before_error
    if raise_errors:
        raise answer
    return error_response(answer)


def request_pairs(request: InvokeMethodRequest) -> MetadataPairs:
    """The request's internal metadata as grpcio metadata pairs, HTTP-header conversion on.

    A ``dapr-api-token`` among them is dropped: the app token is the channel's alone. Dapr's
    channel replaces it when a token is configured (``md.Set``); we also drop it when none is, so
    that a token a caller presented upstream (to a sidecar, say) never reaches the app and the app
    never sees two values.

    Raises :class:`~grpc_channel.metadata.MetadataError` (a ``ValueError``) naming the key when a
    key or value cannot travel over gRPC.
    """
    pairs = request.grpc_pairs(True)
    for key, _ in pairs:
        if key == TOKEN_HEADER:
            return tuple(pair for pair in pairs if pair[0] != TOKEN_HEADER)
    return pairs


def reply_response(
    reply: common_pb2.InvokeResponse,
    headers: Iterable[tuple[str, str | bytes]] | None,
    trailers: Iterable[tuple[str, str | bytes]] | None,
) -> InvokeMethodResponse:
    """An OK response from the app's reply and the call's headers and trailers, as grpcio gives
    them (pairs, a ``grpc.aio.Metadata``, or ``None``). The reply comes straight from the parser
    and nobody else holds it, so the response takes it over without checks or copies (the hot
    path)."""
    return InvokeMethodResponse.from_reply(reply, headers, trailers)


def error_response(error: grpc.RpcError) -> InvokeMethodResponse:
    """A response carrying a failed call's code, message, headers, trailers and the
    ``google.rpc.Status`` details the app attached. The ``grpc-status-details-bin`` trailer is
    removed from the trailers: its content is in ``status.details`` (grpc-go does the same)."""
    response = InvokeMethodResponse.from_rpc_error(error)
    if STATUS_DETAILS_KEY in response.trailers:
        response.trailers.delete(STATUS_DETAILS_KEY)
    return response


def check_timeout(name: str, value: object, *, allow_zero: bool = True) -> float:
    """A finite number of seconds, ``>= 0`` (or ``> 0`` without ``allow_zero``), at most
    ``MAX_TIMEOUT`` (1e9 s), else ``ValueError`` naming ``name``: the one timeout rule,
    :func:`grpc_channel.interceptors._deadline.check_timeout`."""
    return deadline_check_timeout(name, value, allow_zero=allow_zero)


def ready_answer(code: grpc.StatusCode) -> bool:
    """True when a HealthCheck outcome shows the app is up (OK, or UNIMPLEMENTED: the app answers
    but serves no health service)."""
    return code in _READY_CODES


def not_ready_error(target: str, timeout: float, last: str) -> AppNotReadyError:
    return AppNotReadyError(
        f"app at {target} did not answer HealthCheck within {timeout:g} s (last outcome: {last})"
    )


def closed_not_ready(target: str) -> AppNotReadyError:
    """``wait_until_ready`` on a closed channel: the app can never become ready through it. The
    CANCELLED :func:`closed_error` (a ``grpc.RpcError``) is its ``__cause__``."""
    error = AppNotReadyError(
        f"the channel to {target} is closed: the app cannot become ready through it"
    )
    error.__cause__ = closed_error()
    return error


class ReadyWait:
    """The decisions of one ``wait_until_ready(timeout)``; the shells probe and sleep::

    wait = ReadyWait(target, timeout)
    while wait.waiting:
        error = probe(wait.attempt(closed))  # the RpcError, or None when it answered OK
        pause = wait.after(error, closed)  # raises AppNotReadyError when it is over
        ...sleep(pause)
    """

    __slots__ = ("deadline", "last", "limit", "target", "waiting")

    def __init__(self, target: str, timeout: object) -> None:
        self.target = target
        self.limit = check_timeout("timeout", timeout)
        self.deadline = monotonic() + self.limit
        self.last = "no answer"
        self.waiting = True

    def after(self, error: grpc.RpcError | None, closed: bool) -> float:
        """After an attempt that answered OK (``error`` None) or failed: the seconds to pause
        before the next one; :attr:`waiting` turns False once the app is up."""
        pause = None if error is None else self.failed(error, closed)
        if pause is None:
            self.waiting = False
            return 0.0
        return pause

    def attempt(self, closed: bool) -> float:
        """Seconds the next HealthCheck attempt may take. Raises :class:`AppNotReadyError` when
        the time is up or the channel is closed (at once: waiting cannot help then)."""
        if closed:
            raise closed_not_ready(self.target)
        remaining = self.deadline - monotonic()
        if remaining <= 0:
            raise not_ready_error(self.target, self.limit, self.last)
        return remaining

    def failed(self, error: grpc.RpcError, closed: bool) -> float | None:
        """After a failed attempt: None when its answer shows the app is up (UNIMPLEMENTED: no
        health service), else the seconds to pause before the next one (none after a deadline:
        that attempt waited already). Raises :class:`AppNotReadyError` when the channel was
        closed meanwhile."""
        code = error.code() if callable(getattr(error, "code", None)) else None
        if code is not None and ready_answer(code):
            return None
        if closed:
            raise closed_not_ready(self.target)
        self.last = describe(error)
        if code is grpc.StatusCode.DEADLINE_EXCEEDED:
            return 0.0
        return min(_READY_POLL, max(self.deadline - monotonic(), 0.0))


def describe(error: grpc.RpcError) -> str:
    """``CODE: details`` of an RpcError, for error messages (never metadata: it may hold tokens)."""
    code = getattr(error, "code", None)
    details = getattr(error, "details", None)
    name = code().name if callable(code) else "UNKNOWN"
    text = details() if callable(details) else str(error)
    return f"{name}: {text}"


# -------------------------------------------------------------------------------------------------
# The protocol both channels satisfy.

R_co = TypeVar("R_co", covariant=True)
B_co = TypeVar("B_co", covariant=True)
N_co = TypeVar("N_co", covariant=True)


@runtime_checkable
class AppChannel(Protocol[R_co, B_co, N_co]):
    """A channel to an application's ``AppCallback`` service (Dapr's ``channel.AppChannel``).

    One protocol covers the sync and the asyncio channel by its three result types: what
    ``invoke_method`` gives (``R``), what ``health_probe`` gives (``B``) and what
    ``wait_until_ready``/``close`` give (``N``). :data:`SyncAppChannel` is
    ``AppChannel[InvokeMethodResponse, bool, None]`` (:class:`~grpc_channel.channel.Channel`);
    :data:`AsyncAppChannel` is the same with each result awaitable
    (:class:`~grpc_channel._async_channel.AsyncChannel`, whose methods are coroutines). Code that
    only passes a channel along can take a bare ``AppChannel[Any, Any, Any]``; ``isinstance(x,
    AppChannel)`` checks that the members exist (not whether they are coroutines).
    """

    @property
    def base_address(self) -> str:
        """The target the channel dials, e.g. ``"127.0.0.1:50001"``."""
        ...

    def invoke_method(self, request: InvokeMethodRequest, *call_options: CallOption) -> R_co:
        """Invoke ``OnInvoke``; failures come back as responses unless the channel raises."""
        ...

    def health_probe(self, timeout: float | None = None) -> B_co:
        """True when the app's ``HealthCheck`` answers OK."""
        ...

    def wait_until_ready(self, timeout: float) -> N_co:
        """Return once the app answers ``HealthCheck``; :class:`AppNotReadyError` after
        ``timeout`` seconds."""
        ...

    def close(self) -> N_co:
        """Close the channel; calls in flight end with CANCELLED."""
        ...


SyncAppChannel = AppChannel[InvokeMethodResponse, bool, None]
"""The sync form: :class:`~grpc_channel.channel.Channel` satisfies it."""

AsyncAppChannel = AppChannel[Awaitable[InvokeMethodResponse], Awaitable[bool], Awaitable[None]]
"""The asyncio form: :class:`~grpc_channel._async_channel.AsyncChannel` satisfies it."""


class ChannelBase:
    """What :class:`~grpc_channel.channel.Channel` and
    :class:`~grpc_channel._async_channel.AsyncChannel` share: the state and every step that is not
    I/O. Each call goes one way, through the channel's engine (call options) and policy chain
    (tracing, concurrency limit, app token) to the wire; the two shells only await or not.
    """

    __slots__ = (
        "_closed",
        "_engine",
        "_grpc",
        "_health_engine",
        "_health_route",
        "_invoke_route",
        "_limit",
        "_list_route",
        "_plan",
        "_raise",
        "_raw_routes",
        "_raw_streams",
        "_target",
        "_topic_route",
    )

    def __init__(
        self,
        target: str,
        grpc_channel: Any,
        plan: CallPlan,
        raise_errors: bool,
        engine_class: Callable[[Any, CallPlan], Any],
    ) -> None:
        self._grpc = grpc_channel
        self._target = target
        self._raise = raise_errors
        self._plan = plan
        self._engine = engine_class(grpc_channel, plan)
        self._limit, health = health_channel(grpc_channel)
        self._health_engine = (
            engine_class(health, plan) if health is not grpc_channel else self._engine
        )
        # Both AppCallback methods speak protobuf, whatever codec the channel is dialled with.
        self._health_route = health_route(
            health.unary_unary(HEALTH_CHECK_PATH, serialize_empty, parse_health_response)
        )
        # Over our aio policies the call records its headers and trailers as it ends, so reading
        # them costs no extra awaits (every invoke_method reads them).
        capturing = getattr(grpc_channel, "capturing_unary_unary", None)
        open_mc = capturing if capturing is not None else grpc_channel.unary_unary
        self._invoke_route = invoke_route(
            open_mc(ON_INVOKE_PATH, serialize_invoke_request, parse_invoke_response),
            captures=capturing is not None,
        )
        self._topic_route, self._list_route = pubsub_routes(grpc_channel, health)
        # Bounded: a proxy's callers choose the paths (hits read the plain dict, .data).
        self._raw_routes: BoundedCache[str, Route] = BoundedCache()
        self._raw_streams: BoundedCache[str, Route] = BoundedCache()
        self._closed = False

    @property
    def base_address(self) -> str:
        """The dialled target, e.g. ``"127.0.0.1:50001"``."""
        return self._target

    @property
    def concurrency_limit(self) -> ConcurrencyLimit | None:
        """The ``with_max_concurrency`` limiter (``None`` when unlimited): its ``limit``,
        ``in_flight`` (calls holding a slot) and ``queued`` (callers waiting for one). Invokes and
        the generic ``invoke`` take slots; HealthCheck probes do not."""
        return self._limit

    def _refusal(
        self, request: object, call_options: tuple[CallOption, ...]
    ) -> InvokeMethodResponse | None:
        """The answer to an invoke refused before the pipeline (not an ``InvokeMethodRequest``:
        ``TypeError``; an API version other than V1: UNIMPLEMENTED, its hooks run), else None."""
        error = version_error(check_request(request))
        if error is None:
            return None
        return refused(self._engine.refuse, call_options, error, self._raise)

    def _failure(self, error: grpc.RpcError) -> InvokeMethodResponse:
        if self._raise:
            raise error
        return error_response(error)

    def _generic(
        self,
        method: str,
        payload: bytes | Message,
        call_options: tuple[CallOption, ...],
        response_type: type[Message] | None,
    ) -> tuple[Route, Any, tuple[CallOption, ...]]:
        """The route, the request and the call options of a generic ``invoke`` (see
        :meth:`grpc_channel.channel.Channel.invoke`); ``ValueError``/``TypeError`` for bad
        arguments."""
        check_method_path(method)
        if isinstance(payload, bytes | bytearray | memoryview):
            if response_type is not None:
                raise TypeError("invoke: response_type is for message payloads; bytes come back")
            route = self._raw_routes.data.get(method)
            if route is None:
                route = raw_route(method, self._grpc.unary_unary(method, None, None))
                self._raw_routes[method] = route
            return route, bytes(payload), raw_options(call_options)
        if not isinstance(payload, Message):
            raise TypeError(
                f"invoke: payload must be bytes or a protobuf message, got {type(payload).__name__}"
            )
        if response_type is None:
            raise TypeError("invoke: pass response_type= (a message class) for a message payload")
        return (
            self._engine.route(method, CallShape.UNARY_UNARY, response_type),
            payload,
            call_options,
        )

    def _stream_route(self, method: str) -> Route:
        """The cached raw stream-stream route of ``method`` (see
        :meth:`grpc_channel.channel.Channel.stream`); ``ValueError`` for a bad method path.
        Bounded like the unary raw routes: callers choose the paths."""
        route = self._raw_streams.data.get(method)
        if route is None:
            check_method_path(method)
            route = raw_stream_route(method, self._grpc.stream_stream(method, None, None))
            self._raw_streams[method] = route
        return route

    def _stream_options(self, call_options: tuple[CallOption, ...]) -> tuple[CallOption, ...]:
        """The call options of a raw ``stream``: its route's codec is raw already, so the raw
        codec option is only needed when a dial-level default chose another codec (it would beat
        the route's); skipping it keeps the proxy's per-call path lean."""
        return raw_options(call_options) if self._plan.codec_chosen else call_options

    @staticmethod
    def _probe_seconds(timeout: float | None) -> float:
        if timeout is None:
            return DEFAULT_PROBE_TIMEOUT
        return check_timeout("timeout", timeout, allow_zero=False)

    @staticmethod
    def _health_options(seconds: float, ready_wait: bool) -> tuple[CallOption, ...]:
        if ready_wait:
            return (timeout_option(seconds), wait_for_ready_option())
        return (timeout_option(seconds),)

    def _mark_closed(self) -> bool:
        """Mark the channel closed; False when it already was. Before grpcio closes: the engines
        then answer calls with CANCELLED rather than grpcio's refusals."""
        if self._closed:
            return False
        self._closed = True
        self._engine.closed = self._health_engine.closed = True
        return True

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"{type(self).__name__}({self._target!r}, {state})"
