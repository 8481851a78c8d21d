"""The sidecar as real processes (``python -m grpc_channel.sidecar``), in front of real apps in
their own processes: the dapr SDK's ``App`` (support_dapr_app) and the scripted servicer
(support_sidecar.app_process).

The module's mesh, every process on 127.0.0.1::

    caller -> sidecar "dapr" (A) --peers--> sidecar "svc" (B) -> scripted app
    caller -> sidecar "svc"  (B) --peers--> sidecar "dapr" (A) -> dapr SDK App

Both sidecars share the cluster token (``DAPR_API_TOKEN``, demanded from callers and presented to
peers) and present ``APP_API_TOKEN`` to their app; one peers file names both.
"""

from __future__ import annotations

import asyncio
import json
import signal
import socket
import subprocess
import sys
import threading
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import grpc
import grpc.aio
import pytest
from grpc_status import rpc_status
from support_dapr_app import DaprApp, running_dapr_app
from support_harness import (
    SHAPES,
    UU,
    bad_request_detail,
    call_sync,
    expected,
    free_port,
    wait_until,
)
from support_sidecar import app_process
from support_sidecar_process import (
    RecordingApp,
    SidecarProcess,
    recording_app,
    sidecar_process,
    write_peers,
)

from grpc_channel.appcallback import ON_INVOKE
from grpc_channel.pubsub import envelope_for_publish
from grpc_channel.pubsub.brokers import load_component_file
from grpc_channel.sidecar import serve
from grpc_channel.v1 import common_pb2

CLUSTER = "cluster-secret"
APP_SECRET = "app-secret"
TOKENS = {"DAPR_API_TOKEN": CLUSTER, "APP_API_TOKEN": APP_SECRET}


@dataclass
class ProcessMesh:
    dapr_app: DaprApp
    a: SidecarProcess  # app id "dapr", in front of the dapr SDK App
    b: SidecarProcess  # app id "svc", in front of the scripted app
    script_port: int


def _args(app_id: str, app_port: int, port: int, peers: Any, *extra: str) -> list[str]:
    return [
        "--app-id", app_id, "--app-port", str(app_port), "--port", str(port),
        "--http-port", "0", "--peers", str(peers), "--drain-timeout", "10", *extra,
    ]  # fmt: skip


@pytest.fixture(scope="module")
def mesh(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ProcessMesh]:
    peers_path = tmp_path_factory.mktemp("peers") / "peers.json"
    port_a, port_b = free_port(), free_port()
    write_peers(peers_path, {"dapr": f"127.0.0.1:{port_a}", "svc": f"127.0.0.1:{port_b}"})
    with (
        running_dapr_app() as dapr_app,
        app_process() as (_, script_port),
        sidecar_process(_args("dapr", dapr_app.port, port_a, peers_path), TOKENS) as a,
        sidecar_process(_args("svc", script_port, port_b, peers_path), TOKENS) as b,
    ):
        yield ProcessMesh(dapr_app, a, b, script_port)


def _md(token: str | None = CLUSTER, app_id: str = "svc") -> tuple[tuple[str, str], ...]:
    pairs = [("dapr-app-id", app_id)]
    if token is not None:
        pairs.append(("dapr-api-token", token))
    return tuple(pairs)


def _target(mesh: ProcessMesh, app_id: str, hops: int) -> str:
    """The sidecar to call so that ``app_id`` is ``hops`` sidecars away."""
    own = mesh.a if app_id == "dapr" else mesh.b
    other = mesh.b if app_id == "dapr" else mesh.a
    return (own if hops == 1 else other).target


def _invoke(
    target: str, method: str, data: bytes = b"", *, timeout: float = 10.0, **kw: Any
) -> Any:
    """OnInvoke of the dapr app through a sidecar, as a raw proxied call; the InvokeResponse."""
    request = common_pb2.InvokeRequest(method=method, content_type="text/plain")
    request.data.value = data
    with grpc.insecure_channel(target) as channel:
        call = channel.unary_unary(
            ON_INVOKE,
            request_serializer=common_pb2.InvokeRequest.SerializeToString,
            response_deserializer=common_pb2.InvokeResponse.FromString,
        )
        return call(request, timeout=timeout, metadata=kw.pop("metadata", _md(app_id="dapr")))


