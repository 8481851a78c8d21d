"""The sidecar's tokens: who may call it, and what it presents to the next hop.

Three secrets, all sent as the ``dapr-api-token`` metadata key (:data:`TOKEN_KEY`):

- the **API token** (``DAPR_API_TOKEN``): callers of this sidecar must present it; compared in
  constant time (:func:`token_matches`); a missing, repeated or wrong value is UNAUTHENTICATED.
  ``None`` means no check, as in Dapr when the variable is unset.
- the **app token** (``APP_API_TOKEN``): what the sidecar presents to its own app, exactly once.
  The caller's token never reaches the app (Dapr forwarded it in #7344 and sent both in #8172).
- the **peer token**: what the sidecar presents to another app's sidecar: the cluster's
  ``DAPR_API_TOKEN``. The caller's token is never forwarded.

An empty environment variable counts as unset. Token values must be printable ASCII (they travel
as text metadata). No token value ever appears in an error message, repr or log line: errors name
the token, never its content.
"""

from __future__ import annotations

import hmac
import os
from collections.abc import Mapping
from dataclasses import dataclass, field

__all__ = [
    "API_TOKEN_ENV",
    "APP_TOKEN_ENV",
    "PEER_TOKEN_ENV",
    "TOKEN_KEY",
    "SidecarTokens",
    "check_token_value",
    "token_matches",
]

TOKEN_KEY = "dapr-api-token"
"""The metadata key every token travels in."""

API_TOKEN_ENV = "DAPR_API_TOKEN"
APP_TOKEN_ENV = "APP_API_TOKEN"
PEER_TOKEN_ENV = "DAPR_API_TOKEN"
"""The cluster shares one ``DAPR_API_TOKEN``: by default a sidecar presents to its peers the same
token it demands from its callers."""


def check_token_value(token: str | None, name: str) -> str | None:
    """``token`` if usable as metadata (``None`` stays ``None``); else a ValueError or TypeError
    naming ``name`` (never the value)."""
    if token is None:
        return None
    if not isinstance(token, str):
        raise TypeError(f"{name} must be a str or None, got {type(token).__name__}")
    if not token:
        raise ValueError(f"{name} is empty: pass None for no token")
    if not all(0x20 <= ord(ch) <= 0x7E for ch in token):
        raise ValueError(f"{name} must be printable ASCII (0x20-0x7E): it travels as metadata")
    return token


def token_matches(presented: str | bytes, expected: str) -> bool:
    """Whether ``presented`` equals ``expected``, compared in constant time."""
    given = presented if isinstance(presented, bytes) else presented.encode("utf-8", "replace")
    return hmac.compare_digest(given, expected.encode("ascii"))


def _env(environ: Mapping[str, str], name: str) -> str | None:
    return environ.get(name) or None


@dataclass(frozen=True)
class SidecarTokens:
    """The three tokens of a sidecar (each ``None`` when unset); the repr hides their values.

    :meth:`from_env` reads ``DAPR_API_TOKEN`` (API and peer token) and ``APP_API_TOKEN``.
    """

    api_token: str | None = field(default=None, repr=False)
    app_token: str | None = field(default=None, repr=False)
    peer_token: str | None = field(default=None, repr=False)

    def __post_init__(self) -> None:
        check_token_value(self.api_token, "api_token")
        check_token_value(self.app_token, "app_token")
        check_token_value(self.peer_token, "peer_token")

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> SidecarTokens:
        env = os.environ if environ is None else environ
        return cls(
            api_token=_env(env, API_TOKEN_ENV),
            app_token=_env(env, APP_TOKEN_ENV),
            peer_token=_env(env, PEER_TOKEN_ENV),
        )

    def __repr__(self) -> str:
        def state(token: str | None) -> str:
            return "set" if token is not None else "unset"

        return (
            f"SidecarTokens(api_token={state(self.api_token)}, app_token={state(self.app_token)}, "
            f"peer_token={state(self.peer_token)})"
        )
