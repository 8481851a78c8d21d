"""A real grpcio server on 127.0.0.1:0 for the metadata and invoke tests.

Methods (generic handlers, raw bytes in and out):

- ``/test.Echo/Echo``: sends the request's metadata back as response headers and as trailers
  (through ``Metadata.from_grpc(...).to_grpc()``, which drops the reserved ``user-agent``), and
  returns the request body.
- ``/test.Echo/Fail``: aborts with INVALID_ARGUMENT, a ``google.rpc.BadRequest`` detail
  (``grpc_status.rpc_status.to_status`` + ``context.abort_with_status``), after sending a response
  header ``x-hdr: h`` and a trailer ``x-trl: t``.
- ``/test.Echo/Plain``: aborts with NOT_FOUND and no details.
- ``/test.Echo/Raw``: returns the request metadata the server received, as grpcio delivered it,
  as JSON ``[[key, value], ...]`` (``-bin`` values in hex).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from concurrent import futures
from contextlib import contextmanager

import grpc
from google.protobuf import any_pb2
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from grpc_channel.metadata import Metadata

ECHO = "/test.Echo/Echo"
FAIL = "/test.Echo/Fail"
PLAIN = "/test.Echo/Plain"
RAW = "/test.Echo/Raw"
FAIL_MESSAGE = "field 'name' is required"


def bad_request_detail() -> any_pb2.Any:
    detail = any_pb2.Any()
    detail.Pack(
        error_details_pb2.BadRequest(
            field_violations=[
                error_details_pb2.BadRequest.FieldViolation(
                    field="name", description="must not be empty"
                )
            ]
        )
    )
    return detail


def _echo(request: bytes, context: grpc.ServicerContext) -> bytes:
    received = Metadata.from_grpc(context.invocation_metadata())
    context.send_initial_metadata(received.to_grpc())
    context.set_trailing_metadata(received.to_grpc())
    return request


class _Status(grpc.Status):
    """A grpc.Status with extra trailers (abort_with_status sends only the status's trailers)."""

    def __init__(self, base: grpc.Status, extra: tuple[tuple[str, str], ...]) -> None:
        self.code = base.code
        self.details = base.details
        self.trailing_metadata = (*base.trailing_metadata, *extra)


def _fail(request: bytes, context: grpc.ServicerContext) -> bytes:
    context.send_initial_metadata((("x-hdr", "h"),))
    status = status_pb2.Status(
        code=code_pb2.INVALID_ARGUMENT, message=FAIL_MESSAGE, details=[bad_request_detail()]
    )
    context.abort_with_status(_Status(rpc_status.to_status(status), (("x-trl", "t"),)))
    raise AssertionError("abort_with_status returned")  # pragma: no cover


def _raw(request: bytes, context: grpc.ServicerContext) -> bytes:
    pairs = [
        [key, value.hex() if isinstance(value, bytes) else value]
        for key, value in context.invocation_metadata()
    ]
    return json.dumps(pairs).encode()


def _plain(request: bytes, context: grpc.ServicerContext) -> bytes:
    context.abort(grpc.StatusCode.NOT_FOUND, "no such thing")
    raise AssertionError("abort returned")  # pragma: no cover


@contextmanager
def echo_server() -> Iterator[str]:
    """Start the server; yield its ``127.0.0.1:port`` target; stop it on exit."""
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    handlers = {
        "Echo": grpc.unary_unary_rpc_method_handler(_echo),
        "Fail": grpc.unary_unary_rpc_method_handler(_fail),
        "Plain": grpc.unary_unary_rpc_method_handler(_plain),
        "Raw": grpc.unary_unary_rpc_method_handler(_raw),
    }
    server.add_generic_rpc_handlers((grpc.method_handlers_generic_handler("test.Echo", handlers),))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        server.stop(None)
