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
  from any other metadata source is dropped (:func:`call_pairs`, :data:`TOKEN_GUARD`);
- local refusals (closed channel, unsupported API version) run the call's hooks like any failed
  call (:func:`refuse`, :func:`refused`);
- the readiness rules of ``wait_until_ready`` (:class:`ReadyWait`) and the :class:`AppChannel`
  protocol.
"""

from __future__ import annotations

import os
from collections.abc import Awaitable, Iterable, Sequence
from time import monotonic
from typing import Any, Final, Protocol, TypeVar, cast, runtime_checkable

import grpc
from google.protobuf import empty_pb2

from grpc_channel._engine import (
    CallPlan,
    Route,
    begin,
    closed_error,
    closed_failure,
    complete,
    failed,
)
from grpc_channel.appcallback import HEALTH_CHECK, ON_INVOKE
from grpc_channel.call_options import CallInfo, CallOption, TimeoutCallOption, force_codec
from grpc_channel.defaults import OptionError
from grpc_channel.dial_options import AppTokenDialOption, DialOption, DialSettings, with_app_token
from grpc_channel.encoding import get_codec
from grpc_channel.interceptors import (
    AppToken,
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
from grpc_channel.metadata import outgoing_pairs
from grpc_channel.v1 import appcallback_pb2, common_pb2

__all__ = [
    "DEFAULT_PROBE_TIMEOUT",
    "LOCAL_HOST",
    "TOKEN_GUARD",
    "AppChannel",
    "AppNotReadyError",
    "AsyncAppChannel",
    "ChannelOptions",
    "DirectInvoke",
    "RaiseErrorsDialOption",
    "ReadyWait",
    "SyncAppChannel",
    "aio_health_channel",
    "call_pairs",
    "call_plan",
    "check_method_path",
    "check_port",
    "check_request",
    "check_timeout",
    "closed_error",
    "closed_failure",
    "closed_not_ready",
    "describe",
    "direct_invoke",
    "error_response",
    "fast_timeout",
    "health_channel",
    "health_route",
    "invoke_options",
    "invoke_route",
    "not_ready_error",
    "raw_options",
    "raw_route",
    "ready_answer",
    "refuse",
    "refused",
    "reply_response",
    "request_pairs",
    "split_dial_options",
    "timeout_only",
    "version_error",
    "with_raise_errors",
    "without_token",
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


def invoke_route(multicallable: Any) -> Route:
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
    )


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


class _DropForeignToken(CallOption):
    """:data:`TOKEN_GUARD`."""

    __slots__ = ()

    def before(self, info: CallInfo) -> None:
        md = info.metadata
        for key, _ in md:
            if key == TOKEN_HEADER:
                info.metadata = tuple(pair for pair in md if pair[0] != TOKEN_HEADER)
                return

    def __repr__(self) -> str:
        return "TOKEN_GUARD"


TOKEN_GUARD: Final[CallOption] = _DropForeignToken()
"""The last call option of every app-channel call that goes through the engine: it drops each
``dapr-api-token`` the call's metadata gathered (context, default and per-call metadata), so that
the only one the app receives is the channel's own, which the ``AppToken`` policy adds after it.
(Per-RPC credentials are added after it too: they are the caller's explicit credentials.)"""

_RAW_CODEC: Final = force_codec(get_codec("raw"))


def raw_options(call_options: tuple[CallOption, ...]) -> tuple[CallOption, ...]:
    """Call options for a bytes call: the engine encodes with the channel's codec unless a call
    option chose another, so the raw codec is put first (a later ``force_codec`` still wins);
    :data:`TOKEN_GUARD` last."""
    return (_RAW_CODEC, *call_options, TOKEN_GUARD)


def invoke_options(plan: CallPlan, call_options: tuple[CallOption, ...]) -> tuple[CallOption, ...]:
    """Call options for a message call of the generic ``invoke``: ``call_options`` and
    :data:`TOKEN_GUARD`, except for a call the engine runs without a per-call record (no call
    options, a plain plan, no context metadata), which sends only the default metadata
    :func:`call_plan` has already cleared of tokens."""
    if call_options or not plan.plain or outgoing_pairs():
        return (*call_options, TOKEN_GUARD)
    return call_options


def without_token(
    pairs: MetadataPairs,
) -> MetadataPairs:
    """``pairs`` without any ``dapr-api-token`` (the same tuple when it has none)."""
    for key, _ in pairs:
        if key == TOKEN_HEADER:
            return tuple(pair for pair in pairs if pair[0] != TOKEN_HEADER)
    return pairs


def call_plan(settings: DialSettings, target: str) -> CallPlan:
    """The engine plan of an app channel: its default metadata carries no ``dapr-api-token``
    (the channel's own token is the only one the app receives)."""
    plan = CallPlan.from_settings(settings, target)
    template = plan.template
    if template.metadata:
        template.metadata = without_token(template.metadata)
    return plan


def _identity(data: Any) -> Any:
    return data


def health_channel(channel: grpc.Channel) -> tuple[ConcurrencyLimit | None, grpc.Channel]:
    """Split the channel ``open_channel`` built: its ``ConcurrencyLimit`` (``None`` without
    ``with_max_concurrency``) and the channel HealthCheck probes use: the same policies but the
    limit, over the same connection, so a probe never waits for a slot (Dapr's probe takes none).
    """
    limit, rest = _split_limit(channel)
    if limit is None or not isinstance(channel, WrappedChannel):
        return limit, channel
    return limit, rest.wrap(channel.wrapped) if rest is not None else channel.wrapped


def aio_health_channel(
    channel: grpc.aio.Channel,
) -> tuple[ConcurrencyLimit | None, grpc.aio.Channel]:
    """The asyncio form of :func:`health_channel`."""
    limit, rest = _split_limit(channel)
    if limit is None or not isinstance(channel, WrappedAioChannel):
        return limit, channel
    return limit, rest.wrap_aio(channel.wrapped) if rest is not None else channel.wrapped


_DIRECT_MEMO_MAX: Final = 64


class DirectInvoke:
    """A channel's ``OnInvoke`` path with its limit and token run inline (see
    :func:`direct_invoke`): the multicallable on the channel under the policies, the two policies
    (either may be None) and the metadata memo of :meth:`metadata`."""

    __slots__ = ("limit", "mc", "memo", "token")

    def __init__(
        self, wrapped: Any, limit: ConcurrencyLimit | None, token: AppToken | None
    ) -> None:
        self.mc: Any = wrapped.unary_unary(
            ON_INVOKE_PATH, serialize_invoke_request, parse_invoke_response
        )
        self.limit = limit
        self.token = token
        self.memo: dict[int, tuple[object, MetadataPairs]] = {}

    def metadata(self, request: InvokeMethodRequest, defaults: MetadataPairs) -> MetadataPairs:
        """:func:`call_pairs` with the token stamped (:meth:`AppToken.stamp`), as the chain
        would send it.

        When the context sets no outgoing metadata (the usual case) the result depends only on
        the request's converted metadata, which :meth:`InvokeMethodRequest.grpc_pairs` returns as
        one shared tuple per content, so ``memo`` (at most ``_DIRECT_MEMO_MAX`` entries) maps that
        tuple's identity to the result. Each entry holds the tuple itself: its identity cannot
        pass to another object while the entry lives.
        """
        token = self.token
        if outgoing_pairs():
            md = call_pairs(request, defaults)
            return md if token is None else token.stamp(md)
        pairs = request.grpc_pairs(True)
        memo = self.memo
        hit = memo.get(id(pairs))
        if hit is not None and hit[0] is pairs:
            return hit[1]
        md = call_pairs(request, defaults)
        if token is not None:
            md = token.stamp(md)
        if len(memo) >= _DIRECT_MEMO_MAX:
            memo.clear()
        memo[id(pairs)] = (pairs, md)
        return md


def direct_invoke(channel: object) -> DirectInvoke | None:
    """The direct ``OnInvoke`` path of a channel ``open_channel`` built, when a concurrency limit
    and the app token are its only policies (no tracing, no per-RPC credentials); None otherwise,
    or when it has no policies at all (its own multicallable is then as direct).

    Those two need no per-call record: a plain invoke can take the slot, stamp the token and call
    the wrapped channel itself, with the chain's outcome (the same limiter and token objects, the
    same deadline rule) at a fraction of its cost on the hot path.
    """
    if not isinstance(channel, WrappedChannel | WrappedAioChannel):
        return None
    limit: ConcurrencyLimit | None = None
    token: AppToken | None = None
    for policy in channel.chain.policies:
        if type(policy) is ConcurrencyLimit and limit is None:
            limit = policy
        elif type(policy) is AppToken and token is None:
            token = policy
        else:
            return None
    return DirectInvoke(channel.wrapped, limit, token)


def _split_limit(channel: object) -> tuple[ConcurrencyLimit | None, Chain | None]:
    if not isinstance(channel, WrappedChannel | WrappedAioChannel):
        return None, None  # no policies at all
    chain = channel.chain
    limit = next((p for p in chain.policies if isinstance(p, ConcurrencyLimit)), None)
    if limit is None:
        return None, None
    others = [p for p in chain.policies if p is not limit]
    return limit, compose(*others) if others else None


def refuse(
    plan: CallPlan, method: str, call_options: Sequence[CallOption], error: LocalRpcError
) -> LocalRpcError:
    """Finish the call options of a call refused before it was sent (closed channel, unsupported
    API version) as the engine finishes any failed call: the ``before`` hooks run (one that
    refuses the call raises, ``on_finish`` having seen its error, as on an open channel), then
    every ``after`` hook with no headers or trailers (``header(md)`` and ``trailer(md)`` are
    emptied, like the refusal's response), then each ``on_finish`` callback exactly once with
    ``error``. Returns ``error``, with a hook's exception as its ``__context__``."""
    if not call_options and plan.plain:
        return error  # no hooks anywhere
    info, afters = begin(plan, method, call_options)
    failed(info, error)
    hook_error = complete(info, afters)
    if hook_error is not None and error.__context__ is None:
        error.__context__ = hook_error
    return error


def refused(
    plan: CallPlan,
    call_options: tuple[CallOption, ...],
    error: LocalRpcError,
    raise_errors: bool,
) -> InvokeMethodResponse:
    """``invoke_method``'s answer to a local refusal: the hooks run (:func:`refuse`), then the
    error is raised (``with_raise_errors()``) or returned as a response. When a ``before`` hook
    refuses the call with a ``grpc.RpcError`` first, that is the answer (``on_finish`` saw it),
    as on an open channel."""
    answer: grpc.RpcError = error
    try:
        refuse(plan, ON_INVOKE, call_options, error)
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


def call_pairs(request: InvokeMethodRequest, defaults: MetadataPairs) -> MetadataPairs:
    """The metadata of a call made without call options, in the call engine's order: the context's
    outgoing metadata (:func:`grpc_channel.metadata.outgoing_metadata`), the dial-level default
    metadata (``with_default_call_options(metadata(...))``), then the request's converted internal
    metadata. None of them brings a ``dapr-api-token``: the context's is dropped here (a service
    that copies its incoming metadata to the outgoing context must not forward its caller's
    token), the defaults' by :func:`call_plan` and the request's by :func:`request_pairs`."""
    md = outgoing_pairs()
    if md:
        for key, _ in md:  # inline: this runs per call when the context sets metadata
            if key == TOKEN_HEADER:
                md = tuple(pair for pair in md if pair[0] != TOKEN_HEADER)
                break
    if defaults:
        md = md + defaults if md else defaults
    own = request_pairs(request)
    if own:
        md = md + own if md else own
    return md


def timeout_only(call_options: tuple[CallOption, ...]) -> bool:
    """True when ``call_options`` is exactly one ``timeout(s)``: a static option that only sets
    the timeout, so a channel without per-call work at dial level can pass it straight to grpcio
    (the channels' fast path) instead of folding a per-call record."""
    return len(call_options) == 1 and type(call_options[0]) is TimeoutCallOption


def fast_timeout(call_options: tuple[CallOption, ...], default: float | None) -> float | None:
    """The timeout of a fast-path call: its ``timeout(s)`` option (when :func:`timeout_only`
    held), else the dial-level default."""
    if call_options:
        return cast(TimeoutCallOption, call_options[0]).timeout
    return default


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
    while True:
        seconds = wait.attempt(closed)  # raises AppNotReadyError when it is over
        try:
            probe(seconds)
            return
        except grpc.RpcError as exc:
            pause = wait.failed(exc, closed)  # None: the app is up
        ...sleep(pause)
    """

    __slots__ = ("deadline", "last", "limit", "target")

    def __init__(self, target: str, timeout: object) -> None:
        self.target = target
        self.limit = check_timeout("timeout", timeout)
        self.deadline = monotonic() + self.limit
        self.last = "no answer"

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
