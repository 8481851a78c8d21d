"""bind(): call options on a wrapped stub's method, checked by ``mypy --strict``.

The Echo service (tests/protos/echo_test.proto) is generated into a temporary directory with
grpcio-tools and mypy-protobuf's plugins (``--mypy_out``, ``--mypy_grpc_out``), as a user with
typed stubs has it. Two sample programs use it through ``wrap`` and ``bind``, all four shapes,
sync and ``grpc.aio``: one must pass ``mypy --strict``; the other holds deliberate type errors,
each of which mypy must report on its line, so the bound callables carry the method's own
request and response types (an ``Any`` anywhere would let the errors through).
"""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent

_GOOD = """\
from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

import grpc

import echo_test_pb2 as pb2
import echo_test_pb2_grpc as pb2_grpc
from grpc_channel import Metadata, header, timeout, trailer, wrap
from grpc_channel.stubs import bind


def sync_calls(channel: grpc.Channel) -> list[pb2.EchoReply]:
    stub = wrap(pb2_grpc.EchoStub(channel), timeout(5))
    md, tr = Metadata(), Metadata()
    unary = bind(stub.Unary, header(md), trailer(tr))
    one: pb2.EchoReply = unary(pb2.EchoRequest(text="u"), timeout(1), metadata=[("k", "v")])
    many: Iterator[pb2.EchoReply] = bind(stub.ServerStream)(pb2.EchoRequest(count=2))
    joined: pb2.EchoReply = bind(stub.ClientStream, timeout(2))(iter([pb2.EchoRequest()]))
    echoed = bind(stub.Bidi, header(md))(iter([pb2.EchoRequest()]), wait_for_ready=True)
    return [one, *many, joined, *echoed]


async def aio_calls(channel: grpc.aio.Channel) -> list[pb2.EchoReply]:
    stub = wrap(pb2_grpc.EchoStub(channel))
    md = Metadata()
    one: pb2.EchoReply = await bind(stub.Unary, header(md))(pb2.EchoRequest(text="u"))
    many: AsyncIterator[pb2.EchoReply] = bind(stub.ServerStream)(pb2.EchoRequest(count=2))

    async def requests() -> AsyncIterator[pb2.EchoRequest]:
        yield pb2.EchoRequest(text="a")

    joined = await bind(stub.ClientStream, timeout(2))(requests())
    echoed = [r async for r in bind(stub.Bidi)([pb2.EchoRequest()], timeout(1))]
    return [one, *[r async for r in many], joined, *echoed]
"""

# Each line marked "# E: <code>" must be reported by mypy with that error code.
_BAD = """\
from __future__ import annotations

import grpc

import echo_test_pb2 as pb2
import echo_test_pb2_grpc as pb2_grpc
from grpc_channel import timeout, wrap
from grpc_channel.stubs import bind


def sync_calls(channel: grpc.Channel) -> None:
    stub = wrap(pb2_grpc.EchoStub(channel))
    stub.Unary(pb2.EchoRequest(), timeout(1))  # E: arg-type
    unary = bind(stub.Unary, timeout(1))
    unary(pb2.EchoReply())  # E: arg-type
    text: int = unary(pb2.EchoRequest()).text  # E: assignment
    wrong: pb2.EchoRequest = unary(pb2.EchoRequest())  # E: assignment
    unary(pb2.EchoRequest(), "not an option")  # E: arg-type
    unary(pb2.EchoRequest(), timout=1.0)  # E: call-arg
    bind(stub.ClientStream)(pb2.EchoRequest())  # E: arg-type
    for reply in bind(stub.ServerStream)(pb2.EchoRequest()):
        reply.no_such_field  # E: attr-defined
    bind(stub.Unary, 5)  # E: call-overload


async def aio_calls(channel: grpc.aio.Channel) -> None:
    stub = wrap(pb2_grpc.EchoStub(channel))
    bad: pb2.EchoRequest = await bind(stub.Unary)(pb2.EchoRequest())  # E: assignment
    await bind(stub.Unary)(pb2.EchoReply())  # E: arg-type
    for reply in bind(stub.Bidi)([pb2.EchoRequest()]):  # E: attr-defined
        pass
"""


@pytest.fixture(scope="module")
def typed_echo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A directory holding the Echo service generated with type stubs (.pyi) for both modules."""
    out = tmp_path_factory.mktemp("typed_echo")
    bin_dir = Path(sys.executable).parent
    protos = ROOT / "tests" / "protos"
    subprocess.run(
        [
            sys.executable,
            "-m",
            "grpc_tools.protoc",
            f"-I{protos}",
            f"--plugin=protoc-gen-mypy={bin_dir / 'protoc-gen-mypy'}",
            f"--plugin=protoc-gen-mypy_grpc={bin_dir / 'protoc-gen-mypy_grpc'}",
            f"--python_out={out}",
            f"--grpc_python_out={out}",
            f"--mypy_out={out}",
            f"--mypy_grpc_out={out}",
            str(protos / "echo_test.proto"),
        ],
        check=True,
        capture_output=True,
    )
    assert (out / "echo_test_pb2_grpc.pyi").is_file()
    return out


def _mypy(directory: Path, *files: str) -> str:
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "mypy",
            "--strict",
            "--show-error-codes",
            "--no-error-summary",
            "--cache-dir",
            str(directory / ".mypy_cache"),
            *files,
        ],
        cwd=directory,
        capture_output=True,
        text=True,
        timeout=300,
    )
    return done.stdout + done.stderr


def test_bound_methods_type_check_and_type_errors_are_caught(typed_echo: Path) -> None:
    (typed_echo / "good.py").write_text(_GOOD)
    (typed_echo / "bad.py").write_text(_BAD)
    # One mypy run for both samples: the cost is analysing grpc_channel and grpc-stubs once.
    output = _mypy(typed_echo, "good.py", "bad.py")
    error = re.compile(r"^bad\.py:(?P<line>\d+): error: .*\[(?P<code>[a-z-]+)\]$", re.M)
    reported = {(int(m["line"]), m["code"]) for m in error.finditer(output)}
    expected = {
        (number, line.rsplit("# E: ", 1)[1].strip())
        for number, line in enumerate(_BAD.splitlines(), start=1)
        if "# E: " in line
    }
    assert not [line for line in output.splitlines() if line.startswith("good.py")], output
    assert expected <= reported, output
    # Nothing else is reported: the errors are the deliberate ones, not noise from the set-up.
    assert {number for number, _ in reported} == {number for number, _ in expected}, output
