"""The policy protocol: per-call state objects and the hooks a chain runs.

A *policy* is an object that takes part in calls. The chain (``grpc_channel.interceptors._chain``)
runs every policy of a composition in one plain function around the real grpcio call; it never
builds a grpcio interceptor per policy. A policy is written once against this protocol and the chain
adapts it to sync and aio, client and server, all four call shapes.

Client side (subclass :class:`ClientPolicy`, override what you need)
--------------------------------------------------------------------
For each call the chain builds one :class:`ClientCall` and, in composition order (first listed is
outermost):

1. ``client_acquire(call)`` (sync chains) or ``await client_acquire_async(call)`` (aio chains), only
   for policies whose ``blocking`` is true (the concurrency limit). It may wait, and it may refuse
   the call by raising :class:`~grpc_channel.interceptors._errors.LocalRpcError`. Optional fast path
   for aio: a blocking policy may also define ``client_try_acquire(call) -> bool`` (take permission
   without waiting; True if taken); aio chains call it first and await ``client_acquire_async`` only
   when it returns False. (Server side: ``server_try_acquire``.)
2. ``client_start(call)``: must not block. May change ``call.metadata`` (a mutable list of
   ``(key, value)`` pairs), ``call.deadline`` or ``call.timeout``, and may refuse by raising
   ``LocalRpcError``.

A policy counts as *entered* once its acquire (if any) and start both returned. Then the real call
is made. The timeout that travels is the time left until ``call.deadline`` (a ``time.monotonic()``
value), measured just before the wire, so time spent waiting for a slot is deducted. A deadline
already passed at that point fails the call locally with DEADLINE_EXCEEDED.

3. ``client_finish(call)`` runs for every entered policy, in reverse order, exactly once, on every
   path: success, an error status, a local refusal by a policy further in, an exception, a
   cancellation, a deadline. For calls with a streaming response it runs when the stream ends
   (exhausted, failed, cancelled, or abandoned and garbage collected), not when the call object is
   returned. When a policy further in refused the call, the outer policies' finish still runs and
   sees that refusal's code. ``client_finish`` should not raise; if it does, the other finish
   hooks still run, and the exception is propagated only if the call itself succeeded (it never
   masks the call's own error).

   Streaming finish may run on a grpcio callback thread (sync) or from a done callback (aio), so a
   policy must not rely on thread-local or context-variable state between start and finish: keep
   what it needs in ``call.notes`` (``call.note(self, value)`` / ``call.noted(self)``) or, for
   tracing, ``call.span``.

When finish runs, the outcome fields are filled: ``code`` (a ``grpc.StatusCode``; OK on success),
``details``, ``error`` (the exception, or ``None``), and ``initial_metadata``, ``trailing_metadata``
and ``peer``. Reading metadata from grpcio costs time, so on *success* those three are filled only
when some policy in the chain sets ``wants_response_metadata = True`` (a class or instance
attribute); on failure they are filled from the error whenever grpcio has them. A call refused
before the wire has empty metadata and ``peer == ""``. grpcio exposes no client-side peer
address, so ``peer`` is ``""`` unless an error object reports one (``LocalRpcError`` can).

4. Retry-like policies override ``client_around(call, attempt)`` / ``client_around_async``. The
   chain passes ``attempt``, a callable that runs the policies *inside* this one plus the wire once
   and returns the result (or raises the call's ``grpc.RpcError``). ``client_around`` may call it
   several times; before each call it may reset ``call.metadata`` (inner policies add their metadata
   afresh on each attempt) and it sets ``call.attempt`` (1-based). For a response-streaming call,
   ``attempt`` returns once the first response message arrived (or the stream ended), so an error
   raised by ``attempt`` means nothing was delivered to the caller yet; after it returned the
   response has begun and the call is committed. The around policy's own start/finish run once per
   logical call, around all attempts.

Server side (subclass :class:`ServerPolicy`)
--------------------------------------------
For each call the chain builds one :class:`ServerCall` in the handler's thread (sync) or task (aio)
and runs ``server_acquire``/``server_acquire_async`` (``blocking`` policies), then ``server_start``
in order, then the handler, then ``server_finish`` in reverse order for every entered policy,
exactly once, on every path; for a streaming response when the response stream ends or the call is
cancelled. A policy refuses a call by raising ``LocalRpcError`` from acquire or start: the chain
turns it into ``context.abort(code, details)`` and the handler never runs. ``call.code`` holds the
outcome when finish runs: OK, the code the handler set or aborted with, UNKNOWN for an exception,
CANCELLED when the client went away. A server policy that attaches something to the current
``contextvars`` context in ``server_start`` (the tracing span) sets ``needs_context = True``: the
sync adapter then runs the policies, the handler and every step of its response stream inside one
per-call copy of the context, so nothing leaks into the next call on a pooled thread (aio handlers
have their own task, which the policies share).

A class may subclass both :class:`ClientPolicy` and :class:`ServerPolicy`. Every policy can also be
used alone as grpcio interceptors, see :class:`PolicyBase`.
"""

