"""Tracing against real servers: spans, propagation, status rules, sampling and metrics; sync and
aio, all four call shapes, as a chain wrapper and as plain grpcio interceptors."""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import json
from collections.abc import AsyncIterator, Iterator
from typing import Any

import grpc
import grpc.aio
import pytest
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanKind, StatusCode
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from support_dapr_app import running_dapr_app
from support_harness import (
    METHODS,
    SERVICE,
    SHAPES,
    UU,
    Recorder,
    aio_server,
    call_aio,
    call_sync,
    expected,
    free_port,
    sync_server,
    wait_until,
)
from support_tracing import Telemetry

from grpc_channel.interceptors._chain import compose
from grpc_channel.interceptors._policy import ClientCall, ClientPolicy
from grpc_channel.interceptors._retry import Retry
from grpc_channel.interceptors._tracing import Tracing, TracingSpec

W3C = TraceContextTextMapPropagator()
FAIL_INVALID = b"abort=INVALID_ARGUMENT"  # the caller's fault
FAIL_RAISE = b"raise"  # the handler raises RuntimeError -> UNKNOWN (the server's fault)
FAIL_INTERNAL = b"abort=INTERNAL"


@pytest.fixture(params=["sdk", "lean"])
def tel(request: pytest.FixtureRequest) -> Iterator[Telemetry]:
    """Every test runs with spans from the SDK tracer and from the lean path."""
    telemetry = Telemetry(lean=request.param == "lean")
    try:
        yield telemetry
    finally:
        telemetry.shutdown()


def _spec(tel: Telemetry, **kw: Any) -> TracingSpec:
    return TracingSpec(
        **tel.span_source(),
        meter_provider=tel.meter_provider,
        propagator=W3C,
        **kw,
    )


@contextlib.contextmanager
def _sync_client(port: int, tracing: Tracing, mode: str) -> Iterator[grpc.Channel]:
    raw = grpc.insecure_channel(f"127.0.0.1:{port}")
    try:
        if mode == "chain":
            yield compose(tracing).wrap(raw)
        else:
            yield grpc.intercept_channel(raw, tracing.client_interceptor())
    finally:
        raw.close()


@contextlib.asynccontextmanager
async def _aio_client(port: int, tracing: Tracing, mode: str) -> AsyncIterator[grpc.aio.Channel]:
    target = f"127.0.0.1:{port}"
    if mode == "chain":
        raw = grpc.aio.insecure_channel(target)
        channel = compose(tracing).wrap_aio(raw)
    else:
        interceptors: Any = tracing.aio_client_interceptors()
        raw = grpc.aio.insecure_channel(target, interceptors=interceptors)
        channel = raw
    try:
        yield channel
    finally:
        await raw.close(None)


def _run(
    aio: bool,
    recorder: Recorder,
    server_tracing: Tracing | None,
    client_tracing: Tracing,
    mode: str,
    calls: list[tuple[str, bytes]],
) -> list[Any]:
    """Start a server (sync or aio) with ``server_tracing``, make ``calls`` through a client with
    ``client_tracing``; returns per call the responses or the ``grpc.RpcError``."""
    results: list[Any] = []

    if not aio:
        interceptors = [server_tracing.server_interceptor()] if server_tracing else []
        with (
            sync_server(recorder, interceptors) as port,
            _sync_client(port, client_tracing, mode) as channel,
        ):
            for shape, payload in calls:
                try:
                    results.append(call_sync(channel, shape, payload))
                except grpc.RpcError as exc:
                    results.append(exc)
        return results

    async def main() -> None:
        interceptors = [server_tracing.aio_server_interceptor()] if server_tracing else []
        async with (
            aio_server(recorder, interceptors) as port,
            _aio_client(port, client_tracing, mode) as channel,
        ):
            for shape, payload in calls:
                try:
                    results.append(await call_aio(channel, shape, payload))
                except grpc.RpcError as exc:
                    results.append(exc)

    asyncio.run(main())
    return results


def _one(spans: list[ReadableSpan]) -> ReadableSpan:
    assert len(spans) == 1, [s.name for s in spans]
    return spans[0]


def _attrs(span: ReadableSpan) -> dict[str, Any]:
    return dict(span.attributes or {})


# --- spans, attributes, one trace -----------------------------------------------------------------


