"""Dial options and call options in the grpc-go style, and what each one does in grpcio.

Every option is a small frozen dataclass whose fields are the exported record of what it sets, so
an interceptor or a test can inspect it (grpc-go exported its option structs for the same reason).
The constructor functions (``with_authority(...)``, ``timeout(...)`` ...) check their argument at
once and raise :class:`OptionError` naming the option, the value and what is allowed; a token is
never repeated in an error.

Folding
-------
Options fold in order over one set of defaults (:data:`DEFAULTS` and the field defaults of
:class:`DialSettings` / :class:`CallInfo`, nowhere else): later wins. For a call the order is
library defaults, then the dial-level default call options (:func:`with_default_call_options`), then
grpcio-style keyword arguments (``timeout=``, ``metadata=`` ...), then the per-call options.
Metadata accumulates instead: context metadata (``grpc_channel.metadata.outgoing_metadata``), then
every ``call_metadata(...)`` option and keyword in the same order.

Hooks
-----
A :class:`CallOption` has ``before(info)`` and ``after(info)``. ``before`` runs before the call is
sent and may refuse it by raising (built-in options raise ``LocalRpcError`` so that one
``except grpc.RpcError`` catches everything). ``after`` runs once the call completed, on success
and on failure alike, with headers, trailers, peer, code and details filled; it does not run when
a ``before`` refused the call. :func:`on_finish` callbacks fire exactly once per call, also when the
call failed or was refused. An exception raised by a user hook does not stop the other hooks: every
``after`` and every ``on_finish`` runs, then the first such exception is raised if the call itself
succeeded; if the call failed, the call's error is raised and the hook's exception is attached to it
as ``__context__``. (Slots are released by the interceptor chain, which does not depend on hooks.)

What grpcio can and cannot do
-----------------------------
- grpcio has no client-side peer address; :func:`peer` records the target the channel was dialled
  with (for example ``127.0.0.1:50051``), or ``""`` when the call never reached the wire or the
  target is unknown (a stub wrapped without ``target=``).
- grpcio cannot set the content-subtype of a call: :func:`call_content_subtype` and
  :func:`force_codec` choose how messages are encoded on this side only.
- grpcio has no per-call message size limits: :func:`max_call_send_msg_size` and
  :func:`max_call_recv_msg_size` are enforced here, by measuring the encoded message before it is
  sent and the bytes received before they are decoded (RESOURCE_EXHAUSTED, like grpc-go).
- grpcio's reconnect backoff has channel arguments for the base delay, the maximum delay and the
  minimum connect timeout, but its multiplier (1.6) and jitter (0.2) are fixed:
  :func:`with_connect_params` refuses other values instead of ignoring them.
- What grpcio would only fail on later is refused when the option is made (measured with grpcio
  1.85): timeouts above :data:`MAX_TIMEOUT` (1e9 s; longer deadlines overflow grpcio's int64
  nanoseconds or thread waits), millisecond settings above 2**31-1 ms and channel-argument ints
  outside a C int (OverflowError at dial), text with a lone surrogate (UnicodeEncodeError) or a NUL
  (cut short by grpc core). Values in messages are shortened when long.
"""

from __future__ import annotations

import json
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, fields
from typing import Any, ClassVar, Final, Protocol, runtime_checkable

import grpc

from grpc_channel.encoding import Codec, EncodingError, get_codec, get_compressor
from grpc_channel.interceptors._deadline import (
    MAX_TIMEOUT as MAX_TIMEOUT,  # the documented limit, here too
)
from grpc_channel.interceptors._deadline import check_timeout, short_repr
from grpc_channel.metadata import Metadata, MetadataError, redacted_pairs

