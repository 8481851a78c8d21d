"""Per-call request data and metadata: ghz's call-template actions in ``-d`` JSON and in ``-m``
metadata values, parsed once, rendered per call.

ghz evaluates Go templates in the call data and metadata for every request. The actions it
documents are supported here with the same spellings (whitespace inside the braces is allowed):

- ``{{.RequestNumber}}``: the call's number in the run, from 0 (unique over the run; with several
  worker processes each worker takes every n-th number, see ``grpc_channel.bench.plain``);
- ``{{.FullyQualifiedName}}`` (``pkg.Service.Method``), ``{{.MethodName}}``, ``{{.ServiceName}}``;
- ``{{.Timestamp}}`` (RFC 3339, UTC), ``{{.TimestampUnix}}`` (seconds),
  ``{{.TimestampUnixMilli}}``, ``{{.TimestampUnixNano}}``;
- ``{{.UUID}}`` and ``{{newUUID}}``: a fresh random UUID (version 4) at each use;
- ``{{randomString N}}``: N random letters and digits (N <= 0: a random length of 2..16);
- ``{{randomInt MIN MAX}}``: a random integer in [MIN, MAX).

Other Go template syntax (pipelines, conditionals) is not supported and is refused with the list
above. Data or a metadata value without ``{{`` is never parsed: it costs nothing per call.
Rendering substitutes text into the JSON as written (quote string fields yourself:
``"id": "{{newUUID}}"``); a metadata value is the rendered text itself.
"""

from __future__ import annotations

import random
import re
import string
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime

__all__ = ["ACTIONS", "DataTemplate", "MetadataTemplate", "TemplateError"]

ACTIONS = (
    ".RequestNumber",
    ".FullyQualifiedName",
    ".MethodName",
    ".ServiceName",
    ".Timestamp",
    ".TimestampUnix",
    ".TimestampUnixMilli",
    ".TimestampUnixNano",
    ".UUID",
    "newUUID",
    "randomString N",
    "randomInt MIN MAX",
)
"""The template actions understood, as a user writes them inside ``{{ }}``."""

_ACTION = re.compile(r"\{\{(.*?)\}\}", re.S)
_ALPHABET = string.ascii_letters + string.digits
# One piece of a parsed template: literal text, or a function of the request number.
_Piece = str | Callable[[int], str]


def _random_string(length: int) -> str:
    n = length if length > 0 else random.randint(2, 16)
    return "".join(random.choices(_ALPHABET, k=n))


class TemplateError(ValueError):
    """A template action we do not support; the message lists the supported ones."""


def _action(text: str, method: str, flag: str) -> Callable[[int], str]:
    # ``method`` is a path the caller has checked ("/pkg.Service/Method").
    service, _, name = method.lstrip("/").partition("/")
    words = text.split()
    fixed: dict[str, str] = {
        ".FullyQualifiedName": f"{service}.{name}",
        ".MethodName": name,
        ".ServiceName": service,
    }
    head = words[0] if words else ""
    if len(words) == 1 and head in fixed:
        value = fixed[head]
        return lambda _n: value
    simple: dict[str, Callable[[int], str]] = {
        ".RequestNumber": str,
        ".Timestamp": lambda _n: datetime.now(UTC).isoformat(timespec="seconds"),
        ".TimestampUnix": lambda _n: str(int(time.time())),
        ".TimestampUnixMilli": lambda _n: str(time.time_ns() // 1_000_000),
        ".TimestampUnixNano": lambda _n: str(time.time_ns()),
        ".UUID": lambda _n: str(uuid.uuid4()),
        "newUUID": lambda _n: str(uuid.uuid4()),
    }
    if len(words) == 1 and head in simple:
        return simple[head]
    try:
        if head == "randomString" and len(words) == 2:
            length = int(words[1])
            return lambda _n: _random_string(length)
        if head == "randomInt" and len(words) == 3:
            low, high = int(words[1]), int(words[2])
            if low < high:
                return lambda _n: str(random.randrange(low, high))
    except ValueError:
        pass
    raise TemplateError(
        f"{flag}: unsupported template action {{{{{text.strip()}}}}}; "
        f"supported: {', '.join('{{' + a + '}}' for a in ACTIONS)}"
    )


@dataclass(frozen=True)
class DataTemplate:
    """Request data with template actions, split once into literal text and actions."""

    pieces: tuple[_Piece, ...]

    @classmethod
    def parse(cls, text: str, method: str, flag: str = "-d/--data") -> DataTemplate | None:
        """The template in ``text`` for calls of ``method`` (``/pkg.Service/Method``), or None
        when ``text`` holds no ``{{``. An unknown action raises TemplateError naming ``flag`` and
        listing the known actions."""
        if "{{" not in text:
            return None
        pieces: list[_Piece] = []
        at = 0
        for match in _ACTION.finditer(text):
            if match.start() > at:
                pieces.append(text[at : match.start()])
            pieces.append(_action(match.group(1), method, flag))
            at = match.end()
        if at < len(text):
            pieces.append(text[at:])
        return cls(tuple(pieces))

    def render(self, number: int) -> str:
        """The data for request ``number`` (0-based)."""
        return "".join(p if isinstance(p, str) else p(number) for p in self.pieces)


@dataclass(frozen=True)
class MetadataTemplate:
    """Metadata whose values hold template actions: each value parsed once, rendered per call."""

    pairs: tuple[tuple[str, str | DataTemplate], ...]

    @classmethod
    def parse(cls, metadata: tuple[tuple[str, str], ...], method: str) -> MetadataTemplate | None:
        """The template of ``metadata`` (keys are never templated) for calls of ``method``, or
        None when no value holds ``{{``. An unknown action raises TemplateError naming
        ``-m/--metadata``."""
        if not any("{{" in value for _, value in metadata):
            return None
        pairs: list[tuple[str, str | DataTemplate]] = []
        for key, value in metadata:
            template = DataTemplate.parse(value, method, "-m/--metadata")
            pairs.append((key, value if template is None else template))
        return cls(tuple(pairs))

    def render(self, number: int) -> tuple[tuple[str, str], ...]:
        """The metadata of request ``number``."""
        return tuple(
            (key, value if isinstance(value, str) else value.render(number))
            for key, value in self.pairs
        )
