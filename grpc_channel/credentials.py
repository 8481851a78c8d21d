"""Per-RPC credentials in grpc-go's shape: the :class:`PerRPCCredentials` protocol and the checks
shared by the dial option (``with_per_rpc_credentials``) and the call option
(``per_rpc_credentials``) that carry them. A credentials object is only ever described by its type:
its repr may show the secret.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Protocol, runtime_checkable

import grpc

from grpc_channel.defaults import _refuse

__all__ = [
    "PerRPCCredentials",
]


# ------------------------------------------------------------------------------------------
# Per-RPC credentials in grpc-go's shape.


@runtime_checkable
class PerRPCCredentials(Protocol):
    """grpc-go's ``credentials.PerRPCCredentials``: metadata added to every call.

    ``get_request_metadata(method)`` gets the full method path (``"/pkg.Service/Method"``; grpc-go
    passes a service URI instead) and returns the pairs to add. ``require_transport_security()``
    says whether they may only travel over a secure (TLS or local-credentials) channel; the call is
    refused with UNAUTHENTICATED on an insecure one, before anything is sent.
    """

    def get_request_metadata(self, method: str) -> Mapping[str, str | bytes]: ...

    def require_transport_security(self) -> bool: ...


def _creds_repr(creds: object) -> str:
    # Credentials objects are the user's and their repr may show the secret: the type only.
    return f"<{type(creds).__name__}>"


def _check_rpc_credentials(option: str, creds: object) -> None:
    if isinstance(creds, grpc.CallCredentials | PerRPCCredentials):
        return
    raise _refuse(
        option,
        type(creds).__name__,
        "pass grpc.CallCredentials or an object with get_request_metadata(method) and "
        "require_transport_security()",
    )
