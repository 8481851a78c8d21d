"""Test helpers for the tracing policy: in-memory OpenTelemetry, echo servers, a dapr ``App`` peer.

Run as a script (``python support_tracing.py OUT_FILE``) it is the dapr app: it picks a free
127.0.0.1 port, prints it, and serves ``dapr.ext.grpc.App`` with one ``@app.method("trace")``
handler that appends the ``traceparent`` it received to ``OUT_FILE`` (one line per call).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Iterator, Sequence
from concurrent import futures
from dataclasses import dataclass, field
from typing import Any

import grpc
import grpc.aio
from opentelemetry import trace
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import (
    HistogramDataPoint,
    InMemoryMetricReader,
    NumberDataPoint,
)
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter

SERVICE = "test.v1.Echo"
UNARY = f"/{SERVICE}/Unary"
SERVER_STREAM = f"/{SERVICE}/ServerStream"
CLIENT_STREAM = f"/{SERVICE}/ClientStream"
BIDI_STREAM = f"/{SERVICE}/BidiStream"
SHAPES = ("unary_unary", "unary_stream", "stream_unary", "stream_stream")
PATH_OF_SHAPE = {
    "unary_unary": UNARY,
    "unary_stream": SERVER_STREAM,
    "stream_unary": CLIENT_STREAM,
    "stream_stream": BIDI_STREAM,
}

#: Request payloads with a meaning for the echo handlers.
FAIL_INVALID = b"invalid"  # handler aborts with INVALID_ARGUMENT (the caller's fault)
FAIL_RAISE = b"raise"  # handler raises RuntimeError -> UNKNOWN (the server's fault)
FAIL_INTERNAL = b"internal"  # handler aborts with INTERNAL


@dataclass
class Telemetry:
    """An SDK tracer provider exporting to memory and a meter provider with an in-memory reader.

    ``lean=True``: the policy's spans take the lean path (``TracingSpec.span_processor``, a
    ``SimpleSpanProcessor`` into the same exporter); ``tracer_provider`` is still there for the
    test's own spans. :meth:`span_source` gives the ``TracingSpec`` keywords of either pipeline.
    """

    lean: bool = False
    exporter: InMemorySpanExporter = field(default_factory=InMemorySpanExporter)
    reader: InMemoryMetricReader = field(default_factory=InMemoryMetricReader)
    tracer_provider: TracerProvider = field(init=False)
    meter_provider: MeterProvider = field(init=False)
    lean_processor: SimpleSpanProcessor | None = field(init=False, default=None)

    def __post_init__(self) -> None:
        self.tracer_provider = TracerProvider()
        self.tracer_provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        self.meter_provider = MeterProvider(metric_readers=[self.reader])
        if self.lean:
            self.lean_processor = SimpleSpanProcessor(self.exporter)

    def span_source(self) -> dict[str, Any]:
        """``tracer_provider=...`` or, when lean, ``span_processor=...``."""
        if self.lean_processor is not None:
            return {"span_processor": self.lean_processor}
        return {"tracer_provider": self.tracer_provider}

    def spans(self) -> tuple[ReadableSpan, ...]:
        return tuple(self.exporter.get_finished_spans())

    def spans_of_kind(self, kind: trace.SpanKind) -> list[ReadableSpan]:
        return [s for s in self.spans() if s.kind == kind]

    def points(self, name: str) -> list[Any]:
        data = self.reader.get_metrics_data()
        found: list[Any] = []
        if data is None:
            return found
        for rm in data.resource_metrics:
            for sm in rm.scope_metrics:
                for metric in sm.metrics:
                    if metric.name == name:
                        found.extend(metric.data.data_points)
        return found

    def histogram_counts(self, name: str) -> dict[int, int]:
        """``rpc.grpc.status_code`` -> number of recordings, summed over methods."""
        counts: dict[int, int] = {}
        for point in self.points(name):
            assert isinstance(point, HistogramDataPoint)
            code = int(point.attributes["rpc.grpc.status_code"])  # type: ignore[index,arg-type]
            counts[code] = counts.get(code, 0) + point.count
        return counts

    def sum_value(self, name: str) -> int:
        total = 0
        for point in self.points(name):
            assert isinstance(point, NumberDataPoint)
            total += int(point.value)
        return total

    def shutdown(self) -> None:
        if self.lean_processor is not None:
            self.lean_processor.shutdown()
        self.tracer_provider.shutdown()
        self.meter_provider.shutdown()


# --- what the handlers saw ------------------------------------------------------------------------


@dataclass
class Seen:
    """Per handled call: the method, the traceparent header it received, and the trace/span id of
    the span current inside the handler (0 when none)."""

    method: str
    traceparent: str | None
    current_trace_id: int
    current_span_id: int
    metadata_keys: tuple[str, ...] = ()


@dataclass
class Recorder:
    seen: list[Seen] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def note(self, method: str, metadata: Any) -> None:
        header = None
        for key, value in metadata or ():
            if key == "traceparent" and isinstance(value, str):
                header = value
        ctx = trace.get_current_span().get_span_context()
        with self.lock:
            keys = tuple(k for k, _ in metadata or ())
            self.seen.append(Seen(method, header, ctx.trace_id, ctx.span_id, keys))


def _fail_sync(request: bytes, context: grpc.ServicerContext) -> None:
    if request == FAIL_INVALID:
        context.abort(grpc.StatusCode.INVALID_ARGUMENT, "bad request")
    if request == FAIL_INTERNAL:
        context.abort(grpc.StatusCode.INTERNAL, "broken")
    if request == FAIL_RAISE:
        raise RuntimeError("handler exploded")


def sync_handler(recorder: Recorder) -> grpc.GenericRpcHandler[Any, Any]:
    """Raw-bytes echo service, all four shapes."""

    def unary(request: bytes, context: grpc.ServicerContext) -> bytes:
        recorder.note(UNARY, context.invocation_metadata())
        _fail_sync(request, context)
        return request

    def server_stream(request: bytes, context: grpc.ServicerContext) -> Iterator[bytes]:
        recorder.note(SERVER_STREAM, context.invocation_metadata())
        _fail_sync(request, context)
        for _ in range(3):
            yield request

    def client_stream(requests: Iterator[bytes], context: grpc.ServicerContext) -> bytes:
        recorder.note(CLIENT_STREAM, context.invocation_metadata())
        received = list(requests)
        for r in received:
            _fail_sync(r, context)
        return b"".join(received)

    def bidi(requests: Iterator[bytes], context: grpc.ServicerContext) -> Iterator[bytes]:
        recorder.note(BIDI_STREAM, context.invocation_metadata())
        for r in requests:
            _fail_sync(r, context)
            yield r

    return grpc.method_handlers_generic_handler(
        SERVICE,
        {
            "Unary": grpc.unary_unary_rpc_method_handler(unary),
            "ServerStream": grpc.unary_stream_rpc_method_handler(server_stream),
            "ClientStream": grpc.stream_unary_rpc_method_handler(client_stream),
            "BidiStream": grpc.stream_stream_rpc_method_handler(bidi),
        },
    )


async def _fail_aio(request: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> None:
    if request == FAIL_INVALID:
        await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "bad request")
    if request == FAIL_INTERNAL:
        await context.abort(grpc.StatusCode.INTERNAL, "broken")
    if request == FAIL_RAISE:
        raise RuntimeError("handler exploded")


def aio_handler(recorder: Recorder) -> grpc.GenericRpcHandler[Any, Any]:
    async def unary(request: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> bytes:
        recorder.note(UNARY, context.invocation_metadata())
        await _fail_aio(request, context)
        return request

    async def server_stream(
        request: bytes, context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[bytes]:
        recorder.note(SERVER_STREAM, context.invocation_metadata())
        await _fail_aio(request, context)
        for _ in range(3):
            yield request

    async def client_stream(
        requests: AsyncIterator[bytes], context: grpc.aio.ServicerContext[Any, Any]
    ) -> bytes:
        recorder.note(CLIENT_STREAM, context.invocation_metadata())
        received = [r async for r in requests]
        for r in received:
            await _fail_aio(r, context)
        return b"".join(received)

    async def bidi(
        requests: AsyncIterator[bytes], context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[bytes]:
        recorder.note(BIDI_STREAM, context.invocation_metadata())
        async for r in requests:
            await _fail_aio(r, context)
            yield r

    return grpc.method_handlers_generic_handler(
        SERVICE,
        {
            "Unary": grpc.unary_unary_rpc_method_handler(unary),
            "ServerStream": grpc.unary_stream_rpc_method_handler(server_stream),
            "ClientStream": grpc.stream_unary_rpc_method_handler(client_stream),
            "BidiStream": grpc.stream_stream_rpc_method_handler(bidi),
        },
    )


@contextlib.contextmanager
def sync_server(
    recorder: Recorder,
    interceptors: Sequence[grpc.ServerInterceptor[Any, Any]] = (),
    *,
    workers: int = 8,
    handler: grpc.GenericRpcHandler[Any, Any] | None = None,
) -> Iterator[int]:
    """A sync echo server (or ``handler``) on 127.0.0.1:0; yields its port, stops it on exit."""
    server = grpc.server(
        futures.ThreadPoolExecutor(max_workers=workers), interceptors=list(interceptors)
    )
    server.add_generic_rpc_handlers((handler or sync_handler(recorder),))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield port
    finally:
        server.stop(None)


@contextlib.asynccontextmanager
async def aio_server(
    recorder: Recorder,
    interceptors: Sequence[grpc.aio.ServerInterceptor[Any, Any]] = (),
    *,
    handler: grpc.GenericRpcHandler[Any, Any] | None = None,
) -> AsyncIterator[int]:
    """An aio echo server (or ``handler``) on 127.0.0.1:0; yields its port, stops it on exit."""
    server = grpc.aio.server(interceptors=list(interceptors))
    server.add_generic_rpc_handlers((handler or aio_handler(recorder),))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        yield port
    finally:
        await server.stop(None)


# --- sync and aio calls of every shape ------------------------------------------------------------


def call_sync(channel: grpc.Channel, shape: str, payload: bytes) -> list[bytes]:
    """One call of ``shape``; returns the responses (a list, also for unary responses).

    Request streams carry one message: a second write racing a server that already failed the
    call makes grpc.aio report INTERNAL ("Internal error from Core") about 1 % of the time."""
    path = PATH_OF_SHAPE[shape]
    if shape == "unary_unary":
        return [channel.unary_unary(path, None, None)(payload, timeout=10)]
    if shape == "unary_stream":
        return list(channel.unary_stream(path, None, None)(payload, timeout=10))
    if shape == "stream_unary":
        return [channel.stream_unary(path, None, None)(iter([payload]), timeout=10)]
    return list(channel.stream_stream(path, None, None)(iter([payload]), timeout=10))


async def call_aio(channel: grpc.aio.Channel, shape: str, payload: bytes) -> list[bytes]:
    path = PATH_OF_SHAPE[shape]
    if shape == "unary_unary":
        return [await channel.unary_unary(path, None, None)(payload, timeout=10)]
    if shape == "unary_stream":
        return [r async for r in channel.unary_stream(path, None, None)(payload, timeout=10)]
    if shape == "stream_unary":
        return [await channel.stream_unary(path, None, None)(iter([payload]), timeout=10)]
    return [r async for r in channel.stream_stream(path, None, None)(iter([payload]), timeout=10)]


def run(coro: Any) -> Any:
    return asyncio.run(coro)


# --- the dapr App peer ----------------------------------------------------------------------------


@contextlib.contextmanager
def dapr_app(out_file: str) -> Iterator[int]:
    """Run ``dapr.ext.grpc.App`` in a subprocess on 127.0.0.1; yields its port, kills it on exit."""
    proc = subprocess.Popen(
        [sys.executable, os.path.abspath(__file__), out_file],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        if not line.strip().isdigit():
            proc.kill()
            _, err = proc.communicate(timeout=10)
            raise RuntimeError(f"dapr app did not start: {line!r} {err[-2000:]}")
        port = int(line)
        with grpc.insecure_channel(f"127.0.0.1:{port}") as probe:
            grpc.channel_ready_future(probe).result(timeout=20)
        yield port
    finally:
        proc.kill()
        proc.communicate(timeout=10)


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _dapr_main(out_file: str) -> None:
    from dapr.ext.grpc import App

    app = App()

    @app.method("trace")  # type: ignore[untyped-decorator]
    def trace_handler(request: Any) -> bytes:
        received = request.metadata.get("traceparent") or [""]
        with open(out_file, "a", encoding="utf-8") as f:
            f.write(json.dumps({"traceparent": received[0]}) + "\n")
        return b"ok"

    port = _free_port()
    print(port, flush=True)
    app.run(app_port=port, listen_address="127.0.0.1")


if __name__ == "__main__":
    _dapr_main(sys.argv[1])


def wait_until(predicate: Any, timeout: float = 10.0) -> None:
    """Poll ``predicate`` until true. Server spans end after the response is sent, so a test may
    see the client return first; this waits for the event, it does not time anything."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise AssertionError("condition not reached within the wait limit")
        time.sleep(0.005)
