"""Opening a grpcio channel from folded dial settings: :func:`open_channel` (sync) and
:func:`open_aio_channel` (``grpc.aio``).

This is where transport and per-RPC credentials are combined, the user's interceptors are filtered
to the call shapes they were given for, and our policies (tracing, the concurrency limit, grpc-go
style credentials, the app token) are composed into one layer. :class:`DialTimeoutError` is raised
when ``with_block`` waits in vain.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, Final, NamedTuple

import grpc

from grpc_channel._engine import RpcCredentialsPolicy
from grpc_channel.credentials import PerRPCCredentials
from grpc_channel.defaults import OptionError, _refuse, _wire_text
from grpc_channel.dial_options import _STREAM_TYPES, _UNARY_TYPES, DialSettings
from grpc_channel.encoding import get_compressor
from grpc_channel.interceptors import AppToken, ConcurrencyLimit, Tracing, compose

__all__ = [
    "DialTimeoutError",
    "open_aio_channel",
    "open_channel",
]


class DialTimeoutError(TimeoutError):
    """``with_block(timeout)``: the channel did not become ready in time (it has been closed)."""


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
    out: list[Any] = []
    if settings.tracing is not None:
        out.append(Tracing(settings.tracing, target=target))
    if settings.max_concurrency > 0:
        out.append(ConcurrencyLimit(settings.max_concurrency))
    go_creds = tuple(c for c in settings.per_rpc_credentials if isinstance(c, PerRPCCredentials))
    if go_creds:
        out.append(RpcCredentialsPolicy(go_creds))
    if settings.app_token is not None or settings.app_token_from_env:
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


class _Opening(NamedTuple):
    """What both openers derive from the settings before they create a channel."""

    target: str
    creds: grpc.ChannelCredentials | None
    interceptors: list[Any]
    policies: list[Any]
    options: list[tuple[str, Any]]
    compression: grpc.Compression | None


def _opening(target: object, settings: DialSettings, *, aio: bool) -> _Opening:
    # Checked in this order so that the first bad setting is the one reported, sync and aio alike.
    checked = _check_target(target)
    return _Opening(
        checked,
        _channel_credentials(settings),
        _grpc_interceptors(settings, aio=aio),
        _policies(settings, checked),
        settings.grpc_options(),
        get_compressor(settings.compressor) if settings.compressor else None,
    )


def _not_ready(target: str, settings: DialSettings) -> DialTimeoutError:
    return DialTimeoutError(f"dial {target}: channel not ready within {settings.block_timeout:g} s")


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
    target, creds, interceptors, policies, options, compression = _opening(
        target, settings, aio=False
    )
    if creds is None:
        channel: grpc.Channel = grpc.insecure_channel(target, options, compression)
    else:
        channel = grpc.secure_channel(target, creds, options, compression)
    try:
        if settings.block:
            try:
                grpc.channel_ready_future(channel).result(timeout=settings.block_timeout)
            except grpc.FutureTimeoutError:
                raise _not_ready(target, settings) from None
        if interceptors:
            channel = grpc.intercept_channel(channel, *interceptors)
        if policies:
            channel = compose(*policies).wrap(channel)
    except BaseException:
        channel.close()
        raise
    return channel


async def open_aio_channel(target: str, settings: DialSettings) -> grpc.aio.Channel:
    """The ``grpc.aio`` form of :func:`open_channel` (a coroutine, so that ``with_block`` can
    await readiness); the user's interceptors must be ``grpc.aio`` client interceptors."""
    target, creds, interceptors, policies, options, compression = _opening(
        target, settings, aio=True
    )
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
            except TimeoutError:
                raise _not_ready(target, settings) from None
        if policies:
            channel = compose(*policies).wrap_aio(channel)
    except BaseException:
        await channel.close(None)
        raise
    return channel