@pytest.mark.parametrize("mode", ["chain", "interceptor"])
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("aio", [False, True])
def test_one_trace_client_to_server(aio: bool, shape: str, mode: str, tel: Telemetry) -> None:
    recorder = Recorder()
    # The target only names the server in span attributes; the call goes to the test server.
    client = Tracing(_spec(tel), target="127.0.0.1:50051")
    server = Tracing(_spec(tel))
    results = _run(aio, recorder, server, client, mode, [(shape, b"hi")])
    assert not isinstance(results[0], grpc.RpcError), results[0]
    assert results[0] == expected(shape, b"hi")

    assert wait_until(lambda: len(tel.spans()) == 2)
    cspan = _one(tel.spans_of_kind(SpanKind.CLIENT))
    sspan = _one(tel.spans_of_kind(SpanKind.SERVER))
    path = METHODS[shape]
    method = path.rsplit("/", 1)[1]

    # One trace; the server span is the child of the client span.
    assert cspan.context is not None and sspan.context is not None
    assert sspan.context.trace_id == cspan.context.trace_id
    assert sspan.parent is not None and sspan.parent.span_id == cspan.context.span_id
    assert sspan.parent.is_remote
    assert cspan.parent is None

    # The handler received the client span's context and ran with the server span current.
    seen = recorder.seen[0]
    assert seen.traceparent is not None
    assert seen.traceparent.startswith(
        f"00-{cspan.context.trace_id:032x}-{cspan.context.span_id:016x}-"
    )
    assert int(seen.traceparent[-2:], 16) & 0x01  # sampled
    assert (seen.current_trace_id, seen.current_span_id) == (
        sspan.context.trace_id,
        sspan.context.span_id,
    )

    for span in (cspan, sspan):
        assert span.name == path[1:]
        attrs = _attrs(span)
        assert attrs["rpc.system"] == "grpc"
        assert attrs["rpc.service"] == SERVICE
        assert attrs["rpc.method"] == method
        assert attrs["rpc.grpc.status_code"] == 0
        assert span.status.status_code is StatusCode.UNSET
        assert "error.type" not in attrs
    assert _attrs(cspan)["server.address"] == "127.0.0.1"
    assert _attrs(cspan)["server.port"] == 50051
    assert _attrs(sspan)["network.peer.address"] == "127.0.0.1"
    assert isinstance(_attrs(sspan)["network.peer.port"], int)


@pytest.mark.parametrize("aio", [False, True])
def test_client_span_is_child_of_the_callers_span(aio: bool, tel: Telemetry) -> None:
    recorder = Recorder()
    client = Tracing(_spec(tel))
    server = Tracing(_spec(tel))
    tracer = tel.tracer_provider.get_tracer("test")
    with tracer.start_as_current_span("outer") as outer:
        _run(aio, recorder, server, client, "chain", [("unary_unary", b"x")])
    assert wait_until(lambda: len(tel.spans()) == 3)
    cspan = _one(tel.spans_of_kind(SpanKind.CLIENT))
    sspan = _one(tel.spans_of_kind(SpanKind.SERVER))
    outer_ctx = outer.get_span_context()
    assert cspan.parent is not None and cspan.parent.span_id == outer_ctx.span_id
    assert cspan.context is not None and sspan.context is not None
    assert cspan.context.trace_id == outer_ctx.trace_id == sspan.context.trace_id


