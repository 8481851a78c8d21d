"""The proxy's pure rules: check the caller's token, pick the target, build the next hop's metadata,
for the frame proxy and for in-process calls.

No I/O here; :mod:`grpc_channel.sidecar.proxy` calls :func:`plan_route` once per call,
:func:`response_metadata` on what an in-process call gets back.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

import grpc

from grpc_channel.interceptors import MetadataPairs
from grpc_channel.metadata import RESERVED_KEYS

from .tokens import TOKEN_KEY, token_matches

APP_ID_KEY = "dapr-app-id"
CALLEE_KEY = "dapr-callee-app-id"
CALLER_KEY = "dapr-caller-app-id"

# Keys that describe one hop, never the call: the transport's own, the caller's token, and the
# routing keys this sidecar rewrites itself.
_HOP_KEYS = RESERVED_KEYS | {TOKEN_KEY, APP_ID_KEY, CALLEE_KEY, CALLER_KEY}


class RouteRefused(Exception):
    """The call cannot be proxied: end it with ``code`` and ``message``."""

    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code
        self.message = message


@dataclass(frozen=True)
class Route:
    """Where a call goes: this sidecar's app (``local``) or ``target``'s sidecar, with what."""

    target: str
    local: bool
    metadata: MetadataPairs


def _is_hop_key(key: str) -> bool:
    return key.startswith((":", "grpc-")) or key in _HOP_KEYS


def _values(pairs: MetadataPairs, key: str) -> list[str | bytes]:
    return [value for k, value in pairs if k == key]


def _single_text(pairs: MetadataPairs, key: str) -> str | None:
    """The one value of ``key``; RouteRefused when it is repeated or not text."""
    values = _values(pairs, key)
    if not values:
        return None
    if len(values) > 1 or not isinstance(values[0], str) or not values[0].strip():
        raise RouteRefused(
            grpc.StatusCode.INVALID_ARGUMENT, f"metadata {key!r} must hold exactly one app id"
        )
    return values[0].strip()


def check_caller_token(pairs: MetadataPairs, api_token: str | None) -> None:
    """UNAUTHENTICATED unless the call carries ``api_token`` exactly once (no check when None)."""
    if api_token is None:
        return
    presented = _values(pairs, TOKEN_KEY)
    if len(presented) != 1 or not token_matches(presented[0], api_token):
        what = "missing" if not presented else "invalid"
        raise RouteRefused(
            grpc.StatusCode.UNAUTHENTICATED,
            f"{what} {TOKEN_KEY}: this sidecar requires its API token (DAPR_API_TOKEN)",
        )


def plan_route(
    incoming: Iterable[tuple[str, str | bytes]],
    *,
    own_app_id: str,
    api_token: str | None,
    peer_token: str | None,
) -> Route:
    """Check the caller, pick the target and build the metadata for the next hop.

    The target is ``dapr-callee-app-id``, else ``dapr-app-id`` (neither: INVALID_ARGUMENT). Hop
    keys are dropped: ``:``-pseudo headers, ``grpc-*`` and the transport's reserved keys, the
    caller's ``dapr-api-token``, ``dapr-app-id``, ``dapr-callee-app-id`` and
    ``dapr-caller-app-id``. Then:

    - to another app's sidecar: ``dapr-caller-app-id`` = own id, ``dapr-callee-app-id`` = target,
      and ``peer_token`` as ``dapr-api-token`` (when set);
    - to the own app: ``dapr-caller-app-id`` as the previous sidecar gave it (a call that came
      with ``dapr-callee-app-id``), else the own id (a local client's call). No token here: the
      app channel (``with_app_token``) sends the app token, once.
    """
    pairs: MetadataPairs = tuple((k, v) for k, v in incoming)
    check_caller_token(pairs, api_token)
    callee = _single_text(pairs, CALLEE_KEY)
    target = callee or _single_text(pairs, APP_ID_KEY)
    if target is None:
        raise RouteRefused(
            grpc.StatusCode.INVALID_ARGUMENT,
            f"no target app: set the {APP_ID_KEY!r} metadata key to the app id to call",
        )
    kept = [(k, v) for k, v in pairs if not _is_hop_key(k)]
    if target != own_app_id:
        kept += [(CALLER_KEY, own_app_id), (CALLEE_KEY, target)]
        if peer_token is not None:
            kept.append((TOKEN_KEY, peer_token))
        return Route(target, False, tuple(kept))
    caller = _single_text(pairs, CALLER_KEY) if callee is not None else None
    kept.append((CALLER_KEY, caller or own_app_id))
    return Route(target, True, tuple(kept))


def response_metadata(pairs: Iterable[Any] | None) -> MetadataPairs:
    """Upstream headers or trailers (grpcio ``(key, value)`` items) to pass back: all but the
    transport's own keys. ``grpc-status-details-bin`` and ``grpc-retry-pushback-ms`` are the
    app's and pass through."""
    kept: list[tuple[str, str | bytes]] = []
    for key, value in pairs or ():
        if not key.startswith(":") and key not in RESERVED_KEYS:
            kept.append((key, value))
    return tuple(kept)
