"""TracingSpec validation, metadata propagation helpers and the sampling rule (no network)."""

from __future__ import annotations

import math
from typing import Any

import grpc
import pytest
from hypothesis import given
from hypothesis import strategies as st
from opentelemetry import baggage, propagate, trace
from opentelemetry import context as otel_context
from opentelemetry.baggage.propagation import W3CBaggagePropagator
from opentelemetry.context import Context
from opentelemetry.propagators.composite import CompositePropagator
from opentelemetry.propagators.textmap import TextMapPropagator
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.sampling import Decision
from opentelemetry.trace import NonRecordingSpan, SpanContext, TraceFlags, TraceState
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

from grpc_channel.interceptors._policy import CallShape, ClientCall
from grpc_channel.interceptors._tracing import (
    GRPC_METADATA_GETTER,
    GRPC_METADATA_SETTER,
    Tracing,
    TracingSpec,
    TracingSpecError,
    _parse_peer,
    _parse_target,
    _split_method,
    extract_trace_context,
    inject_trace_context,
)

W3C = TraceContextTextMapPropagator()
TRACE_ID = 0x0AF7651916CD43DD8448EB211C80319C
SPAN_ID = 0xB7AD6B7169203331


def _ctx(sampled: bool = True, state: TraceState | None = None) -> Context:
    flags = TraceFlags(TraceFlags.SAMPLED if sampled else TraceFlags.DEFAULT)
    span = NonRecordingSpan(
        SpanContext(TRACE_ID, SPAN_ID, is_remote=False, trace_flags=flags, trace_state=state)
    )
    return trace.set_span_in_context(span)


# --- TracingSpec ----------------------------------------------------------------------------------


def test_spec_defaults() -> None:
    spec = TracingSpec()
    assert spec.sampling_rate == 1.0
    assert spec.span_name == "{full_method}"
    assert spec.metrics is True
    assert spec.exclude_methods == frozenset()


@pytest.mark.parametrize("rate", [0, 0.0, 0.25, 1, 1.0])
def test_spec_accepts_rates_in_range(rate: float) -> None:
    spec = TracingSpec(sampling_rate=rate)
    assert spec.sampling_rate == float(rate)
    assert isinstance(spec.sampling_rate, float)


@pytest.mark.parametrize("rate", [-0.01, 1.0001, 2, math.nan, math.inf, -math.inf])
def test_spec_refuses_rates_out_of_range(rate: float) -> None:
    with pytest.raises(TracingSpecError, match=r"must be a number between 0\.0 and 1\.0"):
        TracingSpec(sampling_rate=rate)


@pytest.mark.parametrize("rate", [True, "0.5", None, [0.5]])
def test_spec_refuses_rates_of_wrong_type(rate: Any) -> None:
    with pytest.raises(TracingSpecError, match=type(rate).__name__):
        TracingSpec(sampling_rate=rate)


def test_spec_error_is_a_value_error() -> None:
    with pytest.raises(ValueError):
        TracingSpec(sampling_rate=5)


@pytest.mark.parametrize(
    ("fmt", "message"),
    [
        ("", "non-empty"),
        ("{nope}", "allowed fields are"),
        ("{method!r}", "without conversions"),
        ("{service:>10}", "without conversions"),
        ("{method", "not a valid format string"),
    ],
)
def test_spec_refuses_bad_span_names(fmt: str, message: str) -> None:
    with pytest.raises(TracingSpecError, match=message):
        TracingSpec(span_name=fmt)


def test_spec_refuses_bad_fields() -> None:
    with pytest.raises(TracingSpecError, match="tracer_provider"):
        TracingSpec(tracer_provider=object())  # type: ignore[arg-type]
    with pytest.raises(TracingSpecError, match="meter_provider"):
        TracingSpec(meter_provider=object())  # type: ignore[arg-type]
    with pytest.raises(TracingSpecError, match="propagator"):
        TracingSpec(propagator=object())  # type: ignore[arg-type]
    with pytest.raises(TracingSpecError, match="metrics must be a bool"):
        TracingSpec(metrics=1)  # type: ignore[arg-type]
    with pytest.raises(TracingSpecError, match=r"attributes\['k'\]"):
        TracingSpec(attributes={"k": [1]})  # type: ignore[dict-item]
    with pytest.raises(TracingSpecError, match="attributes keys"):
        TracingSpec(attributes={"": "v"})
    with pytest.raises(TracingSpecError, match="exclude_methods must be a collection"):
        TracingSpec(exclude_methods="/a.B/C")  # type: ignore[arg-type]
    with pytest.raises(TracingSpecError, match="method paths like"):
        TracingSpec(exclude_methods=frozenset({"a.B/C"}))
    with pytest.raises(TracingSpecError, match="spec must be a TracingSpec"):
        Tracing(0.5)  # type: ignore[arg-type]
    with pytest.raises(TracingSpecError, match="target must be"):
        Tracing(target="")


