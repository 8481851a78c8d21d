"""Tracing's semantic conventions: ``OTEL_SEMCONV_STABILITY_OPT_IN`` picks the old names (default),
the stable ones (``rpc``) or both (``rpc/dup``); duration buckets resolve sub-millisecond calls;
client spans name the server. Real servers, sync and aio."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from typing import Any

import grpc
import pytest
from opentelemetry.sdk.metrics.export import HistogramDataPoint
from opentelemetry.sdk.trace import ReadableSpan
from opentelemetry.trace import SpanKind
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator
from support_harness import SERVICE, UU, Recorder, aio_server, call_aio, call_sync, sync_server
from support_tracing import Telemetry

import grpc_channel.interceptors._tracing as tracing_module
from grpc_channel import dial, with_insecure, with_tracing
from grpc_channel.call_options import CallInfo
from grpc_channel.interceptors import (
    DURATION_BUCKETS,
    SEMCONV_OPT_IN_ENV,
    SemconvMode,
    Tracing,
    TracingSpec,
    compose,
    semconv_mode,
)
from grpc_channel.interceptors._policy import CallShape, ClientCall
from grpc_channel.interceptors._semconv import DURATION_BUCKETS_MS
from grpc_channel.sidecar import telemetry as sidecar_telemetry

W3C = TraceContextTextMapPropagator()
FAIL = b"abort=INVALID_ARGUMENT"  # the caller's fault: ERROR on the client, not on the server
OLD_KEYS = {"rpc.system", "rpc.service", "rpc.grpc.status_code"}
STABLE_KEYS = {"rpc.system.name", "rpc.response.status_code"}


@pytest.fixture
def tel() -> Iterator[Telemetry]:
    t = Telemetry()
    try:
        yield t
    finally:
        t.shutdown()


def _spec(tel: Telemetry) -> TracingSpec:
    return TracingSpec(
        tracer_provider=tel.tracer_provider, meter_provider=tel.meter_provider, propagator=W3C
    )


def _metric(tel: Telemetry, name: str) -> Any | None:
    """The exported metric ``name`` (its unit and points), or None when nothing recorded it."""
    data = tel.reader.get_metrics_data()
    for rm in data.resource_metrics if data else ():
        for sm in rm.scope_metrics:
            for metric in sm.metrics:
                if metric.name == name:
                    return metric
    return None


def _attrs(span: ReadableSpan) -> dict[str, Any]:
    return dict(span.attributes or {})


@pytest.mark.parametrize(
    ("value", "mode"),
    [
        (None, SemconvMode.OLD),
        ("", SemconvMode.OLD),
        ("http,database", SemconvMode.OLD),
        ("rpcx, rpc/dupx", SemconvMode.OLD),
        ("rpc", SemconvMode.STABLE),
        (" http , rpc ", SemconvMode.STABLE),
        ("rpc/dup", SemconvMode.DUP),
        ("rpc,rpc/dup", SemconvMode.DUP),  # rpc/dup wins over rpc
    ],
)
def test_semconv_mode_reads_the_opt_in_list(value: str | None, mode: SemconvMode) -> None:
    environ = {} if value is None else {SEMCONV_OPT_IN_ENV: value}
    assert semconv_mode(environ) is mode
    assert mode.old is (mode is not SemconvMode.STABLE)
    assert mode.stable is (mode is not SemconvMode.OLD)


def test_one_bucket_list_resolves_50us_to_10s() -> None:
    assert DURATION_BUCKETS[0] == 0.00005 and DURATION_BUCKETS[-1] == 10.0
    assert list(DURATION_BUCKETS) == sorted(set(DURATION_BUCKETS))
    assert sum(1 for b in DURATION_BUCKETS if b < 0.001) >= 4  # sub-millisecond resolution
    assert tuple(pytest.approx(b * 1000) for b in DURATION_BUCKETS) == DURATION_BUCKETS_MS
    assert DURATION_BUCKETS_MS[0] == 0.05
    assert sidecar_telemetry.DURATION_BUCKETS is DURATION_BUCKETS  # defined once


def _run(aio: bool, tel: Telemetry) -> int:
    """One OK and one failed unary call through client and server ``Tracing`` (the client built
    with the server's target); returns the server's port."""
    server_tracing = Tracing(_spec(tel))
    recorder = Recorder()
    if not aio:
        with sync_server(recorder, [server_tracing.server_interceptor()]) as port:
            target = f"127.0.0.1:{port}"
            raw = grpc.insecure_channel(target)
            try:
                channel = compose(Tracing(_spec(tel), target=target)).wrap(raw)
                call_sync(channel, "unary_unary", b"x")
                with pytest.raises(grpc.RpcError):
                    call_sync(channel, "unary_unary", FAIL)
            finally:
                raw.close()
        return port

    async def main() -> int:
        async with aio_server(recorder, [server_tracing.aio_server_interceptor()]) as port:
            target = f"127.0.0.1:{port}"
            raw = grpc.aio.insecure_channel(target)
            try:
                channel = compose(Tracing(_spec(tel), target=target)).wrap_aio(raw)
                await call_aio(channel, "unary_unary", b"x")
                with pytest.raises(grpc.RpcError):
                    await call_aio(channel, "unary_unary", FAIL)
            finally:
                await raw.close(None)
        return port

    return asyncio.run(main())


@pytest.mark.parametrize("opt_in", ["", "rpc", "rpc/dup"])
@pytest.mark.parametrize("aio", [False, True])
def test_names_per_mode(
    aio: bool, opt_in: str, tel: Telemetry, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(SEMCONV_OPT_IN_ENV, opt_in)
    mode = semconv_mode()
    port = _run(aio, tel)

    clients = sorted(tel.spans_of_kind(SpanKind.CLIENT), key=lambda s: s.start_time or 0)
    servers = tel.spans_of_kind(SpanKind.SERVER)
    assert len(clients) == 2 and len(servers) == 2
    for span in (*clients, *servers):
        assert span.name == f"{SERVICE}/UU"  # no leading slash
        attrs = _attrs(span)
        assert attrs.keys() >= OLD_KEYS if mode.old else not OLD_KEYS & attrs.keys()
        assert attrs.keys() >= STABLE_KEYS if mode.stable else not STABLE_KEYS & attrs.keys()
        # rpc.method: the stable full method wherever the stable names are on.
        assert attrs["rpc.method"] == (f"{SERVICE}/UU" if mode.stable else "UU")
    ok, failed = (_attrs(s) for s in clients)
    for attrs in (ok, failed):
        assert attrs["server.address"] == "127.0.0.1" and attrs["server.port"] == port
    if mode.old:
        assert (ok["rpc.grpc.status_code"], failed["rpc.grpc.status_code"]) == (0, 3)
    if mode.stable:
        assert ok["rpc.response.status_code"] == "OK"
        assert failed["rpc.response.status_code"] == "INVALID_ARGUMENT"

    for side in ("client", "server"):
        old = _metric(tel, f"rpc.{side}.duration")
        stable = _metric(tel, f"rpc.{side}.call.duration")
        assert (old is not None) is mode.old and (stable is not None) is mode.stable
        if old is not None:
            assert old.unit == "ms"
            points = old.data.data_points
            assert sum(p.count for p in points) == 2
            assert {tuple(p.explicit_bounds) for p in points} == {DURATION_BUCKETS_MS}
            codes = {p.attributes["rpc.grpc.status_code"] for p in points}
            assert codes == {0, 3}
            assert all(p.attributes["rpc.method"] == "UU" for p in points)
            assert all("error.type" not in p.attributes for p in points)
        if stable is not None:
            assert stable.unit == "s"
            points = stable.data.data_points
            assert sum(p.count for p in points) == 2
            assert {tuple(p.explicit_bounds) for p in points} == {DURATION_BUCKETS}
            by_code = {p.attributes["rpc.response.status_code"]: p.attributes for p in points}
            assert set(by_code) == {"OK", "INVALID_ARGUMENT"}
            assert by_code["OK"]["rpc.method"] == f"{SERVICE}/UU"
            assert by_code["OK"]["rpc.system.name"] == "grpc"
            assert not OLD_KEYS & by_code["OK"].keys()
            assert "error.type" not in by_code["OK"]
            # A failed call: error.type on the client; INVALID_ARGUMENT is not the server's fault.
            failed_point = by_code["INVALID_ARGUMENT"]
            assert failed_point.get("error.type") == (
                "INVALID_ARGUMENT" if side == "client" else None
            )


def test_sub_millisecond_durations_land_in_different_buckets(
    tel: Telemetry, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(SEMCONV_OPT_IN_ENV, "rpc/dup")
    monkeypatch.setattr(tracing_module, "_clock", lambda: 1000.0)
    tracing = Tracing(_spec(tel))
    for took in (0.00007, 0.0003, 0.0008):  # 70 µs, 300 µs, 800 µs
        call = ClientCall(UU, CallShape.UNARY_UNARY, [], None, None, 1000.0 - took)
        tracing.client_start(call)
        call.code = grpc.StatusCode.OK
        tracing.client_finish(call)
    for name in ("rpc.client.duration", "rpc.client.call.duration"):
        metric = _metric(tel, name)
        assert metric is not None
        [point] = metric.data.data_points
        assert isinstance(point, HistogramDataPoint)
        # Bucket i holds (bounds[i-1], bounds[i]]: one call in each of three buckets below 1 ms.
        assert [i for i, n in enumerate(point.bucket_counts) if n] == [1, 3, 5]
        assert all(n == 1 for n in point.bucket_counts if n)


def test_client_span_takes_the_target_from_the_call_options(tel: Telemetry) -> None:
    """A policy without ``target=`` names the server from the call's options record (what
    ``dial`` and ``wrap(stub, target=...)`` give), and leaves it out when there is none."""
    tracing = Tracing(_spec(tel))
    for options in (CallInfo(target="[::1]:7001"), None):
        call = ClientCall(UU, CallShape.UNARY_UNARY, [], None, None, 0.0)
        call.options = options
        tracing.client_start(call)
        call.code = grpc.StatusCode.OK
        tracing.client_finish(call)
    with_target, without = (_attrs(s) for s in tel.spans())
    assert (with_target["server.address"], with_target["server.port"]) == ("::1", 7001)
    assert "server.address" not in without and "server.port" not in without


def test_dialled_channel_spans_name_the_server(tel: Telemetry) -> None:
    recorder = Recorder()
    with sync_server(recorder) as port:
        target = f"127.0.0.1:{port}"
        with dial(target, with_insecure(), with_tracing(_spec(tel))) as channel:
            assert channel.invoke(UU, b"x") is not None
    [span] = tel.spans_of_kind(SpanKind.CLIENT)
    assert _attrs(span)["server.address"] == "127.0.0.1"
    assert _attrs(span)["server.port"] == port
    assert span.name == f"{SERVICE}/UU"
