"""The sidecar process's configuration: the ``--unary-method`` flag (parsed, refused with the flag
named when it is not a full method path, handed to the proxy it builds) and the span exporter
chosen by ``OTEL_TRACES_EXPORTER``."""

from __future__ import annotations

import asyncio

import grpc
import grpc.aio
import pytest
from support_harness import async_wait_until

from grpc_channel.appcallback import ON_INVOKE
from grpc_channel.demo import DemoServer
from grpc_channel.sidecar import KNOWN_UNARY_METHODS
from grpc_channel.sidecar.serve import (
    TRACES_EXPORTER_ENV,
    SidecarServeError,
    _build_sidecar,
    parse_args,
    serve,
    traces_provider,
)
from grpc_channel.sidecar.tokens import SidecarTokens
from grpc_channel.v1 import common_pb2

BASE = ["--app-id", "orders", "--app-port", "50051"]


def test_unary_methods_are_repeatable_and_reach_the_proxy() -> None:
    config = parse_args([*BASE, "--unary-method", "/a.B/C", "--unary-method", "/a.B/D"])
    assert config.unary_methods == ("/a.B/C", "/a.B/D")
    sidecar, meter_provider, _registry = _build_sidecar(config, SidecarTokens(None, None, None))
    try:
        assert sidecar.unary_methods == KNOWN_UNARY_METHODS | {"/a.B/C", "/a.B/D"}
    finally:
        meter_provider.shutdown()


def test_no_flag_means_only_the_known_methods() -> None:
    config = parse_args(BASE)
    assert config.unary_methods == ()
    sidecar, meter_provider, _registry = _build_sidecar(config, SidecarTokens(None, None, None))
    try:
        assert sidecar.unary_methods == KNOWN_UNARY_METHODS
    finally:
        meter_provider.shutdown()


@pytest.mark.parametrize("bad", ["a.B/C", "/a.B", "/a.B/C/"])
def test_a_bad_method_path_exits_2_naming_the_flag(
    bad: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        parse_args([*BASE, "--unary-method", bad])
    assert exited.value.code == 2
    err = capsys.readouterr().err
    assert "--unary-method" in err and "/pkg.Service/Method" in err


# -- spans: OTEL_TRACES_EXPORTER ---------------------------------------------------------------


@pytest.mark.parametrize("value", [None, "", "none", " NONE "])
def test_no_traces_exporter_means_no_provider(value: str | None) -> None:
    environ = {} if value is None else {TRACES_EXPORTER_ENV: value}
    assert traces_provider("orders", environ) is None


@pytest.mark.parametrize("value", ["zipkin", "jaeger,console"])
def test_an_unknown_traces_exporter_is_refused_naming_the_variable(value: str) -> None:
    with pytest.raises(SidecarServeError) as refused:
        traces_provider("orders", {TRACES_EXPORTER_ENV: value})
    assert refused.value.flag == TRACES_EXPORTER_ENV
    assert "none, console or otlp" in str(refused.value)


def test_console_spans_of_proxied_calls_go_to_stderr(
    monkeypatch: pytest.MonkeyPatch, capfd: pytest.CaptureFixture[str]
) -> None:
    """The process's real wiring (serve()) with OTEL_TRACES_EXPORTER=console: a call proxied to
    the app leaves its span, named for the method and with the app id, on stderr by the time the
    sidecar has stopped (the batch is flushed on stop); stdout holds only the ready record."""
    monkeypatch.setenv(TRACES_EXPORTER_ENV, "console")
    for name in ("DAPR_API_TOKEN", "APP_API_TOKEN"):
        monkeypatch.delenv(name, raising=False)

    async def scenario(app_port: int) -> None:
        config = parse_args(
            ["--app-id", "orders", "--app-port", str(app_port), "--port", "0", "--http-port", "0"]
        )
        stop = asyncio.Event()
        ready: list[dict[str, object]] = []
        serving = asyncio.create_task(serve(config, stop, announce=ready.append))
        try:
            assert await async_wait_until(lambda: bool(ready) or serving.done(), timeout=20)
            assert ready, serving.exception() if serving.done() else "no ready record"
            port = ready[0]["grpc_port"]
            async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
                request = common_pb2.InvokeRequest(method="echo").SerializeToString()
                reply = await channel.unary_unary(ON_INVOKE)(
                    request, metadata=(("dapr-app-id", "orders"),), timeout=10
                )
            assert common_pb2.InvokeResponse.FromString(reply) is not None
        finally:
            stop.set()
            await asyncio.wait_for(serving, 30)

    with DemoServer() as app:
        asyncio.run(scenario(app.port))
    err = capfd.readouterr().err
    assert ON_INVOKE.lstrip("/") in err or ON_INVOKE in err
    assert '"service.name": "orders"' in err
