"""The call engine: runs one call with call options, sync or aio, any of the four shapes.

Used by the Channel (``invoke_method``), the generic ``invoke`` and :func:`grpc_channel.stubs.wrap`.
The logic is written once, as plain functions over :class:`~grpc_channel.call_options.CallInfo`:

1. :func:`begin` folds library defaults, the dial-level default call options, grpcio-style keywords
   and the per-call options (later wins; metadata accumulates, context metadata first), runs every
   ``before()`` and checks credentials against the channel's security. A refusal fires the
   ``on_finish`` callbacks and raises.
2. :func:`encode` marshals a request (codec or stub serializer) and checks the per-call send limit;
   :func:`decode` checks the per-call receive limit on the received bytes, then unmarshals.
3. The shell makes the grpcio call (the only I/O), then :func:`succeeded` / :func:`failed` record
   headers, trailers, peer, code and details into the CallInfo.
4. :func:`complete` runs every ``after()`` and every ``on_finish`` callback exactly once;
   :func:`outcome` raises the call's error, or the first hook error if the call succeeded.

The sync (:class:`SyncEngine`) and aio (:class:`AsyncEngine`) shells only do the I/O between those
steps. Speed: multicallables are created once per method path (raw bytes in and out, so sizes can
be checked before decoding), dial defaults are folded once per engine, and a call with no call
options and no hooks takes a fast path that builds no CallInfo at all.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import (
    AsyncIterable,
    AsyncIterator,
    Callable,
    Generator,
    Iterable,
    Iterator,
    Sequence,
)
from typing import TYPE_CHECKING, Any, Final, TypedDict

import grpc
from google.protobuf.message import Message

from grpc_channel.call_options import (
    CallInfo,
    CallOption,
    ContentSubtypeCallOption,
    ForceCodecCallOption,
)
from grpc_channel.credentials import PerRPCCredentials
from grpc_channel.defaults import OptionError
from grpc_channel.dial_options import DialSettings
from grpc_channel.encoding import Codec
from grpc_channel.interceptors import (
    BoundedCache,
    CallShape,
    ClientCall,
    ClientPolicy,
    LocalRpcError,
    MetadataPairs,
    ended_call_metadata,
    handing_over,
    read_response_metadata,
)
from grpc_channel.metadata import Metadata, MetadataError, outgoing_pairs

if TYPE_CHECKING:
    from typing import Unpack

__all__ = [
    "AsyncEngine",
    "AsyncResponseStream",
    "CallKeywords",
    "CallPlan",
    "Route",
    "RpcCredentialsPolicy",
    "SyncEngine",
    "SyncResponseStream",
    "begin",
    "closed_error",
    "closed_failure",
    "complete",
    "decode",
    "encode",
    "failed",
    "outcome",
    "succeeded",
    "task_cancelling",
]

_NO_PAIRS: Final[MetadataPairs] = ()
_OK: Final = grpc.StatusCode.OK
_EOF: Final[Any] = grpc.aio.EOF  # type: ignore[attr-defined]
_LOG: Final = logging.getLogger("grpc_channel")


def _log_hook_error(info: CallInfo, hook_error: BaseException | None) -> None:
    # Where no caller is left to raise to (a stream cancelled or dropped), a hook's error is
    # logged rather than lost.
    if hook_error is not None:
        _LOG.error("a call option hook failed after %s ended", info.method, exc_info=hook_error)


_context_pairs: Final = outgoing_pairs


# ------------------------------------------------------------------------------------------
# Per-RPC credentials in grpc-go's shape.


def credentials_pairs(creds: PerRPCCredentials, method: str) -> MetadataPairs:
    """The metadata ``creds`` add to a call of ``method``, validated; a failure is
    UNAUTHENTICATED (as in grpc-go), naming the error type but no metadata value."""
    try:
        return Metadata(creds.get_request_metadata(method)).to_grpc()
    except MetadataError as exc:
        raise LocalRpcError(
            grpc.StatusCode.UNAUTHENTICATED, f"per-RPC credentials gave invalid metadata: {exc}"
        ) from exc
    except Exception as exc:
        raise LocalRpcError(
            grpc.StatusCode.UNAUTHENTICATED,
            f"per-RPC credentials failed: {type(exc).__name__}: {exc}",
        ) from exc


class RpcCredentialsPolicy(ClientPolicy):
    """Client policy adding grpc-go style per-RPC credentials' metadata to every call on a channel
    (what ``with_per_rpc_credentials`` becomes in ``open_channel``)."""

    __slots__ = ("_creds",)

    def __init__(self, creds: Sequence[PerRPCCredentials]) -> None:
        self._creds = tuple(creds)

    def client_start(self, call: ClientCall) -> None:
        for creds in self._creds:
            call.metadata.extend(credentials_pairs(creds, call.method))


# ------------------------------------------------------------------------------------------
# What is fixed per channel and per method.


class CallPlan:
    """The dial-level part of every call, folded once.

    ``template`` is a CallInfo with the library defaults and the leading run of *static* default
    call options already applied (static options only set fields, so applying them once is the
    same as applying them per call); ``dynamic`` holds the remaining default options, whose
    ``before`` runs per call, in order. ``plain`` is true when a call without options needs no
    CallInfo at all (there are no default call options). ``options`` is every default call option,
    as a call's record lists them.

    ``guarded`` (a metadata key, or None) is a key no caller may set: every value of it gathered
    from the context, the default and the per-call metadata is dropped before the channel's
    policies run (the app channel's ``dapr-api-token``: only its own token policy sets it).
    Per-RPC credentials, the caller's explicit credentials, are added after that and kept.
    """

    __slots__ = (
        "codec_chosen",
        "dynamic",
        "fast_kwargs",
        "guarded",
        "options",
        "plain",
        "template",
    )

    def __init__(
        self,
        default_call_options: Sequence[CallOption] = (),
        *,
        codec: Codec | None = None,
        target: str = "",
        secure: bool | None = None,
        guarded: str | None = None,
    ) -> None:
        template = CallInfo(codec=codec, target=target, secure=secure)
        channel_codec = template.codec
        options = tuple(default_call_options)
        folded = 0
        for opt in options:
            if not isinstance(opt, CallOption):
                raise OptionError(
                    f"default call options: got {type(opt).__name__}; pass CallOption objects"
                )
            if not (type(opt).static and not type(opt).has_after):
                break
            opt.before(template)
            folded += 1
        if guarded is not None and template.metadata:
            template.metadata = _without(template.metadata, guarded)
        self.template = template
        self.guarded = guarded
        self.options = options
        # A folded default call option (force_codec) chose the codec: it then beats a route's own.
        self.codec_chosen = template.codec is not channel_codec
        self.dynamic = options[folded:]
        # No default call options: a call without its own needs no record (its policies see
        # ``call.options`` None); with any, every call has one, so policies always see them.
        self.plain = not options
        self.fast_kwargs: dict[str, Any] = {
            "credentials": None,
            "wait_for_ready": template.wait_for_ready,
            "compression": template.compression,
        }

    @classmethod
    def from_settings(
        cls, settings: DialSettings, target: str = "", *, guarded: str | None = None
    ) -> CallPlan:
        """The plan of a channel opened from ``settings`` to ``target``."""
        return cls(
            settings.default_call_options,
            codec=settings.codec,
            target=target,
            secure=settings.secure,
            guarded=guarded,
        )

    @property
    def codec(self) -> Codec:
        return self.template.codec


class Route:
    """One method as the engine calls it.

    ``codec`` is the codec ``serializer``/``deserializer`` implement. ``raw`` routes call a
    raw-bytes multicallable: the engine encodes with ``serializer`` (or the call's codec when a
    call option chose another) and decodes with ``deserializer`` after checking
    sizes. Non-raw routes call a multicallable that (de)serialises itself (a stub wrapped from an
    instance): sizes are measured with ``serializer`` on the way out and ``ByteSize()`` on the way
    in, and the codec cannot be changed per call.

    ``pinned`` (a sentence, or None) marks a method whose wire format is fixed by its contract
    (the app channel's AppCallback methods): the channel's codec choices (``with_codec``, a
    ``force_codec`` among the default call options) do not apply to it, and a call option that
    chooses another codec is refused with an ``OptionError`` naming the option, then ``pinned``.

    ``captures`` marks an aio multicallable whose calls record their response metadata
    (``WrappedAioChannel.capturing_unary_unary``): the engine reads it from the call object with
    ``response_metadata()`` instead of awaiting it.
    """

    __slots__ = (
        "captures",
        "codec",
        "deserializer",
        "mc",
        "method",
        "pinned",
        "raw",
        "response_type",
        "serializer",
        "shape",
        "streams_requests",
    )

    def __init__(
        self,
        method: str,
        shape: CallShape,
        mc: Any,
        *,
        raw: bool,
        serializer: Callable[[Any], bytes] | None,
        deserializer: Callable[[bytes], Any] | None,
        codec: Codec,
        response_type: Any = None,
        pinned: str | None = None,
        captures: bool = False,
    ) -> None:
        self.method = method
        self.captures = captures
        self.streams_requests = shape.request_streaming
        self.codec = codec
        self.pinned = pinned
        self.shape = shape
        self.mc = mc
        self.raw = raw
        self.serializer = serializer
        self.deserializer = deserializer
        self.response_type = response_type


def codec_route(
    channel: Any, method: str, shape: CallShape, codec: Codec, response_type: Any
) -> Route:
    """A raw route whose messages ``codec`` encodes and decodes (``response_type`` for decoding)."""
    unmarshal = codec.unmarshal
    return Route(
        method,
        shape,
        getattr(channel, shape.value)(method),
        raw=True,
        serializer=codec.marshal,
        deserializer=lambda data: unmarshal(data, response_type),
        codec=codec,
        response_type=response_type,
    )


# ------------------------------------------------------------------------------------------
# Pure steps.


def _without(pairs: MetadataPairs, key: str) -> MetadataPairs:
    """``pairs`` without ``key`` (the same tuple when it has none)."""
    for k, _ in pairs:
        if k == key:
            return tuple(pair for pair in pairs if pair[0] != key)
    return pairs


def _refused(info: CallInfo, exc: BaseException) -> None:
    info.error = exc
    code = getattr(exc, "code", None)
    if callable(code):
        try:
            info.code = code()
            info.details = exc.details()  # type: ignore[attr-defined]
        except Exception:
            info.code = grpc.StatusCode.UNKNOWN
    hook_error = complete(info, ())
    if hook_error is not None and exc.__context__ is None:
        exc.__context__ = hook_error


def begin(
    plan: CallPlan,
    method: str,
    options: Sequence[CallOption],
    *,
    timeout: float | None = None,
    metadata: Iterable[tuple[str, str | bytes]] | None = None,
    credentials: grpc.CallCredentials | None = None,
    wait_for_ready: bool | None = None,
    compression: grpc.Compression | None = None,
    codec: Codec | None = None,
    pinned: str | None = None,
) -> tuple[CallInfo, list[CallOption]]:
    """Fold everything for one call and run the ``before`` hooks.

    ``codec`` is the route's codec: it replaces the channel's codec as the call's default (a
    ``force_codec`` among the dial-level default call options or the call's own still wins).
    Without it the call starts from the channel's codec. With ``pinned`` (see :class:`Route`)
    ``codec`` is the only codec: the dial-level choices do not apply and a call option choosing
    another refuses the call.

    Returns the CallInfo and the options whose ``after`` must run. On refusal (a ``before`` raised,
    an argument is not a CallOption, credentials do not fit the channel) the ``on_finish``
    callbacks fire with the error and it is raised.
    """
    info = plan.template.copy()
    info.method = method
    info.call_options = (*plan.options, *options) if plan.options else tuple(options)
    if codec is not None and not plan.codec_chosen:
        info.codec = codec
    ctx = _context_pairs()
    if ctx:
        info.metadata = ctx + info.metadata if info.metadata else ctx
    afters: list[CallOption] = []
    try:
        if timeout is not None:
            info.timeout = timeout
        if metadata:
            info.metadata = info.metadata + tuple(metadata)
        if credentials is not None:
            info.credentials = credentials
        if wait_for_ready is not None:
            info.wait_for_ready = wait_for_ready
        if compression is not None:
            info.compression = compression
        for opt in plan.dynamic:
            opt.before(info)
            if type(opt).has_after:
                afters.append(opt)
        if pinned is not None and codec is not None:
            info.codec = codec  # the channel's codec choices are not this method's
        for opt in options:
            if not isinstance(opt, CallOption):
                raise OptionError(
                    f"call options: got {type(opt).__name__}; pass CallOption objects (header(md), "
                    "timeout(s), ...) after the request"
                )
            opt.before(info)
            if type(opt).has_after:
                afters.append(opt)
        if pinned is not None and info.codec is not codec:
            raise OptionError(f"{_codec_chooser(options, info.codec)}: {pinned}")
        if plan.guarded is not None and info.metadata:
            info.metadata = _without(info.metadata, plan.guarded)
        if info.credentials is not None or info.rpc_credentials:
            _check_credentials(info)
    except BaseException as exc:
        _refused(info, exc)
        raise
    return info, afters


def _codec_chooser(options: Sequence[CallOption], codec: Codec) -> str:
    """How to name the call option that chose ``codec``, for an error message."""
    for opt in reversed(options):
        if isinstance(opt, ContentSubtypeCallOption) and opt.codec is codec:
            return f"call_content_subtype({opt.content_subtype!r})"
        if isinstance(opt, ForceCodecCallOption) and opt.codec is codec:
            return f"force_codec(<codec {codec.name!r}>)"
    return f"a call option choosing the {codec.name!r} codec"


def _check_credentials(info: CallInfo) -> None:
    if info.credentials is not None and info.secure is False:
        raise LocalRpcError(
            grpc.StatusCode.UNAUTHENTICATED,
            "per_rpc_credentials: grpc.CallCredentials are only sent over a secure channel and "
            "this channel is insecure",
        )
    for creds in info.rpc_credentials:
        if info.secure is not True and creds.require_transport_security():
            hint = (
                "this channel is insecure"
                if info.secure is False
                else "this channel's security is unknown (wrap(..., secure=True) if it is secure)"
            )
            raise LocalRpcError(
                grpc.StatusCode.UNAUTHENTICATED,
                f"per_rpc_credentials: the credentials require transport security and {hint}",
            )
        info.metadata = info.metadata + credentials_pairs(creds, info.method)


def grpc_kwargs(info: CallInfo) -> dict[str, Any]:
    """The keyword arguments of the grpcio call."""
    return {
        "timeout": info.timeout,
        "metadata": info.metadata or None,
        "credentials": info.credentials,
        "wait_for_ready": info.wait_for_ready,
        "compression": info.compression,
    }


def _codec_failure(what: str, info: CallInfo, exc: Exception) -> LocalRpcError:
    # grpc-go reports (un)marshalling failures as INTERNAL.
    err = LocalRpcError(
        grpc.StatusCode.INTERNAL,
        f"failed to {what} for {info.method}: {exc}",
        initial_metadata=info.headers,
        trailing_metadata=info.trailers,
        peer=info.peer,
    )
    err.__cause__ = exc
    return err


def encode(route: Route, info: CallInfo, request: Any) -> Any:
    """Marshal ``request`` for ``route`` and check the per-call send limit (RESOURCE_EXHAUSTED)."""
    limit = info.max_send_msg_size
    if route.raw:
        try:
            if info.codec is route.codec and route.serializer is not None:
                data: Any = route.serializer(request)
            else:
                data = info.codec.marshal(request)
        except Exception as exc:
            raise _codec_failure("marshal the request", info, exc) from exc
        size = len(data)
    else:
        if info.codec is not route.codec:
            raise OptionError(
                f"{info.method}: force_codec/call_content_subtype need a stub wrapped from its "
                "class and channel, wrap(StubClass, channel); this stub's own methods encode "
                "with their generated serializers"
            )
        data = request
        if limit is None:
            return data
        size = len(route.serializer(request)) if route.serializer is not None else 0
    if limit is not None and size > limit:
        raise LocalRpcError(
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            f"request message of {size} bytes is over this call's send limit of {limit} bytes "
            "(max_call_send_msg_size)",
        )
    return data


def decode(route: Route, info: CallInfo, received: Any) -> Any:
    """Check the per-call receive limit on ``received``, then unmarshal it."""
    limit = info.max_recv_msg_size
    if not route.raw:
        if limit is not None:
            size = received.ByteSize() if isinstance(received, Message) else len(received)
            _check_received(info, size, limit)
        return received
    if limit is not None:
        _check_received(info, len(received), limit)
    try:
        if info.codec is route.codec and route.deserializer is not None:
            return route.deserializer(received)
        return info.codec.unmarshal(received, route.response_type)
    except Exception as exc:
        raise _codec_failure("unmarshal the response", info, exc) from exc


def _check_received(info: CallInfo, size: int, limit: int) -> None:
    if size > limit:
        raise LocalRpcError(
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            f"response message of {size} bytes is over this call's receive limit of {limit} bytes "
            "(max_call_recv_msg_size)",
            initial_metadata=info.headers,
            trailing_metadata=info.trailers,
            peer=info.peer,
        )


def _pairs(md: Any) -> MetadataPairs:
    # grpcio gives a tuple (sync), a grpc.aio.Metadata (iterates as pairs) or None.
    if not md:
        return _NO_PAIRS
    return md if type(md) is tuple else tuple(md)


def succeeded(info: CallInfo, headers: Any, trailers: Any) -> None:
    """Record a call that ended with OK."""
    info.code = _OK
    info.headers = _pairs(headers)
    info.trailers = _pairs(trailers)
    info.peer = info.target


def failed(info: CallInfo, exc: BaseException) -> None:
    """Record a call that ended with ``exc``: a grpc.RpcError (status, headers and trailers are
    read from it), a local refusal, a cancellation or another exception (code UNKNOWN, or
    CANCELLED for a cancellation)."""
    info.error = exc
    if info.sent:
        info.peer = info.target
    code = getattr(exc, "code", None)
    if callable(code):
        try:
            info.code = code()
            info.details = exc.details() or ""  # type: ignore[attr-defined]
            headers = exc.initial_metadata()  # type: ignore[attr-defined]
            trailers = exc.trailing_metadata()  # type: ignore[attr-defined]
        except Exception:
            info.code = info.code or grpc.StatusCode.UNKNOWN
        else:
            if headers:
                info.headers = _pairs(headers)
            if trailers:
                info.trailers = _pairs(trailers)
        return
    if isinstance(exc, asyncio.CancelledError | KeyboardInterrupt):
        info.code = grpc.StatusCode.CANCELLED
    else:
        info.code = grpc.StatusCode.UNKNOWN
    info.details = f"{type(exc).__name__}: {exc}"


def complete(info: CallInfo, afters: Sequence[CallOption]) -> BaseException | None:
    """Run every ``after`` hook, then every ``on_finish`` callback (each exactly once: the list
    is taken from the CallInfo). Returns the first exception a hook raised; none stops the rest."""
    hook_error: BaseException | None = None
    for opt in afters:
        try:
            opt.after(info)
        except Exception as exc:
            hook_error = hook_error or exc
    callbacks = info.on_finish
    if callbacks:
        info.on_finish = None
        error = info.error
        for callback in callbacks:
            try:
                callback(error)
            except Exception as exc:
                hook_error = hook_error or exc
    return hook_error


def outcome(info: CallInfo, hook_error: BaseException | None) -> Any:
    """Raise the call's error (with a hook's error as its ``__context__``), else the hook's error,
    else return the response."""
    error = info.error
    if error is not None:
        if hook_error is not None and error.__context__ is None:
            error.__context__ = hook_error
        raise error
    if hook_error is not None:
        raise hook_error
    return info.response


def completed_info(info: CallInfo, afters: Sequence[CallOption]) -> CallInfo:
    """Finish a call whose outcome the caller reads from ``info``: run the hooks, then raise a
    hook's error (attached as ``__context__`` of the call's own error, if any) or return
    ``info``."""
    hook_error = complete(info, afters)
    if hook_error is not None:
        if info.error is not None and info.error.__context__ is None:
            info.error.__context__ = hook_error
        raise hook_error
    return info


# ------------------------------------------------------------------------------------------
# Calls on a closed channel.


def closed_error() -> LocalRpcError:
    """What a call on a closed channel gets (grpc-go: CANCELLED, "the client connection is
    closing")."""
    return LocalRpcError(grpc.StatusCode.CANCELLED, "the channel is closed")


def task_cancelling() -> bool:
    """True when the running asyncio task itself is being cancelled (Python >= 3.11 can tell;
    3.10 cannot, and outside a task there is nothing to cancel)."""
    try:
        task = asyncio.current_task()
    except RuntimeError:
        return False
    cancelling = getattr(task, "cancelling", None)
    return bool(cancelling()) if cancelling is not None else False


def closed_failure(exc: BaseException) -> LocalRpcError | None:
    """:func:`closed_error` when ``exc`` is how grpcio refuses or ends a call because its channel
    was closed, else None. Only meaningful once the channel is known to be closed: grpcio says so
    with a plain ``ValueError`` (sync), ``grpc.aio.UsageError``, or a ``CancelledError`` that is not
    the task's own cancellation (aio). Our own ``ValueError`` subclasses (``OptionError``,
    ``MetadataError``) are the caller's mistakes and stay as they are."""
    if (
        type(exc) is ValueError
        or isinstance(exc, grpc.aio.UsageError)
        or (isinstance(exc, asyncio.CancelledError) and not task_cancelling())
    ):
        return closed_error()
    return None


# ------------------------------------------------------------------------------------------
# The fast path: a unary call with no hooks and no per-call options builds no CallInfo.


def fast_path(
    plan: CallPlan,
    route: Route,
    options: Sequence[CallOption],
    credentials: grpc.CallCredentials | None,
    wait_for_ready: bool | None,
    compression: grpc.Compression | None,
) -> bool:
    """True when a call may skip the CallInfo: no call options, a plain plan, no per-call
    grpcio keywords, a unary-unary route using the plan's codec."""
    return (
        not options
        and plan.plain
        and credentials is None
        and wait_for_ready is None
        and compression is None
        and route.shape is CallShape.UNARY_UNARY
        and route.codec is plan.template.codec
        and (not route.raw or (route.serializer is not None and route.deserializer is not None))
    )


def fast_call_args(
    plan: CallPlan, timeout: float | None, metadata: Iterable[tuple[str, str | bytes]] | None
) -> tuple[float | None, MetadataPairs | None]:
    """The timeout and metadata of a fast-path call: the call's timeout or the plan's; context
    metadata, then the plan's, then the call's (``None`` when there is none)."""
    md = _context_pairs()
    if plan.template.metadata:
        md = md + plan.template.metadata
    if metadata:
        md = md + tuple(metadata)
    if md and plan.guarded is not None:
        md = _without(md, plan.guarded)
    return (timeout if timeout is not None else plan.template.timeout), (md or None)


def fast_encode(route: Route, request: Any) -> Any:
    """Marshal a fast-path request with the route's serializer (INTERNAL on failure)."""
    assert route.serializer is not None
    try:
        return route.serializer(request)
    except Exception as exc:
        raise _codec_failure("marshal the request", CallInfo(route.method), exc) from exc


def fast_decode(route: Route, received: Any) -> Any:
    """Unmarshal a fast-path response with the route's deserializer (INTERNAL on failure)."""
    assert route.deserializer is not None
    try:
        return route.deserializer(received)
    except Exception as exc:
        raise _codec_failure("unmarshal the response", CallInfo(route.method), exc) from exc


# ------------------------------------------------------------------------------------------
# Request streams: encode each message, remembering why the stream stopped.


class _RequestEncoder:
    """Wraps a request iterator: each message is encoded and size-checked. grpcio turns an
    exception in a request iterator into a cancelled call, so the exception is kept here and
    raised instead of grpcio's status."""

    __slots__ = ("error", "info", "it", "route")

    def __init__(self, route: Route, info: CallInfo, requests: Any) -> None:
        self.route = route
        self.info = info
        self.error: BaseException | None = None
        self.it: Any = requests

    def __iter__(self) -> Iterator[Any]:
        return self._sync()

    def _sync(self) -> Iterator[Any]:
        try:
            for request in self.it:
                yield encode(self.route, self.info, request)
        except GeneratorExit:
            raise
        except BaseException as exc:
            self.error = exc
            raise

    def __aiter__(self) -> AsyncIterator[Any]:
        return self._async()

    async def _async(self) -> AsyncIterator[Any]:
        if not isinstance(self.it, AsyncIterable):
            for data in self._sync():  # a plain iterable: the sync loop, failures noted there
                yield data
            return
        try:
            async for request in self.it:
                yield encode(self.route, self.info, request)
        except GeneratorExit:
            raise
        except BaseException as exc:
            self.error = exc
            raise


def _request_failure(requests: _RequestEncoder | None, exc: BaseException) -> BaseException:
    if requests is not None and requests.error is not None:
        return requests.error
    return exc


# ------------------------------------------------------------------------------------------
# The shells: what both share, then the sync and the aio I/O.

# The grpcio-style keywords of a call: timeout, metadata (pairs), credentials, wait_for_ready,
# compression.
_Kwargs = tuple[
    float | None, Any, grpc.CallCredentials | None, bool | None, grpc.Compression | None
]


class CallKeywords(TypedDict, total=False):
    """grpcio's per-call keywords, as every engine call (and a wrapped stub's method) takes them:
    they fold in before the call options, which therefore win."""

    timeout: float | None
    metadata: Iterable[tuple[str, str | bytes]] | None
    credentials: grpc.CallCredentials | None
    wait_for_ready: bool | None
    compression: grpc.Compression | None


_KEYWORDS: Final = frozenset(CallKeywords.__annotations__)


def _kwargs(keywords: CallKeywords) -> _Kwargs:
    """The keywords in :func:`begin`'s order; ``TypeError`` naming any unknown one (a misspelt
    keyword must not be dropped silently)."""
    if keywords and not keywords.keys() <= _KEYWORDS:
        unknown = ", ".join(sorted(set(keywords) - _KEYWORDS))
        raise TypeError(
            f"unexpected keyword argument(s): {unknown}; a call takes call options after the "
            f"request and the keywords {', '.join(sorted(_KEYWORDS))}"
        )
    return (
        keywords.get("timeout"),
        keywords.get("metadata"),
        keywords.get("credentials"),
        keywords.get("wait_for_ready"),
        keywords.get("compression"),
    )


class _Engine:
    """What the sync and aio shells share: the plan, the route cache, the closed flag, and the
    steps before and after the I/O. Every call goes one way: the call options fold into a
    :class:`CallInfo` (skipped when a call has no options and nothing at dial level needs one),
    which is handed to the channel's policy chain as the call's ``options``
    (:func:`~grpc_channel.interceptors.handing_over`), then the grpcio call, then the hooks."""

    __slots__ = ("_codec", "_routes", "channel", "closed", "plan")

    def __init__(self, channel: Any, plan: CallPlan | None = None) -> None:
        self.channel = channel
        self.plan = plan if plan is not None else CallPlan()
        self._codec = self.plan.codec
        # Set by the app channel's close(): calls then end with CANCELLED, not grpcio's refusals.
        self.closed = False
        # Bounded: callers choose the paths (hits read the plain dict, .data).
        self._routes: BoundedCache[tuple[str, CallShape], Route] = BoundedCache()

    def route(self, method: str, shape: CallShape, response_type: Any = None) -> Route:
        """The cached codec route of ``method`` (created on first use)."""
        key = (method, shape)
        route = self._routes.data.get(key)
        if route is None or route.response_type is not response_type:
            route = codec_route(self.channel, method, shape, self._codec, response_type)
            self._routes[key] = route
        return route

    def _begin(
        self, route: Route, options: Sequence[CallOption], kwargs: _Kwargs
    ) -> tuple[CallInfo, list[CallOption]]:
        timeout, metadata, credentials, wait_for_ready, compression = kwargs
        return begin(
            self.plan,
            route.method,
            options,
            timeout=timeout,
            metadata=metadata,
            credentials=credentials,
            wait_for_ready=wait_for_ready,
            compression=compression,
            codec=route.codec,
            pinned=route.pinned,
        )

    def _fast_args(
        self, route: Route, options: Sequence[CallOption], kwargs: _Kwargs
    ) -> tuple[float | None, MetadataPairs | None] | None:
        """The timeout and metadata of a call that needs no CallInfo (see :func:`fast_path`),
        else None. On a closed channel it raises the CANCELLED error (no hooks to run)."""
        timeout, metadata, credentials, wait_for_ready, compression = kwargs
        if not fast_path(self.plan, route, options, credentials, wait_for_ready, compression):
            return None
        if self.closed:
            raise closed_error()
        return fast_call_args(self.plan, timeout, metadata)

    def _closed_failure(self, exc: BaseException) -> LocalRpcError | None:
        return closed_failure(exc) if self.closed else None

    def _start_stream(
        self,
        route: Route,
        request: Any,
        options: Sequence[CallOption],
        keywords: CallKeywords,
        feed: Callable[[Any], Any] | None,
    ) -> tuple[Any, Route, CallInfo, list[CallOption], _RequestEncoder | None]:
        """Begin a response-streaming call: what the shell's response iterator is built from.
        ``feed`` turns a request encoder into what the grpcio call takes (``iter`` for sync;
        grpc.aio takes the async iterable itself). A refusal or a failure to start runs the
        hooks and raises."""
        info, afters = self._begin(route, options, _kwargs(keywords))
        requests: _RequestEncoder | None = None
        handed = handing_over(info)
        try:
            if self.closed:
                raise closed_error()
            data, requests = _encoded(route, info, request, route.streams_requests)
            info.sent = True
            sent = feed(data) if requests is not None and feed is not None else data
            call = route.mc(sent, **grpc_kwargs(info))
        except BaseException as exc:
            failed(info, self._closed_failure(exc) or exc)
            outcome(info, complete(info, afters))
            raise  # pragma: no cover - outcome always raises here
        finally:
            handed.var.reset(handed)
        return call, route, info, afters, requests

    def refuse(
        self, method: str, options: Sequence[CallOption], error: LocalRpcError
    ) -> LocalRpcError:
        """Finish a call refused before it was sent (an unsupported API version, say) as any
        failed call finishes: the ``before`` hooks run (one that refuses raises, ``on_finish``
        having seen its error), then every ``after`` hook with no headers or trailers, then each
        ``on_finish`` callback once with ``error``. Returns ``error``, with a hook's exception as
        its ``__context__``."""
        if not options and self.plan.plain:
            return error  # no hooks anywhere
        info, afters = begin(self.plan, method, options)
        failed(info, error)
        hook_error = complete(info, afters)
        if hook_error is not None and error.__context__ is None:
            error.__context__ = hook_error
        return error

    def _uu_route(self, method: str, response_type: Any) -> Route:
        route = self._routes.data.get((method, CallShape.UNARY_UNARY))
        if route is None or route.response_type is not response_type:
            route = self.route(method, CallShape.UNARY_UNARY, response_type)
        return route


def _captured(info: CallInfo, afters: Sequence[CallOption], capture: bool) -> Any:
    response = outcome(info, complete(info, afters))
    return (response, info.headers, info.trailers) if capture else response


def _encoded(route: Route, info: CallInfo, request: Any, streaming: bool) -> tuple[Any, Any]:
    """What the grpcio call sends, and the request encoder of a request stream (or None)."""
    if streaming:
        requests = _RequestEncoder(route, info, request)
        return requests, requests
    return encode(route, info, request), None


class SyncEngine(_Engine):
    """Runs calls on a sync grpcio channel (possibly wrapped by interceptors or our chain).

    ``unary_unary(method, request, response_type, *call_options, timeout=..., metadata=...)`` is
    the codec path used by the Channel; ``call_*`` run a :class:`Route` (used by ``wrap``).
    """

    __slots__ = ()

    def unary_unary(
        self,
        method: str,
        request: Any,
        response_type: Any,
        *options: CallOption,
        timeout: float | None = None,
        metadata: Iterable[tuple[str, str | bytes]] | None = None,
    ) -> Any:
        """Call ``method`` with ``request``; returns the decoded response or raises
        ``grpc.RpcError`` (remote status or local refusal)."""
        route = self._uu_route(method, response_type)
        return self.call_unary(route, request, options, timeout=timeout, metadata=metadata)

    def unary_unary_info(
        self,
        method: str,
        request: Any,
        response_type: Any,
        *options: CallOption,
        timeout: float | None = None,
        metadata: Iterable[tuple[str, str | bytes]] | None = None,
    ) -> CallInfo:
        """As :meth:`unary_unary`, but returns the CallInfo (response, code, details, headers,
        trailers, error) instead of raising for a failed call. A refusal by a ``before`` hook,
        and a hook's own exception, still raise."""
        route = self.route(method, CallShape.UNARY_UNARY, response_type)
        info, afters = self._begin(route, options, (timeout, metadata, None, None, None))
        self._run_unary(route, request, info, capture=True)
        return completed_info(info, afters)

    def call_unary(
        self,
        route: Route,
        request: Any,
        options: Sequence[CallOption],
        *,
        capture: bool = False,
        **keywords: Unpack[CallKeywords],
    ) -> Any:
        """Run a unary-unary or stream-unary route; returns the response, or with ``capture``
        ``(response, headers, trailers)``; raises ``grpc.RpcError`` for a failed call."""
        kwargs = _kwargs(keywords)
        fast = self._fast_args(route, options, kwargs)
        if fast is not None:
            try:
                return self._fast_unary(route, request, fast, capture)
            except BaseException as exc:
                closed = self._closed_failure(exc)
                if closed is not None:
                    raise closed from None
                raise
        info, afters = self._begin(route, options, kwargs)
        self._run_unary(route, request, info, capture=capture or bool(afters))
        return _captured(info, afters, capture)

    def _fast_unary(
        self,
        route: Route,
        request: Any,
        fast: tuple[float | None, MetadataPairs | None],
        capture: bool,
    ) -> Any:
        timeout, md = fast
        kwargs = self.plan.fast_kwargs
        data = fast_encode(route, request) if route.raw else request
        if capture:
            received, call = route.mc.with_call(data, timeout=timeout, metadata=md, **kwargs)
            response = fast_decode(route, received) if route.raw else received
            return (response, *ended_call_metadata(call))
        received = route.mc(data, timeout=timeout, metadata=md, **kwargs)
        return fast_decode(route, received) if route.raw else received

    def _run_unary(self, route: Route, request: Any, info: CallInfo, *, capture: bool) -> None:
        if self.closed:
            failed(info, closed_error())
            return
        requests: _RequestEncoder | None = None
        handed = handing_over(info)
        try:
            data, requests = _encoded(route, info, request, route.streams_requests)
            sent = iter(data) if requests is not None else data
            info.sent = True
            if capture:
                received, call = route.mc.with_call(sent, **grpc_kwargs(info))
                succeeded(info, *ended_call_metadata(call))
            else:
                received = route.mc(sent, **grpc_kwargs(info))
                succeeded(info, None, None)
            info.response = decode(route, info, received)
        except BaseException as exc:
            closed = self._closed_failure(exc)
            if closed is not None:  # grpcio's refusal on a closed channel: CANCELLED
                failed(info, closed)
                return
            failed(info, _request_failure(requests, exc))
            if info.error is not exc and info.error is not None:
                # The request iterator failed: keep what the server sent with our error.
                _adopt_metadata(info, exc)
        finally:
            handed.var.reset(handed)

    def call_stream(
        self,
        route: Route,
        request: Any,
        options: Sequence[CallOption],
        **keywords: Unpack[CallKeywords],
    ) -> SyncResponseStream:
        """Start a unary-stream or stream-stream route; returns the response iterator."""
        return SyncResponseStream(*self._start_stream(route, request, options, keywords, iter))


def _adopt_metadata(info: CallInfo, call_error: BaseException) -> None:
    for name in ("initial_metadata", "trailing_metadata"):
        getter = getattr(call_error, name, None)
        if callable(getter):
            try:
                value = _pairs(getter())
            except Exception:
                continue
            if name == "initial_metadata":
                info.headers = value
            else:
                info.trailers = value


class _ResponseStream:
    """What the sync and aio response iterators share: the call's record and the steps that end
    it. The ending is written once, as a generator that yields the grpcio call whenever it needs
    that call's response metadata; each shell answers, reading it or awaiting it."""

    __slots__ = ("_afters", "_call", "_done", "_info", "_requests", "_route")

    def __init__(
        self,
        call: Any,
        route: Route,
        info: CallInfo,
        afters: list[CallOption],
        requests: _RequestEncoder | None,
    ) -> None:
        self._call = call
        self._route = route
        self._info = info
        self._afters = afters
        self._requests = requests
        self._done = False

    @property
    def info(self) -> CallInfo:
        """The call's CallInfo (outcome fields filled once the stream ended)."""
        return self._info

    def __getattr__(self, name: str) -> Any:
        return getattr(self._call, name)

    def _ending(
        self, exc: BaseException | None
    ) -> Generator[Any, tuple[Any, Any], BaseException | None]:
        """Record how the stream ended (``exc`` None: it ran out) and run the hooks once;
        returns the first hook error. Only for a stream not yet done."""
        self._done = True
        info = self._info
        requests = self._requests
        if requests is not None and requests.error is not None:
            exc = requests.error
        if exc is None:
            try:
                succeeded(info, *(yield self._call))
            except Exception as read_error:
                failed(info, read_error)
        else:
            failed(info, exc)
            if isinstance(exc, LocalRpcError) or not isinstance(exc, grpc.RpcError):
                # A local failure (size limit, request iterator): keep what the server sent;
                # a failed call may not give it, and the record then keeps what failed() read.
                with contextlib.suppress(BaseException):
                    info.headers, info.trailers = yield self._call
        return complete(info, self._afters)

    def _dropped(self) -> BaseException | None:
        """End a stream dropped unfinished: the call is cancelled and the hooks see CANCELLED
        without reading anything from the call. Returns the first hook error."""
        self._done = True
        with contextlib.suppress(Exception):
            self._call.cancel()
        info = self._info
        info.code = grpc.StatusCode.CANCELLED
        info.details = "response stream dropped before it ended"
        info.error = LocalRpcError(info.code, info.details)
        return complete(info, self._afters)

    def __del__(self) -> None:
        if not getattr(self, "_done", True):
            _log_hook_error(self._info, self._dropped())


class SyncResponseStream(_ResponseStream):
    """The response iterator of a streaming call: yields decoded messages and runs the call's
    ``after``/``on_finish`` hooks once when the stream ends (exhausted, failed, cancelled, or
    dropped unfinished). Other attributes (``initial_metadata()``, ``code()``, ``cancel()`` ...)
    are the grpcio call's."""

    __slots__ = ()

    def __iter__(self) -> SyncResponseStream:
        return self

    def __next__(self) -> Any:
        if self._done:
            raise StopIteration
        try:
            received = next(self._call)
        except StopIteration:
            self._finish(None, raise_=True)
            raise
        except BaseException as exc:
            self._finish(exc, raise_=True)
            raise
        try:
            return decode(self._route, self._info, received)
        except LocalRpcError as exc:
            self._call.cancel()
            self._finish(exc, raise_=True)
            raise

    def _finish(self, exc: BaseException | None, *, raise_: bool) -> None:
        """Record the outcome and run the hooks once; with ``raise_`` raise what the caller
        should see (the call's error, else a hook's error)."""
        if self._done:
            return
        steps = self._ending(exc)
        try:
            call = next(steps)
            while True:
                try:
                    metadata = ended_call_metadata(call)
                except BaseException as read_error:
                    call = steps.throw(read_error)
                else:
                    call = steps.send(metadata)
        except StopIteration as ended:
            hook_error: BaseException | None = ended.value
        if raise_:
            outcome(self._info, hook_error)
        else:
            _log_hook_error(self._info, hook_error)

    def cancel(self) -> bool:
        """Cancel the call; the hooks run now (code CANCELLED)."""
        cancelled = bool(self._call.cancel())
        self._finish(self._call, raise_=False)
        return cancelled

    def __del__(self) -> None:
        if not getattr(self, "_done", True):
            with contextlib.suppress(Exception):
                self._call.cancel()
            self._finish(self._call, raise_=False)


# ------------------------------------------------------------------------------------------
# aio shell.


class AsyncEngine(_Engine):
    """Runs calls on a ``grpc.aio`` channel; the same steps as :class:`SyncEngine`."""

    __slots__ = ()

    async def unary_unary(
        self,
        method: str,
        request: Any,
        response_type: Any,
        *options: CallOption,
        timeout: float | None = None,
        metadata: Iterable[tuple[str, str | bytes]] | None = None,
    ) -> Any:
        """Call ``method``; returns the decoded response or raises ``grpc.RpcError``."""
        route = self._uu_route(method, response_type)
        return await self.call_unary(route, request, options, timeout=timeout, metadata=metadata)

    async def unary_unary_info(
        self,
        method: str,
        request: Any,
        response_type: Any,
        *options: CallOption,
        timeout: float | None = None,
        metadata: Iterable[tuple[str, str | bytes]] | None = None,
    ) -> CallInfo:
        """As :meth:`SyncEngine.unary_unary_info`."""
        route = self.route(method, CallShape.UNARY_UNARY, response_type)
        info, afters = self._begin(route, options, (timeout, metadata, None, None, None))
        await self._run_unary(route, request, info)
        return completed_info(info, afters)

    async def call_unary(
        self,
        route: Route,
        request: Any,
        options: Sequence[CallOption],
        *,
        capture: bool = False,
        **keywords: Unpack[CallKeywords],
    ) -> Any:
        """As :meth:`SyncEngine.call_unary`."""
        kwargs = _kwargs(keywords)
        fast = self._fast_args(route, options, kwargs)
        if fast is not None:
            try:
                return await self._fast_unary(route, request, fast, capture)
            except BaseException as exc:
                closed = self._closed_failure(exc)
                if closed is not None:
                    raise closed from None
                raise
        info, afters = self._begin(route, options, kwargs)
        await self._run_unary(route, request, info)
        return _captured(info, afters, capture)

    async def _fast_unary(
        self,
        route: Route,
        request: Any,
        fast: tuple[float | None, MetadataPairs | None],
        capture: bool,
    ) -> Any:
        timeout, md = fast
        data = fast_encode(route, request) if route.raw else request
        call = route.mc(data, timeout=timeout, metadata=md, **self.plan.fast_kwargs)
        received = await call
        response = fast_decode(route, received) if route.raw else received
        if capture:
            return (response, *await _response_metadata(route, call))
        return response

    async def _run_unary(self, route: Route, request: Any, info: CallInfo) -> None:
        if self.closed:
            failed(info, closed_error())
            return
        requests: _RequestEncoder | None = None
        call: Any = None
        try:
            data, requests = _encoded(route, info, request, route.streams_requests)
            info.sent = True
            handed = handing_over(info)
            try:
                call = route.mc(data, **grpc_kwargs(info))
            finally:
                handed.var.reset(handed)
            received = await call
            succeeded(info, *await _response_metadata(route, call))
            info.response = decode(route, info, received)
        except BaseException as exc:
            closed = self._closed_failure(exc)
            if closed is not None:  # grpcio's refusal on a closed channel: CANCELLED
                failed(info, closed)
                return
            failed(info, _request_failure(requests, exc))
            if info.error is not exc and call is not None:
                await _adopt_aio_metadata(info, call)

    def call_stream(
        self,
        route: Route,
        request: Any,
        options: Sequence[CallOption],
        **keywords: Unpack[CallKeywords],
    ) -> AsyncResponseStream:
        """Start a unary-stream or stream-stream route; returns the async response iterator."""
        return AsyncResponseStream(*self._start_stream(route, request, options, keywords, None))


async def _response_metadata(route: Route, call: Any) -> tuple[Any, Any]:
    if route.captures:
        recorded: tuple[Any, Any] = call.response_metadata()
        return recorded
    return await read_response_metadata(call)


async def _adopt_aio_metadata(info: CallInfo, call: Any) -> None:
    # A failed call may not give its metadata: the record then keeps what failed() read.
    with contextlib.suppress(BaseException):
        info.headers, info.trailers = await read_response_metadata(call)


class AsyncResponseStream(_ResponseStream):
    """Async response iterator of a ``grpc.aio`` streaming call; hooks run once when the stream
    ends (exhausted, failed, cancelled; a stream dropped unfinished is cancelled and its hooks run
    without headers). Other attributes are the grpcio call's."""

    __slots__ = ()

    def __aiter__(self) -> AsyncResponseStream:
        return self

    async def __anext__(self) -> Any:
        if self._done:
            raise StopAsyncIteration
        try:
            received = await self._call.read()
        except BaseException as exc:
            await self._finish(exc)
            raise
        if received is _EOF:
            await self._finish(None)
            raise StopAsyncIteration
        try:
            return decode(self._route, self._info, received)
        except LocalRpcError as exc:
            self._call.cancel()
            await self._finish(exc)
            raise

    async def read(self) -> Any:
        """The next decoded message, or ``_EOF`` at the end (grpc.aio's ``read``)."""
        try:
            return await self.__anext__()
        except StopAsyncIteration:
            return _EOF

    async def _finish(self, exc: BaseException | None) -> None:
        """Record the outcome, run the hooks once, raise what the caller should see."""
        if self._done:
            return
        steps = self._ending(exc)
        try:
            call = next(steps)
            while True:
                try:
                    metadata = await read_response_metadata(call)
                except BaseException as read_error:
                    call = steps.throw(read_error)
                else:
                    call = steps.send(metadata)
        except StopIteration as ended:
            hook_error: BaseException | None = ended.value
        outcome(self._info, hook_error)

    def cancel(self) -> bool:
        """Cancel the call; the hooks run when the iterator next reads (or when dropped)."""
        return bool(self._call.cancel())