# -- flags and the ready line ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "flag"),
    [
        (["--app-port", "5000"], "--app-id"),
        (["--app-id", "x", "--app-port", "0"], "--app-port"),
        (["--app-id", "x", "--app-port", "70000"], "--app-port"),
        (["--app-id", "x y", "--app-port", "5000"], "--app-id"),
        (["--app-id", "x", "--app-port", "5000", "--port", "-1"], "--port"),
        (["--app-id", "x", "--app-port", "5000", "--drain-timeout", "nan"], "--drain-timeout"),
        (["--app-id", "x", "--app-port", "5000", "--max-in-flight", "0"], "--max-in-flight"),
        (["--app-id", "x", "--app-port", "5000", "--peers", "/no/such/file"], "--peers"),
        (["--app-id", "x", "--app-port", "5000", "--log-level", "loud"], "--log-level"),
    ],
)
def test_bad_flags_exit_2_naming_the_flag(
    argv: list[str], flag: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert serve.main(argv) == 2
    assert flag in capsys.readouterr().err


def test_bad_flag_through_the_cli_and_a_real_process() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "grpc_channel.cli", "sidecar", "--app-id", "x"],
        capture_output=True,
        text=True,
        timeout=30,
    )
    assert proc.returncode == 2
    assert "--app-port" in proc.stderr
    assert proc.stdout == ""


@pytest.mark.parametrize(
    ("flag", "name", "content", "message"),
    [
        ("--peers", "peers.json", '{"svc": "no-port-here"}', "no-port-here"),
        (
            "--components",
            "pubsub.yaml",
            "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: pubsub\n"
            "spec:\n  type: pubsub.in-memory\n  version: v9\n",
            "spec.version",
        ),
    ],
)
def test_unusable_files_exit_2_naming_the_flag(
    tmp_path: Any, flag: str, name: str, content: str, message: str
) -> None:
    path = tmp_path / name
    path.write_text(content)
    proc = subprocess.run(
        [sys.executable, "-m", "grpc_channel.sidecar", "--app-id", "x", "--app-port", "5000",
         "--port", "0", "--http-port", "0", flag, str(path)],
        capture_output=True, text=True, timeout=30,
    )  # fmt: skip
    assert proc.returncode == 2, proc.stderr
    assert flag in proc.stderr and message in proc.stderr
    assert proc.stdout == ""  # no ready line


def test_the_cli_subcommand_serves_and_stops_on_sigterm(tmp_path: Any) -> None:
    peers = write_peers(tmp_path / "peers.json", {})
    args = ["sidecar", *_args("x", 5000, 0, peers)]
    sidecar = SidecarProcess(args, TOKENS, command=("-m", "grpc_channel.cli")).start()
    try:
        assert sidecar.ready["app_id"] == "x" and sidecar.grpc_port > 0
        with (
            grpc.insecure_channel(sidecar.target) as channel,
            pytest.raises(grpc.RpcError) as raised,
        ):
            channel.unary_unary(UU)(b"x", metadata=_md(app_id="elsewhere"), timeout=10)
        assert raised.value.code() is grpc.StatusCode.NOT_FOUND  # type: ignore[attr-defined]
        assert "elsewhere" in raised.value.details()  # type: ignore[attr-defined]
        assert sidecar.terminate() == 0
        assert CLUSTER not in sidecar.stderr and APP_SECRET not in sidecar.stderr
    finally:
        sidecar.stop()


def test_a_port_in_use_exits_1(tmp_path: Any) -> None:
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        proc = subprocess.run(
            [sys.executable, "-m", "grpc_channel.sidecar",
             *_args("x", 5000, port, write_peers(tmp_path / "peers.json", {}))],
            capture_output=True, text=True, timeout=30,
        )  # fmt: skip
    assert proc.returncode == 1, proc.stderr
    assert str(port) in proc.stderr
    assert proc.stdout == ""