__all__ = [
    "DEFAULTS",
    "AppTokenDialOption",
    "AuthorityDialOption",
    "BackoffConfig",
    "BlockDialOption",
    "CallInfo",
    "CallOption",
    "ChannelArgsDialOption",
    "ChannelCredentialsDialOption",
    "CodecDialOption",
    "CompressorCallOption",
    "CompressorDialOption",
    "ConnectParams",
    "ConnectParamsDialOption",
    "ContentSubtypeCallOption",
    "DefaultCallOptionsDialOption",
    "DefaultServiceConfigDialOption",
    "Defaults",
    "DialOption",
    "DialSettings",
    "DialTimeoutError",
    "DisableRetryDialOption",
    "ForceCodecCallOption",
    "HeaderCallOption",
    "InsecureDialOption",
    "KeepaliveDialOption",
    "KeepaliveParams",
    "MaxConcurrencyDialOption",
    "MaxRecvMsgSizeCallOption",
    "MaxRecvMsgSizeDialOption",
    "MaxSendMsgSizeCallOption",
    "MaxSendMsgSizeDialOption",
    "MetadataCallOption",
    "OnFinishCallOption",
    "OptionError",
    "Peer",
    "PeerCallOption",
    "PerRPCCredentials",
    "PerRPCCredsCallOption",
    "PerRPCCredsDialOption",
    "StreamInterceptorDialOption",
    "TimeoutCallOption",
    "TracingDialOption",
    "TrailerCallOption",
    "UnaryInterceptorDialOption",
    "UserAgentDialOption",
    "WaitForReadyCallOption",
    "call_content_subtype",
    "call_metadata",
    "fold_dial_options",
    "force_codec",
    "header",
    "max_call_recv_msg_size",
    "max_call_send_msg_size",
    "on_finish",
    "open_aio_channel",
    "open_channel",
    "peer",
    "per_rpc_credentials",
    "timeout",
    "trailer",
    "use_compressor",
    "wait_for_ready",
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

MetadataPairs = tuple[tuple[str, str | bytes], ...]
_NO_PAIRS: Final[MetadataPairs] = ()
_INT32_MAX: Final = 2**31 - 1
_INT32_MIN: Final = -(2**31)
_INT64_MAX: Final = 2**63 - 1


# ------------------------------------------------------------------------------------------
# Defaults: the one place.


@dataclass(frozen=True, slots=True)
class Defaults:
    """Every library default, in one record (grpc-go's values, which grpc core shares)."""

    #: Largest message a client accepts (grpc-go and grpcio: 4 MiB).
    max_recv_msg_size: int = 4 * 1024 * 1024
    #: Largest message a client sends: ``None`` is unlimited (grpc-go: MaxInt32; grpcio: -1).
    max_send_msg_size: int | None = None
    #: Reconnect backoff (grpc's connection-backoff.md): 1 s base, x1.6, ±20 % jitter, 120 s cap.
    base_delay: float = 1.0
    multiplier: float = 1.6
    jitter: float = 0.2
    max_delay: float = 120.0
    #: Shortest time given to one connection attempt.
    min_connect_timeout: float = 20.0
    #: Keepalive: off unless configured; when on, 20 s to wait for a ping ack; grpc-go's floor for
    #: the ping interval is 10 s.
    keepalive_timeout: float = 20.0
    min_keepalive_time: float = 10.0
    #: How long ``with_block()`` waits for the channel to become ready.
    block_timeout: float = 20.0
    #: Codec used when none is chosen.
    codec: str = "proto"
    #: Calls fail fast (do not wait for a ready connection) unless asked to.
    wait_for_ready: bool = False


DEFAULTS: Final = Defaults()


class OptionError(ValueError):
    """An option got an argument it cannot use; the message names the option, the value and what is
    allowed (tokens are described by type only)."""


class DialTimeoutError(TimeoutError):
    """``with_block(timeout)``: the channel did not become ready in time (it has been closed)."""


def _refuse(option: str, value: object, allowed: str) -> OptionError:
    # short_repr: a huge value is cut (and a huge int, which repr() refuses, described).
    return OptionError(f"{option}: got {short_repr(value)}; {allowed}")


def check_seconds(option: str, value: object, *, allow_zero: bool = False) -> float:
    """``value`` as float seconds: a finite number ``> 0`` (``>= 0`` with ``allow_zero``) and at
    most :data:`MAX_TIMEOUT` (1e9 s), else :class:`OptionError` naming ``option``. The one
    timeout rule (``grpc_channel.interceptors._deadline.check_timeout``) with this module's error
    type."""
    return check_timeout(option, value, allow_zero=allow_zero, error=OptionError)


def _millis(option: str, value: object, what: str) -> float:
    """Seconds that grpc core takes as whole milliseconds in a C int (at most 2**31-1 ms, about
    24.8 days): larger values make grpcio raise OverflowError when the channel is created."""
    number = isinstance(value, int | float) and not isinstance(value, bool)
    # int(value * 1000) > 2**31-1, without int() (inf) or float() (a huge int) on the way.
    if number and value != math.inf and value * 1000 >= 2**31:  # type: ignore[operator]
        raise _refuse(
            option,
            value,
            f"{what} must be at most {_INT32_MAX / 1000} s (grpc core takes it as a C int of"
            f" milliseconds: 2**31-1 ms, about {_INT32_MAX / 86_400_000:.1f} days)",
        )
    return check_seconds(option, value)


def _size(option: str, value: object) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= _INT32_MAX:
        raise _refuse(option, value, f"bytes must be an int from 0 to {_INT32_MAX}")
    return value


def _wire_text(option: str, value: object, what: str) -> str:
    """A str grpc core can take as a C string: UTF-8 encodable (a lone surrogate makes grpcio
    raise UnicodeEncodeError at dial) and without NUL (grpc core silently cuts the text there)."""
    if not isinstance(value, str):
        raise _refuse(option, value, f"{what} must be a str")
    if "\0" in value:
        raise _refuse(
            option, value, f"{what} must not contain NUL: grpc core would cut the text there"
        )
    if not value.isascii():
        try:
            value.encode("utf-8")
        except UnicodeEncodeError as exc:
            raise _refuse(
                option,
                value,
                f"{what} must be valid Unicode (UTF-8 encodable); the character at position"
                f" {exc.start} is a lone surrogate",
            ) from None
    return value


def _printable(option: str, value: object, what: str) -> str:
    if not isinstance(value, str) or not value or not (value.isascii() and value.isprintable()):
        raise _refuse(option, value, f"{what} must be a non-empty string of printable ASCII")
    return value


# ------------------------------------------------------------------------------------------
# Per-RPC credentials in grpc-go's shape.


@runtime_checkable
class PerRPCCredentials(Protocol):
    """grpc-go's ``credentials.PerRPCCredentials``: metadata added to every call.

    ``get_request_metadata(method)`` gets the full method path (``"/pkg.Service/Method"``; grpc-go
    passes a service URI instead) and returns the pairs to add. ``require_transport_security()``
    says whether they may only travel over a secure (TLS or local-credentials) channel; the call is
    refused with UNAUTHENTICATED on an insecure one, before anything is sent.
    """

    def get_request_metadata(self, method: str) -> Mapping[str, str | bytes]: ...

    def require_transport_security(self) -> bool: ...


def _creds_repr(creds: object) -> str:
    # Credentials objects are the user's and their repr may show the secret: the type only.
    return f"<{type(creds).__name__}>"


def _check_rpc_credentials(option: str, creds: object) -> None:
    if isinstance(creds, grpc.CallCredentials | PerRPCCredentials):
        return
    raise _refuse(
        option,
        type(creds).__name__,
        "pass grpc.CallCredentials or an object with get_request_metadata(method) and "
        "require_transport_security()",
    )


# ------------------------------------------------------------------------------------------
# The per-call record.


class Peer:
    """Holder filled by :func:`peer` after the call: ``address`` is the dialled target (grpcio has
    no client-side peer address), ``""`` if the call never reached the wire or it is unknown."""

    __slots__ = ("address",)

    def __init__(self, address: str = "") -> None:
        self.address = address

    def __repr__(self) -> str:
        return f"Peer(address={self.address!r})"


_new_call_info = object.__new__


class CallInfo:
    """What the call options of one call fold into, and what the call produced.

    Set before the call (by library defaults, dial defaults, keywords and call options, in that
    order): ``method``, ``timeout`` (seconds or ``None``), ``metadata`` (pairs; accumulates),
    ``wait_for_ready``, ``compressor`` (name or ``None``: the channel's), ``compression``,
    ``credentials`` (``grpc.CallCredentials``), ``rpc_credentials`` (grpc-go style objects),
    ``codec``, ``content_subtype``, ``max_send_msg_size`` / ``max_recv_msg_size`` (``None``: no
    per-call limit), ``on_finish`` (callbacks). Known to the engine: ``target`` and ``secure``
    (``None`` when unknown).

    Filled after the call: ``headers``, ``trailers`` (grpcio pairs), ``peer``, ``code``
    (``grpc.StatusCode``), ``details``, ``error`` (the exception, or ``None``), ``response`` and
    ``sent`` (whether the call reached the wire).
    """

    __slots__ = (
        "code",
        "codec",
        "compression",
        "compressor",
        "content_subtype",
        "credentials",
        "details",
        "error",
        "headers",
        "max_recv_msg_size",
        "max_send_msg_size",
        "metadata",
        "method",
        "on_finish",
        "peer",
        "response",
        "rpc_credentials",
        "secure",
        "sent",
        "target",
        "timeout",
        "trailers",
        "wait_for_ready",
    )

    def __init__(
        self,
        method: str = "",
        *,
        codec: Codec | None = None,
        target: str = "",
        secure: bool | None = None,
    ) -> None:
        self.method = method
        self.timeout: float | None = None
        self.metadata: MetadataPairs = _NO_PAIRS
        self.wait_for_ready: bool | None = None
        self.compressor: str | None = None
        self.compression: grpc.Compression | None = None
        self.credentials: grpc.CallCredentials | None = None
        self.rpc_credentials: tuple[PerRPCCredentials, ...] = ()
        self.codec: Codec = codec if codec is not None else get_codec(DEFAULTS.codec)
        self.content_subtype = ""
        self.max_send_msg_size: int | None = None
        self.max_recv_msg_size: int | None = None
        self.on_finish: list[Callable[[BaseException | None], None]] | None = None
        self.target = target
        self.secure = secure
        self.headers: MetadataPairs = _NO_PAIRS
        self.trailers: MetadataPairs = _NO_PAIRS
        self.peer = ""
        self.code: grpc.StatusCode | None = None
        self.details = ""
        self.error: BaseException | None = None
        self.response: Any = None
        self.sent = False

    def copy(self) -> CallInfo:
        """A shallow copy (the ``on_finish`` list is copied). Written out field by field: this
        runs on every call with options, and a loop over ``__slots__`` costs twice as much."""
        other = _new_call_info(CallInfo)
        other.method = self.method
        other.timeout = self.timeout
        other.metadata = self.metadata
        other.wait_for_ready = self.wait_for_ready
        other.compressor = self.compressor
        other.compression = self.compression
        other.credentials = self.credentials
        other.rpc_credentials = self.rpc_credentials
        other.codec = self.codec
        other.content_subtype = self.content_subtype
        other.max_send_msg_size = self.max_send_msg_size
        other.max_recv_msg_size = self.max_recv_msg_size
        other.on_finish = None if self.on_finish is None else list(self.on_finish)
        other.target = self.target
        other.secure = self.secure
        other.headers = self.headers
        other.trailers = self.trailers
        other.peer = self.peer
        other.code = self.code
        other.details = self.details
        other.error = self.error
        other.response = self.response
        other.sent = self.sent
        return other

    def __repr__(self) -> str:
        # Metadata values are left out: they may carry tokens.
        code = self.code.name if self.code is not None else None
        keys = [k for k, _ in self.metadata]
        return (
            f"CallInfo(method={self.method!r}, timeout={self.timeout!r}, metadata_keys={keys!r}, "
            f"codec={self.codec.name!r}, code={code})"
        )


# ------------------------------------------------------------------------------------------
# Call options.


class CallOption:
    """Base of call options: ``before(info)`` configures (or refuses) the call, ``after(info)``
    reads its outcome. Subclass it for your own options; the defaults do nothing.

    ``static`` is true for options whose ``before`` only sets fields of the :class:`CallInfo`
    and never fails at call time; the engine folds such dial-level default options once per
    channel instead of once per call. Leave it false in your own options.
    """

    __slots__ = ()

    static: ClassVar[bool] = False
    #: True if the class overrides :meth:`after` (the engine skips the others after the call).
    has_after: ClassVar[bool] = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        cls.has_after = cls.after is not CallOption.after

    def before(self, info: CallInfo) -> None:
        """Configure the call; raise to refuse it."""

    def after(self, info: CallInfo) -> None:
        """Read the outcome of the completed call (success or failure)."""


@dataclass(frozen=True, slots=True)
class HeaderCallOption(CallOption):
    """:func:`header`: ``md`` receives the response headers after the call."""

    md: Metadata

    def after(self, info: CallInfo) -> None:
        self.md.replace_from_grpc(info.headers)


@dataclass(frozen=True, slots=True)
class TrailerCallOption(CallOption):
    """:func:`trailer`: ``md`` receives the response trailers after the call."""

    md: Metadata

    def after(self, info: CallInfo) -> None:
        self.md.replace_from_grpc(info.trailers)


@dataclass(frozen=True, slots=True)
class PeerCallOption(CallOption):
    """:func:`peer`: ``holder.address`` receives the peer after the call."""

    holder: Peer

    def after(self, info: CallInfo) -> None:
        self.holder.address = info.peer


@dataclass(frozen=True, slots=True)
class OnFinishCallOption(CallOption):
    """:func:`on_finish`: ``callback(error)`` once the call is over (``error`` is ``None`` on
    success)."""

    static: ClassVar[bool] = True
    callback: Callable[[BaseException | None], None]

    def before(self, info: CallInfo) -> None:
        if info.on_finish is None:
            info.on_finish = [self.callback]
        else:
            info.on_finish.append(self.callback)


@dataclass(frozen=True, slots=True)
class WaitForReadyCallOption(CallOption):
    """:func:`wait_for_ready`: grpcio's ``wait_for_ready=``."""

    static: ClassVar[bool] = True
    wait_for_ready: bool

    def before(self, info: CallInfo) -> None:
        info.wait_for_ready = self.wait_for_ready


@dataclass(frozen=True, slots=True)
class TimeoutCallOption(CallOption):
    """:func:`timeout`: grpcio's ``timeout=`` in seconds."""

    static: ClassVar[bool] = True
    timeout: float

    def before(self, info: CallInfo) -> None:
        info.timeout = self.timeout


@dataclass(frozen=True, slots=True)
class MetadataCallOption(CallOption):
    """:func:`call_metadata`: pairs appended to the call's metadata (validated by ``Metadata``)."""

    static: ClassVar[bool] = True
    pairs: MetadataPairs

    def before(self, info: CallInfo) -> None:
        info.metadata = info.metadata + self.pairs if info.metadata else self.pairs

    def __repr__(self) -> str:
        return f"MetadataCallOption(pairs={redacted_pairs(self.pairs)!r})"


@dataclass(frozen=True, slots=True)
class CompressorCallOption(CallOption):
    """:func:`use_compressor`: grpcio's ``compression=`` for this call."""

    static: ClassVar[bool] = True
    name: str
    compression: grpc.Compression

    def before(self, info: CallInfo) -> None:
        info.compressor = self.name
        info.compression = self.compression


@dataclass(frozen=True, slots=True)
class PerRPCCredsCallOption(CallOption):
    """:func:`per_rpc_credentials`: ``grpc.CallCredentials`` go to grpcio's ``credentials=``;
    grpc-go style credentials add their metadata to the call (checked against the channel's
    security when the call starts)."""

    static: ClassVar[bool] = True
    creds: grpc.CallCredentials | PerRPCCredentials

    def before(self, info: CallInfo) -> None:
        if isinstance(self.creds, grpc.CallCredentials):
            info.credentials = self.creds
        else:
            info.rpc_credentials = (*info.rpc_credentials, self.creds)

    def __repr__(self) -> str:
        return f"PerRPCCredsCallOption(creds={_creds_repr(self.creds)})"


@dataclass(frozen=True, slots=True)
class ContentSubtypeCallOption(CallOption):
    """:func:`call_content_subtype`: the registered codec named ``content_subtype`` encodes this
    call's messages (locally; grpcio cannot put the subtype on the wire)."""

    static: ClassVar[bool] = True
    content_subtype: str
    codec: Codec

    def before(self, info: CallInfo) -> None:
        info.content_subtype = self.content_subtype
        info.codec = self.codec


@dataclass(frozen=True, slots=True)
class ForceCodecCallOption(CallOption):
    """:func:`force_codec`: ``codec`` encodes this call's messages (locally)."""

    static: ClassVar[bool] = True
    codec: Codec

    def before(self, info: CallInfo) -> None:
        info.codec = self.codec
        if not info.content_subtype:
            info.content_subtype = self.codec.name.lower()


@dataclass(frozen=True, slots=True)
class MaxRecvMsgSizeCallOption(CallOption):
    """:func:`max_call_recv_msg_size`: largest response message, checked before decoding."""

    static: ClassVar[bool] = True
    max_recv_msg_size: int

    def before(self, info: CallInfo) -> None:
        info.max_recv_msg_size = self.max_recv_msg_size


@dataclass(frozen=True, slots=True)
class MaxSendMsgSizeCallOption(CallOption):
    """:func:`max_call_send_msg_size`: largest request message, checked before sending."""

    static: ClassVar[bool] = True
    max_send_msg_size: int

    def before(self, info: CallInfo) -> None:
        info.max_send_msg_size = self.max_send_msg_size


def header(md: Metadata) -> HeaderCallOption:
    """After the call, ``md`` holds the response headers (replacing what it held), on success and
    on failure. Empty if the call never reached the server."""
    if not isinstance(md, Metadata):
        raise _refuse("header", type(md).__name__, "pass a grpc_channel.metadata.Metadata to fill")
    return HeaderCallOption(md)


def trailer(md: Metadata) -> TrailerCallOption:
    """After the call, ``md`` holds the response trailers (replacing what it held), on success and
    on failure."""
    if not isinstance(md, Metadata):
        raise _refuse("trailer", type(md).__name__, "pass a grpc_channel.metadata.Metadata to fill")
    return TrailerCallOption(md)


def peer(holder: Peer) -> PeerCallOption:
    """After the call, ``holder.address`` is the peer: the dialled target (grpcio exposes no
    client-side peer address), ``""`` if the call never reached the wire or the target is
    unknown."""
    if not isinstance(holder, Peer):
        raise _refuse("peer", type(holder).__name__, "pass a grpc_channel.options.Peer to fill")
    return PeerCallOption(holder)


def on_finish(callback: Callable[[BaseException | None], None]) -> OnFinishCallOption:
    """``callback(error)`` runs exactly once when the call is over: ``error`` is ``None`` on
    success, else the ``grpc.RpcError`` (or the exception that refused the call). For streaming
    calls it runs when the stream ends, fails or is cancelled."""
    if not callable(callback):
        raise _refuse("on_finish", type(callback).__name__, "pass a callable taking the error")
    return OnFinishCallOption(callback)


def wait_for_ready(enabled: bool = True) -> WaitForReadyCallOption:
    """With ``True`` a call waits (until its deadline) for the channel to become ready instead of
    failing fast with UNAVAILABLE. Default: fail fast."""
    if not isinstance(enabled, bool):
        raise _refuse("wait_for_ready", enabled, "pass True or False")
    return WaitForReadyCallOption(enabled)


def timeout(seconds: float) -> TimeoutCallOption:
    """The call's timeout in seconds (finite, > 0, at most :data:`MAX_TIMEOUT`: 1e9 s, about
    31.7 years); it fails with DEADLINE_EXCEEDED when it expires. Default: none."""
    return TimeoutCallOption(check_seconds("timeout", seconds))


def call_metadata(*args: Any) -> MetadataCallOption:
    """Metadata appended to the call: ``call_metadata("k1", "v1", "k2", "v2")`` or
    ``call_metadata(md)`` with a ``Metadata``, a mapping or ``(key, value)`` pairs. Validated now by
    ``Metadata``'s rules (reserved keys and invalid values refused).

    Also importable from this module as ``metadata``; the package root exports only
    ``call_metadata`` because ``grpc_channel.metadata`` is the metadata module."""
    try:
        if len(args) == 1 and not isinstance(args[0], str | bytes):
            md = args[0] if isinstance(args[0], Metadata) else Metadata(args[0])
        else:
            md = Metadata.pairs(*args)
    except MetadataError as exc:
        raise OptionError(f"call_metadata: {exc}") from exc
    return MetadataCallOption(md.to_grpc())


metadata = call_metadata


def use_compressor(name: str) -> CompressorCallOption:
    """Compress this call's request with ``name`` (``gzip``, ``deflate`` or ``identity``),
    overriding the channel's compressor."""
    try:
        compression = get_compressor(name)
    except EncodingError as exc:
        raise OptionError(f"use_compressor: {exc}") from exc
    return CompressorCallOption(name.lower(), compression)


def per_rpc_credentials(creds: grpc.CallCredentials | PerRPCCredentials) -> PerRPCCredsCallOption:
    """Credentials for this call: ``grpc.CallCredentials`` (grpcio sends them only over a secure
    channel; refused on a channel known to be insecure) or a grpc-go style object (see
    :class:`PerRPCCredentials`)."""
    _check_rpc_credentials("per_rpc_credentials", creds)
    return PerRPCCredsCallOption(creds)


def call_content_subtype(name: str) -> ContentSubtypeCallOption:
    """Encode this call's messages with the registered codec ``name`` (case-insensitive).

    grpcio always sends ``content-type: application/grpc`` and offers no way to change it, so the
    subtype does not travel: this only selects the codec used on this side.
    """
    if not isinstance(name, str) or not name:
        raise _refuse("call_content_subtype", name, "pass a registered codec name")
    try:
        codec = get_codec(name)
    except EncodingError as exc:
        raise OptionError(f"call_content_subtype: {exc}") from exc
    return ContentSubtypeCallOption(name.lower(), codec)


def force_codec(codec: Codec) -> ForceCodecCallOption:
    """Encode this call's messages with ``codec`` (registered or not); locally only, as for
    :func:`call_content_subtype`."""
    if codec is None or not isinstance(codec, Codec) or not getattr(codec, "name", ""):
        raise _refuse(
            "force_codec", codec, "pass a codec with a name, marshal(obj) and unmarshal(data, type)"
        )
    return ForceCodecCallOption(codec)


def max_call_recv_msg_size(n: int) -> MaxRecvMsgSizeCallOption:
    """Largest response message (encoded bytes) this call accepts; a larger one fails the call
    with RESOURCE_EXHAUSTED before it is decoded. The channel's limit (default 4 MiB) still
    applies."""
    return MaxRecvMsgSizeCallOption(_size("max_call_recv_msg_size", n))


def max_call_send_msg_size(n: int) -> MaxSendMsgSizeCallOption:
    """Largest request message (encoded bytes) this call sends; a larger one fails the call with
    RESOURCE_EXHAUSTED before anything is sent."""
    return MaxSendMsgSizeCallOption(_size("max_call_send_msg_size", n))


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
    from grpc_channel.interceptors._tracing import TracingSpec

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


# ------------------------------------------------------------------------------------------
# Opening a channel.


def _channel_credentials(settings: DialSettings) -> grpc.ChannelCredentials | None:
    call_creds = [c for c in settings.per_rpc_credentials if isinstance(c, grpc.CallCredentials)]
    if settings.credentials is None:
        if not settings.insecure:
            raise OptionError(
                "dial: no transport security set; pass with_insecure() or "
                "with_transport_credentials(...)"
            )
        if call_creds:
            raise OptionError(
                "with_per_rpc_credentials: grpc.CallCredentials are only sent over a secure "
                "channel (grpcio drops them on plaintext); pass with_transport_credentials(...) "
                "too, or use a grpc-go style credentials object"
            )
        for creds in settings.per_rpc_credentials:
            if isinstance(creds, PerRPCCredentials) and creds.require_transport_security():
                raise OptionError(
                    "with_per_rpc_credentials: the credentials require transport security and the "
                    "channel is insecure; pass with_transport_credentials(...)"
                )
        return None
    if call_creds:
        return grpc.composite_channel_credentials(settings.credentials, *call_creds)
    return settings.credentials


def _check_target(target: object) -> str:
    if not isinstance(target, str) or not target.strip():
        raise _refuse(
            "dial", target, "the target must be a non-empty string, e.g. '127.0.0.1:50051'"
        )
    return _wire_text("dial", target, "the target")


def _policies(settings: DialSettings, target: str) -> list[Any]:
    """Our policies for these settings, outermost first: tracing (so a span includes the wait for
    a slot), the concurrency limit, grpc-go style per-RPC credentials, the app token."""
    from grpc_channel._engine import RpcCredentialsPolicy

    out: list[Any] = []
    if settings.tracing is not None:
        from grpc_channel.interceptors._tracing import Tracing

        out.append(Tracing(settings.tracing, target=target))
    if settings.max_concurrency > 0:
        from grpc_channel.interceptors._concurrency import ConcurrencyLimit

        out.append(ConcurrencyLimit(settings.max_concurrency))
    go_creds = tuple(c for c in settings.per_rpc_credentials if isinstance(c, PerRPCCredentials))
    if go_creds:
        out.append(RpcCredentialsPolicy(go_creds))
    if settings.app_token is not None or settings.app_token_from_env:
        from grpc_channel.interceptors._token import AppToken

        out.append(AppToken(settings.app_token))
    return out


class _ShapeFilter:
    """Exposes only some call shapes of a grpcio interceptor, so that an interceptor given as
    "unary" never sees streaming calls (and the reverse), as in grpc-go."""

    __slots__ = ("inner",)

    def __init__(self, inner: Any) -> None:
        self.inner = inner


def _unary_only(interceptor: Any, aio: bool) -> Any:
    base = grpc.aio.UnaryUnaryClientInterceptor if aio else grpc.UnaryUnaryClientInterceptor
    if not isinstance(interceptor, base):
        raise OptionError(
            f"with_unary_interceptor: {type(interceptor).__name__} is not a "
            f"{base.__module__}.{base.__qualname__}; {'aio' if aio else 'sync'} channels need "
            f"{'grpc.aio' if aio else 'grpc'} interceptors"
        )
    if not isinstance(interceptor, _STREAM_TYPES):
        return interceptor
    if aio:

        class _AioUnary(_ShapeFilter, grpc.aio.UnaryUnaryClientInterceptor):  # type: ignore[type-arg]
            __slots__ = ()

            async def intercept_unary_unary(self, continuation, details, request):  # type: ignore[no-untyped-def]
                return await self.inner.intercept_unary_unary(continuation, details, request)

        return _AioUnary(interceptor)

    class _Unary(_ShapeFilter, grpc.UnaryUnaryClientInterceptor):  # type: ignore[type-arg]
        __slots__ = ()

        def intercept_unary_unary(self, continuation, details, request):  # type: ignore[no-untyped-def]
            return self.inner.intercept_unary_unary(continuation, details, request)

    return _Unary(interceptor)


_SHAPE_METHODS: Final[dict[str, str]] = {
    "UnaryStreamClientInterceptor": "intercept_unary_stream",
    "StreamUnaryClientInterceptor": "intercept_stream_unary",
    "StreamStreamClientInterceptor": "intercept_stream_stream",
}


def _stream_only(interceptor: Any, aio: bool) -> list[Any]:
    kinds = _STREAM_TYPES[3:] if aio else _STREAM_TYPES[:3]
    if not isinstance(interceptor, kinds):
        flavour = "grpc.aio" if aio else "grpc"
        raise OptionError(
            f"with_stream_interceptor: {type(interceptor).__name__} implements no {flavour} "
            f"streaming client interceptor; {'aio' if aio else 'sync'} channels need {flavour} "
            "interceptors"
        )
    bases = [k for k in kinds if isinstance(interceptor, k)]
    if not isinstance(interceptor, _UNARY_TYPES) and (len(bases) == 1 or not aio):
        return [interceptor]
    # Keep only the streaming sides. grpc.aio files an interceptor under the first shape class it
    # matches only, so there each streaming side gets an adapter of its own.
    groups = [[b] for b in bases] if aio else [bases]
    out = []
    for group in groups:
        namespace: dict[str, Any] = {"__slots__": ()}
        for base in group:
            method_name = _SHAPE_METHODS[base.__name__]
            namespace[method_name] = _delegate(method_name)
        out.append(type("_StreamOnly", (_ShapeFilter, *group), namespace)(interceptor))
    return out


def _delegate(method_name: str) -> Callable[..., Any]:
    # For aio the inner method is a coroutine function: returning its coroutine is what grpc.aio
    # awaits.
    def method(self: _ShapeFilter, *args: Any) -> Any:
        return getattr(self.inner, method_name)(*args)

    return method


def _grpc_interceptors(settings: DialSettings, aio: bool) -> list[Any]:
    unary = [_unary_only(i, aio) for i in settings.unary_interceptors]
    stream = [f for i in settings.stream_interceptors for f in _stream_only(i, aio)]
    # grpcio asks each interceptor whether it handles the call's shape, so one list keeps the
    # order of the unary ones among themselves and of the stream ones among themselves.
    return unary + stream


def open_channel(target: str, settings: DialSettings) -> grpc.Channel:
    """A grpcio channel to ``target`` built from ``settings``.

    Applies the transport and per-RPC credentials, the channel arguments, the compressor, the
    user's interceptors (``grpc.intercept_channel``, first listed outermost) and our policies
    (one ``grpc_channel.interceptors.compose(...).wrap`` layer around them). With ``with_block`` it
    waits for the channel to be ready and raises :class:`DialTimeoutError` (after closing it) on
    time-out. Raises :class:`OptionError` for settings that cannot work (no transport security
    chosen, ``grpc.CallCredentials`` or security-requiring credentials on an insecure channel, aio
    interceptors on a sync channel).
    """
    target = _check_target(target)
    creds = _channel_credentials(settings)
    interceptors = _grpc_interceptors(settings, aio=False)
    policies = _policies(settings, target)
    options = settings.grpc_options()
    compression = get_compressor(settings.compressor) if settings.compressor else None
    if creds is None:
        channel: grpc.Channel = grpc.insecure_channel(target, options, compression)
    else:
        channel = grpc.secure_channel(target, creds, options, compression)
    try:
        if settings.block:
            try:
                grpc.channel_ready_future(channel).result(timeout=settings.block_timeout)
            except grpc.FutureTimeoutError:
                raise DialTimeoutError(
                    f"dial {target}: channel not ready within {settings.block_timeout:g} s"
                ) from None
        if interceptors:
            channel = grpc.intercept_channel(channel, *interceptors)
        if policies:
            from grpc_channel.interceptors._chain import compose

            channel = compose(*policies).wrap(channel)
    except BaseException:
        channel.close()
        raise
    return channel


async def open_aio_channel(target: str, settings: DialSettings) -> grpc.aio.Channel:
    """The ``grpc.aio`` form of :func:`open_channel` (a coroutine, so that ``with_block`` can
    await readiness); the user's interceptors must be ``grpc.aio`` client interceptors."""
    import asyncio

    target = _check_target(target)
    creds = _channel_credentials(settings)
    interceptors = _grpc_interceptors(settings, aio=True)
    policies = _policies(settings, target)
    options = settings.grpc_options()
    compression = get_compressor(settings.compressor) if settings.compressor else None
    if creds is None:
        channel: grpc.aio.Channel = grpc.aio.insecure_channel(
            target, options, compression, interceptors=interceptors or None
        )
    else:
        channel = grpc.aio.secure_channel(
            target, creds, options, compression, interceptors=interceptors or None
        )
    try:
        if settings.block:
            try:
                await asyncio.wait_for(channel.channel_ready(), settings.block_timeout)
            except asyncio.TimeoutError:
                raise DialTimeoutError(
                    f"dial {target}: channel not ready within {settings.block_timeout:g} s"
                ) from None
        if policies:
            from grpc_channel.interceptors._chain import compose

            channel = compose(*policies).wrap_aio(channel)
    except BaseException:
        await channel.close(None)
        raise
    return channel
