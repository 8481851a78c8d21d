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
- :func:`wrap`: call options on a generated stub you already have (:mod:`.stubs`).
- the errors the above raise.

Elsewhere: library defaults and option checks (:mod:`.defaults`), per-RPC credentials
(:mod:`.credentials`), opening grpcio channels from settings (:mod:`.dialing`), codecs and
compressors (:mod:`.encoding`), and the stand-alone interceptors (:mod:`grpc_channel.interceptors`).
"""

from __future__ import annotations

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