def test_ready_line_names_the_ports(mesh: ProcessMesh) -> None:
    for proc, app_id in ((mesh.a, "dapr"), (mesh.b, "svc")):
        assert proc.ready["event"] == "ready"
        assert proc.ready["app_id"] == app_id
        assert isinstance(proc.ready["grpc_port"], int) and proc.ready["grpc_port"] > 0
        assert "http_port" in proc.ready


# -- calls through the proxy ----------------------------------------------------------------------


@pytest.mark.parametrize("hops", [1, 2])
@pytest.mark.parametrize("shape", SHAPES)
def test_every_call_shape(mesh: ProcessMesh, shape: str, hops: int) -> None:
    request = b"header=x-h:1;trailer=x-t:2;n=4"
    with grpc.insecure_channel(_target(mesh, "svc", hops)) as channel:
        replies = call_sync(channel, shape, request, metadata=_md(), timeout=10)
    assert replies == expected(shape, request)


@pytest.mark.parametrize("hops", [1, 2])
def test_headers_trailers_and_error_details_arrive_unchanged(mesh: ProcessMesh, hops: int) -> None:
    request = b"header=x-h:1;trailer=x-t:2,x-t-bin:00ff;details;abort=INVALID_ARGUMENT:bad name"
    with (
        grpc.insecure_channel(f"127.0.0.1:{mesh.script_port}") as direct,
        pytest.raises(grpc.RpcError) as straight,
    ):
        direct.unary_unary(UU)(request, timeout=10)
    with (
        grpc.insecure_channel(_target(mesh, "svc", hops)) as channel,
        pytest.raises(grpc.RpcError) as proxied,
    ):
        channel.unary_unary(UU)(request, metadata=_md(), timeout=10)
    err: Any = proxied.value
    assert err.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert err.details() == "bad name"
    assert ("x-h", "1") in err.initial_metadata()
    trailers = dict(err.trailing_metadata())
    assert trailers["x-t"] == "2" and trailers["x-t-bin"] == b"\x00\xff"
    expected_bin = dict(straight.value.trailing_metadata())["grpc-status-details-bin"]  # type: ignore[attr-defined]
    assert trailers["grpc-status-details-bin"] == expected_bin
    status = rpc_status.from_call(err)
    assert status is not None and list(status.details) == [bad_request_detail()]


@pytest.mark.parametrize("hops", [1, 2])
def test_dapr_app_errors_arrive_unchanged(mesh: ProcessMesh, hops: int) -> None:
    with pytest.raises(grpc.RpcError) as raised:
        _invoke(_target(mesh, "dapr", hops), "fail")
    err: Any = raised.value
    assert err.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert err.details() == "name is required"
    status = rpc_status.from_call(err)
    assert status is not None and list(status.details) == [bad_request_detail()]


@pytest.mark.parametrize("hops", [1, 2])
def test_the_callers_deadline_arrives_at_the_app(mesh: ProcessMesh, hops: int) -> None:
    response = _invoke(_target(mesh, "dapr", hops), "deadline", timeout=7.0)
    left = json.loads(response.data.value)["time_remaining"]
    # grpc-timeout travels in coarse units and each hop rounds up a little: not above 7 s plus
    # that rounding, and clearly not the 60 s of the call below.
    assert left is not None and 0 < left <= 7.5
    response = _invoke(_target(mesh, "dapr", hops), "deadline", timeout=60.0)
    assert 7.5 < json.loads(response.data.value)["time_remaining"] <= 60.5


# -- tokens ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("token", [None, "wrong", CLUSTER + "x"])
@pytest.mark.parametrize("hops", [1, 2])
def test_missing_or_wrong_token_is_unauthenticated(
    mesh: ProcessMesh, token: str | None, hops: int
) -> None:
    with (
        grpc.insecure_channel(_target(mesh, "svc", hops)) as channel,
        pytest.raises(grpc.RpcError) as raised,
    ):
        channel.unary_unary(UU)(b"x", metadata=_md(token), timeout=10)
    assert raised.value.code() is grpc.StatusCode.UNAUTHENTICATED  # type: ignore[attr-defined]


