"""What both servers need besides dispatch: the generic handlers that bind the AppCallback method
paths (Dapr's ``dapr.proto.runtime.v1`` names, our ``grpc_channel.v1`` messages) to behaviours,
and the listening address."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import grpc

from grpc_channel.appcallback import METHOD_TYPES

DEFAULT_HOST = "127.0.0.1"

# grpc core sets SO_REUSEPORT by default, so a second server "binds" a port another process
# already serves and the two split the traffic; an app must fail to start instead.
SERVER_OPTIONS = (("grpc.so_reuseport", 0),)


def generic_handlers(
    behavior_for: Callable[[str], Callable[..., Any]],
) -> list[grpc.GenericRpcHandler[Any, Any]]:
    """One generic handler per service, each method served by ``behavior_for(path)``."""
    services: dict[str, dict[str, grpc.RpcMethodHandler[Any, Any]]] = {}
    for path, (request_type, response_type) in METHOD_TYPES.items():
        service, _, method = path[1:].partition("/")
        services.setdefault(service, {})[method] = grpc.unary_unary_rpc_method_handler(
            behavior_for(path),
            request_deserializer=request_type.FromString,
            response_serializer=response_type.SerializeToString,
        )
    return [grpc.method_handlers_generic_handler(name, table) for name, table in services.items()]


def check_port(port: object) -> int:
    """``port`` as an int 0-65535 (0: the system picks a free port), else ``ValueError``."""
    if not isinstance(port, int) or isinstance(port, bool) or not 0 <= port <= 65535:
        raise ValueError(f"port must be an int 0-65535 (0 picks a free port), got {port!r}")
    return port


def bind_address(host: str, port: int) -> str:
    """``host:port``, with an IPv6 literal in brackets. ``ValueError`` for an empty host."""
    if not isinstance(host, str) or not host:
        raise ValueError(f"host must be a non-empty str such as '127.0.0.1', got {host!r}")
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return f"{host}:{check_port(port)}"


def check_bound(bound: int, address: str) -> int:
    """grpcio reports a failed bind as port 0 (older versions) or raises RuntimeError."""
    if bound == 0:
        raise OSError(f"could not listen on {address}")
    return bound