# --- status rules ---------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("aio", [False, True])
@pytest.mark.parametrize(
    ("payload", "code", "server_error"),
    [
        (FAIL_INVALID, grpc.StatusCode.INVALID_ARGUMENT, False),
        (FAIL_RAISE, grpc.StatusCode.UNKNOWN, True),
        (FAIL_INTERNAL, grpc.StatusCode.INTERNAL, True),
    ],
)
def test_error_status(
    aio: bool,
    shape: str,
    payload: bytes,
    code: grpc.StatusCode,
    server_error: bool,
    tel: Telemetry,
) -> None:
    recorder = Recorder()
    results = _run(
        aio, recorder, Tracing(_spec(tel)), Tracing(_spec(tel)), "chain", [(shape, payload)]
    )
    assert isinstance(results[0], grpc.RpcError)
    assert results[0].code() is code

    assert wait_until(lambda: len(tel.spans()) == 2)
    cspan = _one(tel.spans_of_kind(SpanKind.CLIENT))
    sspan = _one(tel.spans_of_kind(SpanKind.SERVER))
    # Client spans: every non-OK code is an error.
    assert cspan.status.status_code is StatusCode.ERROR
    assert cspan.status.description is not None and code.name in cspan.status.description
    assert _attrs(cspan)["rpc.grpc.status_code"] == code.value[0]
    assert _attrs(cspan)["error.type"] == code.name
    # Server spans: only the server-fault codes.
    assert _attrs(sspan)["rpc.grpc.status_code"] == code.value[0]
    if server_error:
        assert sspan.status.status_code is StatusCode.ERROR
        assert "error.type" in _attrs(sspan)
    else:
        assert sspan.status.status_code is StatusCode.UNSET
        assert "error.type" not in _attrs(sspan)
    exception_events = [e for e in sspan.events if e.name == "exception"]
    if payload == FAIL_RAISE:
        assert _attrs(sspan)["error.type"] == "RuntimeError"
        assert len(exception_events) == 1
        assert dict(exception_events[0].attributes or {})["exception.type"] == "RuntimeError"
    else:
        assert exception_events == []


@pytest.mark.parametrize("aio", [False, True])
def test_unreachable_server_is_a_client_error(aio: bool, tel: Telemetry) -> None:
    client = Tracing(_spec(tel))
    port = free_port()  # nobody listens there

    if aio:

        async def main() -> grpc.StatusCode:
            async with _aio_client(port, client, "chain") as channel:
                try:
                    await channel.unary_unary(UU, None, None)(b"x", timeout=5)
                except grpc.RpcError as exc:
                    return exc.code()
            raise AssertionError("call should fail")

        code = asyncio.run(main())
    else:
        with _sync_client(port, client, "chain") as channel:
            with pytest.raises(grpc.RpcError) as info:
                channel.unary_unary(UU, None, None)(b"x", timeout=5)
            code = info.value.code()
    assert code is grpc.StatusCode.UNAVAILABLE
    cspan = _one(tel.spans_of_kind(SpanKind.CLIENT))
    assert cspan.status.status_code is StatusCode.ERROR
    assert _attrs(cspan)["rpc.grpc.status_code"] == grpc.StatusCode.UNAVAILABLE.value[0]


# --- sampling -------------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", ["unary_unary", "stream_stream"])
@pytest.mark.parametrize("aio", [False, True])
def test_rate_zero_records_nothing_and_still_propagates(
    aio: bool, shape: str, tel: Telemetry
) -> None:
    recorder = Recorder()
    client = Tracing(_spec(tel, sampling_rate=0.0))
    # The server samples everything at the root, but follows an unsampled parent.
    server = Tracing(_spec(tel, sampling_rate=1.0))
    results = _run(aio, recorder, server, client, "chain", [(shape, b"a"), (shape, b"b")])
    assert all(not isinstance(r, grpc.RpcError) for r in results)
    assert wait_until(
        lambda: tel.sum_value("rpc.server.active_calls") == 0 and len(recorder.seen) == 2
    )
    assert wait_until(lambda: sum(tel.histogram_counts("rpc.server.duration").values()) == 2)
    assert tel.spans() == ()

    trace_ids = set()
    for seen in recorder.seen:
        assert seen.traceparent is not None
        version, trace_hex, span_hex, flags = seen.traceparent.split("-")
        assert version == "00"
        assert not int(flags, 16) & 0x01  # not sampled
        assert int(trace_hex, 16) != 0 and int(span_hex, 16) != 0
        # The handler's current span continues the caller's trace, unsampled.
        assert seen.current_trace_id == int(trace_hex, 16)
        trace_ids.add(trace_hex)
    # Two root calls, two traces.
    assert len(trace_ids) == 2
    # Metrics do not depend on sampling.
    assert tel.histogram_counts("rpc.client.duration") == {0: 2}