@pytest.mark.parametrize("hops", [1, 2])
def test_the_app_gets_the_app_token_once_and_never_the_callers(
    mesh: ProcessMesh, hops: int
) -> None:
    response = _invoke(_target(mesh, "dapr", hops), "metadata")
    seen: dict[str, list[str]] = json.loads(response.data.value)
    assert seen["dapr-api-token"] == [APP_SECRET]
    assert not any(CLUSTER in value for values in seen.values() for value in values)


# -- load, failure, shutdown ----------------------------------------------------------------------


def test_1000_concurrent_calls_through_two_sidecars_each_matched(mesh: ProcessMesh) -> None:
    async def run() -> list[tuple[bytes, bytes]]:
        async with grpc.aio.insecure_channel(mesh.a.target) as channel:
            call = channel.unary_unary(UU)

            async def one(i: int) -> tuple[bytes, bytes]:
                request = b"plain;header=;trailer=;id=%d" % i
                reply: bytes = await call(request, metadata=_md(), timeout=60)
                return request, reply

            return await asyncio.gather(*(one(i) for i in range(1000)))

    pairs = asyncio.run(run())
    assert len(pairs) == 1000
    assert all(request == reply for request, reply in pairs)
    assert len({reply for _, reply in pairs}) == 1000


def test_killing_the_app_mid_stream_is_a_clean_unavailable(tmp_path: Any) -> None:
    peers = write_peers(tmp_path / "peers.json", {})
    with app_process() as (app, app_port):
        args = _args("svc", app_port, 0, peers)
        with sidecar_process(args, TOKENS) as sidecar, grpc.insecure_channel(sidecar.target) as ch:
            stream = ch.stream_stream("/test.Svc/SS")(
                iter([b"stay_open"]), metadata=_md(), timeout=30
            )
            assert next(stream) == b"stay_open"
            app.kill()
            app.wait(10)
            with pytest.raises(grpc.RpcError) as raised:
                next(stream)
            assert raised.value.code() is grpc.StatusCode.UNAVAILABLE  # type: ignore[attr-defined]
            # The sidecar lives on and answers the next call for the dead app the same way.
            with pytest.raises(grpc.RpcError) as again:
                ch.unary_unary(UU)(b"x", metadata=_md(), timeout=10)
            assert again.value.code() is grpc.StatusCode.UNAVAILABLE  # type: ignore[attr-defined]
            assert sidecar.proc is not None and sidecar.proc.poll() is None


def _refused(target: str) -> bool:
    """Whether a new call to the sidecar is refused (it stopped accepting)."""
    try:
        _invoke(target, "echo", b"late", timeout=5)
    except grpc.RpcError as err:
        return err.code() is grpc.StatusCode.UNAVAILABLE  # type: ignore[attr-defined, no-any-return]
    return False


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_drains_the_call_in_flight_refuses_new_ones_then_exits_0(
    mesh: ProcessMesh, tmp_path: Any, signum: signal.Signals
) -> None:
    peers = write_peers(tmp_path / "peers.json", {})
    app = mesh.dapr_app
    app.reset()
    sidecar = SidecarProcess(_args("dapr", app.port, 0, peers), TOKENS).start()
    try:
        result: dict[str, Any] = {}

        def call() -> None:
            try:
                result["reply"] = _invoke(sidecar.target, "sleep", b"1.5", timeout=30)
            except grpc.RpcError as err:
                result["error"] = err

        caller = threading.Thread(target=call)
        caller.start()
        try:
            assert wait_until(lambda: app.stats()["in_flight"] >= 1)
            assert sidecar.proc is not None
            sidecar.proc.send_signal(signum)
            assert wait_until(lambda: "stopping" in sidecar.stderr)
            assert wait_until(lambda: _refused(sidecar.target))
            assert sidecar.wait(timeout=20) == 0
        finally:
            caller.join(20)
        assert not caller.is_alive()
        assert "error" not in result, result
        assert result["reply"].data.value == b"slept"
        assert app.stats()["cancelled"] == 0
    finally:
        sidecar.stop()


