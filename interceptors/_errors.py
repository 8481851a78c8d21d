"""An RPC error raised on the client side, before or instead of the wire.

grpcio raises ``grpc.RpcError`` objects that are also ``grpc.Call`` objects: callers read
``code()``, ``details()`` and the metadata from the exception. A policy that refuses a call
locally (a concurrency queue that is full, a deadline that passed while waiting for a slot, a
message over a size limit) must look the same to the caller, so that one
``except grpc.RpcError`` handles both.
"""

from __future__ import annotations

from collections.abc import Sequence

import grpc

from ._metadata_pairs import MetadataPairs

__all__ = ["LocalRpcError"]


class LocalRpcError(grpc.RpcError):
    """A ``grpc.RpcError`` produced locally, with the ``grpc.Call`` accessors callers rely on.

    ``initial_metadata()`` and ``trailing_metadata()`` are empty unless given; ``peer`` is ``""``
    because no peer was reached (or, when a policy fails after the wire, the peer of that call).
    """

    def __init__(
        self,
        code: grpc.StatusCode,
        details: str,
        *,
        initial_metadata: Sequence[tuple[str, str | bytes]] = (),
        trailing_metadata: Sequence[tuple[str, str | bytes]] = (),
        peer: str = "",
    ) -> None:
        super().__init__(f"{code.name}: {details}")
        self._code = code
        self._details = details
        self._initial_metadata = tuple(initial_metadata)
        self._trailing_metadata = tuple(trailing_metadata)
        self._peer = peer

    def code(self) -> grpc.StatusCode:
        return self._code

    def details(self) -> str:
        return self._details

    def initial_metadata(self) -> MetadataPairs:
        return self._initial_metadata

    # grpc-stubs declares a ``_Metadatum`` class here; grpcio returns plain (key, value) tuples.
    def trailing_metadata(self) -> MetadataPairs:  # type: ignore[override]
        return self._trailing_metadata

    def peer(self) -> str:
        return self._peer

    def __repr__(self) -> str:
        return f"LocalRpcError(code={self._code.name}, details={self._details!r})"
