"""Dial options in the grpc-go style: :class:`DialOption`, the :class:`DialSettings` record they
fold into (:func:`fold_dial_options`), and every ``with_*`` option with its record class.

Every option is a small frozen dataclass whose fields are the exported record of what it sets.
The ``with_*`` functions check their argument at once and raise ``OptionError`` naming the option,
the value and what is allowed; a token is never repeated in an error. grpcio's reconnect backoff
has channel arguments for the base delay, the maximum delay and the minimum connect timeout, but its
multiplier (1.6) and jitter (0.2) are fixed: :func:`with_connect_params` refuses other values
instead of ignoring them.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any, Final

import grpc

from grpc_channel.call_options import CallOption
from grpc_channel.credentials import PerRPCCredentials, _check_rpc_credentials, _creds_repr
from grpc_channel.defaults import (
    _INT32_MAX,
    _INT32_MIN,
    _INT64_MAX,
    DEFAULTS,
    OptionError,
    _millis,
    _printable,
    _refuse,
    _size,
    _wire_text,
    check_seconds,
)
from grpc_channel.encoding import Codec, EncodingError, get_codec, get_compressor
from grpc_channel.interceptors import TracingSpec

__all__ = [
    "AppTokenDialOption",
    "AuthorityDialOption",
    "BackoffConfig",
    "BlockDialOption",
    "ChannelArgsDialOption",
    "ChannelCredentialsDialOption",
    "CodecDialOption",
    "CompressorDialOption",
    "ConnectParams",
    "ConnectParamsDialOption",
    "DefaultCallOptionsDialOption",
    "DefaultServiceConfigDialOption",
    "DialOption",
    "DialSettings",
    "DisableRetryDialOption",
    "InsecureDialOption",
    "KeepaliveDialOption",
    "KeepaliveParams",
    "MaxConcurrencyDialOption",
    "MaxRecvMsgSizeDialOption",
    "MaxSendMsgSizeDialOption",
    "PerRPCCredsDialOption",
    "StreamInterceptorDialOption",
    "TracingDialOption",
    "UnaryInterceptorDialOption",
    "UserAgentDialOption",
    "fold_dial_options",
    "with_app_token",
    "with_authority",
    "with_block",
    "with_chain_stream_interceptor",
    "with_chain_unary_interceptor",
    "with_channel_args",
    "with_codec",
    "with_compressor",
    "with_connect_params",
    "with_default_call_options",
    "with_default_service_config",
    "with_disable_retry",
    "with_insecure",
    "with_keepalive_params",
    "with_max_concurrency",
    "with_max_recv_msg_size",
    "with_max_send_msg_size",
    "with_per_rpc_credentials",
    "with_stream_interceptor",
    "with_tracing",
    "with_transport_credentials",
    "with_unary_interceptor",
    "with_user_agent",
]


# ------------------------------------------------------------------------------------------
# Dial options.


@dataclass(frozen=True, slots=True)
class KeepaliveParams:
    """Client keepalive (grpc-go ``keepalive.ClientParameters``): ping after ``time`` seconds
    without activity, close if no ack within ``timeout``; ``permit_without_stream`` pings even with
    no call in flight."""

    time: float
    timeout: float = DEFAULTS.keepalive_timeout
    permit_without_stream: bool = False


@dataclass(frozen=True, slots=True)
class BackoffConfig:
    """Reconnect backoff (grpc-go ``backoff.Config``), seconds."""

    base_delay: float = DEFAULTS.base_delay
    multiplier: float = DEFAULTS.multiplier
    jitter: float = DEFAULTS.jitter
    max_delay: float = DEFAULTS.max_delay


@dataclass(frozen=True, slots=True)
class ConnectParams:
    """grpc-go ``ConnectParams``: reconnect backoff and the minimum connect timeout, seconds."""

    backoff: BackoffConfig = field(default_factory=BackoffConfig)
    min_connect_timeout: float = DEFAULTS.min_connect_timeout


@dataclass(slots=True)
class DialSettings:
    """The folded dial options. Field defaults are the library defaults (:data:`DEFAULTS`).

    ``credentials`` ``None`` with ``insecure`` false means no transport security was chosen;
    opening such a channel is refused (as grpc-go does).
    """

    insecure: bool = False
    credentials: grpc.ChannelCredentials | None = None
    per_rpc_credentials: tuple[grpc.CallCredentials | PerRPCCredentials, ...] = ()
    authority: str | None = None
    user_agent: str | None = None
    keepalive: KeepaliveParams | None = None
    max_recv_msg_size: int = DEFAULTS.max_recv_msg_size
    max_send_msg_size: int | None = DEFAULTS.max_send_msg_size
    service_config: str | None = None
    disable_retry: bool = False
    compressor: str | None = None
    codec: Codec = field(default_factory=lambda: get_codec(DEFAULTS.codec))
    unary_interceptor: Any = None
    chain_unary_interceptors: tuple[Any, ...] = ()
    stream_interceptor: Any = None
    chain_stream_interceptors: tuple[Any, ...] = ()
    default_call_options: tuple[CallOption, ...] = ()
    connect_params: ConnectParams | None = None
    block: bool = False
    block_timeout: float = DEFAULTS.block_timeout
    channel_args: tuple[tuple[str, Any], ...] = ()
    max_concurrency: int = 0
    app_token: str | None = field(default=None, repr=False)
    app_token_from_env: bool = False
    tracing: Any = None

    @property
    def secure(self) -> bool:
        """True when transport credentials were given."""
        return self.credentials is not None

    def __repr__(self) -> str:
        # The generated repr minus secrets: per-RPC credentials by type, the app token not at all
        # (its field has repr=False); default call options show their own (redacted) reprs.
        shown = []
        for f in fields(self):
            if not f.repr:
                continue
            value = getattr(self, f.name)
            if f.name == "per_rpc_credentials":
                items = [_creds_repr(c) for c in value]
                text = f"({', '.join(items)}{',' if len(items) == 1 else ''})"
            else:
                text = repr(value)
            shown.append(f"{f.name}={text}")
        return f"DialSettings({', '.join(shown)})"

    @property
    def unary_interceptors(self) -> tuple[Any, ...]:
        """The single unary interceptor (if any) first, then the chained ones (first listed is
        outermost)."""
        single = () if self.unary_interceptor is None else (self.unary_interceptor,)
        return single + self.chain_unary_interceptors

    @property
    def stream_interceptors(self) -> tuple[Any, ...]:
        """As :attr:`unary_interceptors`, for the streaming shapes."""
        single = () if self.stream_interceptor is None else (self.stream_interceptor,)
        return single + self.chain_stream_interceptors

    def grpc_options(self) -> list[tuple[str, Any]]:
        """The grpcio channel arguments these settings produce (typed options, then raw ones)."""
        out: list[tuple[str, Any]] = []
        if self.authority is not None:
            out.append(("grpc.default_authority", self.authority))
        if self.user_agent is not None:
            out.append(("grpc.primary_user_agent", self.user_agent))
        if self.keepalive is not None:
            ka = self.keepalive
            out.append(("grpc.keepalive_time_ms", int(ka.time * 1000)))
            out.append(("grpc.keepalive_timeout_ms", int(ka.timeout * 1000)))
            out.append(("grpc.keepalive_permit_without_calls", int(ka.permit_without_stream)))
        if self.max_recv_msg_size != DEFAULTS.max_recv_msg_size:
            out.append(("grpc.max_receive_message_length", self.max_recv_msg_size))
        if self.max_send_msg_size is not None:
            out.append(("grpc.max_send_message_length", self.max_send_msg_size))
        if self.service_config is not None:
            out.append(("grpc.service_config", self.service_config))
        if self.disable_retry:
            out.append(("grpc.enable_retries", 0))
        if self.connect_params is not None:
            cp = self.connect_params
            out.append(("grpc.initial_reconnect_backoff_ms", int(cp.backoff.base_delay * 1000)))
            out.append(("grpc.max_reconnect_backoff_ms", int(cp.backoff.max_delay * 1000)))
            # grpc core reads this argument as the minimum time given to a connection attempt.
            out.append(("grpc.min_reconnect_backoff_ms", int(cp.min_connect_timeout * 1000)))
        out.extend(self.channel_args)
        return out


class DialOption:
    """Base of dial options: ``apply(settings)`` writes the option into :class:`DialSettings`."""

    __slots__ = ()

    def apply(self, settings: DialSettings) -> None:
        raise NotImplementedError


@dataclass(frozen=True, slots=True)
class InsecureDialOption(DialOption):
    """:func:`with_insecure`."""

    def apply(self, settings: DialSettings) -> None:
        settings.insecure = True
        settings.credentials = None


@dataclass(frozen=True, slots=True)
class ChannelCredentialsDialOption(DialOption):
    """:func:`with_transport_credentials`."""

    credentials: grpc.ChannelCredentials

    def apply(self, settings: DialSettings) -> None:
        settings.insecure = False
        settings.credentials = self.credentials


@dataclass(frozen=True, slots=True)
class PerRPCCredsDialOption(DialOption):
    """:func:`with_per_rpc_credentials` (accumulates, as in grpc-go)."""

    creds: grpc.CallCredentials | PerRPCCredentials

    def apply(self, settings: DialSettings) -> None:
        settings.per_rpc_credentials = (*settings.per_rpc_credentials, self.creds)

    def __repr__(self) -> str:
        return f"PerRPCCredsDialOption(creds={_creds_repr(self.creds)})"


@dataclass(frozen=True, slots=True)
class AuthorityDialOption(DialOption):
    """:func:`with_authority`."""

    authority: str

    def apply(self, settings: DialSettings) -> None:
        settings.authority = self.authority


@dataclass(frozen=True, slots=True)
class UserAgentDialOption(DialOption):
    """:func:`with_user_agent`."""

    user_agent: str

    def apply(self, settings: DialSettings) -> None:
        settings.user_agent = self.user_agent


@dataclass(frozen=True, slots=True)
class KeepaliveDialOption(DialOption):
    """:func:`with_keepalive_params`."""

    params: KeepaliveParams

    def apply(self, settings: DialSettings) -> None:
        settings.keepalive = self.params


@dataclass(frozen=True, slots=True)
class MaxRecvMsgSizeDialOption(DialOption):
    """:func:`with_max_recv_msg_size`."""

    max_recv_msg_size: int

    def apply(self, settings: DialSettings) -> None:
        settings.max_recv_msg_size = self.max_recv_msg_size


@dataclass(frozen=True, slots=True)
class MaxSendMsgSizeDialOption(DialOption):
    """:func:`with_max_send_msg_size`."""

    max_send_msg_size: int

    def apply(self, settings: DialSettings) -> None:
        settings.max_send_msg_size = self.max_send_msg_size


@dataclass(frozen=True, slots=True)
class DefaultServiceConfigDialOption(DialOption):
    """:func:`with_default_service_config` (``service_config`` is the JSON text)."""

    service_config: str

    def apply(self, settings: DialSettings) -> None:
        settings.service_config = self.service_config


@dataclass(frozen=True, slots=True)
class DisableRetryDialOption(DialOption):
    """:func:`with_disable_retry`."""

    def apply(self, settings: DialSettings) -> None:
        settings.disable_retry = True


@dataclass(frozen=True, slots=True)
class CompressorDialOption(DialOption):
    """:func:`with_compressor`."""

    name: str
    compression: grpc.Compression

    def apply(self, settings: DialSettings) -> None:
        settings.compressor = self.name


@dataclass(frozen=True, slots=True)
class CodecDialOption(DialOption):
    """:func:`with_codec`."""

    codec: Codec

    def apply(self, settings: DialSettings) -> None:
        settings.codec = self.codec


@dataclass(frozen=True, slots=True)
class UnaryInterceptorDialOption(DialOption):
    """:func:`with_unary_interceptor` (``chained`` false) or
    :func:`with_chain_unary_interceptor`."""

    interceptors: tuple[Any, ...]
    chained: bool

    def apply(self, settings: DialSettings) -> None:
        if self.chained:
            settings.chain_unary_interceptors += self.interceptors
        else:
            settings.unary_interceptor = self.interceptors[0]


@dataclass(frozen=True, slots=True)
class StreamInterceptorDialOption(DialOption):
    """:func:`with_stream_interceptor` or :func:`with_chain_stream_interceptor`."""

    interceptors: tuple[Any, ...]
    chained: bool

    def apply(self, settings: DialSettings) -> None:
        if self.chained:
            settings.chain_stream_interceptors += self.interceptors
        else:
            settings.stream_interceptor = self.interceptors[0]


@dataclass(frozen=True, slots=True)
class DefaultCallOptionsDialOption(DialOption):
    """:func:`with_default_call_options` (accumulates)."""

    call_options: tuple[CallOption, ...]

    def apply(self, settings: DialSettings) -> None:
        settings.default_call_options += self.call_options


@dataclass(frozen=True, slots=True)
class ConnectParamsDialOption(DialOption):
    """:func:`with_connect_params`."""

    params: ConnectParams

    def apply(self, settings: DialSettings) -> None:
        settings.connect_params = self.params


@dataclass(frozen=True, slots=True)
class BlockDialOption(DialOption):
    """:func:`with_block`."""

    timeout: float

    def apply(self, settings: DialSettings) -> None:
        settings.block = True
        settings.block_timeout = self.timeout


@dataclass(frozen=True, slots=True)
class ChannelArgsDialOption(DialOption):
    """:func:`with_channel_args` (accumulates; a later value of the same key wins in grpc core)."""

    args: tuple[tuple[str, Any], ...]

    def apply(self, settings: DialSettings) -> None:
        settings.channel_args += self.args


@dataclass(frozen=True, slots=True)
class MaxConcurrencyDialOption(DialOption):
    """:func:`with_max_concurrency` (0: unlimited)."""

    max_concurrency: int

    def apply(self, settings: DialSettings) -> None:
        settings.max_concurrency = self.max_concurrency


@dataclass(frozen=True, slots=True)
class AppTokenDialOption(DialOption):
    """:func:`with_app_token`. ``token`` is hidden from ``repr``; ``None`` means read
    ``APP_API_TOKEN`` when the channel opens."""

    token: str | None = field(repr=False)

    def apply(self, settings: DialSettings) -> None:
        settings.app_token = self.token
        settings.app_token_from_env = self.token is None


@dataclass(frozen=True, slots=True)
class TracingDialOption(DialOption):
    """:func:`with_tracing`."""

    spec: Any

    def apply(self, settings: DialSettings) -> None:
        settings.tracing = self.spec


def with_insecure() -> InsecureDialOption:
    """Plaintext transport (grpcio ``insecure_channel``). One of this or
    :func:`with_transport_credentials` is required; the later one wins."""
    return InsecureDialOption()


def with_transport_credentials(
    credentials: grpc.ChannelCredentials,
) -> ChannelCredentialsDialOption:
    """Secure transport with ``credentials`` (``grpc.ssl_channel_credentials(...)``,
    ``grpc.local_channel_credentials()`` ...), grpcio ``secure_channel``."""
    if not isinstance(credentials, grpc.ChannelCredentials):
        raise _refuse(
            "with_transport_credentials",
            type(credentials).__name__,
            "pass grpc.ChannelCredentials (e.g. grpc.ssl_channel_credentials())",
        )
    return ChannelCredentialsDialOption(credentials)


def with_per_rpc_credentials(
    creds: grpc.CallCredentials | PerRPCCredentials,
) -> PerRPCCredsDialOption:
    """Credentials for every call on the channel (several accumulate).

    ``grpc.CallCredentials`` are composed into the channel credentials (grpcio sends them only over
    a secure channel, so opening an insecure channel with them is refused). grpc-go style objects
    add their metadata to every call; one that requires transport security makes opening an
    insecure channel fail, as in grpc-go.
    """
    _check_rpc_credentials("with_per_rpc_credentials", creds)
    return PerRPCCredsDialOption(creds)


def with_authority(authority: str) -> AuthorityDialOption:
    """The ``:authority`` of every call (grpcio ``grpc.default_authority``); also the TLS server
    name. Default: derived from the target."""
    value = _printable("with_authority", authority, "authority")
    if " " in value:
        raise _refuse("with_authority", authority, "authority must not contain spaces")
    return AuthorityDialOption(value)


def with_user_agent(user_agent: str) -> UserAgentDialOption:
    """Prefix of the ``user-agent`` header (grpcio ``grpc.primary_user_agent``; grpcio appends its
    own ``grpc-python/<version>`` as grpc-go appends ``grpc-go/<version>``)."""
    return UserAgentDialOption(_printable("with_user_agent", user_agent, "user agent"))


def with_keepalive_params(
    time: float,
    timeout: float = DEFAULTS.keepalive_timeout,
    *,
    permit_without_stream: bool = False,
) -> KeepaliveDialOption:
    """Client keepalive (grpcio ``grpc.keepalive_time_ms`` / ``grpc.keepalive_timeout_ms`` /
    ``grpc.keepalive_permit_without_calls``). Off by default. ``time`` must be at least 10 s
    (grpc-go raises smaller values to 10 s; we refuse them instead: servers close connections that
    ping too often); ``timeout`` defaults to 20 s. Both are at most 2147483.647 s (grpc core takes
    them as a C int of milliseconds)."""
    t = _millis("with_keepalive_params", time, "time")
    if t < DEFAULTS.min_keepalive_time:
        raise _refuse(
            "with_keepalive_params",
            time,
            f"time must be at least {DEFAULTS.min_keepalive_time:g} s (grpc-go's minimum)",
        )
    to = _millis("with_keepalive_params", timeout, "timeout")
    if not isinstance(permit_without_stream, bool):
        raise _refuse(
            "with_keepalive_params", permit_without_stream, "permit_without_stream is a bool"
        )
    return KeepaliveDialOption(KeepaliveParams(t, to, permit_without_stream))


def with_max_recv_msg_size(n: int) -> MaxRecvMsgSizeDialOption:
    """Largest message the channel accepts (grpcio ``grpc.max_receive_message_length``); larger
    responses fail with RESOURCE_EXHAUSTED. Default 4 MiB."""
    return MaxRecvMsgSizeDialOption(_size("with_max_recv_msg_size", n))


def with_max_send_msg_size(n: int) -> MaxSendMsgSizeDialOption:
    """Largest message the channel sends (grpcio ``grpc.max_send_message_length``); larger requests
    fail with RESOURCE_EXHAUSTED. Default unlimited."""
    return MaxSendMsgSizeDialOption(_size("with_max_send_msg_size", n))


def with_default_service_config(config: str | Mapping[str, Any]) -> DefaultServiceConfigDialOption:
    """The service config (JSON text or a mapping) used when the resolver gives none (grpcio
    ``grpc.service_config``): method configs, retry policies (``retryPolicy`` with
    ``maxAttempts``, ``initialBackoff``, ``maxBackoff``, ``backoffMultiplier``,
    ``retryableStatusCodes``), load balancing. It must be a JSON object; grpc core validates the
    rest when the channel is created."""
    if isinstance(config, Mapping):
        try:
            text = json.dumps(dict(config))
        except (TypeError, ValueError) as exc:
            raise _refuse(
                "with_default_service_config", "mapping", f"not JSON-serialisable: {exc}"
            ) from None
    elif isinstance(config, str):
        text = config
    else:
        raise _refuse(
            "with_default_service_config", type(config).__name__, "pass JSON text or a mapping"
        )
    try:
        parsed = json.loads(text)
    except ValueError as exc:
        raise _refuse("with_default_service_config", config, f"not valid JSON: {exc}") from None
    if not isinstance(parsed, dict):
        raise _refuse("with_default_service_config", config, "the service config is a JSON object")
    _wire_text("with_default_service_config", text, "the service config")
    # A lone surrogate written as a JSON escape (\ud800, which json.dumps produces for one in a
    # mapping) passes the check above but fails grpc core's JSON parser when the channel is made.
    try:
        json.dumps(parsed, ensure_ascii=False).encode("utf-8")
    except UnicodeEncodeError:
        raise _refuse(
            "with_default_service_config",
            config,
            "strings must be valid Unicode: grpc core's JSON parser refuses a lone surrogate",
        ) from None
    return DefaultServiceConfigDialOption(text)


def with_disable_retry() -> DisableRetryDialOption:
    """Turn grpcio's retries off (``grpc.enable_retries`` 0), whatever the service config says.
    Transparent retries of calls that never left the client remain (as in grpc-go)."""
    return DisableRetryDialOption()


def with_compressor(name: str) -> CompressorDialOption:
    """Compress every request with ``name`` (``gzip``, ``deflate``, ``identity``): grpcio's
    channel-level ``compression``. Default: none. :func:`use_compressor` overrides it per call."""
    try:
        compression = get_compressor(name)
    except EncodingError as exc:
        raise OptionError(f"with_compressor: {exc}") from exc
    return CompressorDialOption(name.lower(), compression)


def with_codec(codec: Codec | str) -> CodecDialOption:
    """The codec for every call on the channel: a :class:`~grpc_channel.encoding.Codec` or a
    registered name. Default ``proto``. Local only: grpcio sends ``application/grpc`` whatever the
    codec."""
    if isinstance(codec, str):
        try:
            return CodecDialOption(get_codec(codec))
        except EncodingError as exc:
            raise OptionError(f"with_codec: {exc}") from exc
    if codec is None or not isinstance(codec, Codec) or not getattr(codec, "name", ""):
        raise _refuse("with_codec", codec, "pass a registered codec name or a codec with a name")
    return CodecDialOption(codec)


_UNARY_TYPES: Final = (grpc.UnaryUnaryClientInterceptor, grpc.aio.UnaryUnaryClientInterceptor)
_STREAM_TYPES: Final = (
    grpc.UnaryStreamClientInterceptor,
    grpc.StreamUnaryClientInterceptor,
    grpc.StreamStreamClientInterceptor,
    grpc.aio.UnaryStreamClientInterceptor,
    grpc.aio.StreamUnaryClientInterceptor,
    grpc.aio.StreamStreamClientInterceptor,
)


def _interceptors(option: str, items: Sequence[object], kinds: tuple[type, ...], what: str) -> None:
    if not items:
        raise _refuse(option, (), f"pass at least one {what} interceptor")
    for item in items:
        if not isinstance(item, kinds):
            names = ", ".join(f"{k.__module__}.{k.__qualname__}" for k in kinds)
            raise _refuse(option, type(item).__name__, f"a {what} interceptor implements {names}")


def with_unary_interceptor(interceptor: Any) -> UnaryInterceptorDialOption:
    """The interceptor for unary-unary calls: a ``grpc.UnaryUnaryClientInterceptor`` (sync
    channels) or ``grpc.aio.UnaryUnaryClientInterceptor`` (aio). A later one replaces it; it runs
    outside the chained ones. Only its unary-unary side is used."""
    _interceptors("with_unary_interceptor", (interceptor,), _UNARY_TYPES, "unary")
    return UnaryInterceptorDialOption((interceptor,), chained=False)


def with_chain_unary_interceptor(*interceptors: Any) -> UnaryInterceptorDialOption:
    """More unary-unary interceptors, appended; the first listed is the outermost."""
    _interceptors("with_chain_unary_interceptor", interceptors, _UNARY_TYPES, "unary")
    return UnaryInterceptorDialOption(tuple(interceptors), chained=True)


def with_stream_interceptor(interceptor: Any) -> StreamInterceptorDialOption:
    """The interceptor for the streaming shapes: implements one or more of grpcio's
    ``UnaryStream``/``StreamUnary``/``StreamStream`` client interceptors (sync or aio). Only its
    streaming sides are used."""
    _interceptors("with_stream_interceptor", (interceptor,), _STREAM_TYPES, "stream")
    return StreamInterceptorDialOption((interceptor,), chained=False)


def with_chain_stream_interceptor(*interceptors: Any) -> StreamInterceptorDialOption:
    """More streaming interceptors, appended; the first listed is the outermost."""
    _interceptors("with_chain_stream_interceptor", interceptors, _STREAM_TYPES, "stream")
    return StreamInterceptorDialOption(tuple(interceptors), chained=True)


def with_default_call_options(*call_options: CallOption) -> DefaultCallOptionsDialOption:
    """Call options applied to every call before its own options (which therefore win)."""
    for opt in call_options:
        if not isinstance(opt, CallOption):
            raise _refuse(
                "with_default_call_options", type(opt).__name__, "pass CallOption objects"
            )
    return DefaultCallOptionsDialOption(tuple(call_options))


# grpc core's floor for the initial/max reconnect backoff and the minimum connect timeout.
_MIN_RECONNECT_SECONDS = 0.1


def with_connect_params(
    *,
    base_delay: float = DEFAULTS.base_delay,
    multiplier: float = DEFAULTS.multiplier,
    jitter: float = DEFAULTS.jitter,
    max_delay: float = DEFAULTS.max_delay,
    min_connect_timeout: float = DEFAULTS.min_connect_timeout,
) -> ConnectParamsDialOption:
    """Reconnect backoff and minimum connect timeout, in seconds (defaults: 1, x1.6, ±0.2, 120;
    20).

    grpcio honours ``base_delay`` (``grpc.initial_reconnect_backoff_ms``), ``max_delay``
    (``grpc.max_reconnect_backoff_ms``) and ``min_connect_timeout``
    (``grpc.min_reconnect_backoff_ms``, which grpc core uses as the minimum connect timeout), in
    whole milliseconds. grpc core raises any of the three below 100 ms to 100 ms, so smaller
    values are refused, and so are values above 2147483.647 s (a C int of milliseconds). Its
    multiplier and jitter are fixed at 1.6 and 0.2 with no channel argument, so other values are
    refused too.
    """
    name = "with_connect_params"
    base = _millis(name, base_delay, "base_delay")
    top = _millis(name, max_delay, "max_delay")
    mct = _millis(name, min_connect_timeout, "min_connect_timeout")
    for value in (base_delay, max_delay, min_connect_timeout):
        if value < _MIN_RECONNECT_SECONDS:
            raise _refuse(
                name,
                value,
                "grpc core raises backoff delays and the connect timeout below 0.1 s to 0.1 s;"
                " pass at least 0.1",
            )
    if top < base:
        raise _refuse(name, max_delay, f"max_delay must be >= base_delay ({base:g} s)")
    if multiplier != DEFAULTS.multiplier:
        raise _refuse(
            name,
            multiplier,
            f"grpcio's reconnect backoff multiplier is fixed at {DEFAULTS.multiplier} (grpc core"
            " has no channel argument for it)",
        )
    if jitter != DEFAULTS.jitter:
        raise _refuse(
            name,
            jitter,
            f"grpcio's reconnect backoff jitter is fixed at {DEFAULTS.jitter} (grpc core has no"
            " channel argument for it)",
        )
    return ConnectParamsDialOption(ConnectParams(BackoffConfig(base, multiplier, jitter, top), mct))


def with_block(timeout: float = DEFAULTS.block_timeout) -> BlockDialOption:
    """Opening the channel waits until it is ready (``grpc.channel_ready_future`` / aio
    ``channel_ready()``), at most ``timeout`` seconds (default 20); then it is closed and
    :class:`DialTimeoutError` raised. Default: do not wait (connect on the first call). At most
    :data:`MAX_TIMEOUT` (1e9 s)."""
    return BlockDialOption(check_seconds("with_block", timeout))


# Keys set by a typed option: raw arguments may not set them behind its back.
_TYPED_KEYS: Final[dict[str, str]] = {
    "grpc.default_authority": "with_authority",
    "grpc.primary_user_agent": "with_user_agent",
    "grpc.keepalive_time_ms": "with_keepalive_params",
    "grpc.keepalive_timeout_ms": "with_keepalive_params",
    "grpc.keepalive_permit_without_calls": "with_keepalive_params",
    "grpc.max_receive_message_length": "with_max_recv_msg_size",
    "grpc.max_send_message_length": "with_max_send_msg_size",
    "grpc.service_config": "with_default_service_config",
    "grpc.enable_retries": "with_disable_retry",
    "grpc.initial_reconnect_backoff_ms": "with_connect_params",
    "grpc.max_reconnect_backoff_ms": "with_connect_params",
    "grpc.min_reconnect_backoff_ms": "with_connect_params",
    "grpc.default_compression_algorithm": "with_compressor",
}


def with_channel_args(*args: tuple[str, int | str]) -> ChannelArgsDialOption:
    """Raw grpcio channel arguments, ``("grpc.some_arg", value)`` pairs with ``int`` or ``str``
    values, passed as they are. Keys that a typed option sets are refused (use that option).

    grpc core reads them as C values, so what it cannot take exactly is refused here rather than
    at dial: ints outside a C int (-2**31 to 2**31-1; grpcio raises OverflowError), text with a
    lone surrogate (grpcio raises UnicodeEncodeError) or a NUL (grpc core cuts the text there)."""
    name = "with_channel_args"
    out: list[tuple[str, int | str]] = []
    for arg in args:
        if not (isinstance(arg, tuple) and len(arg) == 2 and isinstance(arg[0], str) and arg[0]):
            raise _refuse(name, arg, "each argument is a (name, value) tuple")
        key, value = arg
        _wire_text(name, key, "the argument name")
        if key in _TYPED_KEYS:
            raise _refuse(name, key, f"this argument is set by {_TYPED_KEYS[key]}()")
        if isinstance(value, bool) or not isinstance(value, int | str):
            raise _refuse(name, arg, "values are int or str")
        if isinstance(value, int):
            if not _INT32_MIN <= value <= _INT32_MAX:
                raise _refuse(
                    name,
                    arg,
                    f"int values must fit in a C int, {_INT32_MIN} to {_INT32_MAX} (grpc core"
                    " reads them as int)",
                )
            value = int(value)  # an int subclass reaches grpcio as a plain int
        else:
            value = str(_wire_text(name, value, f"the value of {key!r}"))
        out.append((key, value))
    return ChannelArgsDialOption(tuple(out))


def with_max_concurrency(n: int) -> MaxConcurrencyDialOption:
    """At most ``n`` calls in flight on the channel (the ``ConcurrencyLimit`` policy); others wait
    for a slot until their deadline. ``n <= 0`` means unlimited (the default); at most 2**63-1
    (the limiter counts in floats, which a larger int overflows)."""
    if not isinstance(n, int) or isinstance(n, bool):
        raise _refuse("with_max_concurrency", n, "pass an int (<= 0 for unlimited)")
    if n > _INT64_MAX:
        raise _refuse("with_max_concurrency", n, f"at most {_INT64_MAX}; pass 0 for unlimited")
    return MaxConcurrencyDialOption(max(int(n), 0))


def with_app_token(token: str | None = None) -> AppTokenDialOption:
    """Send the app API token as ``dapr-api-token`` on every call (the ``AppToken`` policy).
    ``None`` reads the ``APP_API_TOKEN`` environment variable when the channel opens. The token
    must be printable ASCII; it is never shown in errors or ``repr``."""
    if token is not None and (
        not isinstance(token, str) or not token or not (token.isascii() and token.isprintable())
    ):
        raise OptionError(
            f"with_app_token: got an invalid token ({type(token).__name__}); the token must be a "
            "non-empty string of printable ASCII, or None to read APP_API_TOKEN"
        )
    return AppTokenDialOption(token)


def with_tracing(spec: Any = None) -> TracingDialOption:
    """Trace every call with OpenTelemetry (the ``Tracing`` policy) as ``spec`` says
    (``grpc_channel.interceptors.TracingSpec``; ``None``: its defaults)."""
    if spec is None:
        spec = TracingSpec()
    elif not isinstance(spec, TracingSpec):
        raise _refuse(
            "with_tracing",
            type(spec).__name__,
            "pass an grpc_channel.interceptors.TracingSpec or None",
        )
    return TracingDialOption(spec)


def fold_dial_options(*options: DialOption) -> DialSettings:
    """Apply ``options`` in order over the defaults (later wins) and return the settings."""
    settings = DialSettings()
    for opt in options:
        if not isinstance(opt, DialOption):
            hint = (
                " (a call option? wrap it in with_default_call_options)"
                if isinstance(opt, CallOption)
                else ""
            )
            raise _refuse("dial", type(opt).__name__, f"pass DialOption objects{hint}")
        opt.apply(settings)
    return settings
