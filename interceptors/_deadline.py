"""``Deadline``: a default timeout for calls that have none, and an optional cap.

The chain turns a call's deadline into the timeout that travels *at the wire*, so time spent
earlier in the chain (waiting for a concurrency slot, backing off between retries) is deducted:
the server is told how much time is really left. Put ``Deadline`` first (outermost) so that the
policies after it see the deadline it sets.
"""

from __future__ import annotations

import math

from ._policy import ClientCall, ClientPolicy

__all__ = ["Deadline"]


def _seconds(name: str, value: float | None) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        raise TypeError(f"{name} must be seconds as a number, got {type(value).__name__}")
    if not value > 0 or math.isinf(value):
        raise ValueError(f"{name} must be a finite number of seconds > 0, got {value!r}")
    return float(value)


class Deadline(ClientPolicy):
    """Client: ``Deadline(default=None, *, maximum=None)`` (seconds; at least one given).

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
