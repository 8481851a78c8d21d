"""The sidecar: a transparent gRPC proxy between apps, addressed by app id.

- :class:`Sidecar` (:mod:`.proxy`): proxies any gRPC call, all four shapes on raw bytes, to the
  own app or to another app's sidecar, with deadline, cancellation, metadata and status passed
  through, an in-flight cap, message-size limits and graceful stop.
- :class:`PeersResolver` (:mod:`.resolver`): app id -> sidecar address from code, the
  ``GRPC_CHANNEL_PEERS`` environment variable and a reloaded JSON/YAML peers file.
- :class:`SidecarTokens` (:mod:`.tokens`): ``DAPR_API_TOKEN`` for callers and peers,
  ``APP_API_TOKEN`` for the app; never logged.
- :class:`ProxyObserver` (:mod:`.observer`): the seam telemetry plugs into, told of every
  proxied call and its final status; :class:`SidecarTelemetry` (:mod:`.telemetry`) is ours.
- :class:`DaprApi` (:mod:`.dapr_api`): Dapr's ``InvokeService``, ``PublishEvent`` and
  ``GetMetadata``, served ahead of the proxy's catch-all (the dapr SDK's ``DaprClient`` works).
- :class:`SidecarHttp` (:mod:`.http`): ``/healthz`` and the Prometheus ``/metrics`` endpoint.
- :mod:`.serve`: the ``grpc-channel sidecar`` process that wires them together.
"""

from __future__ import annotations

from .dapr_api import (
    AppConnection,
    CallApp,
    ComponentInfo,
    DaprApi,
    Publisher,
    sidecar_call_app,
)
from .http import SidecarHttp
from .observer import ProxiedCall, ProxyObserver
from .proxy import (
    DEFAULT_MAX_CHANNELS,
    DEFAULT_MAX_IN_FLIGHT,
    DEFAULT_MAX_MESSAGE_BYTES,
    AdmittedCall,
    Sidecar,
    UnaryCallOptions,
    UnaryReply,
)
from .resolver import (
    PEERS_ENV,
    PeersFileError,
    PeersResolver,
    Resolver,
    UnknownAppError,
    check_address,
    parse_peers_env,
)
from .telemetry import SidecarTelemetry
from .tokens import (
    API_TOKEN_ENV,
    APP_TOKEN_ENV,
    PEER_TOKEN_ENV,
    TOKEN_KEY,
    SidecarTokens,
    check_token_value,
    token_matches,
)

__all__ = [
    "API_TOKEN_ENV",
    "APP_TOKEN_ENV",
    "DEFAULT_MAX_CHANNELS",
    "DEFAULT_MAX_IN_FLIGHT",
    "DEFAULT_MAX_MESSAGE_BYTES",
    "PEERS_ENV",
    "PEER_TOKEN_ENV",
    "TOKEN_KEY",
    "AdmittedCall",
    "AppConnection",
    "CallApp",
    "ComponentInfo",
    "DaprApi",
    "PeersFileError",
    "PeersResolver",
    "ProxiedCall",
    "ProxyObserver",
    "Publisher",
    "Resolver",
    "Sidecar",
    "SidecarHttp",
    "SidecarTelemetry",
    "SidecarTokens",
    "UnaryCallOptions",
    "UnaryReply",
    "UnknownAppError",
    "check_address",
    "check_token_value",
    "parse_peers_env",
    "sidecar_call_app",
    "token_matches",
]
