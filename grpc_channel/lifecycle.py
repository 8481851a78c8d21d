"""``with`` for the project's objects that start and stop: one definition of what entering and
leaving the block do, for the servers (started on entry) and the handles of things already
running (only stopped on exit). Mixins of the project's own classes (the demo app, the
sidecar's HTTP endpoints); public only because those live in other packages."""

from __future__ import annotations

from typing import Self

__all__ = ["StartsOnEnter", "StopsOnExit"]


class StopsOnExit:
    """``with obj as o``: ``o`` is ``obj``; ``obj.stop()`` (called with no arguments, its result
    dropped) runs when the block ends, however it ends, and the block's error, if any, propagates.
    The subclass defines ``stop``."""

    __slots__ = ()

    def stop(self) -> object:
        raise NotImplementedError(f"{type(self).__name__} must define stop()")

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *_: object) -> None:  # the block's error, if any, is not handled here
        self.stop()


class StartsOnEnter(StopsOnExit):
    """As :class:`StopsOnExit`, and entering the block calls ``obj.start()`` first (its result,
    such as a bound port, is dropped: the object keeps it). When ``start`` raises, the block does
    not run and ``stop`` is not called. The subclass defines ``start`` and ``stop``."""

    __slots__ = ()

    def start(self) -> object:
        raise NotImplementedError(f"{type(self).__name__} must define start()")

    def __enter__(self) -> Self:
        self.start()
        return self
