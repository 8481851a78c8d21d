"""Test helpers for options, the call engine and wrap: a generated Echo stub and a real server.

Kept apart from ``support_harness`` (whose servicer speaks raw bytes): these tests need typed
protobuf messages through generated stubs and servicer base classes.

``echo_modules()`` generates ``tests/protos/echo_test.proto`` with grpc_tools.protoc into a
temporary directory once per process (removed at exit) and imports it. ``serve()`` runs a grpcio
server on 127.0.0.1:0 with :class:`EchoServicer` and stops it on exit.

What the servicer does, by request ``text``:

- ``"fail"``: sends header ``x-fail-header: h``, trailer ``x-fail-trailer: t``, aborts
  INVALID_ARGUMENT ``bad request`` (ServerStream: after one message);
- ``"wait"``: waits until the client goes away (deadline or cancel), at most 10 s;
- ``"big"``: replies with ``count`` bytes of payload;
- anything else: echoes ``text`` and ``payload``, sends header ``x-echo: <text>`` and trailer
  ``x-trailer: done``. ServerStream sends ``count`` replies (index 0..count-1); ClientStream joins
  the texts with ``+`` and sets ``index`` to the message count; Bidi echoes each message.

Every call's invocation metadata is appended to ``servicer.seen`` (a list of dicts) and
``servicer.seen_pairs`` (the pairs, repeated keys kept). The server also serves ``/raw.Echo/Echo``
(raw bytes, echoed back; each request's bytes are appended to ``servicer.raw``).
"""

from __future__ import annotations

import atexit
import importlib
import shutil
import sys
import tempfile
import threading
from collections.abc import Iterator
from concurrent import futures
from contextlib import contextmanager
from pathlib import Path
from types import ModuleType
from typing import Any

import grpc
from support_harness import until_ended

_PROTOS = Path(__file__).parent / "protos"
_lock = threading.Lock()
_modules: tuple[ModuleType, ModuleType] | None = None


def echo_modules() -> tuple[ModuleType, ModuleType]:
    """(echo_test_pb2, echo_test_pb2_grpc), generated on first use."""
    global _modules
    with _lock:
        if _modules is None:
            from grpc_tools import protoc

            out = tempfile.mkdtemp(prefix="grpc_channel_echo_")
            atexit.register(shutil.rmtree, out, True)
            code = protoc.main(
                [
                    "protoc",
                    f"-I{_PROTOS}",
                    f"--python_out={out}",
                    f"--grpc_python_out={out}",
                    str(_PROTOS / "echo_test.proto"),
                ]
            )
            if code != 0:
                raise RuntimeError(f"protoc failed with exit code {code}")
            sys.path.insert(0, out)
            try:
                pb2 = importlib.import_module("echo_test_pb2")
                pb2_grpc = importlib.import_module("echo_test_pb2_grpc")
            finally:
                sys.path.remove(out)
            _modules = (pb2, pb2_grpc)
        return _modules


class EchoServicer:
    """The servicer described in the module docstring (built on the generated base class)."""

    def __init__(self) -> None:
        self.seen: list[dict[str, Any]] = []
        self.seen_pairs: list[list[tuple[str, Any]]] = []
        self.raw: list[bytes] = []
        self._lock = threading.Lock()

    def _record(self, context: grpc.ServicerContext) -> None:
        pairs = [(key, value) for key, value in context.invocation_metadata()]
        with self._lock:
            self.seen.append(dict(pairs))
            self.seen_pairs.append(pairs)

    def raw_echo(self, request: bytes, context: grpc.ServicerContext) -> bytes:
        self._record(context)
        with self._lock:
            self.raw.append(request)
        return request

    def Unary(self, request: Any, context: grpc.ServicerContext) -> Any:
        pb2, _ = echo_modules()
        self._record(context)
        if request.text == "fail":
            context.send_initial_metadata((("x-fail-header", "h"),))
            context.set_trailing_metadata((("x-fail-trailer", "t"),))
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "bad request")
        if request.text == "wait":
            until_ended(context).wait(10)
            return pb2.EchoReply(text="late")
        if request.text == "big":
            return pb2.EchoReply(text="big", payload=b"b" * request.count)
        context.send_initial_metadata((("x-echo", request.text),))
        context.set_trailing_metadata((("x-trailer", "done"),))
        return pb2.EchoReply(text=request.text, payload=request.payload)

    def ServerStream(self, request: Any, context: grpc.ServicerContext) -> Iterator[Any]:
        pb2, _ = echo_modules()
        self._record(context)
        if request.text == "fail":
            context.send_initial_metadata((("x-fail-header", "h"),))
            yield pb2.EchoReply(text="first", index=0)
            context.set_trailing_metadata((("x-fail-trailer", "t"),))
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "bad request")
        if request.text == "wait":
            until_ended(context).wait(10)
            return
        context.send_initial_metadata((("x-echo", request.text),))
        context.set_trailing_metadata((("x-trailer", "done"),))
        for i in range(request.count):
            payload = b"b" * 100 if request.payload == b"big" else request.payload
            yield pb2.EchoReply(text=request.text, index=i, payload=payload)

    def ClientStream(self, request_iterator: Iterator[Any], context: grpc.ServicerContext) -> Any:
        pb2, _ = echo_modules()
        self._record(context)
        texts = [r.text for r in request_iterator]
        if "fail" in texts:
            context.send_initial_metadata((("x-fail-header", "h"),))
            context.set_trailing_metadata((("x-fail-trailer", "t"),))
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "bad request")
        context.send_initial_metadata((("x-echo", "+".join(texts)),))
        context.set_trailing_metadata((("x-trailer", "done"),))
        return pb2.EchoReply(text="+".join(texts), index=len(texts))

    def Bidi(self, request_iterator: Iterator[Any], context: grpc.ServicerContext) -> Iterator[Any]:
        pb2, _ = echo_modules()
        self._record(context)
        context.send_initial_metadata((("x-echo", "bidi"),))
        context.set_trailing_metadata((("x-trailer", "done"),))
        for i, request in enumerate(request_iterator):
            if request.text == "fail":
                context.abort(grpc.StatusCode.INVALID_ARGUMENT, "bad request")
            yield pb2.EchoReply(text=request.text, index=i, payload=request.payload)


@contextmanager
def serve(
    *, options: list[tuple[str, Any]] | None = None, port: int = 0, local_tls: bool = False
) -> Iterator[tuple[int, EchoServicer]]:
    """A real Echo server on 127.0.0.1 (``port`` 0: ephemeral); yields (port, servicer).
    ``local_tls`` serves with ``grpc.local_server_credentials()`` (a secure loopback transport)."""
    _, pb2_grpc = echo_modules()
    servicer = EchoServicer()
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=8), options=options or [])
    pb2_grpc.add_EchoServicer_to_server(servicer, server)
    raw = grpc.unary_unary_rpc_method_handler(servicer.raw_echo)
    server.add_generic_rpc_handlers(
        (grpc.method_handlers_generic_handler("raw.Echo", {"Echo": raw}),)
    )
    if local_tls:
        creds = grpc.local_server_credentials(grpc.LocalConnectionType.LOCAL_TCP)
        bound = server.add_secure_port(f"127.0.0.1:{port}", creds)
    else:
        bound = server.add_insecure_port(f"127.0.0.1:{port}")
    server.start()
    try:
        yield bound, servicer
    finally:
        server.stop(None)