@pytest.mark.parametrize("aio", [False, True])
def test_rate_zero_keeps_a_sampled_parent(aio: bool, tel: Telemetry) -> None:
    recorder = Recorder()
    client = Tracing(_spec(tel, sampling_rate=0.0))
    server = Tracing(_spec(tel, sampling_rate=0.0))
    tracer = tel.tracer_provider.get_tracer("test")
    with tracer.start_as_current_span("outer"):
        _run(aio, recorder, server, client, "chain", [("unary_unary", b"x")])
    # ParentBased: the sampled parent wins over the ratio on both sides.
    assert wait_until(lambda: len(tel.spans()) == 3)
    assert len(tel.spans_of_kind(SpanKind.CLIENT)) == 1
    assert len(tel.spans_of_kind(SpanKind.SERVER)) == 1


# --- metrics --------------------------------------------------------------------------------------


@pytest.mark.parametrize("aio", [False, True])
def test_metrics_durations_and_in_flight(aio: bool, tel: Telemetry) -> None:
    recorder = Recorder()
    calls = [("unary_unary", b"ok")] * 3 + [("unary_stream", b"ok"), ("unary_unary", FAIL_INVALID)]
    _run(aio, recorder, Tracing(_spec(tel)), Tracing(_spec(tel)), "chain", calls)
    assert wait_until(lambda: sum(tel.histogram_counts("rpc.server.duration").values()) == 5)
    assert tel.histogram_counts("rpc.client.duration") == {0: 4, 3: 1}
    assert tel.histogram_counts("rpc.server.duration") == {0: 4, 3: 1}
    # Every call that started also ended.
    assert tel.sum_value("rpc.client.active_calls") == 0
    assert tel.sum_value("rpc.server.active_calls") == 0
    methods = {
        (p.attributes["rpc.method"], p.attributes["rpc.grpc.status_code"])
        for p in tel.points("rpc.client.duration")
    }
    assert methods == {("UU", 0), ("US", 0), ("UU", 3)}
    for point in tel.points("rpc.client.duration"):
        assert point.attributes["rpc.system"] == "grpc"
        assert point.attributes["rpc.service"] == SERVICE
        assert point.min >= 0


def test_metrics_off_records_no_metrics(tel: Telemetry) -> None:
    recorder = Recorder()
    spec = _spec(tel, metrics=False)
    _run(False, recorder, Tracing(spec), Tracing(spec), "chain", [("unary_unary", b"x")])
    assert wait_until(lambda: len(tel.spans()) == 2)
    assert tel.points("rpc.client.duration") == []
    assert tel.points("rpc.server.active_calls") == []


# --- spec options ---------------------------------------------------------------------------------


@pytest.mark.parametrize("aio", [False, True])
def test_span_name_format_and_extra_attributes(aio: bool, tel: Telemetry) -> None:
    recorder = Recorder()
    spec = _spec(tel, span_name="rpc {service}.{method}", attributes={"app.id": "orders"})
    _run(aio, recorder, Tracing(spec), Tracing(spec), "chain", [("unary_unary", b"x")])
    assert wait_until(lambda: len(tel.spans()) == 2)
    for span in tel.spans():
        assert span.name == f"rpc {SERVICE}.UU"
        assert _attrs(span)["app.id"] == "orders"


@pytest.mark.parametrize("aio", [False, True])
def test_excluded_methods_are_left_alone(aio: bool, tel: Telemetry) -> None:
    recorder = Recorder()
    spec = _spec(tel, exclude_methods=frozenset({UU}))
    _run(
        aio,
        recorder,
        Tracing(spec),
        Tracing(spec),
        "chain",
        [("unary_unary", b"x"), ("unary_stream", b"y")],
    )
    assert wait_until(lambda: len(tel.spans()) == 2)
    assert {s.name for s in tel.spans()} == {f"{SERVICE}/US"}
    unary_seen = [s for s in recorder.seen if s.method == UU]
    assert unary_seen[0].traceparent is None
    assert unary_seen[0].current_trace_id == 0
    assert tel.histogram_counts("rpc.client.duration") == {0: 1}