def test_spec_copies_attributes_and_is_hashable() -> None:
    attrs = {"app.id": "a"}
    spec = TracingSpec(attributes=attrs)
    attrs["app.id"] = "changed"
    assert spec.attributes == {"app.id": "a"}
    with pytest.raises(TypeError):
        spec.attributes["x"] = "y"  # type: ignore[index]
    same = TracingSpec(attributes={"app.id": "a"})
    assert spec == same
    assert hash(spec) == hash(same)
    assert {spec, same} == {spec}
    assert TracingSpec(sampling_rate=0.5) != TracingSpec()


def test_spec_sampler_is_parent_based_ratio() -> None:
    sampler = TracingSpec(sampling_rate=0.5).sampler()
    assert "ParentBased" in sampler.get_description()
    assert "TraceIdRatioBased{0.5}" in sampler.get_description()


# --- metadata getter / setter ---------------------------------------------------------------------


def test_setter_replaces_earlier_values_and_lowercases() -> None:
    md: list[tuple[str, str | bytes]] = [("traceparent", "a"), ("x", "1"), ("traceparent", "b")]
    GRPC_METADATA_SETTER.set(md, "TraceParent", "new")
    assert md == [("x", "1"), ("traceparent", "new")]


def test_getter_reads_text_values_only() -> None:
    md = (("a", "1"), ("a-bin", b"\x00"), ("a", "2"))
    assert GRPC_METADATA_GETTER.get(md, "A") == ["1", "2"]
    assert GRPC_METADATA_GETTER.get(md, "a-bin") is None
    assert GRPC_METADATA_GETTER.get(md, "missing") is None
    assert GRPC_METADATA_GETTER.keys(md) == ["a", "a-bin", "a"]


def test_inject_then_extract_round_trip_with_tracestate() -> None:
    state = TraceState([("vendor", "v1")])
    md: list[tuple[str, str | bytes]] = [("other", "x")]
    inject_trace_context(md, _ctx(sampled=True, state=state), W3C)
    assert ("traceparent", f"00-{TRACE_ID:032x}-{SPAN_ID:016x}-01") in md
    assert ("tracestate", "vendor=v1") in md
    got = trace.get_current_span(extract_trace_context(md, propagator=W3C)).get_span_context()
    assert (got.trace_id, got.span_id, got.is_remote) == (TRACE_ID, SPAN_ID, True)
    assert got.trace_flags.sampled
    assert got.trace_state.get("vendor") == "v1"


def test_inject_twice_keeps_one_header() -> None:
    md: list[tuple[str, str | bytes]] = []
    inject_trace_context(md, _ctx(), W3C)
    inject_trace_context(md, _ctx(sampled=False), W3C)
    assert [v for k, v in md if k == "traceparent"] == [f"00-{TRACE_ID:032x}-{SPAN_ID:016x}-00"]


def test_inject_without_span_writes_nothing() -> None:
    md: list[tuple[str, str | bytes]] = []
    inject_trace_context(md, Context(), W3C)
    assert md == []


@pytest.mark.parametrize(
    "header",
    ["", "garbage", f"00-{0:032x}-{SPAN_ID:016x}-01", f"ff-{TRACE_ID:032x}-{SPAN_ID:016x}-01"],
)
def test_extract_ignores_malformed_headers(header: str) -> None:
    ctx = extract_trace_context((("traceparent", header),), propagator=W3C)
    assert not trace.get_current_span(ctx).get_span_context().is_valid


def test_extract_of_nothing_is_empty() -> None:
    assert not trace.get_current_span(extract_trace_context(None)).get_span_context().is_valid


def test_helpers_default_to_the_global_propagator() -> None:
    md: list[tuple[str, str | bytes]] = []
    inject_trace_context(md, _ctx())
    assert str(dict(md)["traceparent"]).startswith(f"00-{TRACE_ID:032x}-")


# --- names and addresses --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("path", "expected"),
    [
        ("/pkg.v1.Svc/Do", ("pkg.v1.Svc", "Do")),
        ("/Svc/Do", ("Svc", "Do")),
        ("/odd", ("", "odd")),
        ("a.B/C", ("a.B", "C")),
    ],
)
def test_split_method(path: str, expected: tuple[str, str]) -> None:
    assert _split_method(path) == expected