from __future__ import annotations

import contextvars
import enum
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any, ClassVar, Protocol, TypeVar

import grpc

from ._metadata_pairs import MetadataPairs

if TYPE_CHECKING:
    from ._chain import (
        AioClientInterceptor,
        AioServerInterceptor,
        Chain,
        ClientInterceptor,
        ServerInterceptor,
    )

__all__ = [
    "CallOptionsRecord",
    "CallShape",
    "ClientCall",
    "ClientPolicy",
    "PolicyBase",
    "ServerCall",
    "ServerPolicy",
    "claim_call_options",
    "handing_over",
]

R = TypeVar("R")

_EMPTY: MetadataPairs = ()


class CallShape(enum.Enum):
    """The four gRPC call shapes."""

    UNARY_UNARY = "unary_unary"
    UNARY_STREAM = "unary_stream"
    STREAM_UNARY = "stream_unary"
    STREAM_STREAM = "stream_stream"

    @property
    def request_streaming(self) -> bool:
        return self is CallShape.STREAM_UNARY or self is CallShape.STREAM_STREAM

    @property
    def response_streaming(self) -> bool:
        return self is CallShape.UNARY_STREAM or self is CallShape.STREAM_STREAM


class _CallState:
    """What :class:`ClientCall` and :class:`ServerCall` share: the outcome and per-policy notes.

    Each subclass's ``__init__`` sets these fields itself (no ``super().__init__``: one frame
    less per call).
    """

    __slots__ = ("code", "details", "error", "notes", "span")

    code: grpc.StatusCode | None
    details: str
    error: BaseException | None
    span: Any
    notes: dict[object, Any] | None

    def note(self, owner: object, value: Any) -> None:
        """Keep ``value`` for ``owner`` (normally the policy itself) until finish."""
        if self.notes is None:
            self.notes = {}
        self.notes[owner] = value

    def noted(self, owner: object, default: Any = None) -> Any:
        """What ``owner`` kept with :meth:`note`, or ``default``."""
        notes = self.notes
        if notes is None:
            return default
        return notes.get(owner, default)


class ClientCall(_CallState):
    """State of one client call, shared by all policies of a chain.

    Before the wire: ``method`` (full path, ``"/pkg.Service/Method"``), ``shape``, ``metadata``
    (mutable list of outgoing pairs), ``timeout`` (seconds the caller gave, or ``None``),
    ``deadline`` (``time.monotonic()`` value, or ``None`` for no deadline; the chain derives it from
    ``timeout`` when the call starts and the travelling timeout from it at the wire), ``attempt`` (1
    for the first try), ``started`` (``time.monotonic()`` when the chain began the call),
    ``replayable`` (False when the request cannot be sent again, e.g. an aio request stream fed
    through ``write()``; a retry policy must then make one attempt only).

    After the call: ``code``, ``details``, ``initial_metadata``, ``trailing_metadata``, ``peer``,
    ``error``; see the module docstring for when metadata is filled. ``code`` is ``None`` until
    then.

    ``options``: the call's call options (grpc-go passes ``opts ...CallOption`` to interceptors),
    as the record they folded into: a :class:`grpc_channel.call_options.CallInfo` whose fields
    (``timeout``, ``metadata``, ``wait_for_ready``, ``codec``, size limits, ``on_finish`` ...) hold
    the folded values and whose ``call_options`` holds the option objects, dial-level defaults
    first. ``None`` for a call made through grpcio's own API (no call options exist there).

    ``span`` is reserved for the tracing policy (the current span, so others may annotate it);
    ``notes`` is a per-policy scratch area (see :meth:`note`).
    """

    __slots__ = (
        "attempt",
        "deadline",
        "initial_metadata",
        "metadata",
        "method",
        "options",
        "peer",
        "replayable",
        "shape",
        "started",
        "timeout",
        "trailing_metadata",
    )

    def __init__(
        self,
        method: str,
        shape: CallShape,
        metadata: list[tuple[str, str | bytes]],  # outgoing: policies edit it in place
        timeout: float | None,
        deadline: float | None,
        started: float,
    ) -> None:
        self.method = method
        self.shape = shape
        self.metadata = metadata
        self.timeout = timeout
        self.deadline = deadline
        self.started = started
        self.attempt = 1
        self.replayable = True
        self.code = None
        self.details = ""
        self.initial_metadata = _EMPTY
        self.trailing_metadata = _EMPTY
        self.peer = ""
        self.error = None
        self.span = None
        self.notes = None
        self.options: CallOptionsRecord | None = claim_call_options(method)

    def __repr__(self) -> str:
        # Metadata values are left out on purpose: they may carry tokens.
        keys = [k for k, _ in self.metadata]
        code = self.code.name if self.code is not None else None
        return (
            f"ClientCall(method={self.method!r}, shape={self.shape.value}, attempt={self.attempt}, "
            f"metadata_keys={keys!r}, code={code})"
        )


