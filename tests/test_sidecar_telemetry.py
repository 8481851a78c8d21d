"""SidecarTelemetry: the proxy's spans (W3C parent, forwarded context), RPC metrics, never raising.

Driven directly, through a tiny proxy-like grpc.aio handler of this file, and through real
``Sidecar`` hops (support_sidecar's mesh) with a sync and an aio caller.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import grpc
import grpc.aio
import pytest
from opentelemetry import trace
from opentelemetry.sdk.metrics.export import HistogramDataPoint
from opentelemetry.trace import SpanKind, StatusCode
from support_harness import UU, Recorder, aio_server
from support_sidecar import APP, FRONT, call_metadata, mesh
from support_tracing import Telemetry

from grpc_channel.sidecar import telemetry as telemetry_module
from grpc_channel.sidecar.telemetry import (
    ACTIVE_CALLS_METRIC,
    CALLS_METRIC,
    DURATION_BUCKETS,
    DURATION_METRIC,
    SidecarTelemetry,
)

CALLER_TRACE = 0x0AF7651916CD43DD8448EB211C80319C
CALLER_SPAN = 0xB7AD6B7169203331
CALLER_PARENT = f"00-{CALLER_TRACE:032x}-{CALLER_SPAN:016x}-01"


@pytest.fixture
def tel() -> Iterator[Telemetry]:
    t = Telemetry()
    try:
        yield t
    finally:
        t.shutdown()


def _observer(tel: Telemetry, app_id: str = "me") -> SidecarTelemetry:
    return SidecarTelemetry(
        app_id, tracer_provider=tel.tracer_provider, meter_provider=tel.meter_provider
    )


def _parse_traceparent(value: object) -> tuple[int, int, str]:
    assert isinstance(value, str)
    version, trace_id, span_id, flags = value.split("-")
    assert version == "00"
    return int(trace_id, 16), int(span_id, 16), flags


class _Clock:
    """A perf_counter stand-in that reads ``now``, which the test moves."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# --- driven directly --------------------------------------------------------------------------


def test_span_has_the_callers_parent_and_the_forwarded_context_is_the_new_span(
    tel: Telemetry,
) -> None:
    observer = _observer(tel)
    incoming = (("traceparent", CALLER_PARENT), ("tracestate", "k=v"), ("x-other", "1"))
    call = observer.begin("/pkg.Svc/Do", "other", False, incoming)
    forwarded = call.forward_metadata((("traceparent", CALLER_PARENT), ("x-keep", "yes")))
    call.end(grpc.StatusCode.OK)

    (span,) = tel.spans()
    assert span.name == "pkg.Svc/Do"
    assert span.kind is SpanKind.SERVER
    assert span.context.trace_id == CALLER_TRACE
    assert span.parent is not None and span.parent.span_id == CALLER_SPAN
    assert span.parent.is_remote
    assert span.status.status_code is StatusCode.UNSET
    attrs = dict(span.attributes or {})
    assert attrs == {
        "grpc_channel.app_id": "me",
        "grpc_channel.target_app_id": "other",
        "grpc_channel.target_local": False,
        "rpc.system": "grpc",
        "rpc.service": "pkg.Svc",
        "rpc.method": "Do",
        "rpc.grpc.status_code": 0,
    }
    # Exactly one traceparent, the new span's; the caller's tracestate travels on it.
    keys = [k for k, _ in forwarded]
    assert keys.count("traceparent") == 1 and ("x-keep", "yes") in forwarded
    values = dict(forwarded)
    assert _parse_traceparent(values["traceparent"]) == (CALLER_TRACE, span.context.span_id, "01")
    assert values["tracestate"] == "k=v"


def test_without_caller_context_the_span_is_a_root_and_its_context_is_forwarded(
    tel: Telemetry,
) -> None:
    call = _observer(tel).begin("/pkg.Svc/Do", "me", True, (("traceparent", "garbage"),))
    forwarded = dict(call.forward_metadata((("traceparent", "garbage"),)))
    call.end(grpc.StatusCode.OK)
    (span,) = tel.spans()
    assert span.parent is None
    assert (span.attributes or {})["grpc_channel.target_local"] is True
    trace_id, span_id, _ = _parse_traceparent(forwarded["traceparent"])
    assert (trace_id, span_id) == (span.context.trace_id, span.context.span_id)


