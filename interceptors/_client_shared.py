"""What the sync and aio client adapters share (private).

The sync shell (``_client_sync``) calls and the aio shell (``_client_aio``) awaits; everything that
does neither is written once here: the request buffer a retry replays, the
:class:`~grpc_channel.interceptors._run.Invocation` built from grpcio's call arguments (by the
wrapped channels' multicallables and by the grpcio interceptors), the four ``intercept_*`` entry
points, and the ending of a response stream dropped unfinished. The unary-unary call paths of the
wrapped channels build their Invocation inline instead (one Python frame fewer per call).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from ._policy import CallShape
from ._run import END, NOTHING, Deferred, Invocation, Wire

if TYPE_CHECKING:
    from ._chain import Chain

UU = CallShape.UNARY_UNARY
US = CallShape.UNARY_STREAM
SU = CallShape.STREAM_UNARY
SS = CallShape.STREAM_STREAM


class ReplayBase:
    """Keeps the request messages of a request-streaming call so a retry can send them again.

    Each attempt iterates ``fresh()``: first what was already pulled from the source, then more
    from the source (kept as well). The shells pull (and lock) their own way; the buffer and its
    bookkeeping are here, used under the shell's lock. Only used when the chain has a retry
    (around) policy.
    """

    __slots__ = ("_buffer", "_exhausted", "_source")

    def __init__(self, source: Any) -> None:
        self._source = source
        self._buffer: list[Any] = []
        self._exhausted = False

    def fresh(self) -> Any:
        """The messages from the first one on, for one attempt."""
        raise NotImplementedError

    def _at(self, i: int) -> Any:
        """Message ``i`` when it was kept, END once the source is exhausted, else NOTHING (the
        caller pulls the next message and hands it to :meth:`_kept`)."""
        if i < len(self._buffer):
            return self._buffer[i]
        return END if self._exhausted else NOTHING

    def _kept(self, item: Any) -> Any:
        """Record a pull's result, a message or END (the source ended), and return it."""
        if item is END:
            self._exhausted = True
        else:
            self._buffer.append(item)
        return item


def request_of(inv: Invocation) -> Any:
    """The request to send on this attempt: a fresh pass over a replay buffer, or as given."""
    request = inv.request
    return request.fresh() if isinstance(request, ReplayBase) else request


class MultiCallableBase:
    """The state of a wrapped channel's multicallable and the Invocation it builds per call."""

    __slots__ = ("_around", "_inner", "_level", "_method", "_shape", "_wants", "_wire")

    _replay: ClassVar[type[ReplayBase]]
    # aio request streams may be fed by ``write()`` instead (request None): nothing to replay.
    _writable: ClassVar[bool] = False

    def __init__(
        self, chain: Chain, inner: Any, method: str, shape: CallShape, wants: bool
    ) -> None:
        self._inner = inner
        self._method = method
        self._shape = shape
        self._level = chain.levels[0]
        self._wants = wants
        self._around = chain.has_around

    def _invocation(
        self,
        request: Any,
        timeout: float | None,
        metadata: Any,
        credentials: Any,
        wait_for_ready: bool | None,
        compression: Any,
        wire: Wire,
    ) -> Invocation:
        shape = self._shape
        written = False
        # Identity checks, not CallShape.request_streaming (a property): with_call runs this.
        if shape is SU or shape is SS:
            if request is None and self._writable:
                written = True
            elif self._around:
                request = self._replay(request)
        inv = Invocation(
            self._method,
            shape,
            list(metadata) if metadata else [],
            timeout,
            request,
            credentials,
            wait_for_ready,
            compression,
            wire,
        )
        if written:
            inv.replayable = False
        return inv


class InterceptorBase:
    """The chain as a grpcio interceptor: the Invocation built from grpcio's call details and the
    four entry points. A shell supplies ``_unary``/``_stream`` (run the chain, calling or
    awaiting) and the wires ``_wire_unary``/``_wire_stream``."""

    _replay: ClassVar[type[ReplayBase]]

    def __init__(self, chain: Chain) -> None:
        self._level = chain.levels[0]
        self._wants = chain.wants_response_metadata
        self._around = chain.has_around
        self._unary_wire: Wire = self._wire_unary
        self._stream_wire: Wire = self._wire_stream

    def _wire_unary(self, inv: Invocation) -> Any:
        raise NotImplementedError

    def _wire_stream(self, inv: Invocation) -> Any:
        raise NotImplementedError

    def _unary(self, inv: Invocation) -> Any:
        raise NotImplementedError

    def _stream(self, inv: Invocation) -> Any:
        raise NotImplementedError

    def _invocation(
        self, details: Any, shape: CallShape, request: Any, continuation: Any, wire: Wire
    ) -> Invocation:
        if self._around and shape.request_streaming:
            request = self._replay(request)
        method = details.method
        if isinstance(method, bytes):  # grpc.aio hands the method over encoded
            method = method.decode()
        md = details.metadata
        inv = Invocation(
            method,
            shape,
            list(md) if md else [],
            details.timeout,
            request,
            details.credentials,
            details.wait_for_ready,
            getattr(details, "compression", None),  # grpc.aio's details have none
            wire,
        )
        inv.cont = continuation
        return inv

    # aio: _unary/_stream return coroutines, which grpc.aio awaits.
    def intercept_unary_unary(
        self, continuation: Any, client_call_details: Any, request: Any
    ) -> Any:
        return self._unary(
            self._invocation(client_call_details, UU, request, continuation, self._unary_wire)
        )

    def intercept_stream_unary(
        self, continuation: Any, client_call_details: Any, request_iterator: Any
    ) -> Any:
        return self._unary(
            self._invocation(
                client_call_details, SU, request_iterator, continuation, self._unary_wire
            )
        )

    def intercept_unary_stream(
        self, continuation: Any, client_call_details: Any, request: Any
    ) -> Any:
        return self._stream(
            self._invocation(client_call_details, US, request, continuation, self._stream_wire)
        )

    def intercept_stream_stream(
        self, continuation: Any, client_call_details: Any, request_iterator: Any
    ) -> Any:
        return self._stream(
            self._invocation(
                client_call_details, SS, request_iterator, continuation, self._stream_wire
            )
        )


def cancel_on_collection(deferred: Deferred | None, rcall: Any) -> None:
    """A response stream's ``__del__``: cancel the grpcio call of a stream dropped before it
    ended, and finish the chain (``deferred`` is None when the stream's ``__init__`` failed)."""
    if deferred is None or deferred.done:
        return
    if rcall is not None:
        rcall.cancel()
    deferred.complete_cancelled("Cancelled upon garbage collection")
