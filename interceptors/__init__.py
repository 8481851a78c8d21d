"""Stand-alone grpcio interceptors, sync and asyncio, client and server.

Each policy is written once and runs in any of these forms:

- composed with others by :func:`compose`, then ``chain.wrap(channel)`` or
  ``chain.wrap_aio(channel)`` (the whole chain costs one plain function call per RPC, no
  ``grpc.intercept_channel`` layers);
- as grpcio interceptors: ``chain.client_interceptors()`` for ``grpc.intercept_channel``,
  ``chain.aio_client_interceptors()`` for ``grpc.aio.insecure_channel(interceptors=...)``,
  ``chain.server_interceptors()`` / ``chain.aio_server_interceptors()`` for servers; a single
  policy has the same methods (``ConcurrencyLimit(8).client_interceptor()``).

The first policy listed is the outermost. This package depends on grpcio and OpenTelemetry only.
Write your own policy by subclassing :class:`ClientPolicy` / :class:`ServerPolicy` (the protocol is
documented in ``grpc_channel.interceptors._policy``).

Each name is imported from its module on first use (PEP 562), so importing this package does not
load OpenTelemetry until a tracing name is used, and never loads the OpenTelemetry SDK: only the
features that need it do (lean spans, ``TracingSpec.sampler()``), and without it they raise
:class:`MissingExtraError` naming the ``otel`` extra. RPC telemetry follows the OpenTelemetry
semantic conventions chosen by ``OTEL_SEMCONV_STABILITY_OPT_IN`` (:func:`semconv_mode`), with
the duration buckets :data:`DURATION_BUCKETS`.
"""

from __future__ import annotations

from importlib import import_module
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ._bounded import (
        DEFAULT_CACHE_CAPACITY,
        BoundedCache,
    )
    from ._capture import (
        Capture,
        Captured,
        capture,
    )
    from ._chain import (
        AioClientInterceptor,
        AioServerInterceptor,
        Chain,
        ClientInterceptor,
        ServerInterceptor,
        compose,
    )
    from ._client_aio import (
        AioUnaryUnaryCall,
        WrappedAioChannel,
    )
    from ._client_sync import (
        WrappedChannel,
    )
    from ._concurrency import (
        DEFAULT_DROP_CODES,
        ConcurrencyLimit,
    )
    from ._deadline import (
        MAX_TIMEOUT,
        Deadline,
        check_timeout,
        short_repr,
    )
    from ._errors import (
        LocalRpcError,
    )
    from ._extras import (
        MissingExtraError,
    )
    from ._limit import (
        AimdLimit,
        GradientLimit,
        LimitAlgorithm,
    )
    from ._metadata_pairs import (
        MetadataPairs,
    )
    from ._policy import (
        CallOptionsRecord,
        CallShape,
        ClientCall,
        ClientPolicy,
        PolicyBase,
        ServerCall,
        ServerPolicy,
        handing_over,
    )
    from ._response_metadata import (
        ended_call_metadata,
        read_response_metadata,
    )
    from ._retry import (
        PREVIOUS_ATTEMPTS_HEADER,
        PUSHBACK_TRAILER,
        Backoff,
        Retry,
    )
    from ._run import (
        outcome_code,
        time_left,
    )
    from ._semconv import (
        DURATION_BUCKETS,
        SEMCONV_OPT_IN_ENV,
        SemconvMode,
        semconv_mode,
    )
    from ._token import (
        DEFAULT_SKIP_METHODS,
        DEFAULT_TOKEN_HEADER,
        TOKEN_ENV,
        AppToken,
        TokenAuth,
    )
    from ._tracing import (
        Tracing,
        TracingSpec,
        TracingSpecError,
        extract_trace_context,
        inject_trace_context,
    )