class ServerCall(_CallState):
    """State of one server call: ``method``, ``metadata`` (invocation metadata as grpcio gives it),
    ``context`` (the grpcio ``ServicerContext``, sync or aio), ``shape``, ``started``
    (``time.monotonic()``), and, when finish runs, ``code``, ``details`` and ``error``.
    ``span`` and ``notes`` as on :class:`ClientCall`.
    """

    __slots__ = (
        "context",
        "metadata",
        "method",
        "shape",
        "started",
    )

    def __init__(
        self,
        method: str,
        shape: CallShape,
        metadata: MetadataPairs,
        context: Any,
        started: float,
    ) -> None:
        self.method = method
        self.shape = shape
        self.metadata = metadata
        self.context = context
        self.started = started
        self.code = None
        self.details = ""
        self.error = None
        self.span = None
        self.notes = None

    def metadata_value(self, key: str) -> str | bytes | None:
        """The first invocation-metadata value for ``key`` (already lower-case), or ``None``."""
        for k, v in self.metadata:
            if k == key:
                return v
        return None

    def __repr__(self) -> str:
        code = self.code.name if self.code is not None else None
        return f"ServerCall(method={self.method!r}, shape={self.shape.value}, code={code})"


class CallOptionsRecord(Protocol):
    """What :func:`handing_over` hands to a call: the folded call options of one call (in
    practice a :class:`grpc_channel.call_options.CallInfo`)."""

    method: str
    claimed: bool


_HANDED: contextvars.ContextVar[CallOptionsRecord | None] = contextvars.ContextVar(
    "grpc_channel_call_options", default=None
)


def handing_over(record: CallOptionsRecord) -> contextvars.Token[CallOptionsRecord | None]:
    """Offer ``record`` to the next :class:`ClientCall` of ``record.method`` started in this
    context; the caller resets the returned token once the call has started.

    The call options reach the chain this way, rather than as an argument, because the chain
    is often reached through grpcio's own API (a stub's multicallable, ``grpc.intercept_channel``,
    a ``grpc.aio`` interceptor), which has no parameter for them. grpc.aio runs interceptors in a
    task whose context is copied when the call is made, so the offer reaches them too.
    """
    return _HANDED.set(record)


def claim_call_options(method: str) -> CallOptionsRecord | None:
    """The record offered by :func:`handing_over` when it is for ``method`` and not yet taken,
    else None. Taken once: a call a policy makes from inside the call (another method, or the same
    one) does not inherit its caller's options."""
    record = _HANDED.get()
    if record is None or record.claimed or record.method != method:
        return None
    record.claimed = True
    return record


