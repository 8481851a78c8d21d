"""``Deadline``: a default timeout for calls that have none, and an optional cap.

The chain turns a call's deadline into the timeout that travels *at the wire*, so time spent
earlier in the chain (waiting for a concurrency slot, backing off between retries) is deducted:
the server is told how much time is really left. Put ``Deadline`` first (outermost) so that the
policies after it see the deadline it sets.

:data:`MAX_TIMEOUT` and :func:`check_timeout` are the one rule for every timeout the project
accepts (call options, dial options, the app channel's waits and this policy).
"""

from __future__ import annotations

import math
import threading
from typing import Final

from ._policy import ClientCall, ClientPolicy

__all__ = ["MAX_TIMEOUT", "Deadline", "check_timeout", "short_repr"]

MAX_TIMEOUT: Final[float] = min(1e9, threading.TIMEOUT_MAX)
"""The longest timeout accepted, in seconds: 1e9 s (about 31.7 years).

Measured with grpcio 1.85: a call's deadline is held as int64 nanoseconds since 1970, so a
timeout that ends after 2**63 ns (April 2262; about 7.4e9 s from 2026) fails every call at once
with DEADLINE_EXCEEDED; from ``threading.TIMEOUT_MAX`` (9.2e9 s on Linux) sync waits raise
OverflowError. 1e9 s stays well inside both for the next two centuries (and is lowered to
``threading.TIMEOUT_MAX`` where that is shorter). For "no deadline", pass no timeout."""

_YEAR: Final = 365.25 * 24 * 3600
_REPR_LIMIT: Final = 60


def short_repr(value: object, limit: int = _REPR_LIMIT) -> str:
    """``repr(value)`` cut to about ``limit`` characters, for error messages: never raises, and
    never tries to print a huge int in full (Python refuses beyond 4300 digits)."""
    if isinstance(value, int) and not isinstance(value, bool) and value.bit_length() > 128:
        digits = int(value.bit_length() * math.log10(2)) + 1
        return f"{'-' if value < 0 else ''}<int of about {digits} digits>"
    try:
        text = repr(value)
    except Exception:  # a broken __repr__ must not hide the real error
        return f"<{type(value).__name__}>"
    if len(text) > limit:
        return f"{text[:limit]}... ({len(text)} characters)"
    return text


def check_timeout(
    name: str,
    value: object,
    *,
    allow_zero: bool = False,
    error: type[ValueError] = ValueError,
) -> float:
    """``value`` as float seconds if it is a usable timeout: an int or float (not bool), finite,
    ``> 0`` (``>= 0`` with ``allow_zero``) and at most :data:`MAX_TIMEOUT`. Otherwise raises
    ``error`` (``ValueError`` or a subclass) naming ``name``, the value and the allowed range."""
    bound = ">= 0" if allow_zero else "> 0"
    # Compare before converting: float() of a huge int raises OverflowError.
    if (
        isinstance(value, bool)
        or not isinstance(value, int | float)
        or (isinstance(value, float) and not math.isfinite(value))
        or value < 0
        or (value == 0 and not allow_zero)
    ):
        raise error(f"{name}: got {short_repr(value)}; seconds must be a finite number {bound}")
    if value > MAX_TIMEOUT:
        raise error(
            f"{name}: got {short_repr(value)}; seconds must be a finite number {bound} and at most"
            f" {MAX_TIMEOUT:g} (about {MAX_TIMEOUT / _YEAR:.1f} years; longer deadlines overflow"
            " in grpcio): for no deadline, pass no timeout"
        )
    return float(value)


def _seconds(name: str, value: float | None) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be seconds as a number, got {type(value).__name__}")
    return check_timeout(f"Deadline {name}", value)


class Deadline(ClientPolicy):
    """Client: ``Deadline(default=None, *, maximum=None)`` (seconds; at least one given; each a
    finite number > 0 and at most :data:`MAX_TIMEOUT`).

    ``default`` applies to calls made without a timeout; ``maximum`` shortens any longer (or
    missing) one. A call with a timeout within ``maximum`` keeps its own.
    """

    __slots__ = ("default", "maximum")

    def __init__(self, default: float | None = None, *, maximum: float | None = None) -> None:
        self.default = _seconds("default", default)
        self.maximum = _seconds("maximum", maximum)
        if self.default is None and self.maximum is None:
            raise ValueError("Deadline needs default= and/or maximum= seconds")
        if self.default is not None and self.maximum is not None and self.default > self.maximum:
            raise ValueError(f"default ({self.default}s) must not exceed maximum ({self.maximum}s)")

    def client_start(self, call: ClientCall) -> None:
        if call.deadline is None and self.default is not None:
            call.deadline = call.started + self.default
            call.timeout = self.default
        maximum = self.maximum
        if maximum is not None:
            cap = call.started + maximum
            if call.deadline is None or call.deadline > cap:
                call.deadline = cap
                call.timeout = maximum

    def __repr__(self) -> str:
        return f"Deadline(default={self.default}, maximum={self.maximum})"
