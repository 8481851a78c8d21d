"""Call options on the generated stubs you already have: ``wrap(stub, *default_call_options)``.

::

    stub = wrap(greeter_pb2_grpc.GreeterStub(channel))
    md, tr = Metadata(), Metadata()
    reply = stub.SayHello(request, header(md), trailer(tr), timeout(2))

Each method of the wrapped stub takes the request (or request iterator), then call options
positionally, then grpcio's keyword arguments (``timeout``, ``metadata``, ``credentials``,
``wait_for_ready``, ``compression``). All four shapes work, sync and ``grpc.aio``:

- unary-unary / stream-unary return the response (aio: a coroutine to await);
- unary-stream / stream-stream return an iterator of responses (aio: an async iterator) that also
  answers grpcio's call methods (``initial_metadata()``, ``cancel()`` ...). The ``after`` hooks and
  ``on_finish`` run when the stream ends.

``wrap`` accepts a stub instance, or a stub class and a channel: ``wrap(GreeterStub, channel)``.
How it learns the methods: it builds the stub class once on a recording channel, which notes each
method's path, shape and (de)serializers; generated code offers no other way to list them.

- From a class and a channel the wrapped methods use raw-bytes multicallables: messages are
  serialised by the engine, so :func:`~grpc_channel.call_options.max_call_recv_msg_size` is checked
  *before* decoding and :func:`~grpc_channel.call_options.force_codec` /
  :func:`~grpc_channel.call_options.call_content_subtype` can change the encoding per call.
- From an instance the stub's own multicallables are used (the channel is not reachable from a
  generated stub): the receive limit is checked on the decoded message's ``ByteSize()`` (exact for
  protobuf, but after decoding), and a per-call codec is refused.

``target=`` (what :func:`~grpc_channel.peer` reports; grpcio has no client-side peer) and
``secure=`` (whether per-RPC credentials that require transport security may be sent; unknown by
default, which refuses them) describe the channel, since a grpcio channel does not tell.

Typing: ``wrap`` returns the stub's own type, so editors complete the method names and the request
and response types of stubs generated with type hints (mypy-protobuf's ``--mypy_grpc_out``, over
grpc-stubs). Python cannot rewrite each method's signature inside a type, so a type checker that
knows grpcio's multicallable signature flags call options passed straight to ``stub.Method``.
For a call that type-checks, bind the options to the method first::

    say = bind(stub.SayHello, header(md), timeout(2))
    reply = say(request)              # HelloRequest in, HelloReply out, checked by mypy --strict
    reply = say(request, trailer(tr), metadata=[("k", "v")])  # more options, grpcio keywords

:func:`bind` takes the method as the stub's type declares it (``grpc.UnaryUnaryMultiCallable[Req,
Resp]`` and the other three shapes, or their ``grpc.aio`` forms) and returns a callable typed with
that method's own request and response types (:class:`BoundUnaryUnary` ...
:class:`AsyncBoundStreamStream`).
Why a function and not the alternatives: a ``with call_options(...)`` context would type-check too,
but it hides which calls an option reaches (every call in the block, in any library, on any stub),
and sync grpcio runs stream hooks on its own threads where a context variable is not set; a mypy
plugin would only help mypy and breaks with mypy's internals. ``bind`` is plain typing that
pyright and mypy both check, and the options stay next to the call they apply to.
"""

from __future__ import annotations

from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Iterable, Iterator
from typing import TYPE_CHECKING, Any, Protocol, TypeVar, overload

import grpc

if TYPE_CHECKING:
    from typing import Unpack

from grpc_channel._engine import (
    AsyncEngine,
    CallKeywords,
    CallPlan,
    Route,
    SyncEngine,
)
from grpc_channel.call_options import CallOption
from grpc_channel.defaults import DEFAULTS, OptionError
from grpc_channel.encoding import get_codec
from grpc_channel.interceptors import CallShape

__all__ = [
    "AsyncBoundStreamStream",
    "AsyncBoundStreamUnary",
    "AsyncBoundUnaryStream",
    "AsyncBoundUnaryUnary",
    "BoundStreamStream",
    "BoundStreamUnary",
    "BoundUnaryStream",
    "BoundUnaryUnary",
    "WrappedStub",
    "bind",
    "stub_methods",
    "wrap",
]

