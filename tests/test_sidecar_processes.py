"""The sidecar as real processes (``python -m grpc_channel.sidecar``), in front of real apps in
their own processes: the dapr SDK's ``App`` (support_dapr_app) and the scripted servicer
(support_sidecar.app_process).

The module's mesh, every process on 127.0.0.1::

    caller -> sidecar "dapr" (A) --peers--> sidecar "svc" (B) -> scripted app
    caller -> sidecar "svc"  (B) --peers--> sidecar "dapr" (A) -> dapr SDK App

Both sidecars share the cluster token (``DAPR_API_TOKEN``, demanded from callers and presented to
peers) and present ``APP_API_TOKEN`` to their app; one peers file names both. A third sidecar,
"edge" (:class:`Edge`), has tight limits, no cluster token and a peers file of its own that tests
rewrite; tests that stop a sidecar or an app start their own.
"""

from __future__ import annotations

import asyncio
import contextlib
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
    SS,
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
from grpc_channel.sidecar.dapr_api import GET_METADATA
from grpc_channel.v1 import common_pb2, runtime_pb2

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
        (["--app-id", "orders.v1", "--app-port", "5000"], "--app-id"),
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


def test_1000_concurrent_unary_and_stream_calls_through_two_sidecars_each_matched(
    mesh: ProcessMesh,
) -> None:
    """Half unary, half bidi streams of two messages, all at once on one aio channel: every
    reply belongs to its own call, in order (dapr#4537 mixed up concurrent streams)."""

    async def run() -> list[tuple[list[bytes], list[bytes]]]:
        async with grpc.aio.insecure_channel(mesh.a.target) as channel:
            unary = channel.unary_unary(UU)
            bidi = channel.stream_stream(SS)

            async def one(i: int) -> tuple[list[bytes], list[bytes]]:
                if i % 2:
                    request = b"plain;header=;trailer=;id=%d" % i
                    return [request], [await unary(request, metadata=_md(), timeout=60)]
                requests = [b"header=;trailer=;id=%d;part=%d" % (i, k) for k in range(2)]
                call = bidi(iter(requests), metadata=_md(), timeout=60)
                return requests, [reply async for reply in call]

            return await asyncio.gather(*(one(i) for i in range(1000)))

    pairs = asyncio.run(run())
    assert len(pairs) == 1000
    assert all(requests == replies for requests, replies in pairs)
    assert len({reply for _, replies in pairs for reply in replies}) == 1500


# -- one more sidecar: resolution reloads, limits, tokens without a cluster token -----------------


@dataclass
class Edge:
    """Sidecar "edge" in front of the mesh's scripted app, with tight limits
    (``--max-in-flight 2 --app-max-concurrency 1 --max-message-bytes 4096``), no
    ``DAPR_API_TOKEN`` (nothing demanded, nothing presented to peers) and ``APP_API_TOKEN``. Its
    peers file names ``spy``: the scripted app again, standing in for a peer sidecar so that
    what a peer receives can be read back (``raw``)."""

    sidecar: SidecarProcess
    peers: Any
    spy: str


@pytest.fixture(scope="module")
def edge(mesh: ProcessMesh, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Edge]:
    spy = f"127.0.0.1:{mesh.script_port}"
    peers = write_peers(tmp_path_factory.mktemp("edge") / "peers.json", {"spy": spy})
    limits = ("--max-in-flight", "2", "--app-max-concurrency", "1", "--max-message-bytes", "4096")
    args = _args("edge", mesh.script_port, 0, peers, *limits)
    with sidecar_process(args, {"APP_API_TOKEN": APP_SECRET}) as sidecar:
        yield Edge(sidecar, peers, spy)


def _raw(channel: grpc.Channel, app_id: str, *extra: tuple[str, str]) -> dict[str, list[str]]:
    """What the scripted app (or the spy peer) received, through the edge: key -> values."""
    reply = channel.unary_unary(UU)(
        b"header=;trailer=;raw", metadata=(("dapr-app-id", app_id), *extra), timeout=10
    )
    seen: dict[str, list[str]] = {}
    for key, value in json.loads(reply):
        seen.setdefault(key, []).append(value)
    return seen


def test_the_callers_token_reaches_neither_the_app_nor_a_peer(edge: Edge) -> None:
    own_token = ("dapr-api-token", "callers-own")
    with grpc.insecure_channel(edge.sidecar.target) as channel:
        at_app = _raw(channel, "edge", own_token)
        at_peer = _raw(channel, "spy", own_token)
    assert at_app["dapr-api-token"] == [APP_SECRET]  # the app token, once
    assert "dapr-api-token" not in at_peer  # no cluster token set: the peer gets none
    assert at_peer["dapr-callee-app-id"] == ["spy"] and at_peer["dapr-caller-app-id"] == ["edge"]
    for seen in (at_app, at_peer):
        assert not any("callers-own" in value for values in seen.values() for value in values)


