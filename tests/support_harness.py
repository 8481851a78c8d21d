"""The one test harness: a scripted raw-bytes servicer for all four call shapes, served by real
sync and aio grpcio servers on 127.0.0.1:0, one recorder, client helpers, ``wait_until`` and
``free_port``.

The servicer answers any method path (a catch-all). The last path segment picks the shape: ``UU``
unary-unary, ``US`` unary-stream, ``SU`` stream-unary, ``SS`` stream-stream, anything else
unary-unary. What it does is scripted by the (first) request: a ``;``-separated list of commands,
``key`` or ``key=value``:

- ``sleep=<seconds>``: sleep before answering; the sleep ends early when the call ends (the
  client's deadline or cancellation), in the sync and the aio server alike;
- ``hold``: wait until the test sets the recorder's ``gate`` (or the call ends, or 10 s);
- ``raise``: raise ``RuntimeError`` in the handler (the client sees UNKNOWN);
- ``abort=<CODE>[:<message>]``: fail with that status code name (message ``asked to abort``);
- ``details``: the failure carries a ``google.rpc.Status`` with a ``google.rpc.BadRequest`` detail
  (``grpc-status-details-bin``);
- ``fail_first=<n>:<CODE>``: fail with CODE for the first n attempts of a call id (``id=<x>``);
- ``id=<x>``: a call id used by ``fail_first`` and attempt counting;
- ``n=<count>``: number of response messages for unary-stream (default 3);
- ``fail_after=<CODE>``: streaming responses send one message, then fail with CODE;
- ``stay_open``: streaming responses send one message, then keep the stream open until the call
  ends (the client cancels or drops it, or the server stops; at most 60 s);
- ``pushback=<ms>``: add the ``grpc-retry-pushback-ms`` trailer;
- ``header=<k>:<v>[,<k>:<v>...]`` / ``trailer=...``: the response headers / trailers instead of
  the default ``x-header: h`` / ``x-trailer: t``, in order (an empty value sends none; a ``-bin``
  key's value is hex);
- ``mirror``: reply with the request itself and send the invocation metadata back as headers and
  trailers (through ``Metadata.from_grpc(...).to_grpc()``, which drops ``user-agent``);
- ``plain``: reply with the (first) request itself, for payloads that must come back intact;
- ``raw``: reply with the invocation metadata as grpcio delivered it, JSON ``[[key, value], ...]``
  (``-bin`` values in hex).

Otherwise the reply echoes: unary-unary ``echo:<request>``; unary-stream ``<i>:<request>`` for i
in 0..n-1; stream-unary the requests joined by ``|``; stream-stream each request.

The named methods in :data:`NAMED` have a fixed script whatever the request (for callers whose
request body is not a script, e.g. the app channel's payloads); ``SyncHandler(rec, base)`` /
``AioHandler(rec, base)`` apply ``base`` before every request's own script.

:func:`interpret` and :class:`Plan` are the pure script logic; :class:`SyncHandler` and
:class:`AioHandler` only do the I/O. Every call is noted in a :class:`Recorder` (metadata, time
remaining, the span current in the handler, concurrency, attempts per call id).

Serving: :func:`sync_server` / :func:`aio_server` (context managers, optional server interceptors
or another ``handler``), or the fixtures ``served`` / ``served_target`` (per test) and
``recording_server`` (per module, for hypothesis), registered in ``conftest.py``. Clients: tests
take ``aio`` in ``[False, True]`` and ``mode`` in :data:`MODES` as parameters and open
:func:`sync_client` / :func:`aio_client`; :func:`call_sync` / :func:`call_aio` make one call of a
shape and :func:`expected` gives its echo.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import socket
import threading
import time
from collections import Counter
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Generator, Iterator, Sequence
from concurrent import futures
from dataclasses import dataclass, field
from typing import Any

import grpc
import grpc.aio
import pytest
from google.protobuf import any_pb2
from google.rpc import error_details_pb2, status_pb2
from grpc_status import rpc_status
from opentelemetry import trace

from grpc_channel.metadata import Metadata

SERVICE = "test.Svc"
UU = f"/{SERVICE}/UU"
US = f"/{SERVICE}/US"
SU = f"/{SERVICE}/SU"
SS = f"/{SERVICE}/SS"
METHODS = {"unary_unary": UU, "unary_stream": US, "stream_unary": SU, "stream_stream": SS}
SHAPES = ("unary_unary", "unary_stream", "stream_unary", "stream_stream")
_SHAPE_OF_NAME = {path.rsplit("/", 1)[1]: shape for shape, path in METHODS.items()}

#: How a chain of policies is put on a client channel (see sync_client/aio_client); tests take
#: these with ``aio`` in [False, True] as parameters.
MODES = ("wrap", "icpt")

# Named unary methods with fixed scripts (the metadata and invoke tests call them by path).
ECHO = "/test.Echo/Echo"
FAIL = "/test.Echo/Fail"
PLAIN = "/test.Echo/Plain"
RAW = "/test.Echo/Raw"
FAIL_MESSAGE = "field 'name' is required"
NAMED = {
    ECHO: b"mirror",
    FAIL: f"header=x-hdr:h;trailer=x-trl:t;details;abort=INVALID_ARGUMENT:{FAIL_MESSAGE}".encode(),
    PLAIN: b"header=;trailer=;abort=NOT_FOUND:no such thing",
    RAW: b"header=;trailer=;raw",
}

Pairs = tuple[tuple[str, Any], ...]


# --- the script: pure logic -----------------------------------------------------------------------


def parse(request: bytes) -> dict[str, str]:
    out: dict[str, str] = {}
    for part in request.decode(errors="replace").split(";"):
        if part:
            key, _, value = part.partition("=")
            out[key] = value
    return out


def _pairs(spec: str) -> Pairs:
    """``k:v,k:v`` in order, repeats kept; a ``-bin`` key's value is hex."""
    out: list[tuple[str, Any]] = []
    for item in filter(None, spec.split(",")):
        key, _, value = item.partition(":")
        out.append((key, bytes.fromhex(value) if key.endswith("-bin") else value))
    return tuple(out)