@pytest.mark.parametrize("aio", [False, True])
def test_metadata_values_are_never_attributes(aio: bool, tel: Telemetry) -> None:
    secret = "s3cr3t-token-value"

    class AddToken(ClientPolicy):
        """A client policy that adds a token header, composed inside Tracing."""

        def client_start(self, call: ClientCall) -> None:
            call.metadata.append(("dapr-api-token", secret))

    recorder = Recorder()
    client = Tracing(_spec(tel))
    server = Tracing(_spec(tel))
    chain = compose(client, AddToken())
    if aio:

        async def main() -> None:
            interceptors = [server.aio_server_interceptor()]
            async with aio_server(recorder, interceptors) as port:
                raw = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
                try:
                    channel = chain.wrap_aio(raw)
                    await channel.unary_unary(UU, None, None)(b"x", timeout=10)
                    with contextlib.suppress(grpc.RpcError):
                        await channel.unary_unary(UU, None, None)(FAIL_RAISE, timeout=10)
                finally:
                    await raw.close(None)

        asyncio.run(main())
    else:
        with sync_server(recorder, [server.server_interceptor()]) as port:
            raw = grpc.insecure_channel(f"127.0.0.1:{port}")
            try:
                channel = chain.wrap(raw)
                channel.unary_unary(UU, None, None)(b"x", timeout=10)
                with contextlib.suppress(grpc.RpcError):
                    channel.unary_unary(UU, None, None)(FAIL_RAISE, timeout=10)
            finally:
                raw.close()
    assert wait_until(lambda: len(tel.spans()) == 4)
    for span in tel.spans():
        text = repr(span.to_json())
        assert secret not in text
    # The token did reach the server: the policy ran inside the traced call.
    assert [("dapr-api-token" in s.metadata_keys) for s in recorder.seen] == [True, True]


# --- the server span is current in the handler, and only there ------------------------------------

RELAY = "/test.v1.Relay/Call"


@pytest.mark.parametrize("aio", [False, True])
def test_calls_from_a_handler_continue_the_trace(aio: bool, tel: Telemetry) -> None:
    """client -> relay server (traced) -> its handler calls the echo server (traced): one trace,
    each span the child of the one before."""
    recorder = Recorder()
    edge = Tracing(_spec(tel))

    if aio:

        async def main() -> None:
            async with aio_server(recorder, [Tracing(_spec(tel)).aio_server_interceptor()]) as echo:
                inner_raw = grpc.aio.insecure_channel(f"127.0.0.1:{echo}")
                inner = compose(Tracing(_spec(tel))).wrap_aio(inner_raw)

                async def relay(request: bytes, context: Any) -> bytes:
                    return await inner.unary_unary(UU, None, None)(request, timeout=10)  # type: ignore[no-any-return]

                handler = grpc.method_handlers_generic_handler(
                    "test.v1.Relay", {"Call": grpc.unary_unary_rpc_method_handler(relay)}
                )
                interceptors = [Tracing(_spec(tel)).aio_server_interceptor()]
                try:
                    async with (
                        aio_server(recorder, interceptors, handler=handler) as port,
                        _aio_client(port, edge, "chain") as channel,
                    ):
                        reply = await channel.unary_unary(RELAY, None, None)(b"r", timeout=10)
                        assert reply == b"echo:r"
                finally:
                    await inner_raw.close(None)

        asyncio.run(main())
    else:
        with sync_server(recorder, [Tracing(_spec(tel)).server_interceptor()]) as echo:
            inner_raw = grpc.insecure_channel(f"127.0.0.1:{echo}")
            inner = compose(Tracing(_spec(tel))).wrap(inner_raw)

            def relay(request: bytes, context: Any) -> bytes:
                return inner.unary_unary(UU, None, None)(request, timeout=10)  # type: ignore[no-any-return]

            handler = grpc.method_handlers_generic_handler(
                "test.v1.Relay", {"Call": grpc.unary_unary_rpc_method_handler(relay)}
            )
            try:
                with (
                    sync_server(
                        recorder, [Tracing(_spec(tel)).server_interceptor()], handler=handler
                    ) as port,
                    _sync_client(port, edge, "chain") as channel,
                ):
                    assert channel.unary_unary(RELAY, None, None)(b"r", timeout=10) == b"echo:r"
            finally:
                inner_raw.close()

    assert wait_until(lambda: len(tel.spans()) == 4)
    by_name = {(s.kind, s.name): s for s in tel.spans()}
    chain = [
        by_name[(SpanKind.CLIENT, "test.v1.Relay/Call")],
        by_name[(SpanKind.SERVER, "test.v1.Relay/Call")],
        by_name[(SpanKind.CLIENT, UU[1:])],
        by_name[(SpanKind.SERVER, UU[1:])],
    ]
    assert len({s.context.trace_id for s in chain if s.context}) == 1
    for parent, child in itertools.pairwise(chain):
        assert parent.context is not None and child.parent is not None
        assert child.parent.span_id == parent.context.span_id


