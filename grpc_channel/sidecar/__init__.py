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
- :class:`SidecarHttp` (:mod:`.http`): ``/healthz`` and the Prometheus ``/metrics`` endpoint.
- :mod:`.serve`: the ``grpc-channel sidecar`` process that wires them together.
"""

from __future__ import annotations

from .http import SidecarHttp
from .observer import ProxiedCall, ProxyObserver
from .proxy import DEFAULT_MAX_CHANNELS, DEFAULT_MAX_IN_FLIGHT, DEFAULT_MAX_MESSAGE_BYTES, Sidecar
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
    "PeersFileError",
    "PeersResolver",
    "ProxiedCall",
    "ProxyObserver",
    "Resolver",
    "Sidecar",
    "SidecarHttp",
    "SidecarTelemetry",
    "SidecarTokens",
    "UnknownAppError",
    "check_address",
    "check_token_value",
    "parse_peers_env",
    "token_matches",
]