def bad_request_detail() -> any_pb2.Any:
    detail = any_pb2.Any()
    violation = error_details_pb2.BadRequest.FieldViolation(
        field="name", description="must not be empty"
    )
    detail.Pack(error_details_pb2.BadRequest(field_violations=[violation]))
    return detail


@dataclass(frozen=True)
class Failure:
    """How to end the call: code, message, and the trailers to send with the status."""

    code: grpc.StatusCode
    message: str
    trailers: Pairs


class _Status(grpc.Status):
    """A grpc.Status for ``abort_with_status`` (which sends only the status's trailers)."""

    def __init__(self, failure: Failure) -> None:
        self.code = failure.code
        self.details = failure.message
        self.trailing_metadata = failure.trailers


@dataclass(frozen=True)
class Plan:
    """What one call does, worked out from its script and invocation metadata."""

    cmd: dict[str, str]
    headers: Pairs
    trailers: Pairs
    sleep: float | None

    def failure(self, rec: Recorder, code: str | None = None) -> Failure | None:
        """The failure of this call, if any (counts the attempt of a call id)."""
        message = "asked to abort"
        if code is None and "abort" in self.cmd:
            code, _, custom = self.cmd["abort"].partition(":")
            message = custom or message
        elif code is None and "fail_first" in self.cmd:
            count, _, first_code = self.cmd["fail_first"].partition(":")
            if rec.attempt(self.cmd.get("id", "")) <= int(count):
                code, message = first_code, "failing this attempt"
        elif code is None and "id" in self.cmd:
            rec.attempt(self.cmd["id"])
        elif code is not None:
            message = "failed mid-stream"
        if code is None:
            return None
        status = grpc.StatusCode[code]
        if "details" not in self.cmd:
            return Failure(status, message, self.trailers)
        proto = status_pb2.Status(
            code=status.value[0], message=message, details=[bad_request_detail()]
        )
        with_details = rpc_status.to_status(proto)
        return Failure(status, message, (*with_details.trailing_metadata, *self.trailers))

    def replies(self, shape: str, requests: list[bytes], metadata: Pairs) -> list[bytes]:
        first = requests[0] if requests else b""
        if "raw" in self.cmd:
            pairs = [[k, v.hex() if isinstance(v, bytes) else v] for k, v in metadata]
            return [json.dumps(pairs).encode()]
        if "mirror" in self.cmd or "plain" in self.cmd:
            return [first]
        return expected(shape, first, requests[1:], int(self.cmd.get("n", "3")))