@pytest.mark.parametrize(
    ("peer", "expected"),
    [
        ("ipv4:127.0.0.1:5000", ("127.0.0.1", 5000)),
        ("ipv6:[::1]:6000", ("::1", 6000)),
        ("unix:/tmp/sock", ("/tmp/sock", None)),
        ("weird", ("weird", None)),
    ],
)
def test_parse_peer(peer: str, expected: tuple[str, int | None]) -> None:
    assert _parse_peer(peer) == expected


@pytest.mark.parametrize(
    ("target", "expected"),
    [
        ("localhost:50001", ("localhost", 50001)),
        ("dns:///app.internal:443", ("app.internal", 443)),
        ("ipv4:10.0.0.1:80", ("10.0.0.1", 80)),
        ("[::1]:7000", ("::1", 7000)),
        ("unix:/var/run/app.sock", ("/var/run/app.sock", None)),
        ("unix:///var/run/app.sock", ("/var/run/app.sock", None)),
        ("myhost", ("myhost", None)),
    ],
)
def test_parse_target(target: str, expected: tuple[str, int | None]) -> None:
    assert _parse_target(target) == expected


# --- the sampling rule matches ParentBased(TraceIdRatioBased) -------------------------------------


@given(
    rate=st.sampled_from([0.0, 0.1, 0.5, 0.9, 1.0]),
    parent_sampled=st.booleans(),
    remote=st.booleans(),
    trace_id=st.integers(min_value=1, max_value=2**128 - 1),
)
def test_parent_decides_like_the_sdk_sampler(
    rate: float, parent_sampled: bool, remote: bool, trace_id: int
) -> None:
    tracing = Tracing(TracingSpec(sampling_rate=rate, metrics=False))
    flags = TraceFlags(TraceFlags.SAMPLED if parent_sampled else TraceFlags.DEFAULT)
    parent = SpanContext(trace_id, SPAN_ID, is_remote=remote, trace_flags=flags)
    ctx = trace.set_span_in_context(NonRecordingSpan(parent))
    sdk = tracing.spec.sampler().should_sample(ctx, trace_id, "x")
    assert tracing._sampled(parent) == (sdk.decision is Decision.RECORD_AND_SAMPLE)


@pytest.mark.parametrize("rate", [0.0, 1.0])
def test_root_decision_at_the_extremes(rate: float) -> None:
    tracing = Tracing(TracingSpec(sampling_rate=rate, metrics=False))
    decisions = {tracing._sampled(trace.INVALID_SPAN_CONTEXT) for _ in range(200)}
    assert decisions == {rate == 1.0}


def test_root_decision_in_between_gives_both() -> None:
    tracing = Tracing(TracingSpec(sampling_rate=0.5, metrics=False))
    decisions = [tracing._sampled(trace.INVALID_SPAN_CONTEXT) for _ in range(2000)]
    # Binomial(2000, 0.5): outside 800..1200 has probability far below 1e-15.
    assert 800 < sum(decisions) < 1200


def test_custom_propagator_is_used() -> None:
    class Marker(TextMapPropagator):
        def extract(self, carrier: Any, context: Any = None, getter: Any = None) -> Context:
            return context or Context()

        def inject(self, carrier: Any, context: Any = None, setter: Any = None) -> None:
            assert setter is not None
            setter.set(carrier, "x-marker", "1")

        @property
        def fields(self) -> set[str]:
            return {"x-marker"}

    md: list[tuple[str, str | bytes]] = []
    inject_trace_context(md, _ctx(), Marker())
    assert md == [("x-marker", "1")]


# --- client injection: the direct W3C path writes what the propagator would -----------------------


def _client_metadata(tracing: Tracing, ctx: Context | None = None) -> list[tuple[str, str | bytes]]:
    call = ClientCall("/a.B/C", CallShape.UNARY_UNARY, [("x-other", "1")], None, None, 0.0)
    token = otel_context.attach(ctx) if ctx is not None else None
    try:
        tracing.client_start(call)
    finally:
        if token is not None:
            otel_context.detach(token)
    call.code = grpc.StatusCode.OK
    tracing.client_finish(call)
    span_ctx = call.span.get_span_context()
    expected: list[tuple[str, str | bytes]] = [("x-other", "1")]
    propagator = tracing.spec.propagator or propagate.get_global_textmap()
    propagator.inject(
        expected,
        trace.set_span_in_context(call.span, ctx or Context()),
        GRPC_METADATA_SETTER,
    )
    assert call.metadata == expected
    assert span_ctx.is_valid
    return call.metadata


