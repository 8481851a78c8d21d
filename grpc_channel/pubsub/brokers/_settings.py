"""Parsing Dapr component metadata values (strings) into typed settings.

Durations use Go's syntax, as Dapr's component files do: ``"250ms"``, ``"30s"``, ``"1m30s"``,
``"1.5h"``; units ``ns us ms s m h``; a bare ``"0"`` is zero. Integers are decimal; booleans are
``true``/``false`` (any case), ``1``/``0``. Each error is a :class:`SettingError` naming the field.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

from .base import BrokerArgumentError

__all__ = ["SettingError", "Settings", "parse_duration"]

_DURATION_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_UNIT_SECONDS = {
    "ns": 1e-9,
    "us": 1e-6,
    "µs": 1e-6,
    "ms": 1e-3,
    "s": 1.0,
    "m": 60.0,
    "h": 3600.0,
}


class SettingError(BrokerArgumentError):
    """A component metadata field is unknown or has a bad value. ``field`` names it."""

    def __init__(self, broker: str, field: str, message: str) -> None:
        super().__init__(broker, f"metadata field {field!r}: {message}")
        self.field = field


class Settings:
    """Reads typed values from a ``name -> str`` metadata mapping for broker ``broker``; unknown
    names are rejected up front, listing the ``allowed`` ones."""

    def __init__(self, broker: str, metadata: Mapping[str, str], allowed: Iterable[str]) -> None:
        self._broker = broker
        self._values = dict(metadata)
        allowed_names = sorted(allowed)
        for name, value in self._values.items():
            if name not in allowed_names:
                raise SettingError(broker, name, f"unknown; allowed are {', '.join(allowed_names)}")
            if not isinstance(value, str):
                raise SettingError(broker, name, f"value must be a string, got {value!r}")

    def error(self, field: str, message: str) -> SettingError:
        return SettingError(self._broker, field, message)

    def text(self, field: str, default: str) -> str:
        return self._values.get(field, default)

    def optional_text(self, field: str) -> str | None:
        value = self._values.get(field)
        return value if value else None

    def integer(self, field: str, default: int, *, minimum: int) -> int:
        raw = self._values.get(field)
        if raw is None or raw == "":
            return default
        try:
            value = int(raw.strip(), 10)
        except ValueError:
            raise self.error(field, f"{raw!r} is not an integer") from None
        if value < minimum:
            raise self.error(field, f"{value} is below the minimum {minimum}")
        return value

    def boolean(self, field: str, default: bool) -> bool:
        raw = self._values.get(field)
        if raw is None or raw == "":
            return default
        lowered = raw.strip().lower()
        if lowered in ("true", "1"):
            return True
        if lowered in ("false", "0"):
            return False
        raise self.error(field, f"{raw!r} is not a boolean; allowed are true, false, 1, 0")

    def duration(self, field: str, default: float) -> float:
        """Seconds."""
        raw = self._values.get(field)
        if raw is None or raw == "":
            return default
        try:
            return parse_duration(raw)
        except ValueError as exc:
            raise self.error(field, str(exc)) from None


def parse_duration(text: str) -> float:
    """Go-style duration to seconds; raises ValueError saying what is allowed."""
    stripped = text.strip()
    if stripped == "0":
        return 0.0
    position = 0
    total = 0.0
    while position < len(stripped):
        match = _DURATION_PART.match(stripped, position)
        if match is None:
            break
        total += float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
        position = match.end()
    if position == 0 or position != len(stripped):
        raise ValueError(
            f"{text!r} is not a duration; allowed are Go durations such as 500ms, 30s, 1m30s, "
            "2h (units ns us ms s m h) or 0"
        )
    return total