S = TypeVar("S")
Req = TypeVar("Req")
Resp = TypeVar("Resp")
# Protocol parameters: a request is only taken (contravariant), a response only given (covariant).
_Req_contra = TypeVar("_Req_contra", contravariant=True)
_Resp_co = TypeVar("_Resp_co", covariant=True)


class _Recorded:
    __slots__ = ("deserializer", "method", "serializer", "shape")

    def __init__(self, shape: CallShape, method: str, serializer: Any, deserializer: Any) -> None:
        self.shape = shape
        self.method = method
        self.serializer = serializer
        self.deserializer = deserializer


class _RecordingChannel:
    """Stands in for a channel while a stub class is built; records each multicallable asked for."""

    def _record(self, shape: CallShape, method: Any, kwargs: dict[str, Any]) -> _Recorded:
        path = method.decode() if isinstance(method, bytes) else str(method)
        return _Recorded(
            shape, path, kwargs.get("request_serializer"), kwargs.get("response_deserializer")
        )

    def unary_unary(self, method: Any, *args: Any, **kwargs: Any) -> _Recorded:
        return self._record(CallShape.UNARY_UNARY, method, _named(args, kwargs))

    def unary_stream(self, method: Any, *args: Any, **kwargs: Any) -> _Recorded:
        return self._record(CallShape.UNARY_STREAM, method, _named(args, kwargs))

    def stream_unary(self, method: Any, *args: Any, **kwargs: Any) -> _Recorded:
        return self._record(CallShape.STREAM_UNARY, method, _named(args, kwargs))

    def stream_stream(self, method: Any, *args: Any, **kwargs: Any) -> _Recorded:
        return self._record(CallShape.STREAM_STREAM, method, _named(args, kwargs))


def _named(args: tuple[Any, ...], kwargs: dict[str, Any]) -> dict[str, Any]:
    # grpcio's factories take (method, request_serializer, response_deserializer, ...).
    named = dict(kwargs)
    if args:
        named.setdefault("request_serializer", args[0])
    if len(args) > 1:
        named.setdefault("response_deserializer", args[1])
    return named


def stub_methods(stub_class: type) -> dict[str, tuple[CallShape, str, Any, Any]]:
    """Attribute name → (shape, method path, request serializer, response deserializer) of a
    generated stub class, found by building it on a recording channel.

    Raises:
        OptionError: the class cannot be built from a channel, or defines no methods.
    """
    try:
        recorded = stub_class(_RecordingChannel())
    except Exception as exc:
        raise OptionError(
            f"wrap: cannot build {stub_class.__name__} from a channel "
            f"({type(exc).__name__}: {exc}); pass a generated stub or stub class"
        ) from exc
    found = {
        name: (value.shape, value.method, value.serializer, value.deserializer)
        for name, value in vars(recorded).items()
        if isinstance(value, _Recorded)
    }
    if not found:
        raise OptionError(
            f"wrap: {stub_class.__name__} creates no multicallables from its channel; pass a "
            "generated stub or stub class"
        )
    return found


def _response_type(deserializer: Any) -> Any:
    # Generated code passes ``Reply.FromString``, a classmethod bound to the message class.
    owner = getattr(deserializer, "__self__", None)
    return owner if isinstance(owner, type) else None


_AIO_MULTICALLABLES: tuple[type, ...] = (
    grpc.aio.UnaryUnaryMultiCallable,
    grpc.aio.UnaryStreamMultiCallable,
    grpc.aio.StreamUnaryMultiCallable,
    grpc.aio.StreamStreamMultiCallable,
)


class _Method:
    """One method of a wrapped stub. The engine decides sync or aio: with an
    :class:`AsyncEngine` a call returns a coroutine (unary response) or an async response
    stream, as the ``grpc.aio`` stub would."""

    __slots__ = ("_call", "_route")

    def __init__(self, engine: SyncEngine | AsyncEngine, route: Route) -> None:
        self._route = route
        unary = route.shape is CallShape.UNARY_UNARY or route.shape is CallShape.STREAM_UNARY
        # Chosen once: the shape never changes, so calls skip the branch.
        self._call: Any = engine.call_unary if unary else engine.call_stream

    def __call__(self, request: Any, *options: CallOption, **keywords: Unpack[CallKeywords]) -> Any:
        return self._call(self._route, request, options, **keywords)

    def __repr__(self) -> str:
        kind = "aio " if isinstance(self._call.__self__, AsyncEngine) else ""
        return f"<wrapped {kind}{self._route.shape.value} {self._route.method}>"


