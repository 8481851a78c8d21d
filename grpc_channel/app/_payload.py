"""What a topic event and a method request share: a bytes payload read as text or JSON, and the
gRPC invocation metadata as a plain ``dict`` whose secret values never show in a ``repr``."""

from __future__ import annotations

import base64
import json
from collections.abc import Iterable
from typing import Any


def metadata_dict(
    pairs: Iterable[tuple[str, str | bytes]] | None, drop: frozenset[str] = frozenset()
) -> dict[str, str]:
    """grpcio's invocation metadata as ``{key: value}``, without the keys in ``drop``.

    A key sent more than once keeps its values joined by ``", "`` (HTTP's rule for repeated
    headers), so nothing is lost; a ``-bin`` value is given base64-encoded (standard alphabet,
    padded), as gRPC's text form carries it.
    """
    found: dict[str, str] = {}
    for key, value in pairs or ():
        if key in drop:
            continue
        text = base64.b64encode(value).decode("ascii") if isinstance(value, bytes) else value
        found[key] = f"{found[key]}, {text}" if key in found else text
    return found


def safe_keys(metadata: dict[str, str]) -> str:
    """The metadata for a ``repr``: keys only, so no value (a token, say) reaches a log."""
    return "{" + ", ".join(sorted(metadata)) + "}"


class Payload:
    """Mixin for frozen dataclasses with a ``data: bytes`` field."""

    data: bytes

    def text(self, encoding: str = "utf-8") -> str:
        """The data decoded as text (``UnicodeDecodeError`` if it is not valid ``encoding``)."""
        return self.data.decode(encoding)

    def json(self) -> Any:
        """The data parsed as JSON (``json.JSONDecodeError``, a ``ValueError``, if it is not)."""
        return json.loads(self.data)