def test_app_max_concurrency_caps_calls_to_the_app(mesh: ProcessMesh, tmp_path: Any) -> None:
    peers = write_peers(tmp_path / "peers.json", {})
    app = mesh.dapr_app
    args = [*_args("dapr", app.port, 0, peers), "--app-max-concurrency", "2"]
    with sidecar_process(args, TOKENS) as sidecar:
        app.reset()

        async def run() -> list[Any]:
            async with grpc.aio.insecure_channel(sidecar.target) as channel:
                call = channel.unary_unary(
                    ON_INVOKE,
                    request_serializer=common_pb2.InvokeRequest.SerializeToString,
                    response_deserializer=common_pb2.InvokeResponse.FromString,
                )
                request = common_pb2.InvokeRequest(method="sleep")
                request.data.value = b"0.2"
                calls = [call(request, metadata=_md(app_id="dapr"), timeout=30) for _ in range(6)]
                return list(await asyncio.gather(*calls))

        replies = asyncio.run(run())
        assert [reply.data.value for reply in replies] == [b"slept"] * 6
        stats = app.stats()
        assert stats["calls"] >= 6 and stats["max_in_flight"] <= 2


# -- the Dapr API and the HTTP endpoints (from the api and telemetry modules) ---------------------


def test_healthz_and_metrics_answer(mesh: ProcessMesh) -> None:
    assert mesh.a.http_port is not None
    base = f"http://127.0.0.1:{mesh.a.http_port}"
    for path in ("/healthz", "/v1.0/healthz/outbound"):
        with urllib.request.urlopen(f"{base}{path}", timeout=10) as reply:
            assert reply.status == 204
    _invoke(mesh.a.target, "echo", b"hi")
    with urllib.request.urlopen(f"{base}/metrics", timeout=10) as reply:
        text = reply.read().decode()
    assert reply.status == 200
    calls = [
        line
        for line in text.splitlines()
        if line.startswith("grpc_channel_sidecar_calls") and "OnInvoke" in line
    ]
    assert calls, text
    assert all('grpc_channel_app_id="dapr"' in line for line in calls)


def test_healthz_turns_503_while_draining(mesh: ProcessMesh, tmp_path: Any) -> None:
    peers = write_peers(tmp_path / "peers.json", {})
    app = mesh.dapr_app
    sidecar = SidecarProcess(_args("dapr", app.port, 0, peers), TOKENS).start()
    try:
        health = f"http://127.0.0.1:{sidecar.http_port}/healthz"
        with urllib.request.urlopen(health, timeout=10) as reply:
            assert reply.status == 204
        caller = threading.Thread(target=_invoke, args=(sidecar.target, "sleep", b"1.5"))
        caller.start()
        try:
            assert wait_until(lambda: app.stats()["in_flight"] >= 1)
            assert sidecar.proc is not None
            sidecar.proc.send_signal(signal.SIGTERM)
            with pytest.raises(urllib.error.HTTPError) as draining:
                assert wait_until(lambda: "stopping" in sidecar.stderr)
                urllib.request.urlopen(health, timeout=10).close()
            assert draining.value.code == 503
            assert sidecar.wait(timeout=20) == 0
        finally:
            caller.join(20)
    finally:
        sidecar.stop()


def _dapr_client_env(monkeypatch: pytest.MonkeyPatch, sidecar: SidecarProcess) -> None:
    """What DaprClient reads from the environment (on every use): the token, gRPC invocation,
    and where its start-up health probe (/v1.0/healthz/outbound) finds the sidecar."""
    monkeypatch.setenv("DAPR_API_TOKEN", CLUSTER)
    monkeypatch.setenv("DAPR_API_METHOD_INVOCATION_PROTOCOL", "grpc")
    monkeypatch.setenv("DAPR_RUNTIME_HOST", "127.0.0.1")
    monkeypatch.setenv("DAPR_HTTP_PORT", str(sidecar.http_port))
    monkeypatch.setenv("DAPR_HEALTH_TIMEOUT", "10")