class BoundUnaryUnary(Protocol[_Req_contra, _Resp_co]):
    """A sync unary-unary method with call options bound: request in, response out. More call
    options may follow the request; grpcio's keywords are accepted as on the method."""

    def __call__(
        self, request: _Req_contra, /, *options: CallOption, **keywords: Unpack[CallKeywords]
    ) -> _Resp_co: ...


class BoundUnaryStream(Protocol[_Req_contra, _Resp_co]):
    """A sync unary-stream method with call options bound: returns the response iterator (which
    also answers grpcio's call methods, untyped here)."""

    def __call__(
        self, request: _Req_contra, /, *options: CallOption, **keywords: Unpack[CallKeywords]
    ) -> Iterator[_Resp_co]: ...


class BoundStreamUnary(Protocol[_Req_contra, _Resp_co]):
    """A sync stream-unary method with call options bound: an iterator of requests in."""

    def __call__(
        self,
        request_iterator: Iterator[_Req_contra],
        /,
        *options: CallOption,
        **keywords: Unpack[CallKeywords],
    ) -> _Resp_co: ...


class BoundStreamStream(Protocol[_Req_contra, _Resp_co]):
    """A sync stream-stream method with call options bound."""

    def __call__(
        self,
        request_iterator: Iterator[_Req_contra],
        /,
        *options: CallOption,
        **keywords: Unpack[CallKeywords],
    ) -> Iterator[_Resp_co]: ...


class AsyncBoundUnaryUnary(Protocol[_Req_contra, _Resp_co]):
    """A ``grpc.aio`` unary-unary method with call options bound: await it for the response."""

    def __call__(
        self, request: _Req_contra, /, *options: CallOption, **keywords: Unpack[CallKeywords]
    ) -> Awaitable[_Resp_co]: ...


class AsyncBoundUnaryStream(Protocol[_Req_contra, _Resp_co]):
    """A ``grpc.aio`` unary-stream method with call options bound: an async response iterator."""

    def __call__(
        self, request: _Req_contra, /, *options: CallOption, **keywords: Unpack[CallKeywords]
    ) -> AsyncIterator[_Resp_co]: ...


class AsyncBoundStreamUnary(Protocol[_Req_contra, _Resp_co]):
    """A ``grpc.aio`` stream-unary method with call options bound: requests from a sync or async
    iterable; await it for the response."""

    def __call__(
        self,
        request_iterator: Iterable[_Req_contra] | AsyncIterable[_Req_contra],
        /,
        *options: CallOption,
        **keywords: Unpack[CallKeywords],
    ) -> Awaitable[_Resp_co]: ...


class AsyncBoundStreamStream(Protocol[_Req_contra, _Resp_co]):
    """A ``grpc.aio`` stream-stream method with call options bound."""

    def __call__(
        self,
        request_iterator: Iterable[_Req_contra] | AsyncIterable[_Req_contra],
        /,
        *options: CallOption,
        **keywords: Unpack[CallKeywords],
    ) -> AsyncIterator[_Resp_co]: ...


class _Bound:
    """What :func:`bind` returns at run time: the wrapped method and its bound options."""

    __slots__ = ("method", "options")

    def __init__(self, method: _Method, options: tuple[CallOption, ...]) -> None:
        self.method = method
        self.options = options

    def __call__(self, request: Any, /, *more: CallOption, **keywords: Unpack[CallKeywords]) -> Any:
        return self.method(request, *self.options, *more, **keywords)

    def __repr__(self) -> str:
        return f"<bound {self.method!r} with {len(self.options)} call option(s)>"