def test_metrics_count_bucket_in_flight_and_error_codes(
    tel: Telemetry, monkeypatch: pytest.MonkeyPatch
) -> None:
    clock = _Clock()
    monkeypatch.setattr(telemetry_module, "_clock", clock)
    observer = _observer(tel)
    ok = observer.begin("/pkg.Svc/Do", "other", False, ())
    failed = observer.begin("/pkg.Svc/Do", "other", False, ())
    assert tel.sum_value(ACTIVE_CALLS_METRIC) == 2
    clock.now += 0.0003  # a 0.3 ms call
    ok.end(grpc.StatusCode.OK)
    ok.end(grpc.StatusCode.OK)  # a second end is a no-op, not a second count
    assert tel.sum_value(ACTIVE_CALLS_METRIC) == 1
    failed.end(grpc.StatusCode.UNAVAILABLE)
    assert tel.sum_value(ACTIVE_CALLS_METRIC) == 0

    assert tel.histogram_counts(DURATION_METRIC) == {0: 1, 14: 1}
    calls = {int(p.attributes["rpc.grpc.status_code"]): p.value for p in tel.points(CALLS_METRIC)}
    assert calls == {0: 1, 14: 1}
    ok_point = next(
        p for p in tel.points(DURATION_METRIC) if p.attributes["rpc.grpc.status_code"] == 0
    )
    assert isinstance(ok_point, HistogramDataPoint)
    assert tuple(ok_point.explicit_bounds) == DURATION_BUCKETS
    landed = [i for i, n in enumerate(ok_point.bucket_counts) if n]
    assert len(landed) == 1
    # Bucket i holds (bounds[i-1], bounds[i]]: 0.3 ms is in (0.25 ms, 0.5 ms], below 1 ms.
    assert ok_point.explicit_bounds[landed[0]] == 0.0005
    assert ok_point.explicit_bounds[landed[0] - 1] == 0.00025
    assert ok_point.attributes is not None
    assert dict(ok_point.attributes) == {
        "grpc_channel.app_id": "me",
        "grpc_channel.target_app_id": "other",
        "rpc.system": "grpc",
        "rpc.service": "pkg.Svc",
        "rpc.method": "Do",
        "rpc.grpc.status_code": 0,
    }
    (error_span,) = [s for s in tel.spans() if (s.attributes or {})["rpc.grpc.status_code"] == 14]
    assert error_span.status.status_code is StatusCode.ERROR
    assert (error_span.attributes or {})["error.type"] == "UNAVAILABLE"


def test_the_observer_never_raises_into_the_proxy(tel: Telemetry) -> None:
    observer = _observer(tel)
    # Bad input in every slot: begin answers a call that records nothing and passes metadata on.
    call = observer.begin(None, "x", False, ())  # type: ignore[arg-type]
    pairs = (("a", "1"),)
    assert call.forward_metadata(pairs) == pairs
    call.end(grpc.StatusCode.OK)
    assert tel.spans() == ()
    # A broken metadata carrier in forward_metadata: the pairs come back unchanged.
    good = observer.begin("/pkg.Svc/Do", "x", False, ())
    broken: Any = 42
    assert good.forward_metadata(broken) is broken
    good.end(grpc.StatusCode.OK)
    assert len(tel.spans()) == 1


def test_bad_app_id_is_refused_with_a_clear_error() -> None:
    with pytest.raises(ValueError, match="app_id must be a non-empty string"):
        SidecarTelemetry("  ")


def test_default_providers_are_the_global_ones_and_work_without_an_sdk() -> None:
    # The API's default global providers are no-op proxies: spans are non-recording, so the
    # caller's trace headers are passed on, and nothing raises.
    call = SidecarTelemetry("me").begin("/p.S/M", "x", False, (("traceparent", CALLER_PARENT),))
    forwarded: dict[str, Any] = dict(call.forward_metadata((("traceparent", CALLER_PARENT),)))
    call.end(grpc.StatusCode.OK)
    assert _parse_traceparent(forwarded["traceparent"])[0] == CALLER_TRACE


# --- through a real grpc.aio proxy-like handler -------------------------------------------------


