"""Call options in the grpc-go style: :class:`CallOption`, the :class:`CallInfo` record they fold
into, and every built-in option with its record class.

Every option is a small frozen dataclass whose fields are the exported record of what it sets, so
an interceptor or a test can inspect it (grpc-go exported its option structs for the same reason).
The constructor functions (``timeout(...)``, ``header(...)`` ...) check their argument at once and
raise ``OptionError`` naming the option, the value and what is allowed.

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
- What grpcio would only fail on later is refused when the option is made (measured with grpcio
  1.85): timeouts above ``MAX_TIMEOUT`` (1e9 s, :mod:`grpc_channel.defaults`; longer deadlines
  overflow grpcio's int64 nanoseconds or thread waits), millisecond settings above 2**31-1 ms and
  channel-argument ints outside a C int (OverflowError at dial), text with a lone surrogate
  (UnicodeEncodeError) or a NUL (cut short by grpc core). Values in messages are shortened when
  long.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar, Final

import grpc

from grpc_channel.credentials import PerRPCCredentials, _check_rpc_credentials, _creds_repr
from grpc_channel.defaults import DEFAULTS, OptionError, _refuse, _size, check_seconds
from grpc_channel.encoding import Codec, EncodingError, get_codec, get_compressor
from grpc_channel.interceptors import MetadataPairs
from grpc_channel.metadata import Metadata, MetadataError, redacted_pairs

__all__ = [
    "CallInfo",
    "CallOption",
    "CompressorCallOption",
    "ContentSubtypeCallOption",
    "ForceCodecCallOption",
    "HeaderCallOption",
    "MaxRecvMsgSizeCallOption",
    "MaxSendMsgSizeCallOption",
    "MetadataCallOption",
    "OnFinishCallOption",
    "Peer",
    "PeerCallOption",
    "PerRPCCredsCallOption",
    "TimeoutCallOption",
    "TrailerCallOption",
    "WaitForReadyCallOption",
    "call_content_subtype",
    "call_metadata",
    "force_codec",
    "header",
    "max_call_recv_msg_size",
    "max_call_send_msg_size",
    "on_finish",
    "peer",
    "per_rpc_credentials",
    "timeout",
    "trailer",
    "use_compressor",
    "wait_for_ready",
]


_NO_PAIRS: Final[MetadataPairs] = ()


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

    The policies of the channel's chain see this record as ``call.options`` (see
    :class:`~grpc_channel.interceptors.ClientCall`): ``call_options`` lists the option objects
    that folded into it, the dial-level defaults first, then the call's own; ``claimed`` is set
    once a chain call took it.
    """

    __slots__ = (
        "call_options",
        "claimed",
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
        self.call_options: tuple[CallOption, ...] = ()
        self.claimed = False

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
        other.call_options = self.call_options
        other.claimed = False
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
        raise _refuse("peer", type(holder).__name__, "pass a grpc_channel.Peer to fill")
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