@pytest.mark.parametrize("aio", [False, True])
def test_server_span_does_not_leak_into_the_next_call(aio: bool, tel: Telemetry) -> None:
    """Sync: one worker thread runs every call, so a span left current by a traced call would be
    seen by the next handler. aio: the same with calls on one event loop. (grpcio 1.85 also gives
    every sync RPC a fresh contextvars context; the chain does so for older versions too.)"""
    recorder = Recorder()
    # The streaming method is not traced, so whatever span is current in its handler could only
    # be a leftover of an earlier call.
    stream = METHODS["unary_stream"]
    server = Tracing(_spec(tel, exclude_methods=frozenset({stream})))
    payloads = (b"a", FAIL_RAISE, FAIL_INVALID, b"b")
    if aio:

        async def main() -> None:
            async with (
                aio_server(recorder, [server.aio_server_interceptor()]) as port,
                grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel,
            ):
                for payload in payloads:
                    with contextlib.suppress(grpc.RpcError):
                        await channel.unary_unary(UU, None, None)(payload, timeout=10)
                    async for _ in channel.unary_stream(stream, None, None)(b"s", timeout=10):
                        pass

        asyncio.run(main())
    else:
        with (
            sync_server(recorder, [server.server_interceptor()], workers=1) as port,
            grpc.insecure_channel(f"127.0.0.1:{port}") as channel,
        ):
            for payload in payloads:
                with contextlib.suppress(grpc.RpcError):
                    channel.unary_unary(UU, None, None)(payload, timeout=10)
                list(channel.unary_stream(stream, None, None)(b"s", timeout=10))
    traced = [s for s in recorder.seen if s.method == UU]
    untraced = [s for s in recorder.seen if s.method != UU]
    assert len(traced) == len(untraced) == len(payloads)
    assert all(s.current_trace_id != 0 for s in traced)
    assert [s.current_trace_id for s in untraced] == [0] * len(payloads)


# --- one trace id reaches a dapr SDK App handler --------------------------------------------------


@pytest.mark.parametrize("aio", [False, True])
def test_trace_reaches_a_dapr_app_handler(aio: bool, tel: Telemetry) -> None:
    from dapr.proto.common.v1 import common_pb2

    # The dapr SDK App's "metadata" method answers the invocation metadata it received.
    request = common_pb2.InvokeRequest(method="metadata").SerializeToString()
    on_invoke = "/dapr.proto.runtime.v1.AppCallback/OnInvoke"
    client = Tracing(_spec(tel))
    with running_dapr_app() as app:
        if aio:

            async def main() -> bytes:
                async with _aio_client(app.port, client, "chain") as channel:
                    reply: bytes = await channel.unary_unary(on_invoke, None, None)(
                        request, timeout=10
                    )
                    return reply

            reply = asyncio.run(main())
        else:
            with _sync_client(app.port, client, "chain") as channel:
                reply = channel.unary_unary(on_invoke, None, None)(request, timeout=10)
    seen = json.loads(common_pb2.InvokeResponse.FromString(reply).data.value)
    cspan = _one(tel.spans_of_kind(SpanKind.CLIENT))
    assert cspan.context is not None
    assert cspan.name == "dapr.proto.runtime.v1.AppCallback/OnInvoke"
    assert len(seen["traceparent"]) == 1
    _, trace_hex, span_hex, flags = seen["traceparent"][0].split("-")
    assert int(trace_hex, 16) == cspan.context.trace_id
    assert int(span_hex, 16) == cspan.context.span_id
    assert int(flags, 16) & 0x01  # sampled


# --- in-flight counts while calls are running -----------------------------------------------------


