"""gRPC metadata as data has one name here and in ``grpc_channel``: :data:`MetadataPairs`."""

from __future__ import annotations

from typing import TypeAlias

__all__ = ["MetadataPairs"]

MetadataPairs: TypeAlias = tuple[tuple[str, str | bytes], ...]
"""``(key, value)`` pairs as grpcio sends and returns them: ``str`` values, ``bytes`` for ``-bin``
keys. A tuple, so that it can be shared and memoised; where any sequence of pairs is accepted (or a
list is filled in place) the parameter says ``Sequence``/``list`` of ``tuple[str, str | bytes]``."""
