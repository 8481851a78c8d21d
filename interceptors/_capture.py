"""``Capture``: response headers, trailers, peer and status of a call, on success and on failure.

Two ways to get them:

- a fixed holder: ``Capture(into=holder)`` fills ``holder`` after every call through the chain
  (the last call wins) — handy for a chain that serves one call at a time;
- a scope: with ``Capture()`` in the chain, ``with capture() as c: stub.Method(req)`` fills ``c``
  for the calls made inside the ``with`` block (the last one wins). The scope is a context
  variable, so it follows ``await`` and is private to a thread or task; the holder is picked when
  the call starts and filled when it ends, even if a stream ends after the block.

Both fill on success and on failure alike; a call refused before the wire has empty metadata.
Headers and trailers are tuples of ``(key, value)`` pairs. Read from grpcio's own call objects
they keep their wire order, sync and aio alike; where grpc.aio hands over only its ``Metadata`` (a
failed aio call's error, a call through another grpc.aio interceptor) repeated keys come grouped,
as that ``Metadata`` holds them.
grpcio does not expose the client-side peer address, so ``peer`` is ``""`` unless the error
object reports one.
"""

from __future__ import annotations

import contextlib
import contextvars
from collections.abc import Iterator

import grpc

from ._metadata_pairs import MetadataPairs
from ._policy import ClientCall, ClientPolicy

__all__ = ["Capture", "Captured", "capture"]


class Captured:
    """What a call returned besides its messages: ``headers`` (initial metadata), ``trailers``
    (trailing metadata), ``peer``, ``code`` (``None`` until a call ended) and ``details``."""

    __slots__ = ("code", "details", "headers", "method", "peer", "trailers")

    def __init__(self) -> None:
        self.headers: MetadataPairs = ()
        self.trailers: MetadataPairs = ()
        self.peer = ""
        self.code: grpc.StatusCode | None = None
        self.details = ""
        self.method = ""

    @property
    def done(self) -> bool:
        """True once a call has filled this holder."""
        return self.code is not None

    def header(self, key: str) -> list[str | bytes]:
        """All values of response header ``key`` (lower-case), in order."""
        return [v for k, v in self.headers if k == key]

    def trailer(self, key: str) -> list[str | bytes]:
        """All values of response trailer ``key`` (lower-case), in order."""
        return [v for k, v in self.trailers if k == key]

    def fill(self, call: ClientCall) -> None:
        self.method = call.method
        self.headers = call.initial_metadata
        self.trailers = call.trailing_metadata
        self.peer = call.peer
        self.details = call.details
        self.code = call.code

    def __repr__(self) -> str:
        # Keys only: values may hold secrets.
        code = self.code.name if self.code is not None else None
        return (
            f"Captured(method={self.method!r}, code={code}, "
            f"headers={[k for k, _ in self.headers]!r}, "
            f"trailers={[k for k, _ in self.trailers]!r})"
        )


_SCOPE: contextvars.ContextVar[Captured | None] = contextvars.ContextVar(
    "interceptors_capture", default=None
)


@contextlib.contextmanager
def capture() -> Iterator[Captured]:
    """Open a capture scope: calls through a chain with :class:`Capture` inside the block fill the
    yielded holder (the last call wins)."""
    holder = Captured()
    token = _SCOPE.set(holder)
    try:
        yield holder
    finally:
        _SCOPE.reset(token)


class Capture(ClientPolicy):
    """Client: capture headers, trailers, peer and status into holders (see the module doc).

    ``Capture(into=None)``: ``into`` is a :class:`Captured` filled after every call; the active
    :func:`capture` scope, if any, is filled too.
    """

    __slots__ = ("into",)

    wants_response_metadata = True

    def __init__(self, into: Captured | None = None) -> None:
        if into is not None and not isinstance(into, Captured):
            raise TypeError(f"into must be a Captured holder, got {type(into).__name__}")
        self.into = into

    def client_start(self, call: ClientCall) -> None:
        holder = _SCOPE.get()
        if holder is not None:
            call.note(self, holder)

    def client_finish(self, call: ClientCall) -> None:
        if call.notes is not None:
            holder = call.noted(self)
            if holder is not None:
                holder.fill(call)
        into = self.into
        if into is not None:
            # Captured.fill, inlined (every call through the chain pays for this).
            into.method = call.method
            into.headers = call.initial_metadata
            into.trailers = call.trailing_metadata
            into.peer = call.peer
            into.details = call.details
            into.code = call.code

    def __repr__(self) -> str:
        return f"Capture(into={'set' if self.into is not None else None})"