def interpret(request: bytes, path: str, metadata: Pairs, base: bytes = b"") -> Plan:
    """The plan of one call: the named method's script, else ``base`` then the request's."""
    cmd = parse(NAMED[path]) if path in NAMED else {**parse(base), **parse(request)}
    if "mirror" in cmd:
        mirrored = tuple(Metadata.from_grpc(metadata).to_grpc())
        headers, trailers = mirrored, mirrored
    else:
        headers = _pairs(cmd.get("header", "x-header:h"))
        trailers = _pairs(cmd.get("trailer", "x-trailer:t"))
    if "pushback" in cmd:
        trailers = (*trailers, ("grpc-retry-pushback-ms", cmd["pushback"]))
    sleep = float(cmd["sleep"]) if "sleep" in cmd else None
    return Plan(cmd, headers, trailers, sleep)


def expected(
    shape: str, request: bytes, rest: Sequence[bytes] = (b"more",), n: int | None = None
) -> list[bytes]:
    """The echo replies to ``request`` (then ``rest`` on request streams, as call_* send them;
    ``n`` unary-stream replies, by default the request's ``n=`` or 3)."""
    if shape == "unary_unary":
        return [b"echo:" + request]
    if shape == "unary_stream":
        count = int(parse(request).get("n", "3")) if n is None else n
        return [b"%d:" % i + request for i in range(count)]
    if shape == "stream_unary":
        return [b"|".join((request, *rest))]
    return [request, *rest]


def shape_of(path: str) -> str:
    return _SHAPE_OF_NAME.get(path.rsplit("/", 1)[-1], "unary_unary")


# --- what the server saw --------------------------------------------------------------------------


@dataclass(frozen=True)
class Seen:
    """One handled call: its method, metadata pairs, time remaining (None: no deadline), and the
    trace/span id of the span current inside the handler (0 when none)."""

    method: str
    pairs: Pairs
    remaining: float | None
    current_trace_id: int
    current_span_id: int

    @property
    def metadata(self) -> dict[str, Any]:
        return dict(self.pairs)

    @property
    def metadata_keys(self) -> tuple[str, ...]:
        return tuple(k for k, _ in self.pairs)

    @property
    def traceparent(self) -> str | None:
        value = self.metadata.get("traceparent")
        return value if isinstance(value, str) else None


