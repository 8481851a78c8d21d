"""The lean span path (``TracingSpec(span_processor=...)``): spec rules, span semantics, export.

The behaviours shared with the SDK path (attributes, status, propagation, dapr peer) run for both
pipelines in ``test_interceptors_tracing.py``; this module covers what is particular to lean spans.
"""

from __future__ import annotations

import asyncio
import logging
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from opentelemetry import trace
from opentelemetry.context import Context
from opentelemetry.sdk.resources import Resource
from opentelemetry.sdk.trace import ReadableSpan, Span, SpanProcessor, TracerProvider
from opentelemetry.sdk.trace.export import BatchSpanProcessor, SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanContext, SpanKind, Status, StatusCode, TraceFlags
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from support_harness import (
    UU,
    Recorder,
    aio_client,
    aio_server,
    call_aio,
    call_sync,
    sync_client,
    sync_server,
)

from grpc_channel.interceptors._chain import compose
from grpc_channel.interceptors._lean_spans import LeanSpan, LeanTracer
from grpc_channel.interceptors._policy import ClientCall, ClientPolicy
from grpc_channel.interceptors._tracing import Tracing, TracingSpec, TracingSpecError

W3C = TraceContextTextMapPropagator()
ROOT = SpanContext(0, 0, False)  # invalid: "no parent"


class Recording(SpanProcessor):
    """Counts on_start calls and keeps what on_end receives."""

    def __init__(self) -> None:
        self.started = 0
        self.ended: list[ReadableSpan] = []
        self.lock = threading.Lock()

    def on_start(self, span: Span, parent_context: Context | None = None) -> None:
        self.started += 1

    def on_end(self, span: ReadableSpan) -> None:
        with self.lock:
            self.ended.append(span)


class Failing(SpanProcessor):
    def on_end(self, span: ReadableSpan) -> None:
        raise RuntimeError("exporter down")


@pytest.fixture
def processor() -> Iterator[Recording]:
    yield Recording()


def _tracer(processor: SpanProcessor, resource: Resource | None = None) -> LeanTracer:
    return LeanTracer(processor, resource, "grpc_channel.interceptors")


def _span(tracer: LeanTracer, attrs: dict[str, Any] | None = None) -> LeanSpan:
    return tracer.start("svc/M", ROOT, SpanKind.CLIENT, attrs or {"rpc.system": "grpc"})


# --- TracingSpec ----------------------------------------------------------------------------------


def test_spec_refuses_what_is_not_a_span_processor() -> None:
    with pytest.raises(TracingSpecError, match=r"span_processor must be .*SpanProcessor"):
        TracingSpec(span_processor=InMemorySpanExporter())  # type: ignore[arg-type]


def test_spec_refuses_a_processor_and_a_tracer_provider() -> None:
    with pytest.raises(TracingSpecError, match="tracer_provider or span_processor, not both"):
        TracingSpec(span_processor=Recording(), tracer_provider=TracerProvider())


def test_spec_refuses_a_resource_without_a_processor_or_of_wrong_type() -> None:
    with pytest.raises(TracingSpecError, match="resource applies to lean spans only"):
        TracingSpec(resource=Resource.create({"service.name": "x"}))
    with pytest.raises(TracingSpecError, match=r"resource must be .*Resource"):
        TracingSpec(span_processor=Recording(), resource={"service.name": "x"})  # type: ignore[arg-type]


def test_spec_with_a_processor_is_hashable_and_compares_by_fields() -> None:
    proc = Recording()
    res = Resource.create({"service.name": "x"})
    one = TracingSpec(span_processor=proc, resource=res)
    assert one == TracingSpec(span_processor=proc, resource=res)
    assert hash(one) == hash(TracingSpec(span_processor=proc, resource=res))
    assert one != TracingSpec(span_processor=Recording(), resource=res)


# --- span semantics -------------------------------------------------------------------------------


def test_root_and_child_ids_flags_and_trace_state(processor: Recording) -> None:
    tracer = _tracer(processor)
    root = _span(tracer)
    rc = root.get_span_context()
    assert rc.is_valid and rc.trace_flags.sampled and not rc.is_remote
    state = trace.TraceState([("vendor", "v1")])
    parent = SpanContext(0xABC, 0xDEF, True, TraceFlags(TraceFlags.SAMPLED), state)
    child = tracer.start("svc/M", parent, SpanKind.SERVER, {})
    cc = child.get_span_context()
    assert (cc.trace_id, cc.trace_state) == (0xABC, state)
    assert cc.span_id not in (0, 0xDEF)
    child.end()
    root.end()
    by_name = {s.context.span_id: s for s in processor.ended}
    assert by_name[cc.span_id].parent == parent
    assert by_name[rc.span_id].parent is None
    assert processor.started == 0  # documented: no on_start on the lean path


