"""The delivery retry policy of one subscription: how often, and how far apart, retries go.

An event whose delivery fails (the app answers RETRY, or the call fails) is delivered again until
``max_attempts`` deliveries have been made; then it goes to the dead-letter topic, if any, or is
dropped. The wait before delivery ``n + 1`` is ``delay(n)``: ``base_delay * multiplier ** (n - 1)``
capped at ``max_delay``; with ``jitter`` on (off by default) it is drawn uniformly from
``[0, that value]`` ("full jitter", which spreads retries of many events apart).

Defaults and allowed ranges (anything else raises :class:`RetryPolicyError` naming the field):

============== ======= ===============================
field          default allowed
============== ======= ===============================
max_attempts   5       integer, 1 to 1000 (1 = no retry)
base_delay     0.1 s   0 to 3600 s
multiplier     2.0     1 to 100
max_delay      5.0 s   base_delay to 3600 s
jitter         False   bool
============== ======= ===============================

Subscription metadata sets them (:meth:`RetryPolicy.from_metadata`); absent keys keep the default:

- ``retryMaxAttempts``: an integer, e.g. ``"3"``.
- ``retryBaseDelay`` / ``retryMaxDelay``: seconds as a number (``"0.25"``) or with a unit
  ``ms``, ``s`` or ``m`` (``"250ms"``, ``"2s"``, ``"1m"``). Without ``retryMaxDelay`` the cap is
  the larger of 5 s and ``retryBaseDelay``.
- ``retryMultiplier``: a number, e.g. ``"1.5"``.
- ``retryJitter``: ``"true"`` or ``"false"`` (case-insensitive).
"""

from __future__ import annotations

import math
import random
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Final

__all__ = [
    "RETRY_BASE_DELAY_KEY",
    "RETRY_JITTER_KEY",
    "RETRY_MAX_ATTEMPTS_KEY",
    "RETRY_MAX_DELAY_KEY",
    "RETRY_METADATA_KEYS",
    "RETRY_MULTIPLIER_KEY",
    "RetryPolicy",
    "RetryPolicyError",
]

RETRY_MAX_ATTEMPTS_KEY: Final = "retryMaxAttempts"
RETRY_BASE_DELAY_KEY: Final = "retryBaseDelay"
RETRY_MULTIPLIER_KEY: Final = "retryMultiplier"
RETRY_MAX_DELAY_KEY: Final = "retryMaxDelay"
RETRY_JITTER_KEY: Final = "retryJitter"
RETRY_METADATA_KEYS: Final = (
    RETRY_MAX_ATTEMPTS_KEY,
    RETRY_BASE_DELAY_KEY,
    RETRY_MULTIPLIER_KEY,
    RETRY_MAX_DELAY_KEY,
    RETRY_JITTER_KEY,
)
"""Every subscription metadata key the retry policy reads."""
_FIELD_KEYS: Final = {
    "max_attempts": RETRY_MAX_ATTEMPTS_KEY,
    "base_delay": RETRY_BASE_DELAY_KEY,
    "multiplier": RETRY_MULTIPLIER_KEY,
    "max_delay": RETRY_MAX_DELAY_KEY,
    "jitter": RETRY_JITTER_KEY,
}

_MAX_ATTEMPTS_LIMIT: Final = 1000
_MAX_DELAY_LIMIT: Final = 3600.0
_MAX_MULTIPLIER: Final = 100.0
_DURATION: Final = re.compile(r"^\s*([0-9]*\.?[0-9]+(?:[eE][-+]?[0-9]+)?)\s*(ms|s|m)?\s*$")
_UNIT_SECONDS: Final = {"ms": 0.001, "s": 1.0, "m": 60.0, None: 1.0}


class RetryPolicyError(ValueError):
    """A retry setting is out of range or unparseable; ``field`` names the field or metadata key."""

    def __init__(self, field: str, problem: str) -> None:
        super().__init__(f"retry policy {field}: {problem}")
        self.field = field


def _check_number(name: str, value: object, low: float, high: float) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise RetryPolicyError(name, f"must be a number from {low:g} to {high:g}, got {value!r}")
    if not (math.isfinite(value) and low <= value <= high):
        raise RetryPolicyError(name, f"must be from {low:g} to {high:g}, got {value!r}")
    return float(value)


