"""The sidecar process's configuration: flags that no longer exist are refused, and the span
exporter is chosen by ``OTEL_TRACES_EXPORTER``."""

from __future__ import annotations

import asyncio
import pathlib
from concurrent import futures

import grpc
import grpc.aio
import pytest
from support_harness import async_wait_until

from grpc_channel.appcallback import (
    APP_CALLBACK_HEALTH_CHECK_SERVICE,
    APP_CALLBACK_SERVICE,
    ON_INVOKE,
)
from grpc_channel.demo import DemoServer
from grpc_channel.sidecar.serve import (
    TRACES_EXPORTER_ENV,
    SidecarServeError,
    parse_args,
    serve,
    traces_provider,
)
from grpc_channel.v1 import common_pb2

BASE = ["--app-id", "orders", "--app-port", "50051"]


def test_the_unary_method_flag_is_gone_every_method_is_proxied_alike(
    capsys: pytest.CaptureFixture[str],
) -> None:
    # The frame proxy serves every call shape on one path: there is nothing to declare, and an
    # old command line says so instead of being accepted and ignored.
    with pytest.raises(SystemExit) as exited:
        parse_args([*BASE, "--unary-method", "/a.B/C"])
    assert exited.value.code == 2
    assert "--unary-method" in capsys.readouterr().err


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


# -- the app health probe interval --------------------------------------------------------------


@pytest.mark.parametrize("bad", ["0", "-1", "nan", "soon"])
def test_a_bad_health_probe_interval_exits_2_naming_the_flag(
    bad: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exited:
        parse_args([*BASE, "--app-health-probe-interval", bad])
    assert exited.value.code == 2
    assert "--app-health-probe-interval" in capsys.readouterr().err


def test_the_health_probe_interval_paces_the_probes_of_the_app(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """serve() with a pub/sub component and --app-health-probe-interval 0.2: the app is probed
    about five times a second (the default, 5 s, once in five seconds)."""
    for name in ("DAPR_API_TOKEN", "APP_API_TOKEN", TRACES_EXPORTER_ENV):
        monkeypatch.delenv(name, raising=False)
    probes: list[float] = []  # one entry per probe

    def health(request: bytes, context: grpc.ServicerContext) -> bytes:
        probes.append(1.0)
        return b""

    def subscriptions(request: bytes, context: grpc.ServicerContext) -> bytes:
        return b""  # no subscriptions: an empty ListTopicSubscriptionsResponse

    app = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    app.add_generic_rpc_handlers(
        (
            grpc.method_handlers_generic_handler(
                APP_CALLBACK_HEALTH_CHECK_SERVICE,
                {"HealthCheck": grpc.unary_unary_rpc_method_handler(health)},
            ),
            grpc.method_handlers_generic_handler(
                APP_CALLBACK_SERVICE,
                {"ListTopicSubscriptions": grpc.unary_unary_rpc_method_handler(subscriptions)},
            ),
        )
    )
    app_port = app.add_insecure_port("127.0.0.1:0")
    app.start()
    components = tmp_path / "pubsub.yaml"
    components.write_text(
        "apiVersion: dapr.io/v1alpha1\nkind: Component\n"
        "metadata: {name: pubsub}\nspec: {type: pubsub.in-memory, version: v1}\n"
    )
    argv = ["--app-id", "orders", "--app-port", str(app_port), "--port", "0", "--http-port", "0"]
    config = parse_args(
        [*argv, "--components", str(components), "--app-health-probe-interval", "0.2"]
    )
    assert config.app_health_probe_interval == 0.2

    async def scenario() -> None:
        stop = asyncio.Event()
        serving = asyncio.create_task(serve(config, stop, announce=lambda record: None))
        try:
            # Ten probes come in about 2 s; at the 5 s default, 20 s would not see them.
            assert await async_wait_until(lambda: len(probes) >= 10 or serving.done(), timeout=20)
            assert not serving.done(), serving.exception()
        finally:
            stop.set()
            await asyncio.wait_for(serving, 30)

    try:
        asyncio.run(scenario())
    finally:
        app.stop(None).wait(10)
    assert len(probes) >= 10