def test_the_callers_trace_context_reaches_the_app(edge: Edge) -> None:
    trace_id = "4bf92f3577b34da6a3ce929d0e0e4736"
    parent = ("traceparent", f"00-{trace_id}-00f067aa0ba902b7-01")
    with grpc.insecure_channel(edge.sidecar.target) as channel:
        for app_id in ("edge", "spy"):
            (traceparent,) = _raw(channel, app_id, parent)["traceparent"]
            assert traceparent.split("-")[1] == trace_id


def _code(channel: grpc.Channel, app_id: str, request: bytes, timeout: float = 10) -> Any:
    """The status code of one unary call through the edge (OK when it succeeds)."""
    try:
        channel.unary_unary(UU)(request, metadata=(("dapr-app-id", app_id),), timeout=timeout)
    except grpc.RpcError as err:
        return err.code()  # type: ignore[attr-defined]
    return grpc.StatusCode.OK


def test_the_peers_file_is_reloaded_and_an_unknown_id_is_not_found_naming_it(edge: Edge) -> None:
    with grpc.insecure_channel(edge.sidecar.target) as channel:
        with pytest.raises(grpc.RpcError) as unknown:
            channel.unary_unary(UU)(b"x", metadata=(("dapr-app-id", "late"),), timeout=10)
        assert unknown.value.code() is grpc.StatusCode.NOT_FOUND  # type: ignore[attr-defined]
        assert "late" in unknown.value.details()  # type: ignore[attr-defined]
        try:
            write_peers(edge.peers, {"spy": edge.spy, "late": edge.spy})
            assert wait_until(lambda: _code(channel, "late", b"x") is grpc.StatusCode.OK)
        finally:
            write_peers(edge.peers, {"spy": edge.spy})
        assert wait_until(lambda: _code(channel, "late", b"x") is grpc.StatusCode.NOT_FOUND)


def test_a_stream_holds_the_app_slot_and_max_in_flight_refuses_one_more(edge: Edge) -> None:
    """--app-max-concurrency 1: an open stream to the app keeps its slot until it ends;
    --max-in-flight 2: a third call while two streams are open is refused at once."""
    with grpc.insecure_channel(edge.sidecar.target) as channel:
        stay_open = channel.stream_stream(SS)
        to_app = stay_open(iter([b"stay_open"]), metadata=(("dapr-app-id", "edge"),), timeout=30)
        to_peer = stay_open(iter([b"stay_open"]), metadata=(("dapr-app-id", "spy"),), timeout=30)
        try:
            assert next(to_app) == b"stay_open" and next(to_peer) == b"stay_open"
            with pytest.raises(grpc.RpcError) as refused:
                channel.unary_unary(UU)(b"x", metadata=(("dapr-app-id", "spy"),), timeout=10)
            assert refused.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED  # type: ignore[attr-defined]
            assert "in flight" in refused.value.details()  # type: ignore[attr-defined]
            to_peer.cancel()
            # Room in flight again, but the app's one slot is the stream's: a call to the app
            # waits for it until its deadline.
            assert wait_until(
                lambda: _code(channel, "edge", b"x", 0.5) is grpc.StatusCode.DEADLINE_EXCEEDED
            )
        finally:
            to_app.cancel()
            to_peer.cancel()
        # The stream ended: its app slot and its place in flight are given back.
        assert wait_until(lambda: _code(channel, "edge", b"x") is grpc.StatusCode.OK)


def test_max_message_bytes_limits_requests_and_responses_both_ways(edge: Edge) -> None:
    big_header = ("x-big", "b" * 5000)  # "raw" echoes it in a reply larger than 4096 bytes
    with grpc.insecure_channel(edge.spy) as direct:  # the app itself sends it without a fuss
        assert len(_raw(direct, "edge", big_header)["x-big"][0]) == 5000
    with grpc.insecure_channel(edge.sidecar.target) as channel:
        for app_id in ("edge", "spy"):
            assert _code(channel, app_id, b"plain;" + b"a" * 3000) is grpc.StatusCode.OK
            too_big = b"plain;" + b"a" * 5000
            assert _code(channel, app_id, too_big) is grpc.StatusCode.RESOURCE_EXHAUSTED
            with pytest.raises(grpc.RpcError) as reply_too_big:
                _raw(channel, app_id, big_header)
            code = reply_too_big.value.code()  # type: ignore[attr-defined]
            assert code is grpc.StatusCode.RESOURCE_EXHAUSTED