class _MiniProxy(grpc.GenericRpcHandler):  # type: ignore[type-arg]
    """Forwards unary calls to ``upstream`` with begin / forward_metadata / end around them."""

    def __init__(self, observer: SidecarTelemetry, upstream: str) -> None:
        self._observer = observer
        self._upstream = upstream
        self.channel: Any = None

    def service(self, details: grpc.HandlerCallDetails) -> Any:
        method = details.method

        async def handle(request: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> bytes:
            if self.channel is None:
                self.channel = grpc.aio.insecure_channel(self._upstream)
            call = self._observer.begin(
                method, "app", True, tuple(context.invocation_metadata() or ())
            )
            code = grpc.StatusCode.CANCELLED
            try:
                reply: bytes = await self.channel.unary_unary(method)(
                    request, metadata=call.forward_metadata(())
                )
                code = grpc.StatusCode.OK
                return reply
            except grpc.aio.AioRpcError as err:
                code = err.code()
                await context.abort(code, err.details() or "")
                raise
            finally:
                call.end(code)

        return grpc.unary_unary_rpc_method_handler(handle)


def test_through_an_aio_proxy_the_app_sees_the_proxy_span_as_its_parent(tel: Telemetry) -> None:
    rec = Recorder()

    async def run() -> tuple[bytes, grpc.StatusCode]:
        async with aio_server(rec) as app_port:
            proxy = _MiniProxy(_observer(tel), f"127.0.0.1:{app_port}")
            server = grpc.aio.server()
            server.add_generic_rpc_handlers((proxy,))
            port = server.add_insecure_port("127.0.0.1:0")
            await server.start()
            try:
                channel: Any = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
                async with channel:
                    tracer = tel.tracer_provider.get_tracer("test")
                    with tracer.start_as_current_span("caller") as caller:
                        ctx = caller.get_span_context()
                        parent = f"00-{ctx.trace_id:032x}-{ctx.span_id:016x}-01"
                        md = (("traceparent", parent),)
                        reply = await channel.unary_unary(UU)(b"hello", metadata=md)
                        try:
                            await channel.unary_unary(UU)(b"abort=NOT_FOUND", metadata=md)
                            failed = grpc.StatusCode.OK
                        except grpc.aio.AioRpcError as err:
                            failed = err.code()
            finally:
                await server.stop(None)
                if proxy.channel is not None:
                    await proxy.channel.close()
        return reply, failed

    reply, failed = asyncio.run(run())
    assert reply == b"echo:hello" and failed is grpc.StatusCode.NOT_FOUND
    (caller,) = [s for s in tel.spans() if s.name == "caller"]
    proxied = tel.spans_of_kind(trace.SpanKind.SERVER)
    assert len(proxied) == 2
    for span, seen in zip(proxied, rec.seen, strict=True):
        assert span.context.trace_id == caller.context.trace_id
        assert span.parent is not None and span.parent.span_id == caller.context.span_id
        assert seen.traceparent is not None
        assert _parse_traceparent(seen.traceparent)[:2] == (
            caller.context.trace_id,
            span.context.span_id,
        )
    assert tel.histogram_counts(DURATION_METRIC) == {0: 1, 5: 1}
    assert tel.sum_value(ACTIVE_CALLS_METRIC) == 0


# --- through real Sidecar hops ----------------------------------------------------------------


@pytest.mark.parametrize("aio", [False, True])
def test_two_sidecar_hops_chain_their_spans_under_the_caller(tel: Telemetry, aio: bool) -> None:
    front_obs, app_obs = _observer(tel, FRONT), _observer(tel, APP)
    with mesh(front_kw={"observer": front_obs}, app_kw={"observer": app_obs}) as m:
        port, token = m.two_hops
        md = call_metadata(token, APP, ("traceparent", CALLER_PARENT))
        if aio:

            async def run() -> bytes:
                channel: Any = grpc.aio.insecure_channel(f"127.0.0.1:{port}")
                async with channel:
                    reply: bytes = await channel.unary_unary(UU)(b"hi", metadata=md)
                    return reply

            reply = asyncio.run(run())
        else:
            sync_channel: Any = grpc.insecure_channel(f"127.0.0.1:{port}")
            with sync_channel:
                reply = sync_channel.unary_unary(UU)(b"hi", metadata=md)
        assert reply == b"echo:hi"
        (seen,) = m.rec.seen
    spans = {dict(s.attributes or {})["grpc_channel.app_id"]: s for s in tel.spans()}
    front, app = spans[FRONT], spans[APP]
    assert front.parent is not None and front.parent.span_id == CALLER_SPAN
    assert app.parent is not None and app.parent.span_id == front.context.span_id
    assert {front.context.trace_id, app.context.trace_id} == {CALLER_TRACE}
    assert (front.attributes or {})["grpc_channel.target_local"] is False
    assert (app.attributes or {})["grpc_channel.target_local"] is True
    assert seen.traceparent is not None
    assert _parse_traceparent(seen.traceparent)[:2] == (CALLER_TRACE, app.context.span_id)
    assert tel.sum_value(CALLS_METRIC) == 2
    assert tel.sum_value(ACTIVE_CALLS_METRIC) == 0


def test_a_refused_upstream_call_is_recorded_with_its_code(tel: Telemetry) -> None:
    with mesh(app_kw={"observer": _observer(tel, APP)}) as m:
        port, token = m.one_hop
        channel: Any = grpc.insecure_channel(f"127.0.0.1:{port}")
        with channel, pytest.raises(grpc.RpcError) as info:
            channel.unary_unary(UU)(b"abort=PERMISSION_DENIED", metadata=call_metadata(token))
    assert info.value.code() is grpc.StatusCode.PERMISSION_DENIED
    (span,) = tel.spans()
    assert span.status.status_code is StatusCode.ERROR
    assert tel.histogram_counts(DURATION_METRIC) == {7: 1}
    assert tel.sum_value(ACTIVE_CALLS_METRIC) == 0


@pytest.mark.parametrize("opt_in", ["rpc", "rpc/dup"])
def test_stable_conventions_by_opt_in(
    opt_in: str, tel: Telemetry, monkeypatch: pytest.MonkeyPatch
) -> None:
    """``OTEL_SEMCONV_STABILITY_OPT_IN`` switches the RPC attributes (read when the observer is
    built); the instrument names and buckets stay, and ``rpc/dup`` records each call once."""
    monkeypatch.setenv("OTEL_SEMCONV_STABILITY_OPT_IN", opt_in)
    observer = _observer(tel)
    monkeypatch.delenv("OTEL_SEMCONV_STABILITY_OPT_IN")  # read once: later changes do not apply
    observer.begin("/pkg.Svc/Do", "other", False, ()).end(grpc.StatusCode.OK)
    observer.begin("/pkg.Svc/Do", "other", False, ()).end(grpc.StatusCode.UNAVAILABLE)

    stable = {"rpc.system.name": "grpc", "rpc.method": "pkg.Svc/Do"}
    old = {"rpc.system": "grpc", "rpc.service": "pkg.Svc"} if opt_in == "rpc/dup" else {}
    ids = {"grpc_channel.app_id": "me", "grpc_channel.target_app_id": "other"}
    points = tel.points(DURATION_METRIC)
    assert sum(p.count for p in points) == 2
    by_code = {p.attributes["rpc.response.status_code"]: dict(p.attributes) for p in points}
    old_ok = {"rpc.grpc.status_code": 0} if old else {}
    old_failed = {"rpc.grpc.status_code": 14} if old else {}
    assert by_code["OK"] == {**ids, **old, **stable, **old_ok, "rpc.response.status_code": "OK"}
    assert by_code["UNAVAILABLE"] == {
        **ids,
        **old,
        **stable,
        **old_failed,
        "rpc.response.status_code": "UNAVAILABLE",
        "error.type": "UNAVAILABLE",
    }
    assert {tuple(p.explicit_bounds) for p in points} == {DURATION_BUCKETS}
    calls = {p.attributes["rpc.response.status_code"]: p.value for p in tel.points(CALLS_METRIC)}
    assert calls == {"OK": 1, "UNAVAILABLE": 1}
    spans = {(s.attributes or {})["rpc.response.status_code"]: s for s in tel.spans()}
    assert set(spans) == {"OK", "UNAVAILABLE"}
    ok_attrs = dict(spans["OK"].attributes or {})
    assert ok_attrs["rpc.method"] == "pkg.Svc/Do" and ok_attrs["rpc.system.name"] == "grpc"
    assert ("rpc.grpc.status_code" in ok_attrs) is bool(old)