class WrappedStub:
    """What :func:`wrap` returns: the stub's methods, taking call options after the request.

    ``default_call_options`` and ``stub_class`` are kept for inspection; wrapping a wrapped stub
    again adds default options after the existing ones.
    """

    def __init__(
        self,
        stub_class: type,
        methods: dict[str, _Method],
        default_call_options: tuple[CallOption, ...],
        rewrap: Any,
    ) -> None:
        self.stub_class = stub_class
        self.default_call_options = default_call_options
        self._rewrap = rewrap
        for name, method in methods.items():
            setattr(self, name, method)

    def __repr__(self) -> str:
        return f"<wrapped {self.stub_class.__name__}>"


def _plan(options: tuple[CallOption, ...], target: str, secure: bool | None) -> CallPlan:
    for opt in options:
        if not isinstance(opt, CallOption):
            raise OptionError(
                f"wrap: got {type(opt).__name__} as a default call option; pass CallOption objects"
            )
    return CallPlan(options, codec=get_codec(DEFAULTS.codec), target=target, secure=secure)


def _build(
    stub_class: type,
    channel: Any,
    instance: Any,
    options: tuple[CallOption, ...],
    target: str,
    secure: bool | None,
    aio: bool | None,
) -> WrappedStub:
    found = stub_methods(stub_class)
    # Generated serializers are protobuf's: the codec a route's own (de)serializers implement.
    proto = get_codec(DEFAULTS.codec)
    if aio is None:
        if channel is not None:
            aio = isinstance(channel, grpc.aio.Channel)
        else:
            aio = any(
                isinstance(getattr(instance, name, None), _AIO_MULTICALLABLES) for name in found
            )
    plan = _plan(options, target, secure)
    engine: SyncEngine | AsyncEngine = (
        AsyncEngine(channel, plan) if aio else SyncEngine(channel, plan)
    )
    methods: dict[str, _Method] = {}
    for name, (shape, path, serializer, deserializer) in found.items():
        if channel is not None:
            route = Route(
                path,
                shape,
                getattr(channel, shape.value)(path),
                raw=True,
                serializer=serializer,
                deserializer=deserializer,
                codec=proto,
                response_type=_response_type(deserializer),
            )
        else:
            route = Route(
                path,
                shape,
                getattr(instance, name),
                raw=False,
                serializer=serializer,
                deserializer=None,
                codec=proto,
                response_type=_response_type(deserializer),
            )
        methods[name] = _Method(engine, route)

    def rewrap(more: tuple[CallOption, ...]) -> WrappedStub:
        return _build(stub_class, channel, instance, options + more, target, secure, aio)

    return WrappedStub(stub_class, methods, options, rewrap)


@overload
def wrap(
    stub: type[S],
    channel: grpc.Channel | grpc.aio.Channel,
    /,
    *default_call_options: CallOption,
    target: str = "",
    secure: bool | None = None,
    aio: bool | None = None,
) -> S: ...


@overload
def wrap(
    stub: S,
    /,
    *default_call_options: CallOption,
    target: str = "",
    secure: bool | None = None,
    aio: bool | None = None,
) -> S: ...


def wrap(
    stub: Any,
    /,
    *args: Any,
    target: str = "",
    secure: bool | None = None,
    aio: bool | None = None,
) -> Any:
    """Return ``stub`` with methods that take call options after the request.

    ``wrap(stub_instance, *default_call_options)`` or ``wrap(StubClass, channel,
    *default_call_options)``. The default options apply to every call before the call's own.
    ``target`` is what :func:`~grpc_channel.peer` reports; ``secure`` tells whether the
    channel is secure (``None``: unknown; per-RPC credentials that require transport security are
    then refused); ``aio`` forces sync (``False``) or aio (``True``) when it cannot be told from
    the channel or stub.

    Raises:
        OptionError: not a stub (or stub class and channel), or a default option is not a
            CallOption.
    """
    if not isinstance(target, str):
        raise OptionError(f"wrap: got target={target!r}; pass the dialled target as a string")
    if secure is not None and not isinstance(secure, bool):
        raise OptionError(f"wrap: got secure={secure!r}; pass True, False or None")
    if isinstance(stub, WrappedStub):
        more = tuple(args)
        _plan(more, target, secure)
        rebuilt: WrappedStub = stub._rewrap(more)
        return rebuilt
    if isinstance(stub, type):
        if not args or isinstance(args[0], CallOption):
            raise OptionError(
                f"wrap: {stub.__name__} is a class; pass a channel after it: "
                f"wrap({stub.__name__}, channel, *call_options)"
            )
        channel, options = args[0], tuple(args[1:])
        if not hasattr(channel, "unary_unary"):
            raise OptionError(
                f"wrap: got {type(channel).__name__} as the channel; pass a grpc.Channel or "
                "grpc.aio.Channel"
            )
        return _build(stub, channel, None, options, target, secure, aio)
    if stub is None or isinstance(stub, grpc.Channel | grpc.aio.Channel):
        raise OptionError(
            f"wrap: got {type(stub).__name__}; pass a generated stub, or a stub class and a channel"
        )
    return _build(type(stub), None, stub, tuple(args), target, secure, aio)