def test_export_carries_every_field(processor: Recording) -> None:
    resource = Resource.create({"service.name": "lean-test"})
    tracer = _tracer(processor, resource)
    span = tracer.start("svc/M", ROOT, SpanKind.CLIENT, {"rpc.system": "grpc", "n": 1})
    span.set_attribute("extra", "yes")
    span.add_event("evt", {"k": 1}, timestamp=123)
    span.add_link(SpanContext(0x1, 0x2, False), {"why": "test"})
    span.update_name("svc/Renamed")
    span.set_status(StatusCode.ERROR, "broke")
    span.end(end_time=span._start + 1000)
    (done,) = processor.ended
    assert done.name == "svc/Renamed"
    assert done.kind is SpanKind.CLIENT
    assert dict(done.attributes or {}) == {"rpc.system": "grpc", "n": 1, "extra": "yes"}
    assert [(e.name, dict(e.attributes or {}), e.timestamp) for e in done.events] == [
        ("evt", {"k": 1}, 123)
    ]
    assert [(link.context.span_id, dict(link.attributes or {})) for link in done.links] == [
        (0x2, {"why": "test"})
    ]
    assert done.status.status_code is StatusCode.ERROR and done.status.description == "broke"
    assert done.end_time is not None and done.start_time is not None
    assert done.end_time - done.start_time == 1000
    assert done.resource.attributes["service.name"] == "lean-test"
    assert done.instrumentation_scope is not None
    assert done.instrumentation_scope.name == "grpc_channel.interceptors"
    assert done.to_json()  # what console exporters call: every field readable


def test_shared_attributes_are_copied_on_write(processor: Recording) -> None:
    shared = {"rpc.system": "grpc"}
    tracer = _tracer(processor)
    one, two = _span(tracer, shared), _span(tracer, shared)
    one.set_attributes({"only": "one"})
    one.end()
    two.end()
    assert shared == {"rpc.system": "grpc"}
    assert [dict(s.attributes or {}) for s in processor.ended] == [
        {"rpc.system": "grpc", "only": "one"},
        {"rpc.system": "grpc"},
    ]


def test_attribute_values_are_checked_like_the_sdk(processor: Recording) -> None:
    odd: dict[str, Any] = {
        "dict": {"a": "dict"},
        "mixed": [1, "a"],
        "ints": [1, 2],
        "none": None,
        "obj": object(),
        "": "empty key",
    }
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    try:
        sdk_span = provider.get_tracer("t").start_span("svc/M")
        lean_span = _span(_tracer(processor))
        for key, value in odd.items():
            sdk_span.set_attribute(key, value)
            lean_span.set_attribute(key, value)
        sdk_span.end()
        lean_span.end()
    finally:
        provider.shutdown()
    (sdk_done,) = exporter.get_finished_spans()
    lean_attrs = dict(processor.ended[0].attributes or {})
    assert lean_attrs.pop("rpc.system") == "grpc"
    assert lean_attrs == dict(sdk_done.attributes or {})


