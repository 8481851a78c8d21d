"""grpc-channel: grpc-go style options and a Dapr-style app channel for Python gRPC.

The root exports what everyday code needs; everything else lives in its module, each owning one
concept and listing its names in ``__all__``:

- :func:`dial` / :class:`Channel` (:mod:`.channel`); the asyncio channel is :mod:`grpc_channel.aio`.
- every ``with_*`` dial option (:mod:`.dial_options`, with the option record classes,
  ``DialSettings`` and ``fold_dial_options``) and every call option such as :func:`header`,
  :func:`trailer`, :func:`timeout` (:mod:`.call_options`, with their record classes and
  ``CallInfo``).
- :class:`Metadata` (:mod:`.metadata`: also Dapr's metadata conversion and the context metadata).
- :class:`InvokeMethodRequest` / :class:`InvokeMethodResponse` and what builds and reads them
  (:mod:`.invoke`).
- :func:`wrap`: call options on a generated stub you already have; :func:`bind` binds them to one
  method for calls that type-check (:mod:`.stubs`).
- the errors the above raise.

Elsewhere: library defaults and option checks (:mod:`.defaults`), per-RPC credentials
(:mod:`.credentials`), opening grpcio channels from settings (:mod:`.dialing`), codecs and
compressors (:mod:`.encoding`), and the stand-alone interceptors (:mod:`grpc_channel.interceptors`).

Importing the package is cheap: each name above is imported from its module on first use
(``from grpc_channel import dial`` loads what ``dial`` needs, ``import grpc_channel`` alone loads
nothing else), so a process that only needs one corner of the toolkit does not pay for the rest.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from grpc_channel.call_options import (
        CallOption,
        Peer,
        call_content_subtype,
        call_metadata,
        force_codec,
        header,
        max_call_recv_msg_size,
        max_call_send_msg_size,
        on_finish,
        peer,
        per_rpc_credentials,
        timeout,
        trailer,
        use_compressor,
        wait_for_ready,
    )
    from grpc_channel.channel import (
        AppNotReadyError,
        Channel,
        dial,
        with_raise_errors,
    )
    from grpc_channel.defaults import (
        OptionError,
    )
    from grpc_channel.dial_options import (
        DialOption,
        with_app_token,
        with_authority,
        with_block,
        with_chain_stream_interceptor,
        with_chain_unary_interceptor,
        with_channel_args,
        with_codec,
        with_compressor,
        with_connect_params,
        with_default_call_options,
        with_default_service_config,
        with_disable_retry,
        with_insecure,
        with_keepalive_params,
        with_max_concurrency,
        with_max_recv_msg_size,
        with_max_send_msg_size,
        with_per_rpc_credentials,
        with_stream_interceptor,
        with_tracing,
        with_transport_credentials,
        with_unary_interceptor,
        with_user_agent,
    )
    from grpc_channel.dialing import (
        DialTimeoutError,
    )
    from grpc_channel.encoding import (
        EncodingError,
    )
    from grpc_channel.invoke import (
        APIVersion,
        HTTPVerb,
        InvokeError,
        InvokeMethodRequest,
        InvokeMethodResponse,
        InvokeStatus,
        InvokeStatusError,
    )
    from grpc_channel.metadata import (
        Metadata,
        MetadataError,
    )
    from grpc_channel.stubs import (
        bind,
        wrap,
    )

__all__ = [
    "APIVersion",
    "AppNotReadyError",
    "CallOption",
    "Channel",
    "DialOption",
    "DialTimeoutError",
    "EncodingError",
    "HTTPVerb",
    "InvokeError",
    "InvokeMethodRequest",
    "InvokeMethodResponse",
    "InvokeStatus",
    "InvokeStatusError",
    "Metadata",
    "MetadataError",
    "OptionError",
    "Peer",
    "bind",
    "call_content_subtype",
    "call_metadata",
    "dial",
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
    "with_raise_errors",
    "with_stream_interceptor",
    "with_tracing",
    "with_transport_credentials",
    "with_unary_interceptor",
    "with_user_agent",
    "wrap",
]

# Where each public name lives; imported on first use (PEP 562), see the module docs.
_HOME: dict[str, str] = {
    "CallOption": "grpc_channel.call_options",
    "Peer": "grpc_channel.call_options",
    "bind": "grpc_channel.stubs",
    "call_content_subtype": "grpc_channel.call_options",
    "call_metadata": "grpc_channel.call_options",
    "force_codec": "grpc_channel.call_options",
    "header": "grpc_channel.call_options",
    "max_call_recv_msg_size": "grpc_channel.call_options",
    "max_call_send_msg_size": "grpc_channel.call_options",
    "on_finish": "grpc_channel.call_options",
    "peer": "grpc_channel.call_options",
    "per_rpc_credentials": "grpc_channel.call_options",
    "timeout": "grpc_channel.call_options",
    "trailer": "grpc_channel.call_options",
    "use_compressor": "grpc_channel.call_options",
    "wait_for_ready": "grpc_channel.call_options",
    "AppNotReadyError": "grpc_channel.channel",
    "Channel": "grpc_channel.channel",
    "dial": "grpc_channel.channel",
    "with_raise_errors": "grpc_channel.channel",
    "OptionError": "grpc_channel.defaults",
    "DialOption": "grpc_channel.dial_options",
    "with_app_token": "grpc_channel.dial_options",
    "with_authority": "grpc_channel.dial_options",
    "with_block": "grpc_channel.dial_options",
    "with_chain_stream_interceptor": "grpc_channel.dial_options",
    "with_chain_unary_interceptor": "grpc_channel.dial_options",
    "with_channel_args": "grpc_channel.dial_options",
    "with_codec": "grpc_channel.dial_options",
    "with_compressor": "grpc_channel.dial_options",
    "with_connect_params": "grpc_channel.dial_options",
    "with_default_call_options": "grpc_channel.dial_options",
    "with_default_service_config": "grpc_channel.dial_options",
    "with_disable_retry": "grpc_channel.dial_options",
    "with_insecure": "grpc_channel.dial_options",
    "with_keepalive_params": "grpc_channel.dial_options",
    "with_max_concurrency": "grpc_channel.dial_options",
    "with_max_recv_msg_size": "grpc_channel.dial_options",
    "with_max_send_msg_size": "grpc_channel.dial_options",
    "with_per_rpc_credentials": "grpc_channel.dial_options",
    "with_stream_interceptor": "grpc_channel.dial_options",
    "with_tracing": "grpc_channel.dial_options",
    "with_transport_credentials": "grpc_channel.dial_options",
    "with_unary_interceptor": "grpc_channel.dial_options",
    "with_user_agent": "grpc_channel.dial_options",
    "DialTimeoutError": "grpc_channel.dialing",
    "EncodingError": "grpc_channel.encoding",
    "APIVersion": "grpc_channel.invoke",
    "HTTPVerb": "grpc_channel.invoke",
    "InvokeError": "grpc_channel.invoke",
    "InvokeMethodRequest": "grpc_channel.invoke",
    "InvokeMethodResponse": "grpc_channel.invoke",
    "InvokeStatus": "grpc_channel.invoke",
    "InvokeStatusError": "grpc_channel.invoke",
    "Metadata": "grpc_channel.metadata",
    "MetadataError": "grpc_channel.metadata",
    "wrap": "grpc_channel.stubs",
}


def __getattr__(name: str) -> Any:
    home = _HOME.get(name)
    if home is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    value = getattr(import_module(home, __name__), name)
    # Cached as a module global: later lookups no longer reach this function.
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