@overload
def bind(
    method: grpc.UnaryUnaryMultiCallable[Req, Resp], /, *options: CallOption
) -> BoundUnaryUnary[Req, Resp]: ...


@overload
def bind(
    method: grpc.UnaryStreamMultiCallable[Req, Resp], /, *options: CallOption
) -> BoundUnaryStream[Req, Resp]: ...


@overload
def bind(
    method: grpc.StreamUnaryMultiCallable[Req, Resp], /, *options: CallOption
) -> BoundStreamUnary[Req, Resp]: ...


@overload
def bind(
    method: grpc.StreamStreamMultiCallable[Req, Resp], /, *options: CallOption
) -> BoundStreamStream[Req, Resp]: ...


@overload
def bind(
    method: grpc.aio.UnaryUnaryMultiCallable[Req, Resp], /, *options: CallOption
) -> AsyncBoundUnaryUnary[Req, Resp]: ...


@overload
def bind(
    method: grpc.aio.UnaryStreamMultiCallable[Req, Resp], /, *options: CallOption
) -> AsyncBoundUnaryStream[Req, Resp]: ...


@overload
def bind(
    method: grpc.aio.StreamUnaryMultiCallable[Req, Resp], /, *options: CallOption
) -> AsyncBoundStreamUnary[Req, Resp]: ...


@overload
def bind(
    method: grpc.aio.StreamStreamMultiCallable[Req, Resp], /, *options: CallOption
) -> AsyncBoundStreamStream[Req, Resp]: ...


def bind(method: Any, /, *options: CallOption) -> Any:
    """Bind call options to one method of a wrapped stub, for calls that type-check.

    ``bind(stub.Method, *options)`` returns a callable that calls ``stub.Method(request,
    *options, *more_options, **grpcio_keywords)``. It is typed from the method as the stub's
    type declares it (grpc-stubs' ``UnaryUnaryMultiCallable[Req, Resp]`` and the other shapes,
    sync or ``grpc.aio``), so the request type and the response type are the method's own:
    passing the wrong message, or using the response as something else, is a type error.
    For ``grpc.aio``, wrap a stub *instance* built on the aio channel: mypy-protobuf types
    ``EchoStub(aio_channel)`` as ``EchoAsyncStub`` (aio multicallables), while
    ``wrap(EchoStub, aio_channel)`` can only be typed as the class it was given.
    The stub's default call options (from :func:`wrap`) still come first, then the bound ones,
    then any given at the call (a later ``timeout`` wins; ``call_metadata`` adds up in that
    order). No options binds nothing and is allowed: the result
    still takes options per call. The options are checked once, here; a bound callable may be
    called any number of times and from any thread or task.

    Raises:
        OptionError: ``method`` is not a method of a stub returned by :func:`wrap` (a bare
            grpcio multicallable cannot take call options), or an option is not a CallOption.
    """
    if not isinstance(method, _Method):
        raise OptionError(
            f"bind: got {type(method).__name__}; pass a method of a wrapped stub, "
            "bind(wrap(stub).Method, *call_options)"
        )
    for opt in options:
        if not isinstance(opt, CallOption):
            raise OptionError(
                f"bind: got {type(opt).__name__} as a call option; pass CallOption objects "
                "(header(md), timeout(2), ...)"
            )
    return _Bound(method, tuple(options))