def test_dapr_client_invoke_and_metadata(
    mesh: ProcessMesh, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("grpc_channel.sidecar.dapr_api")
    pytest.importorskip("grpc_channel.sidecar.http")  # DaprClient probes it before any call
    from dapr.clients import DaprClient

    for sidecar in (mesh.a, mesh.b):  # one hop and two hops to the dapr app
        _dapr_client_env(monkeypatch, sidecar)
        with DaprClient(address=sidecar.target) as client:
            reply = client.invoke_method("dapr", "echo", data=b"hello", content_type="text/plain")
            assert reply.data == b"hello"
            assert client.get_metadata().application_id == sidecar.ready["app_id"]


def _redis_component(url: str) -> str:
    host = url.removeprefix("redis://").split("/", 1)[0]
    return (
        "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: pubsub\n"
        "spec:\n  type: pubsub.redis\n  version: v1\n  metadata:\n"
        f"    - name: redisHost\n      value: {host!r}\n"
    )


async def _publish_to_broker(component_file: Any, topic: str, event_id: str) -> None:
    (component,) = load_component_file(component_file)
    async with component.create() as broker:
        envelope = envelope_for_publish(
            b'{"n": 1}', source="elsewhere", topic=topic, pubsub_name="pubsub", event_id=event_id
        )
        await broker.publish(topic, envelope, message_id=event_id)


def test_broker_messages_reach_the_apps_subscriber_through_the_sidecar(
    tmp_path: Any, redis_url: str, unique_name: str
) -> None:
    """--components wires a runtime: a message another app published to Redis reaches this
    app's dapr SDK subscriber, delivered by the sidecar process. The sidecar starts first and
    serves before its app is up; the runtime subscribes once the app answers."""
    component = tmp_path / "pubsub.yaml"
    component.write_text(_redis_component(redis_url))
    peers = write_peers(tmp_path / "peers.json", {})
    topic = f"{unique_name}-orders"
    app = RecordingApp(topic)
    args = [*_args("rec", app.port, 0, peers), "--components", str(component)]
    with sidecar_process(args, TOKENS) as sidecar:
        with (
            grpc.insecure_channel(sidecar.target) as channel,
            pytest.raises(grpc.RpcError) as no_app,
        ):
            channel.unary_unary(UU)(b"x", metadata=_md(app_id="rec"), timeout=10)
        assert no_app.value.code() is grpc.StatusCode.UNAVAILABLE  # type: ignore[attr-defined]
        try:
            app.start()
            assert wait_until(lambda: "pub/sub runtime ready" in sidecar.stderr, timeout=30)
            asyncio.run(_publish_to_broker(component, topic, "ev-1"))
            assert wait_until(app.events, timeout=20)
            (event,) = app.events()
            assert event["topic"] == topic and event["id"] == "ev-1"
            assert json.loads(event["data"]) == {"n": 1}
            assert sidecar.terminate() == 0
        finally:
            app.stop()


def test_dapr_client_publish_reaches_the_subscriber(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("grpc_channel.sidecar.dapr_api")
    pytest.importorskip("grpc_channel.sidecar.http")  # DaprClient probes it before any call
    from dapr.clients import DaprClient

    components = tmp_path / "components"
    components.mkdir()
    (components / "pubsub.yaml").write_text(
        "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n  name: pubsub\n"
        "spec:\n  type: pubsub.in-memory\n  version: v1\n"
    )
    peers = write_peers(tmp_path / "peers.json", {})
    with recording_app() as app:
        args = [*_args("rec", app.port, 0, peers), "--components", str(components)]
        with sidecar_process(args, TOKENS) as sidecar:
            _dapr_client_env(monkeypatch, sidecar)
            with DaprClient(address=sidecar.target) as client:
                # Publish until the subscriber has one: the runtime subscribes in the
                # background, and the in-memory broker keeps nothing for a topic nobody
                # subscribed to yet.
                assert wait_until(lambda: _publish(client) and app.events(), timeout=20)
            event = app.events()[0]
            assert event["topic"] == "orders" and json.loads(event["data"]) == {"n": 1}


def _publish(client: Any) -> bool:
    """Publish once; False while the sidecar's runtime has not subscribed yet."""
    try:
        client.publish_event(
            "pubsub", "orders", json.dumps({"n": 1}), data_content_type="application/json"
        )
    except Exception:
        return False
    return True