def test_in_flight_counts_while_handlers_block(tel: Telemetry) -> None:
    n = 4
    recorder = Recorder()  # "hold" calls wait in the handler until recorder.gate is set
    client = Tracing(_spec(tel))
    server = Tracing(_spec(tel))
    with (
        sync_server(recorder, [server.server_interceptor()], workers=n) as port,
        _sync_client(port, client, "chain") as channel,
    ):
        method = channel.unary_unary(UU, None, None)
        try:
            futures = [method.future(b"hold", timeout=10) for _ in range(n)]
            assert wait_until(lambda: recorder.handled == n)
            assert tel.sum_value("rpc.client.active_calls") == n
            assert tel.sum_value("rpc.server.active_calls") == n
        finally:
            recorder.gate.set()
        assert [f.result() for f in futures] == [b"echo:hold"] * n
    assert wait_until(lambda: sum(tel.histogram_counts("rpc.server.duration").values()) == n)
    assert tel.sum_value("rpc.client.active_calls") == 0
    assert tel.sum_value("rpc.server.active_calls") == 0
    assert tel.histogram_counts("rpc.client.duration") == {0: n}


# --- with retries ---------------------------------------------------------------------------------


@pytest.mark.parametrize("tracing_outside", [True, False])
def test_retries_under_one_client_span_or_one_each(tracing_outside: bool, tel: Telemetry) -> None:
    """Outside Retry: one client span, every attempt's server span its child. Inside: one client
    span per attempt, each the parent of its server span, all in one trace (a caller span)."""
    flaky = b"fail_first=2:UNAVAILABLE;id=flaky"  # two UNAVAILABLE attempts, then OK
    client = Tracing(_spec(tel))
    retry = Retry(3, base_delay=0.001, jitter=0.0)
    chain = compose(client, retry) if tracing_outside else compose(retry, client)
    tracer = tel.tracer_provider.get_tracer("test")
    with (
        sync_server(Recorder(), [Tracing(_spec(tel)).server_interceptor()]) as port,
        grpc.insecure_channel(f"127.0.0.1:{port}") as raw,
        tracer.start_as_current_span("caller") as caller,
    ):
        assert chain.wrap(raw).unary_unary(UU, None, None)(flaky) == b"echo:" + flaky
    expected_clients = 1 if tracing_outside else 3
    assert wait_until(lambda: len(tel.spans()) == 1 + expected_clients + 3)
    clients = tel.spans_of_kind(SpanKind.CLIENT)
    servers = tel.spans_of_kind(SpanKind.SERVER)
    assert len(clients) == expected_clients and len(servers) == 3
    trace_id = caller.get_span_context().trace_id
    assert {s.context.trace_id for s in clients + servers if s.context} == {trace_id}
    client_ids = {s.context.span_id for s in clients if s.context}
    assert {s.parent.span_id for s in servers if s.parent} <= client_ids
    codes = sorted(_attrs(s)["rpc.grpc.status_code"] for s in servers)
    assert codes == [0, 14, 14]
    if not tracing_outside:
        # One failed and retried attempt is an ERROR client span; the last one is OK.
        assert sorted(s.status.status_code.name for s in clients) == ["ERROR", "ERROR", "UNSET"]
        assert {s.parent.span_id for s in servers if s.parent} == client_ids


# --- what a server makes of incoming headers ------------------------------------------------------


@pytest.mark.parametrize(
    ("headers", "continues"),
    [
        ((("traceparent", f"00-{7:032x}-{9:016x}-01"), ("tracestate", "vendor=abc")), True),
        ((("traceparent", "00-not-a-trace-01"),), False),
        ((), False),
    ],
    ids=["valid", "malformed", "absent"],
)
def test_server_continues_a_valid_incoming_trace_only(
    headers: tuple[tuple[str, str], ...], continues: bool, tel: Telemetry
) -> None:
    recorder = Recorder()
    with (
        sync_server(recorder, [Tracing(_spec(tel)).server_interceptor()]) as port,
        grpc.insecure_channel(f"127.0.0.1:{port}") as channel,
    ):
        channel.unary_unary(UU, None, None)(b"x", metadata=headers, timeout=10)
    assert wait_until(lambda: len(tel.spans()) == 1)
    sspan = _one(tel.spans_of_kind(SpanKind.SERVER))
    assert sspan.context is not None
    if continues:
        assert sspan.context.trace_id == 7
        assert sspan.parent is not None and sspan.parent.span_id == 9
        assert sspan.context.trace_state.get("vendor") == "abc"
    else:
        assert sspan.parent is None
        assert sspan.context.trace_id != 0
    assert recorder.seen[0].current_span_id == sspan.context.span_id
