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
"""

from __future__ import annotations

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
    "MAX_TIMEOUT",
    "PREVIOUS_ATTEMPTS_HEADER",
    "PUSHBACK_TRAILER",
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
    "PolicyBase",
    "Retry",
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
    "short_repr",
    "time_left",
]
