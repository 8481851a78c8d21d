"""App API token: ``AppToken`` adds it to outgoing calls, ``TokenAuth`` checks it on incoming ones.

Dapr protects an app's callback server with a shared secret sent as the ``dapr-api-token``
metadata header; the value comes from the ``APP_API_TOKEN`` environment variable. Both policies
take the header name as ``header=`` (default ``"dapr-api-token"``).

The token never appears in a repr, log line, error message or span attribute: errors say which
header was missing or wrong, never what it held.
"""

from __future__ import annotations

import hmac
import os
import re
from collections.abc import Iterable

import grpc

from ._errors import LocalRpcError
from ._policy import ClientCall, ClientPolicy, ServerCall, ServerPolicy

__all__ = [
    "DEFAULT_SKIP_METHODS",
    "DEFAULT_TOKEN_HEADER",
    "TOKEN_ENV",
    "AppToken",
    "TokenAuth",
]

DEFAULT_TOKEN_HEADER = "dapr-api-token"
TOKEN_ENV = "APP_API_TOKEN"
DEFAULT_SKIP_METHODS = frozenset(
    {
        "/dapr.proto.runtime.v1.AppCallbackHealthCheck/HealthCheck",
        "/grpc.health.v1.Health/Check",
    }
)

_HEADER = re.compile(r"[0-9a-z_.\-]+")


def _check_header(header: str) -> str:
    if not isinstance(header, str) or not _HEADER.fullmatch(header):
        raise ValueError(
            f"header must be a non-empty lower-case metadata key of [0-9a-z-_.], got {header!r}"
        )
    if header.startswith("grpc-") or header.endswith("-bin"):
        raise ValueError(
            f"header {header!r} is not usable for a token: 'grpc-' keys are reserved and '-bin' "
            "keys carry bytes"
        )
    return header


def _check_token(token: str, source: str) -> str:
    if not isinstance(token, str):
        raise TypeError(f"the token ({source}) must be a str, got {type(token).__name__}")
    if not token:
        raise ValueError(f"the token ({source}) is empty")
    if any(not 0x20 <= ord(c) <= 0x7E for c in token):
        # Do not echo the token: say only what is wrong with it.
        raise ValueError(
            f"the token ({source}) must be printable ASCII (0x20-0x7E) to travel as metadata"
        )
    return token


class AppToken(ClientPolicy):
    """Client: send the app API token with every call.

    ``AppToken(token=None, *, header="dapr-api-token")``. ``token=None`` reads ``APP_API_TOKEN``
    from the environment once, here; when neither gives a token the policy sends nothing (as Dapr
    does when no token is configured) and :attr:`enabled` is False. The token *replaces* any
    value of ``header`` the call already carries (grpc-go's ``md.Set``, as Dapr does), so the app
    never sees two tokens.
    """

    __slots__ = ("_pair", "header")

    def __init__(self, token: str | None = None, *, header: str = DEFAULT_TOKEN_HEADER) -> None:
        self.header = _check_header(header)
        if token is None:
            env = os.environ.get(TOKEN_ENV)
            token = _check_token(env, f"${TOKEN_ENV}") if env else None
        else:
            token = _check_token(token, "token=")
        self._pair: tuple[str, str] | None = (self.header, token) if token is not None else None

    @property
    def enabled(self) -> bool:
        """True if there is a token to send."""
        return self._pair is not None

    def client_start(self, call: ClientCall) -> None:
        pair = self._pair
        if pair is not None:
            md = call.metadata
            if md:
                header = self.header
                for key, _ in md:
                    if key == header:
                        md = call.metadata = [p for p in md if p[0] != header]
                        break
            md.append(pair)

    def __repr__(self) -> str:
        return f"AppToken(header={self.header!r}, enabled={self.enabled})"


class TokenAuth(ServerPolicy):
    """Server: refuse calls without the right token with UNAUTHENTICATED, before the handler runs.

    ``TokenAuth(token=None, *, header="dapr-api-token", skip_methods=DEFAULT_SKIP_METHODS)``.
    ``token=None`` reads ``APP_API_TOKEN``; with no token from either, construction fails (a server
    check with nothing to check against would silently let everyone in). The comparison is
    constant-time (``hmac.compare_digest`` on UTF-8 bytes). Methods in ``skip_methods`` (full
    paths; default the Dapr app health check and ``/grpc.health.v1.Health/Check``) are not
    checked. When a call carries several values for ``header``, the first is checked.
    """

    __slots__ = ("_expected", "header", "skip_methods")

    def __init__(
        self,
        token: str | None = None,
        *,
        header: str = DEFAULT_TOKEN_HEADER,
        skip_methods: Iterable[str] = DEFAULT_SKIP_METHODS,
    ) -> None:
        self.header = _check_header(header)
        if token is None:
            env = os.environ.get(TOKEN_ENV)
            if not env:
                raise ValueError(
                    f"TokenAuth needs a token: pass token= or set the {TOKEN_ENV} environment "
                    "variable"
                )
            token = _check_token(env, f"${TOKEN_ENV}")
        else:
            token = _check_token(token, "token=")
        self._expected = token.encode()
        skip = frozenset(skip_methods)
        for method in skip:
            if not isinstance(method, str) or not method.startswith("/"):
                raise ValueError(
                    f"skip_methods holds full method paths like '/pkg.Service/Method', "
                    f"got {method!r}"
                )
        self.skip_methods = skip

    def server_start(self, call: ServerCall) -> None:
        if call.method in self.skip_methods:
            return
        got = call.metadata_value(self.header)
        if got is None:
            raise LocalRpcError(grpc.StatusCode.UNAUTHENTICATED, f"missing {self.header} metadata")
        given = got.encode() if isinstance(got, str) else got
        if not hmac.compare_digest(given, self._expected):
            raise LocalRpcError(grpc.StatusCode.UNAUTHENTICATED, f"invalid {self.header}")

    def __repr__(self) -> str:
        return f"TokenAuth(header={self.header!r}, skip_methods={sorted(self.skip_methods)!r})"
