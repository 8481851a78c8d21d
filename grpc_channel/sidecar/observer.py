"""What the sidecar's proxy reports about each call it handles: the seam telemetry plugs into.

The proxy calls :meth:`ProxyObserver.begin` once per call it accepts (after the token check and
the route are settled), forwards the metadata :meth:`ProxiedCall.forward_metadata` returns (so a
tracer can put its own span's context on the next hop), and calls :meth:`ProxiedCall.end` exactly
once with the status the caller receives, whatever way the call ends (OK, upstream error,
refusal after begin, the caller cancelling: CANCELLED).
"""

from __future__ import annotations

from typing import Protocol

import grpc

from grpc_channel.interceptors import MetadataPairs

__all__ = ["ProxiedCall", "ProxyObserver"]


class ProxiedCall(Protocol):
    """One call in flight through the proxy."""

    def forward_metadata(self, pairs: MetadataPairs) -> MetadataPairs:
        """The metadata to send upstream: ``pairs`` with anything the observer adds."""
        ...

    def end(self, code: grpc.StatusCode) -> None:
        """The call ended with ``code``; called once."""
        ...


class ProxyObserver(Protocol):
    """Told of every proxied call; must not raise (an observer's failure is not the call's)."""

    def begin(
        self, method: str, target_app: str, local: bool, incoming: MetadataPairs
    ) -> ProxiedCall:
        """A call to ``method`` for app ``target_app`` (``local``: this sidecar's own app)
        starts; ``incoming`` is the caller's metadata (trace context is read from it)."""
        ...