@pytest.mark.parametrize("hops", [1, 2])
def test_killing_the_app_mid_stream_is_a_clean_unavailable(tmp_path: Any, hops: int) -> None:
    app_peers = write_peers(tmp_path / "peers.json", {})
    with contextlib.ExitStack() as stack:
        app, app_port = stack.enter_context(app_process())
        sidecar = stack.enter_context(sidecar_process(_args("svc", app_port, 0, app_peers), TOKENS))
        entry = sidecar
        if hops == 2:  # a caller's own sidecar in front, which finds "svc" through its peers
            front_peers = write_peers(tmp_path / "front.json", {"svc": sidecar.target})
            entry = stack.enter_context(
                sidecar_process(_args("front", app_port, 0, front_peers), TOKENS)
            )
        ch = stack.enter_context(grpc.insecure_channel(entry.target))
        stream = ch.stream_stream(SS)(iter([b"stay_open"]), metadata=_md(), timeout=30)
        assert next(stream) == b"stay_open"
        app.kill()
        app.wait(10)
        with pytest.raises(grpc.RpcError) as raised:
            next(stream)
        assert raised.value.code() is grpc.StatusCode.UNAVAILABLE  # type: ignore[attr-defined]
        # The sidecars live on and answer the next call for the dead app the same way.
        with pytest.raises(grpc.RpcError) as again:
            ch.unary_unary(UU)(b"x", metadata=_md(), timeout=10)
        assert again.value.code() is grpc.StatusCode.UNAVAILABLE  # type: ignore[attr-defined]
        for process in {sidecar, entry}:
            assert process.proc is not None and process.proc.poll() is None


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


@pytest.mark.filterwarnings("ignore:invoke_method with protocol gRPC is deprecated")
def test_dapr_client_invoke_and_metadata(
    mesh: ProcessMesh, monkeypatch: pytest.MonkeyPatch
) -> None:
    from dapr.clients import DaprClient

    for sidecar in (mesh.a, mesh.b):  # one hop and two hops to the dapr app
        _dapr_client_env(monkeypatch, sidecar)
        with DaprClient(address=sidecar.target) as client:
            reply = client.invoke_method("dapr", "echo", data=b"hello", content_type="text/plain")
            assert reply.data == b"hello"
            assert client.get_metadata().application_id == sidecar.ready["app_id"]
            # The app sees its own sidecar's app token, the calling app's id, never the cluster
            # token the client and the sidecars presented.
            seen = json.loads(client.invoke_method("dapr", "metadata", data=b"").data)
            assert seen["dapr-api-token"] == [APP_SECRET]
            assert seen["dapr-caller-app-id"] == [sidecar.ready["app_id"]]
            assert not any(CLUSTER in value for values in seen.values() for value in values)


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


def test_dapr_client_publish_reaches_the_subscriber_and_waits_while_the_app_is_down(
    tmp_path: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Publish through the Dapr API to the app's subscriber; then stop the app, publish again,
    and start a new app on the same port: the event is held while the app is down (one attempt
    allowed, so an attempt counted against the app would have dead-lettered it) and delivered
    to the app once it answers health probes again."""
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
                # GetMetadata names the component of --components.
                (component,) = client.get_metadata().registered_components
                assert (component.name, component.type, component.version) == (
                    "pubsub",
                    "pubsub.in-memory",
                    "v1",
                )
                event = app.events()[0]
                assert event["topic"] == "orders" and json.loads(event["data"]) == {"n": 1}
                # The subscription the runtime delivers: one attempt, then the dead-letter topic.
                subscription = _subscription(sidecar, "orders")
                assert subscription.metadata["retryMaxAttempts"] == "1"
                assert subscription.dead_letter_topic == "orders-dead"

                app.stop()
                assert _publish(client, {"n": 2})
                # The runtime's own word that it noticed (the attempt met UNAVAILABLE and a probe
                # found nobody): only then does the app come back.
                assert wait_until(lambda: "does not answer health probes" in sidecar.stderr)
                with recording_app(port=app.port) as back:
                    assert wait_until(lambda: _got(back, {"n": 2}), timeout=20)
                    assert all(event["handler"] == "topic" for event in back.events())


def _subscription(sidecar: SidecarProcess, topic: str) -> Any:
    """The subscription to ``topic`` in the sidecar's GetMetadata answer (plain grpcio stub)."""
    with grpc.insecure_channel(sidecar.target) as channel:
        reply = channel.unary_unary(
            GET_METADATA,
            request_serializer=runtime_pb2.GetMetadataRequest.SerializeToString,
            response_deserializer=runtime_pb2.GetMetadataResponse.FromString,
        )(runtime_pb2.GetMetadataRequest(), metadata=(("dapr-api-token", CLUSTER),), timeout=10)
    (subscription,) = (s for s in reply.subscriptions if s.topic == topic)
    return subscription


def _got(app: RecordingApp, data: Any) -> bool:
    return any(json.loads(event["data"]) == data for event in app.events())


def _publish(client: Any, data: Any = None) -> bool:
    """Publish ``data`` (default ``{"n": 1}``) once; False when the publish fails (the
    sidecar's runtime is not there yet)."""
    try:
        client.publish_event(
            "pubsub",
            "orders",
            json.dumps({"n": 1} if data is None else data),
            data_content_type="application/json",
        )
    except Exception:
        return False
    return True