@pytest.mark.parametrize(
    "propagator",
    [
        W3C,
        CompositePropagator([TraceContextTextMapPropagator(), W3CBaggagePropagator()]),
        CompositePropagator([W3CBaggagePropagator(), TraceContextTextMapPropagator()]),
        W3CBaggagePropagator(),
    ],
    ids=["w3c", "w3c+baggage", "baggage+w3c", "baggage-only"],
)
@pytest.mark.parametrize("rate", [0.0, 1.0])
@pytest.mark.parametrize("with_baggage", [False, True])
def test_client_injection_matches_the_propagator(
    propagator: TextMapPropagator, rate: float, with_baggage: bool
) -> None:
    provider = TracerProvider()
    tracing = Tracing(
        TracingSpec(
            sampling_rate=rate, tracer_provider=provider, propagator=propagator, metrics=False
        )
    )
    ctx = _ctx(sampled=True, state=TraceState([("v", "1")]))
    if with_baggage:
        ctx = baggage.set_baggage("user", "alice", ctx)
    md = _client_metadata(tracing, ctx)
    keys = [k for k, _ in md]
    if not isinstance(propagator, W3CBaggagePropagator):
        assert keys.count("traceparent") == 1
        assert ("tracestate", "v=1") in md
    if with_baggage and propagator is not W3C:
        assert ("baggage", "user=alice") in md
    # Without a caller span: a fresh root.
    _client_metadata(tracing)
    provider.shutdown()


def test_no_op_tracer_sends_no_traceparent() -> None:
    tracing = Tracing(
        TracingSpec(tracer_provider=trace.NoOpTracerProvider(), propagator=W3C, metrics=False)
    )
    call = ClientCall("/a.B/C", CallShape.UNARY_UNARY, [], None, None, 0.0)
    tracing.client_start(call)
    call.code = grpc.StatusCode.OK
    tracing.client_finish(call)
    assert call.metadata == []


# --- metric bookkeeping ---------------------------------------------------------------------------


def _points(reader: InMemoryMetricReader, name: str) -> list[Any]:
    data = reader.get_metrics_data()
    assert data is not None
    return [
        p
        for rm in data.resource_metrics
        for sm in rm.scope_metrics
        for m in sm.metrics
        if m.name == name
        for p in m.data.data_points
    ]


def test_tracings_sharing_a_meter_provider_all_count() -> None:
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    spec = TracingSpec(meter_provider=provider, tracer_provider=TracerProvider(), propagator=W3C)
    first, second = Tracing(spec), Tracing(spec)
    open_calls = []
    for tracing, n in ((first, 3), (second, 2)):
        for _ in range(n):
            call = ClientCall("/a.B/C", CallShape.UNARY_UNARY, [], None, None, 0.0)
            tracing.client_start(call)
            open_calls.append((tracing, call))
    # Five in flight across two policies on one provider: one data point, summed.
    [active] = _points(reader, "rpc.client.active_calls")
    assert active.value == 5
    for tracing, call in open_calls:
        call.code = grpc.StatusCode.OK
        tracing.client_finish(call)
    [active] = _points(reader, "rpc.client.active_calls")
    assert active.value == 0
    [duration] = _points(reader, "rpc.client.duration")
    assert duration.count == 5
    provider.shutdown()


def test_durations_beyond_the_buffer_are_recorded_inline(monkeypatch: pytest.MonkeyPatch) -> None:
    import grpc_channel.interceptors._tracing as tracing_module

    monkeypatch.setattr(tracing_module, "_BUFFER_MAX", 8)
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    tracing = Tracing(TracingSpec(meter_provider=provider, tracer_provider=TracerProvider()))
    n = 13
    for _ in range(n):
        call = ClientCall("/a.B/C", CallShape.UNARY_UNARY, [], None, None, 0.0)
        tracing.client_start(call)
        call.code = grpc.StatusCode.OK
        tracing.client_finish(call)
    # The buffer stops at its bound; the other calls went to the histogram themselves.
    assert tracing._client.count == 8
    assert [len(values) for _, values in tracing._client.pending.values()] == [8]
    [duration] = _points(reader, "rpc.client.duration")
    assert duration.count == n
    assert tracing._client.pending == {} and tracing._client.count == 0
    provider.shutdown()


def test_durations_of_a_dropped_policy_still_reach_the_histogram() -> None:
    import gc

    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    tracing = Tracing(TracingSpec(meter_provider=provider, tracer_provider=TracerProvider()))
    for _ in range(3):
        call = ClientCall("/a.B/C", CallShape.UNARY_UNARY, [], None, None, 0.0)
        tracing.client_start(call)
        call.code = grpc.StatusCode.OK
        tracing.client_finish(call)
    del tracing, call
    gc.collect()
    [duration] = _points(reader, "rpc.client.duration")
    assert duration.count == 3
    provider.shutdown()
