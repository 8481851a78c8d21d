"""A one-line progress bar on stderr, drawn only when stderr is a terminal."""

from __future__ import annotations

import sys
import time
from typing import TextIO

__all__ = ["Progress"]


class Progress:
    """Counts finished steps out of ``total`` and redraws at most ten times a second.

    ``enabled=None`` (the default) draws only when ``stream`` (stderr) is a TTY, so logs and CI
    output stay clean; ``True``/``False`` force it. ``close()`` ends the line.
    """

    def __init__(
        self,
        total: int,
        label: str = "bench",
        *,
        stream: TextIO | None = None,
        enabled: bool | None = None,
    ) -> None:
        self._stream = stream if stream is not None else sys.stderr
        if enabled is None:
            isatty = getattr(self._stream, "isatty", None)
            enabled = bool(isatty()) if callable(isatty) else False
        self.enabled = enabled
        self.total = max(total, 1)
        self.done = 0
        self._label = label
        self._started = time.monotonic()
        self._drawn = 0.0
        self._dirty = False

    def advance(self, steps: int = 1) -> None:
        self.done = min(self.total, self.done + steps)
        if not self.enabled:
            return
        now = time.monotonic()
        if now - self._drawn >= 0.1 or self.done == self.total:
            self._draw(now)

    def _draw(self, now: float) -> None:
        self._drawn = now
        fraction = self.done / self.total
        width = 30
        filled = int(fraction * width)
        elapsed = now - self._started
        eta = elapsed / fraction - elapsed if fraction > 0 else 0.0
        bar = "#" * filled + "-" * (width - filled)
        self._stream.write(
            f"\r{self._label} [{bar}] {fraction * 100:5.1f}% "
            f"{elapsed:6.1f}s elapsed, ~{eta:5.1f}s left "
        )
        self._stream.flush()
        self._dirty = True

    def close(self) -> None:
        if self.enabled and self._dirty:
            self._stream.write("\n")
            self._stream.flush()
            self._dirty = False