def test_attribute_count_limit_from_the_environment(
    processor: Recording, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("OTEL_SPAN_ATTRIBUTE_COUNT_LIMIT", "3")
    span = _span(_tracer(processor), {"a": 1})
    span.set_attributes({"b": 2, "c": 3, "d": 4})
    span.end()
    done = processor.ended[0]
    assert len(done.attributes or {}) == 3
    assert done.dropped_attributes == 1


def test_nothing_changes_after_end_and_end_exports_once(
    processor: Recording, caplog: pytest.LogCaptureFixture
) -> None:
    span = _span(_tracer(processor))
    span.end()
    assert not span.is_recording()
    with caplog.at_level(logging.WARNING, logger="grpc_channel.interceptors"):
        span.set_attribute("late", 1)
        span.add_event("late")
        span.set_status(StatusCode.ERROR)
        span.update_name("late")
        span.end()
    assert len(processor.ended) == 1
    done = processor.ended[0]
    assert done.name == "svc/M" and not done.events
    assert done.status.status_code is StatusCode.UNSET
    assert "late" not in dict(done.attributes or {})
    assert any("ended span" in r.getMessage() for r in caplog.records)


def test_status_rules_follow_the_sdk(processor: Recording) -> None:
    tracer = _tracer(processor)
    ok_first = _span(tracer)
    ok_first.set_status(Status(StatusCode.OK))
    ok_first.set_status(StatusCode.ERROR, "too late")  # OK is final
    ok_first.end()
    error_then_unset = _span(tracer)
    error_then_unset.set_status(StatusCode.ERROR, "bad")
    error_then_unset.set_status(StatusCode.UNSET)  # never set
    error_then_unset.end()
    assert [s.status.status_code for s in processor.ended] == [StatusCode.OK, StatusCode.ERROR]
    assert processor.ended[1].status.description == "bad"


def test_record_exception_is_an_event_with_the_sdk_attributes(processor: Recording) -> None:
    span = _span(_tracer(processor))
    try:
        raise KeyError("missing")
    except KeyError as exc:
        span.record_exception(exc, {"extra": 1}, escaped=True)
    span.end()
    (event,) = processor.ended[0].events
    attrs = dict(event.attributes or {})
    assert event.name == "exception"
    assert attrs["exception.type"] == "KeyError"
    assert attrs["exception.message"] == "'missing'"
    assert "raise KeyError" in str(attrs["exception.stacktrace"])
    assert attrs["exception.escaped"] == "True"
    assert attrs["extra"] == 1


def test_links_without_context_or_attributes_are_skipped(processor: Recording) -> None:
    span = _span(_tracer(processor))
    span.add_link(SpanContext(0, 0, False))
    span.add_link(SpanContext(0, 0, False), {"kept": True})
    span.end()
    assert [dict(link.attributes or {}) for link in processor.ended[0].links] == [{"kept": True}]


def test_a_failing_processor_is_logged_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    span = _span(_tracer(Failing()))
    with caplog.at_level(logging.ERROR, logger="grpc_channel.interceptors"):
        span.end()
    assert any("failed on_end" in r.getMessage() for r in caplog.records)


def test_the_span_works_as_a_context_manager(processor: Recording) -> None:
    with _span(_tracer(processor)) as span:
        assert span.is_recording()
    assert len(processor.ended) == 1


# --- through real calls ---------------------------------------------------------------------------


class _Annotate(ClientPolicy):
    """Sets an attribute on the call's span (runs inside Tracing)."""

    def client_start(self, call: ClientCall) -> None:
        assert call.span is not None
        call.span.set_attribute("app.tenant", "acme")


@pytest.mark.parametrize("aio", [False, True])
def test_calls_export_through_a_batch_processor_and_policies_can_annotate(aio: bool) -> None:
    exporter = InMemorySpanExporter()
    batch = BatchSpanProcessor(exporter)
    client = Tracing(TracingSpec(span_processor=batch, propagator=W3C, metrics=False))
    server = Tracing(TracingSpec(span_processor=batch, propagator=W3C, metrics=False))
    chain = compose(client, _Annotate())
    recorder = Recorder()
    calls = 20
    try:
        if aio:

            async def main() -> None:
                async with (
                    aio_server(recorder, [server.aio_server_interceptor()]) as port,
                    aio_client(port, chain) as channel,
                ):
                    for _ in range(calls):
                        await call_aio(channel, "unary_unary", b"hi")

            asyncio.run(main())
        else:
            with (
                sync_server(recorder, [server.server_interceptor()]) as port,
                sync_client(port, chain) as channel,
            ):
                for _ in range(calls):
                    call_sync(channel, "unary_unary", b"hi")
    finally:
        batch.shutdown()  # flushes what is queued
    spans = exporter.get_finished_spans()
    clients = [s for s in spans if s.kind is SpanKind.CLIENT]
    servers = [s for s in spans if s.kind is SpanKind.SERVER]
    assert len(clients) == len(servers) == calls
    assert all(s.name == UU.lstrip("/") for s in spans)
    assert all(dict(s.attributes or {})["app.tenant"] == "acme" for s in clients)
    # Each server span is the child of one client span, in the same trace, and the handler saw it
    # as the current span.
    by_id = {s.context.span_id: s for s in clients}
    for s in servers:
        assert s.parent is not None
        assert by_id[s.parent.span_id].context.trace_id == s.context.trace_id
    assert {seen.current_span_id for seen in recorder.seen} == {s.context.span_id for s in servers}


def test_lean_client_span_continues_an_sdk_parent() -> None:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    lean = SimpleSpanProcessor(exporter)
    tracing = Tracing(TracingSpec(span_processor=lean, propagator=W3C, metrics=False))
    recorder = Recorder()
    try:
        with (
            sync_server(recorder, []) as port,
            sync_client(port, compose(tracing)) as channel,
            provider.get_tracer("app").start_as_current_span("outer") as outer,
        ):
            call_sync(channel, "unary_unary", b"hi")
    finally:
        provider.shutdown()
    client = next(s for s in exporter.get_finished_spans() if s.kind is SpanKind.CLIENT)
    oc = outer.get_span_context()
    assert client.parent is not None and client.parent.span_id == oc.span_id
    assert client.context.trace_id == oc.trace_id
    (seen,) = recorder.seen
    assert seen.traceparent == (
        f"00-{oc.trace_id:032x}-{client.context.span_id:016x}-{client.context.trace_flags:02x}"
    )