__all__ = [
    "DEFAULT_CACHE_CAPACITY",
    "DEFAULT_DROP_CODES",
    "DEFAULT_SKIP_METHODS",
    "DEFAULT_TOKEN_HEADER",
    "DURATION_BUCKETS",
    "MAX_TIMEOUT",
    "PREVIOUS_ATTEMPTS_HEADER",
    "PUSHBACK_TRAILER",
    "SEMCONV_OPT_IN_ENV",
    "TOKEN_ENV",
    "AimdLimit",
    "AioClientInterceptor",
    "AioServerInterceptor",
    "AioUnaryUnaryCall",
    "AppToken",
    "Backoff",
    "BoundedCache",
    "CallOptionsRecord",
    "CallShape",
    "Capture",
    "Captured",
    "Chain",
    "ClientCall",
    "ClientInterceptor",
    "ClientPolicy",
    "ConcurrencyLimit",
    "Deadline",
    "GradientLimit",
    "LimitAlgorithm",
    "LocalRpcError",
    "MetadataPairs",
    "MissingExtraError",
    "PolicyBase",
    "Retry",
    "SemconvMode",
    "ServerCall",
    "ServerInterceptor",
    "ServerPolicy",
    "TokenAuth",
    "Tracing",
    "TracingSpec",
    "TracingSpecError",
    "WrappedAioChannel",
    "WrappedChannel",
    "capture",
    "check_timeout",
    "compose",
    "ended_call_metadata",
    "extract_trace_context",
    "handing_over",
    "inject_trace_context",
    "outcome_code",
    "read_response_metadata",
    "semconv_mode",
    "short_repr",
    "time_left",
]

# Where each public name lives; imported on first use (PEP 562), see the module docs.
_HOME: dict[str, str] = {
    "DEFAULT_CACHE_CAPACITY": "._bounded",
    "BoundedCache": "._bounded",
    "Capture": "._capture",
    "Captured": "._capture",
    "capture": "._capture",
    "AioClientInterceptor": "._chain",
    "AioServerInterceptor": "._chain",
    "Chain": "._chain",
    "ClientInterceptor": "._chain",
    "ServerInterceptor": "._chain",
    "compose": "._chain",
    "AioUnaryUnaryCall": "._client_aio",
    "WrappedAioChannel": "._client_aio",
    "WrappedChannel": "._client_sync",
    "DEFAULT_DROP_CODES": "._concurrency",
    "ConcurrencyLimit": "._concurrency",
    "MAX_TIMEOUT": "._deadline",
    "Deadline": "._deadline",
    "check_timeout": "._deadline",
    "short_repr": "._deadline",
    "LocalRpcError": "._errors",
    "AimdLimit": "._limit",
    "GradientLimit": "._limit",
    "LimitAlgorithm": "._limit",
    "MetadataPairs": "._metadata_pairs",
    "CallOptionsRecord": "._policy",
    "CallShape": "._policy",
    "ClientCall": "._policy",
    "ClientPolicy": "._policy",
    "PolicyBase": "._policy",
    "ServerCall": "._policy",
    "ServerPolicy": "._policy",
    "handing_over": "._policy",
    "ended_call_metadata": "._response_metadata",
    "read_response_metadata": "._response_metadata",
    "PREVIOUS_ATTEMPTS_HEADER": "._retry",
    "PUSHBACK_TRAILER": "._retry",
    "Backoff": "._retry",
    "Retry": "._retry",
    "outcome_code": "._run",
    "time_left": "._run",
    "DEFAULT_SKIP_METHODS": "._token",
    "DEFAULT_TOKEN_HEADER": "._token",
    "TOKEN_ENV": "._token",
    "AppToken": "._token",
    "TokenAuth": "._token",
    "Tracing": "._tracing",
    "TracingSpec": "._tracing",
    "TracingSpecError": "._tracing",
    "extract_trace_context": "._tracing",
    "inject_trace_context": "._tracing",
    "MissingExtraError": "._extras",
    "DURATION_BUCKETS": "._semconv",
    "SEMCONV_OPT_IN_ENV": "._semconv",
    "SemconvMode": "._semconv",
    "semconv_mode": "._semconv",
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
