"""The committed gencode loads on the oldest protobuf runtime we claim, and on the 6.x runtimes
that warn about older gencode.

``scripts/gen_protos.py`` writes grpc_channel/v1/*_pb2.py with protoc 26.1 ("Protobuf Python
Version: 5.26.1" gencode, which calls no runtime version check; see its docstring). Here the
built wheel is installed into a fresh environment next to an exact protobuf runtime and the
googleapis-common-protos / grpcio-status releases a user of that runtime would have (installed
without dependencies; grpcio and the rest are borrowed from the test environment, see
tests/test_install.py). With every warning turned into an error, the environment imports
grpc_channel and all of its gencode and round-trips messages through the wire format.
"""

from __future__ import annotations

import json
import pathlib
import subprocess

import pytest
from test_install import build_wheel, clean_environ, venv_with_wheel

from grpc_channel.v1 import appcallback_pb2, common_pb2, internals_pb2, runtime_pb2

# The floor of ``protobuf`` in pyproject.toml: protoc 26.1 gencode needs a 5.26.1+ runtime.
OLDEST_PROTOBUF = "5.26.1"

_ROUND_TRIP = """
import warnings
warnings.simplefilter("error")  # a protobuf version warning on import fails the check
import json, sys
import google.protobuf
import grpc_channel
from grpc_channel import InvokeMethodRequest
from grpc_channel.v1 import appcallback_pb2, common_pb2, internals_pb2, runtime_pb2
from google.protobuf import any_pb2

request = internals_pb2.InternalInvokeRequest(
    ver=internals_pb2.V1,
    metadata={"k": internals_pb2.ListStringValue(values=["a", "b"])},
    message=common_pb2.InvokeRequest(
        method="orders/create",
        data=any_pb2.Any(type_url="t", value=b"\\x00\\x01"),
        http_extension=common_pb2.HTTPExtension(verb=common_pb2.HTTPExtension.PATCH),
    ),
)
wire = request.SerializeToString()
back = internals_pb2.InternalInvokeRequest.FromString(wire)
assert back == request and back.metadata["k"].values == ["a", "b"], back
event = appcallback_pb2.TopicEventRequest(id="e-1", data=b"{}", pubsub_name="p")
assert appcallback_pb2.TopicEventRequest.FromString(event.SerializeToString()) == event
invoke = InvokeMethodRequest("echo").with_data(b"hi", "text/plain").to_internal()
again = InvokeMethodRequest.from_internal(internals_pb2.InternalInvokeRequest.FromString(
    invoke.SerializeToString()))
assert again.data == b"hi" and again.content_type == "text/plain", again
if sys.argv[1:] == ["all"]:  # every module loads (entry points excepted: they run on import)
    import importlib, pkgutil
    for info in pkgutil.walk_packages(grpc_channel.__path__, "grpc_channel."):
        if not info.name.endswith(("__main__", "._worker")):
            importlib.import_module(info.name)
print(json.dumps({
    "protobuf": google.protobuf.__version__,
    "protobuf_file": google.protobuf.__file__,
    "grpc_channel": grpc_channel.__file__,
    "runtime_module": runtime_pb2.__name__,
    "wire": wire.hex(),
}))
"""


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> pathlib.Path:
    return build_wheel(tmp_path_factory)


def test_committed_gencode_calls_no_runtime_version_check() -> None:
    """What keeps the 6.30/6.31 runtimes quiet: they warn only through that call."""
    for module in (appcallback_pb2, common_pb2, internals_pb2, runtime_pb2):
        text = pathlib.Path(str(module.__file__)).read_text()
        assert f"# Protobuf Python Version: {OLDEST_PROTOBUF}\n" in text, module.__name__
        assert "ValidateProtobufRuntimeVersion" not in text, module.__name__


# What a user of each runtime has beside it: the newest googleapis-common-protos, grpcio-status and
# grpcio-reflection releases that still allow protobuf 5 (their gencode calls no version check).
_BESIDE = (
    "googleapis-common-protos==1.63.2",
    "grpcio-status==1.63.0",
    "grpcio-reflection==1.63.0",
)


@pytest.mark.parametrize(
    ("protobuf", "scope"),
    [
        # The oldest runtime we claim: every module of the package must load on it.
        pytest.param(OLDEST_PROTOBUF, "all", id=f"protobuf-{OLDEST_PROTOBUF}"),
        # The first 6.x runtime, which warns on every module of 5.x gencode that checks its
        # version: the package and its gencode import with warnings as errors.
        pytest.param("6.30.0", "root", id="protobuf-6.30.0"),
    ],
)
def test_installed_wheel_round_trips_on_an_older_protobuf(
    wheel: pathlib.Path, tmp_path: pathlib.Path, protobuf: str, scope: str
) -> None:
    python = venv_with_wheel(wheel, tmp_path / "venv", f"protobuf=={protobuf}", *_BESIDE)
    done = subprocess.run(
        [str(python), "-c", _ROUND_TRIP, scope],
        cwd=tmp_path,
        capture_output=True,
        text=True,
        env=clean_environ(),
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    seen = json.loads(done.stdout)
    assert seen["protobuf"] == protobuf
    assert pathlib.Path(seen["protobuf_file"]).is_relative_to(tmp_path / "venv")
    assert pathlib.Path(seen["grpc_channel"]).is_relative_to(tmp_path / "venv")
    # Same bytes as the test environment's (newer) runtime writes for the same message.
    same = internals_pb2.InternalInvokeRequest.FromString(bytes.fromhex(seen["wire"]))
    assert same.message.method == "orders/create" and list(same.metadata["k"].values) == ["a", "b"]