@dataclass
class Recorder:
    """What the server saw: running/max concurrency, calls, attempts per call id."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    running: int = 0
    max_running: int = 0
    handled: int = 0
    seen: list[Seen] = field(default_factory=list)
    attempts: Counter[str] = field(default_factory=Counter)
    gate: threading.Event = field(default_factory=threading.Event)  # releases "hold" calls

    @property
    def metadata(self) -> list[dict[str, Any]]:
        return [s.metadata for s in self.seen]

    @property
    def remaining(self) -> list[float | None]:
        return [s.remaining for s in self.seen]

    @property
    def previous_attempts(self) -> list[str | None]:
        return [s.metadata.get("x-previous-rpc-attempts") for s in self.seen]

    def enter(self, method: str, context: Any) -> Pairs:
        pairs = tuple(context.invocation_metadata() or ())
        left = context.time_remaining()
        span = trace.get_current_span().get_span_context()
        seen = Seen(
            method,
            pairs,
            None if left is None or left > 1e8 else left,
            span.trace_id,
            span.span_id,
        )
        with self.lock:
            self.seen.append(seen)
            self.running += 1
            self.handled += 1
            self.max_running = max(self.max_running, self.running)
        return pairs

    @property
    def ended(self) -> int:
        """Calls that entered the handler and have left it."""
        with self.lock:
            return self.handled - self.running

    def leave(self) -> None:
        with self.lock:
            self.running -= 1

    def attempt(self, call_id: str) -> int:
        with self.lock:
            self.attempts[call_id] += 1
            return self.attempts[call_id]


# --- the handler shells: I/O only -----------------------------------------------------------------


def until_ended(context: grpc.ServicerContext) -> threading.Event:
    """An event set when the call ends (already set if it has)."""
    ended = threading.Event()
    if not context.add_callback(ended.set):
        ended.set()
    return ended


def _sleep_sync(plan: Plan, rec: Recorder, context: grpc.ServicerContext) -> None:
    ended = until_ended(context)
    if plan.sleep is not None:
        ended.wait(plan.sleep)
    if "hold" in plan.cmd:
        end = time.monotonic() + 10
        while not rec.gate.wait(0.005) and not ended.is_set() and time.monotonic() < end:
            pass


def _fail_sync(context: grpc.ServicerContext, failure: Failure | None) -> None:
    if failure is not None:
        context.abort_with_status(_Status(failure))


class _Scripted(grpc.GenericRpcHandler):  # type: ignore[type-arg]
    """Serves every path; one method handler per path, built on first use and reused, as
    generated servicers do (server interceptors may cache what they wrapped per handler).
    ``base`` is a script applied before each request's own (e.g. ``b"plain"``)."""

    def __init__(self, rec: Recorder, base: bytes = b"") -> None:
        self.rec = rec
        self.base = base
        self._handlers: dict[str, grpc.RpcMethodHandler[Any, Any]] = {}

    def service(self, details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler[Any, Any] | None:
        path: str = details.method
        found = self._handlers.get(path)
        if found is None:
            found = self._handlers.setdefault(path, self.build(path))
        return found

    def build(self, path: str) -> grpc.RpcMethodHandler[Any, Any]:
        raise NotImplementedError


class SyncHandler(_Scripted):
    """The scripted servicer for ``grpc.server``."""

    def build(self, path: str) -> grpc.RpcMethodHandler[Any, Any]:
        shape = shape_of(path)
        rec, base = self.rec, self.base

        def begin(requests: list[bytes], context: grpc.ServicerContext) -> tuple[Plan, Pairs]:
            metadata = rec.enter(path, context)
            plan = interpret(requests[0] if requests else b"", path, metadata, base)
            context.send_initial_metadata(plan.headers)
            context.set_trailing_metadata(plan.trailers)
            _sleep_sync(plan, rec, context)
            if "raise" in plan.cmd:
                raise RuntimeError("handler failed on purpose")
            _fail_sync(context, plan.failure(rec))
            return plan, metadata

        def respond(
            requests: list[bytes], context: grpc.ServicerContext
        ) -> Generator[bytes, None, None]:
            try:
                plan, metadata = begin(requests, context)
                for reply in plan.replies(shape, requests, metadata):
                    yield reply
                    if "fail_after" in plan.cmd:
                        _fail_sync(context, plan.failure(rec, plan.cmd["fail_after"]))
                    if "stay_open" in plan.cmd:
                        until_ended(context).wait(60)
                        return
            finally:
                rec.leave()

        def one(requests: list[bytes], context: grpc.ServicerContext) -> bytes:
            replies = respond(requests, context)
            try:
                return next(replies)
            finally:
                replies.close()

        if shape == "unary_unary":
            return grpc.unary_unary_rpc_method_handler(lambda r, c: one([r], c))
        if shape == "unary_stream":
            return grpc.unary_stream_rpc_method_handler(lambda r, c: respond([r], c))
        if shape == "stream_unary":
            return grpc.stream_unary_rpc_method_handler(lambda rs, c: one(list(rs), c))
        return grpc.stream_stream_rpc_method_handler(lambda rs, c: respond(list(rs), c))


async def _fail_aio(context: grpc.aio.ServicerContext[Any, Any], failure: Failure | None) -> None:
    if failure is not None:
        await context.abort(failure.code, failure.message, failure.trailers)


class AioHandler(_Scripted):
    """The scripted servicer for ``grpc.aio.server``."""

    def build(self, path: str) -> grpc.RpcMethodHandler[Any, Any]:
        shape = shape_of(path)
        rec, base = self.rec, self.base
        Context = grpc.aio.ServicerContext[Any, Any]

        async def respond(requests: list[bytes], context: Context) -> AsyncGenerator[bytes, None]:
            try:
                metadata = rec.enter(path, context)
                plan = interpret(requests[0] if requests else b"", path, metadata, base)
                await context.send_initial_metadata(plan.headers)
                context.set_trailing_metadata(plan.trailers)
                if plan.sleep is not None:
                    await asyncio.sleep(plan.sleep)  # cancelled when the call ends
                if "hold" in plan.cmd:
                    await async_wait_until(rec.gate.is_set)
                if "raise" in plan.cmd:
                    raise RuntimeError("handler failed on purpose")
                await _fail_aio(context, plan.failure(rec))
                for reply in plan.replies(shape, requests, metadata):
                    yield reply
                    if "fail_after" in plan.cmd:
                        await _fail_aio(context, plan.failure(rec, plan.cmd["fail_after"]))
                    if "stay_open" in plan.cmd:
                        await asyncio.sleep(60)  # cancelled when the call ends
                        return
            finally:
                rec.leave()

        async def one(requests: list[bytes], context: Context) -> bytes:
            replies = respond(requests, context)
            try:
                return await replies.__anext__()
            finally:
                await replies.aclose()

        # grpc.aio tells async handlers by their function type, so these are async defs.
        async def uu(request: bytes, context: Context) -> bytes:
            return await one([request], context)

        async def us(request: bytes, context: Context) -> AsyncIterator[bytes]:
            async for reply in respond([request], context):
                yield reply

        async def su(requests: AsyncIterator[bytes], context: Context) -> bytes:
            return await one([r async for r in requests], context)

        async def ss(requests: AsyncIterator[bytes], context: Context) -> AsyncIterator[bytes]:
            async for reply in respond([r async for r in requests], context):
                yield reply

        if shape == "unary_unary":
            return grpc.unary_unary_rpc_method_handler(uu)
        if shape == "unary_stream":
            return grpc.unary_stream_rpc_method_handler(us)
        if shape == "stream_unary":
            return grpc.stream_unary_rpc_method_handler(su)
        return grpc.stream_stream_rpc_method_handler(ss)


# --- servers --------------------------------------------------------------------------------------


@contextlib.contextmanager
def sync_server(
    rec: Recorder,
    interceptors: Sequence[Any] = (),
    workers: int = 16,
    handler: grpc.GenericRpcHandler[Any, Any] | None = None,
) -> Iterator[int]:
    """A sync server on 127.0.0.1:0 serving the scripted servicer (or ``handler`` instead);
    yields its port; stops it."""
    pool = futures.ThreadPoolExecutor(max_workers=workers)
    server = grpc.server(pool, interceptors=list(interceptors))
    server.add_generic_rpc_handlers((handler or SyncHandler(rec),))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield port
    finally:
        server.stop(None).wait()
        pool.shutdown(wait=True)


@contextlib.asynccontextmanager
async def aio_server(
    rec: Recorder,
    interceptors: Sequence[Any] = (),
    *,
    handler: grpc.GenericRpcHandler[Any, Any] | None = None,
) -> AsyncIterator[int]:
    """An aio server on 127.0.0.1:0 serving the scripted servicer (or ``handler``); yields its
    port; stops it."""
    server = grpc.aio.server(interceptors=list(interceptors))
    server.add_generic_rpc_handlers((handler or AioHandler(rec),))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        yield port
    finally:
        await server.stop(None)


@pytest.fixture
def recorder() -> Recorder:
    return Recorder()


@pytest.fixture
def served(recorder: Recorder) -> Iterator[int]:
    """The port of a sync scripted server (no interceptors) noting into ``recorder``."""
    with sync_server(recorder) as port:
        yield port


@pytest.fixture
def served_target(served: int) -> str:
    """``127.0.0.1:<port>`` of the :func:`served` server."""
    return f"127.0.0.1:{served}"


@pytest.fixture(scope="module")
def recording_server() -> Iterator[tuple[str, Recorder]]:
    """A module-wide scripted server (for hypothesis tests, which refuse per-test fixtures):
    its ``127.0.0.1:<port>`` and its recorder (clear ``seen`` before each call)."""
    rec = Recorder()
    with sync_server(rec, workers=2) as port:
        yield f"127.0.0.1:{port}", rec


# --- clients --------------------------------------------------------------------------------------


def call_sync(channel: Any, shape: str, request: bytes, **kw: Any) -> list[bytes]:
    """Make one call of ``shape``; return the response messages as a list (request streams send
    ``request`` then ``b"more"``)."""
    method = METHODS[shape]
    if shape == "unary_unary":
        return [channel.unary_unary(method)(request, **kw)]
    if shape == "unary_stream":
        return list(channel.unary_stream(method)(request, **kw))
    if shape == "stream_unary":
        return [channel.stream_unary(method)(iter([request, b"more"]), **kw)]
    return list(channel.stream_stream(method)(iter([request, b"more"]), **kw))


async def call_aio(channel: Any, shape: str, request: bytes, **kw: Any) -> list[bytes]:
    method = METHODS[shape]
    if shape == "unary_unary":
        return [await channel.unary_unary(method)(request, **kw)]
    if shape == "unary_stream":
        return [m async for m in channel.unary_stream(method)(request, **kw)]
    if shape == "stream_unary":
        return [await channel.stream_unary(method)(iter([request, b"more"]), **kw)]
    return [m async for m in channel.stream_stream(method)(iter([request, b"more"]), **kw)]


@contextlib.contextmanager
def sync_client(port: int, chain: Any = None, mode: str = "wrap") -> Iterator[Any]:
    """A sync channel to ``port``: raw (chain None), ``chain.wrap`` (mode "wrap") or
    ``grpc.intercept_channel`` with the chain's interceptors (mode "icpt"); closed afterwards."""
    raw = grpc.insecure_channel(f"127.0.0.1:{port}")
    try:
        if chain is None:
            yield raw
        elif mode == "wrap":
            yield chain.wrap(raw)
        else:
            yield grpc.intercept_channel(raw, *chain.client_interceptors())
    finally:
        raw.close()


@contextlib.asynccontextmanager
async def aio_client(port: int, chain: Any = None, mode: str = "wrap") -> AsyncIterator[Any]:
    """The aio counterpart of :func:`sync_client`."""
    target = f"127.0.0.1:{port}"
    if chain is not None and mode == "icpt":
        channel = grpc.aio.insecure_channel(target, interceptors=chain.aio_client_interceptors())
        try:
            yield channel
        finally:
            await channel.close(None)
        return
    raw = grpc.aio.insecure_channel(target)
    try:
        yield raw if chain is None else chain.wrap_aio(raw)
    finally:
        await raw.close(None)


def refused_code(err: Any, aio: bool, shape: str) -> grpc.StatusCode:
    """The status of a call the *server* refused before reading the request stream.

    grpc.aio clients race there: when the server's status arrives while the client is still
    sending request messages, grpc.aio may report INTERNAL ("Failed execute_batch" on a
    SendMessageOperation) instead of the server's code. Map that one case to ``None`` so tests
    can skip the code check for it (they still check that the handler never ran).
    """
    code: grpc.StatusCode = err.code()
    if (
        aio
        and shape.startswith("stream")
        and code is grpc.StatusCode.INTERNAL
        and "SendMessageOperation" in (err.debug_error_string() or "")
    ):
        return None  # type: ignore[return-value]
    return code


# --- waiting and ports ----------------------------------------------------------------------------


def wait_until(predicate: Callable[[], object], timeout: float = 10.0) -> bool:
    """Poll ``predicate`` until true; return whether it became true. For events that follow the
    call (servers winding down, spans ending after the response); never a timing assertion."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.005)
    return bool(predicate())


async def async_wait_until(predicate: Callable[[], object], timeout: float = 10.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        await asyncio.sleep(0.005)
    return bool(predicate())


def free_port() -> int:
    """A 127.0.0.1 TCP port nobody listens on (for a peer started later, or for "no app here")."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