class PolicyBase:
    """Gives every policy the stand-alone spellings of a one-policy chain.

    ``policy.client_interceptor()`` → for ``grpc.intercept_channel(channel, it)``;
    ``policy.aio_client_interceptors()`` → for ``grpc.aio.insecure_channel(..., interceptors=them)``
    (a list of four, one per call shape: grpc.aio files an interceptor under one shape only);
    ``policy.server_interceptor()`` → for ``grpc.server(..., interceptors=[it])``;
    ``policy.aio_server_interceptor()`` → for ``grpc.aio.server(interceptors=[it])``;
    ``policy.wrap(channel)`` / ``policy.wrap_aio(channel)`` → the fast channel wrappers.
    Each builds (and caches) ``compose(policy)``.
    """

    __slots__ = ("__weakref__", "_solo")

    #: ``compose``, installed by ``_chain`` when it loads (the package imports it): a Chain is made
    #: of policies, so this module cannot import it without a cycle.
    _compose: ClassVar[Callable[[PolicyBase], Chain]]

    def _chain(self) -> Chain:
        chain: Chain | None = getattr(self, "_solo", None)
        if chain is None:
            chain = PolicyBase._compose(self)
            self._solo = chain
        return chain

    def client_interceptor(self) -> ClientInterceptor:
        return self._chain().client_interceptors()[0]

    def aio_client_interceptors(self) -> list[AioClientInterceptor]:
        # Four objects: grpc.aio files an interceptor under one call shape only.
        return self._chain().aio_client_interceptors()

    def server_interceptor(self) -> ServerInterceptor:
        return self._chain().server_interceptors()[0]

    def aio_server_interceptor(self) -> AioServerInterceptor:
        return self._chain().aio_server_interceptors()[0]

    def wrap(self, channel: grpc.Channel) -> grpc.Channel:
        return self._chain().wrap(channel)

    def wrap_aio(self, channel: grpc.aio.Channel) -> grpc.aio.Channel:
        return self._chain().wrap_aio(channel)


class ClientPolicy(PolicyBase):
    """Base of client policies. Every hook is a no-op here; the chain skips hooks a class does not
    override, so an unused hook costs nothing per call."""

    __slots__ = ()

    #: True if finish needs ``initial_metadata``/``trailing_metadata``/``peer`` on success too.
    wants_response_metadata: ClassVar[bool] = False
    #: True if the policy implements ``client_acquire``/``client_acquire_async`` (may wait).
    blocking: ClassVar[bool] = False

    def client_acquire(self, call: ClientCall) -> None:
        """Wait for permission (sync chains); raise ``LocalRpcError`` to refuse."""

    async def client_acquire_async(self, call: ClientCall) -> None:
        """Wait for permission (aio chains); raise ``LocalRpcError`` to refuse."""

    def client_start(self, call: ClientCall) -> None:
        """Non-blocking work before the wire; raise ``LocalRpcError`` to refuse."""

    def client_finish(self, call: ClientCall) -> None:
        """Runs once per entered call, after it ended, in reverse order; must not raise."""

    def client_around(self, call: ClientCall, attempt: Callable[[ClientCall], R]) -> R:
        """Run ``attempt`` (the inner chain and the wire) once or more; default once."""
        return attempt(call)

    async def client_around_async(
        self, call: ClientCall, attempt: Callable[[ClientCall], Awaitable[R]]
    ) -> R:
        """aio form of :meth:`client_around`."""
        return await attempt(call)


class ServerPolicy(PolicyBase):
    """Base of server policies; hooks as on :class:`ClientPolicy`, over :class:`ServerCall`."""

    __slots__ = ()

    blocking: ClassVar[bool] = False
    #: True if start/finish use the ``contextvars`` context (see the module doc).
    needs_context: ClassVar[bool] = False

    def server_acquire(self, call: ServerCall) -> None:
        """Wait for permission in the handler thread; raise ``LocalRpcError`` to refuse."""

    async def server_acquire_async(self, call: ServerCall) -> None:
        """Wait for permission in the handler task; raise ``LocalRpcError`` to refuse."""

    def server_start(self, call: ServerCall) -> None:
        """Non-blocking work before the handler; raise ``LocalRpcError`` to refuse."""

    def server_finish(self, call: ServerCall) -> None:
        """Runs once per entered call, after the handler ended, in reverse order; must not raise."""


def overrides(policy: object, base: type, name: str) -> bool:
    """True if ``type(policy)`` overrides hook ``name`` of ``base`` (no-op hooks are skipped)."""
    return getattr(type(policy), name, None) is not getattr(base, name)
