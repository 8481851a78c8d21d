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
from ._concurrency import (
    DEFAULT_DROP_CODES,
    ConcurrencyLimit,
)
from ._deadline import (
    Deadline,
)
from ._errors import (
    LocalRpcError,
)
from ._limit import (
    AimdLimit,
    GradientLimit,
    LimitAlgorithm,
)
from ._policy import (
    CallShape,
    ClientCall,
    ClientPolicy,
    MetadataList,
    PolicyBase,
    ServerCall,
    ServerPolicy,
)
from ._retry import (
    PREVIOUS_ATTEMPTS_HEADER,
    PUSHBACK_TRAILER,
    Backoff,
    Retry,
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
    "PREVIOUS_ATTEMPTS_HEADER",
    "PUSHBACK_TRAILER",
    "TOKEN_ENV",
    "AimdLimit",
    "AioClientInterceptor",
    "AioServerInterceptor",
    "AppToken",
    "Backoff",
    "BoundedCache",
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
    "MetadataList",
    "PolicyBase",
    "Retry",
    "ServerCall",
    "ServerInterceptor",
    "ServerPolicy",
    "TokenAuth",
    "Tracing",
    "TracingSpec",
    "TracingSpecError",
    "capture",
    "compose",
    "extract_trace_context",
    "inject_trace_context",
]
