"""``grpc-channel call TARGET METHOD``: one unary call against a plain grpcio server, printed; exit
0 on OK, 1 on an RPC error or an unreachable server, 2 on usage."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
from support_harness import free_port
from test_bench_loadtester import PROTO, UNARY, Seen, echo_server

from grpc_channel.cli import main


@pytest.fixture
def server() -> Iterator[tuple[str, Seen]]:
    with echo_server() as served:
        yield served


def test_ok_call_prints_response_headers_trailers_and_status(
    server: tuple[str, Seen], capsys: pytest.CaptureFixture[str]
) -> None:
    address, seen = server
    argv = ["call", address, UNARY, "-d", '{"text": "hi", "count": 2}', "-m", '{"x-user": "al"}']
    assert main(argv) == 0
    out = capsys.readouterr().out
    assert "status:   0 OK" in out
    assert 'response: {"text": "hi", "index": 2}' in out
    assert "headers:  [('x-echo', 'hi')]" in out
    assert "trailers: [('x-trailer', 'done')]" in out
    assert seen.texts == ["hi"] and seen.metadata[0]["x-user"] == "al"
    # Template actions in metadata, as in -d: rendered for request 0.
    assert main(["call", address, UNARY, "-m", "x-n=n{{.RequestNumber}}-{{.MethodName}}"]) == 0
    assert seen.metadata[1]["x-n"] == "n0-Unary"


def test_types_from_a_proto_file_and_the_slash_form(
    server: tuple[str, Seen], capsys: pytest.CaptureFixture[str]
) -> None:
    address, seen = server
    argv = ["call", address, "--call", "/" + UNARY, "--proto", str(PROTO), "-I", str(PROTO.parent)]
    assert main(argv) == 0  # no -d: an empty request
    assert "status:   0 OK" in capsys.readouterr().out
    assert seen.texts == [""]


def test_rpc_error_prints_status_and_decoded_details_and_exits_1(
    server: tuple[str, Seen], capsys: pytest.CaptureFixture[str]
) -> None:
    address, _ = server
    assert main(["call", address, UNARY, "-d", '{"text": "details"}']) == 1
    out = capsys.readouterr().out
    assert "status:   3 INVALID_ARGUMENT" in out and "details:  bad text" in out
    assert "type.googleapis.com/google.rpc.BadRequest" in out
    assert '"field": "text"' in out and '"description": "not allowed"' in out


def test_unreachable_and_usage_errors(
    server: tuple[str, Seen], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    address, _ = server
    down = f"127.0.0.1:{free_port()}"
    assert main(["call", down, UNARY, "--connect-timeout", "0.3"]) == 1
    assert f"cannot connect to {down} within 0.3 s" in capsys.readouterr().err
    assert main(["call", address, "grpc_channel_test.Echo/Unray"]) == 2
    assert "closest first): /grpc_channel_test.Echo/Unary" in capsys.readouterr().err
    assert main(["call", "localhost", UNARY]) == 2
    assert "TARGET must be host:port" in capsys.readouterr().err
    assert main(["call", address]) == 2
    assert "METHOD is required" in capsys.readouterr().err
    missing = tmp_path / "nope.json"
    assert main(["call", address, UNARY, "-D", str(missing)]) == 2
    assert f"-D/--data-file: no such file: {missing}" in capsys.readouterr().err
    assert main(["call", address, UNARY, "-d", '{"nope": 1}']) == 2
    assert "does not match grpc_channel_test.EchoRequest" in capsys.readouterr().err