@dataclass(frozen=True)
class RetryPolicy:
    """Per-subscription retry policy (see the module docstring for defaults and ranges)."""

    max_attempts: int = 5
    base_delay: float = 0.1
    multiplier: float = 2.0
    max_delay: float = 5.0
    jitter: bool = False

    def __post_init__(self) -> None:
        attempts = self.max_attempts
        if isinstance(attempts, bool) or not isinstance(attempts, int):
            raise RetryPolicyError(
                "max_attempts",
                f"must be an integer from 1 to {_MAX_ATTEMPTS_LIMIT}, got {attempts!r}",
            )
        if not 1 <= attempts <= _MAX_ATTEMPTS_LIMIT:
            raise RetryPolicyError(
                "max_attempts", f"must be from 1 to {_MAX_ATTEMPTS_LIMIT}, got {attempts}"
            )
        base = _check_number("base_delay", self.base_delay, 0.0, _MAX_DELAY_LIMIT)
        _check_number("multiplier", self.multiplier, 1.0, _MAX_MULTIPLIER)
        _check_number("max_delay", self.max_delay, base, _MAX_DELAY_LIMIT)
        if not isinstance(self.jitter, bool):
            raise RetryPolicyError("jitter", f"must be a bool, got {self.jitter!r}")

    def should_retry(self, attempt: int) -> bool:
        """True when delivery number ``attempt`` (1-based) failed and another one is allowed."""
        return attempt < self.max_attempts

    def delay(self, attempt: int, *, rng: random.Random | None = None) -> float:
        """Seconds to wait after failed delivery number ``attempt`` (1-based) before the next.

        ``rng`` is the random source for jitter (the ``random`` module's by default).
        Raises :class:`RetryPolicyError` for an attempt below 1.
        """
        if isinstance(attempt, bool) or not isinstance(attempt, int) or attempt < 1:
            raise RetryPolicyError("attempt", f"must be an integer of at least 1, got {attempt!r}")
        try:
            grown = self.base_delay * self.multiplier ** (attempt - 1)
        except OverflowError:  # far past the cap (unless there is no delay to grow)
            grown = math.inf if self.base_delay > 0 else 0.0
        capped = min(self.max_delay, grown)
        if not self.jitter:
            return capped
        return (rng or random).uniform(0.0, capped)

    @classmethod
    def from_metadata(cls, metadata: Mapping[str, str]) -> RetryPolicy:
        """The policy set by subscription metadata (keys above); missing keys keep defaults."""
        defaults = cls()
        base_delay = _parse_seconds(metadata, RETRY_BASE_DELAY_KEY, defaults.base_delay)
        # A base delay above the default cap raises the cap rather than failing on a key
        # the user never wrote.
        default_cap = max(defaults.max_delay, base_delay)
        try:
            return cls(
                max_attempts=_parse_int(metadata, RETRY_MAX_ATTEMPTS_KEY, defaults.max_attempts),
                base_delay=base_delay,
                multiplier=_parse_float(metadata, RETRY_MULTIPLIER_KEY, defaults.multiplier),
                max_delay=_parse_seconds(metadata, RETRY_MAX_DELAY_KEY, default_cap),
                jitter=_parse_bool(metadata, RETRY_JITTER_KEY, defaults.jitter),
            )
        except RetryPolicyError as exc:
            key = _FIELD_KEYS.get(exc.field)
            if key is None or key not in metadata:
                raise
            # Name the metadata key the user wrote, not our field name.
            raise RetryPolicyError(key, str(exc).split(": ", 1)[1]) from None

    def to_metadata(self) -> dict[str, str]:
        """Metadata entries that :meth:`from_metadata` reads back as this policy."""
        return {
            RETRY_MAX_ATTEMPTS_KEY: str(self.max_attempts),
            RETRY_BASE_DELAY_KEY: repr(float(self.base_delay)),
            RETRY_MULTIPLIER_KEY: repr(float(self.multiplier)),
            RETRY_MAX_DELAY_KEY: repr(float(self.max_delay)),
            RETRY_JITTER_KEY: "true" if self.jitter else "false",
        }


def _parse_int(metadata: Mapping[str, str], key: str, default: int) -> int:
    if key not in metadata:
        return default
    text = metadata[key].strip()
    if not re.fullmatch(r"[+-]?[0-9]+", text):
        raise RetryPolicyError(key, f"must be an integer, got {metadata[key]!r}")
    return int(text)


def _parse_float(metadata: Mapping[str, str], key: str, default: float) -> float:
    if key not in metadata:
        return default
    try:
        return float(metadata[key])
    except ValueError:
        raise RetryPolicyError(key, f"must be a number, got {metadata[key]!r}") from None


def _parse_seconds(metadata: Mapping[str, str], key: str, default: float) -> float:
    if key not in metadata:
        return default
    match = _DURATION.match(metadata[key])
    if match is None:
        raise RetryPolicyError(
            key, f"must be seconds, or a number with unit ms, s or m, got {metadata[key]!r}"
        )
    return float(match.group(1)) * _UNIT_SECONDS[match.group(2)]


def _parse_bool(metadata: Mapping[str, str], key: str, default: bool) -> bool:
    if key not in metadata:
        return default
    text = metadata[key].strip().lower()
    if text not in ("true", "false"):
        raise RetryPolicyError(key, f"must be 'true' or 'false', got {metadata[key]!r}")
    return text == "true"
