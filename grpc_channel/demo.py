"""A self-contained demo app: Dapr's ``AppCallback`` service on loopback, for tests and benchmarks.

Run it with ``python -m grpc_channel.demo --port 0`` (or ``grpc-channel demo``): it prints
``demo app listening on 127.0.0.1:PORT`` on one line of stdout and serves until SIGTERM or SIGINT.
From Python, ``DemoServer`` runs it in this process and ``start_demo`` in a child process (what the
benchmark uses, so the app never shares the load generator's GIL).

What it serves (a grpcio sync server with one generic handler; raw bytes in, parsed by the
handler):

- ``OnInvoke`` echoes ``data`` and ``content_type`` into the ``InvokeResponse``, sends the response
  header ``demo-call: <n>`` (n counts OnInvoke calls from 1) and the trailer ``demo-trailer: ok``.
  A request whose ``method`` is ``"error"`` fails with INVALID_ARGUMENT, message ``demo error`` and
  a ``google.rpc.BadRequest`` detail (``google.rpc.Status`` in ``grpc-status-details-bin``); bytes
  that do not parse as an ``InvokeRequest`` get INVALID_ARGUMENT too.
- ``HealthCheck`` answers an empty ``HealthCheckResponse``; it is never delayed, stalled or
  token-checked.
- Other paths (``ListTopicSubscriptions``, ``OnTopicEvent``, anything else) are UNIMPLEMENTED.

Knobs (``DemoConfig``): ``delay_ms`` sleeps that long in every OnInvoke (default 0). ``stall_after``
and ``stall_ms`` make the whole app stall once: call number ``stall_after + 1`` starts a pause of
``stall_ms`` during which every OnInvoke (that call, calls in flight and calls arriving) waits until
the pause ends, like a stop-the-world pause; it happens once per app. ``app_token``: when set,
OnInvoke needs the ``dapr-api-token`` header to match (constant-time compare) or gets
UNAUTHENTICATED. ``threads`` bounds the handlers running at once (default 32). The app only binds
loopback addresses.
"""

from __future__ import annotations

import argparse
import contextlib
import hmac
import ipaddress
import os
import queue
import re
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from concurrent import futures
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Any

import grpc
from google.protobuf import any_pb2
from google.protobuf.message import DecodeError
from google.rpc import code_pb2, error_details_pb2, status_pb2
from grpc_status import rpc_status

from grpc_channel.appcallback import HEALTH_CHECK, ON_INVOKE
from grpc_channel.lifecycle import StartsOnEnter, StopsOnExit
from grpc_channel.process import terminate
from grpc_channel.v1 import appcallback_pb2, common_pb2

__all__ = [
    "ERROR_METHOD",
    "HEADER_KEY",
    "TRAILER_KEY",
    "DemoConfig",
    "DemoError",
    "DemoProcess",
    "DemoServer",
    "main",
    "start_demo",
]

ERROR_METHOD = "error"
"""The ``InvokeRequest.method`` that makes the demo app answer with an error status and details."""
HEADER_KEY = "demo-call"
"""Response header the app sends on every OnInvoke: the call's number, counting from 1."""
TRAILER_KEY = "demo-trailer"
"""Trailer the app sends on every OnInvoke (value ``ok``)."""
TOKEN_KEY = "dapr-api-token"

_LISTENING = re.compile(r"^demo app listening on (?P<host>\S+):(?P<port>\d+)$")


class DemoError(RuntimeError):
    """The demo app could not be configured, started or stopped; the message says why."""


@dataclass(frozen=True)
class DemoConfig:
    """How the demo app behaves. Defaults: loopback, ephemeral port, no delay/stall/token."""

    host: str = "127.0.0.1"
    port: int = 0
    delay_ms: float = 0.0
    stall_after: int | None = None
    stall_ms: float = 0.0
    threads: int = 32
    app_token: str | None = None

    def __post_init__(self) -> None:
        if not _is_loopback(self.host):
            raise DemoError(f"host must be a loopback address (127.0.0.0/8, ::1): {self.host!r}")
        if not 0 <= self.port <= 65535:
            raise DemoError(f"port must be within 0..65535 (0 picks a free one), got {self.port}")
        if self.delay_ms < 0 or self.stall_ms < 0:
            raise DemoError("delay_ms and stall_ms must be >= 0")
        if self.stall_after is not None and self.stall_after < 0:
            raise DemoError(f"stall_after must be >= 0 or None, got {self.stall_after}")
        if self.stall_ms > 0 and self.stall_after is None:
            raise DemoError("stall_ms needs stall_after (the number of calls before the stall)")
        if self.threads < 1:
            raise DemoError(f"threads must be >= 1, got {self.threads}")
        if self.app_token is not None and not self.app_token:
            raise DemoError("app_token must be non-empty when given")

    def to_argv(self) -> list[str]:
        """Command-line arguments for ``python -m grpc_channel.demo`` that reproduce this config.

        The token is not put on the command line (other users can read it there); ``start_demo``
        passes it through the ``APP_API_TOKEN`` environment variable instead.
        """
        argv = ["--host", self.host, "--port", str(self.port), "--threads", str(self.threads)]
        if self.delay_ms:
            argv += ["--delay-ms", repr(self.delay_ms)]
        if self.stall_after is not None:
            argv += ["--stall-after", str(self.stall_after), "--stall-ms", repr(self.stall_ms)]
        if self.app_token is not None:
            argv.append("--app-token-env")
        return argv


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class _App:
    """The handlers and their shared state (call counter, the one-time stall)."""

    def __init__(self, config: DemoConfig) -> None:
        self.config = config
        self._lock = threading.Lock()
        self.calls = 0
        self._stalled = False
        self._pause_until = 0.0
        self._delay = config.delay_ms / 1000.0
        self._token = config.app_token.encode() if config.app_token is not None else None

    def on_invoke(self, payload: bytes, context: grpc.ServicerContext) -> bytes:
        with self._lock:
            self.calls += 1
            number = self.calls
            cfg = self.config
            if cfg.stall_after is not None and not self._stalled and number > cfg.stall_after:
                self._stalled = True
                self._pause_until = time.monotonic() + cfg.stall_ms / 1000.0
            pause_until = self._pause_until
        if self._token is not None:
            self._check_token(context)
        try:
            request = common_pb2.InvokeRequest.FromString(payload)
        except DecodeError:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, "the request is not an InvokeRequest")
        if self._delay:
            time.sleep(self._delay)
        remaining = pause_until - time.monotonic()
        if remaining > 0:
            time.sleep(remaining)
        context.send_initial_metadata(((HEADER_KEY, str(number)),))
        context.set_trailing_metadata((_TRAILER,))
        if request.method == ERROR_METHOD:
            status = rpc_status.to_status(_error_status())
            # abort_with_status replaces the trailers: carry ours next to grpc-status-details-bin.
            context.abort_with_status(
                _Status(status.code, status.details, (*status.trailing_metadata, _TRAILER))
            )
        response = common_pb2.InvokeResponse(content_type=request.content_type)
        if request.HasField("data"):
            response.data.CopyFrom(request.data)
        return response.SerializeToString()

    def _check_token(self, context: grpc.ServicerContext) -> None:
        given = b""
        for key, value in context.invocation_metadata():
            if key == TOKEN_KEY:
                given = value.encode() if isinstance(value, str) else value
        assert self._token is not None
        if not hmac.compare_digest(given, self._token):
            context.abort(grpc.StatusCode.UNAUTHENTICATED, f"missing or wrong {TOKEN_KEY}")

    def health_check(self, payload: bytes, context: grpc.ServicerContext) -> bytes:
        return appcallback_pb2.HealthCheckResponse().SerializeToString()


_TRAILER = (TRAILER_KEY, "ok")


class _Status(grpc.Status):
    def __init__(
        self, code: grpc.StatusCode, details: str, trailing_metadata: tuple[Any, ...]
    ) -> None:
        self.code = code
        self.details = details
        self.trailing_metadata = trailing_metadata


def _error_status() -> status_pb2.Status:
    detail = any_pb2.Any()
    detail.Pack(
        error_details_pb2.BadRequest(
            field_violations=[
                error_details_pb2.BadRequest.FieldViolation(
                    field="method", description=f"the demo app fails every {ERROR_METHOD!r} call"
                )
            ]
        )
    )
    return status_pb2.Status(code=code_pb2.INVALID_ARGUMENT, message="demo error", details=[detail])


class _Handler(grpc.GenericRpcHandler):  # type: ignore[type-arg]
    def __init__(self, app: _App) -> None:
        self._handlers = {
            ON_INVOKE: grpc.unary_unary_rpc_method_handler(app.on_invoke),
            HEALTH_CHECK: grpc.unary_unary_rpc_method_handler(app.health_check),
        }

    def service(
        self, handler_call_details: grpc.HandlerCallDetails
    ) -> grpc.RpcMethodHandler[bytes, bytes] | None:
        return self._handlers.get(handler_call_details.method)


class DemoServer(StartsOnEnter):
    """The demo app in this process: ``start()`` returns the bound port, ``stop()`` ends it.

    Usable as a context manager (starts on enter, stops on exit). ``calls`` counts OnInvoke calls.
    """

    def __init__(self, config: DemoConfig | None = None) -> None:
        self.config = config or DemoConfig()
        self._app = _App(self.config)
        self._server: grpc.Server | None = None
        self._port = 0

    @property
    def port(self) -> int:
        """The bound port (0 before ``start``)."""
        return self._port

    @property
    def address(self) -> str:
        host = self.config.host
        return f"[{host}]:{self._port}" if ":" in host else f"{host}:{self._port}"

    @property
    def calls(self) -> int:
        return self._app.calls

    def start(self) -> int:
        if self._server is not None:
            raise DemoError("demo server already started")
        server = grpc.server(
            futures.ThreadPoolExecutor(max_workers=self.config.threads, thread_name_prefix="demo"),
            handlers=[_Handler(self._app)],
            options=(("grpc.so_reuseport", 0),),
        )
        host = self.config.host
        bind = f"[{host.strip('[]')}]" if ":" in host else host
        port = server.add_insecure_port(f"{bind}:{self.config.port}")
        if port == 0:
            server.stop(None)
            raise DemoError(f"could not bind {host}:{self.config.port}")
        server.start()
        self._server, self._port = server, port
        return port

    def stop(self, grace: float | None = None) -> None:
        """Stop serving; ``grace`` seconds for calls in flight (None: cancel them). Idempotent."""
        server, self._server = self._server, None
        if server is not None:
            server.stop(grace).wait()


class DemoProcess(StopsOnExit):
    """A demo app running in a child process; ``stop()`` ends it (SIGTERM, then SIGKILL)."""

    def __init__(
        self, process: subprocess.Popen[str], host: str, port: int, stderr: IO[str]
    ) -> None:
        self._process = process
        self._stderr = stderr
        self.host = host
        self.port = port

    @property
    def address(self) -> str:
        return f"[{self.host}]:{self.port}" if ":" in self.host else f"{self.host}:{self.port}"

    @property
    def pid(self) -> int:
        return self._process.pid

    @property
    def running(self) -> bool:
        return self._process.poll() is None

    def stop(self, timeout: float = 5.0) -> int:
        """Stop the app and return its exit code (SIGKILL after ``timeout`` seconds)."""
        process = self._process
        terminate(process, timeout)
        if process.stdout is not None:
            process.stdout.close()
        self._stderr.close()
        return process.returncode


def _child_env(token: str | None) -> dict[str, str]:
    env = dict(os.environ)
    # The child must import this package even when it is not installed (a source checkout).
    root = str(Path(__file__).resolve().parent.parent)
    env["PYTHONPATH"] = os.pathsep.join(p for p in (root, env.get("PYTHONPATH", "")) if p)
    env.pop("APP_API_TOKEN", None)
    if token is not None:
        env["APP_API_TOKEN"] = token
    return env


def start_demo(
    config: DemoConfig | None = None, *, timeout: float = 30.0, python: str | None = None
) -> tuple[int, DemoProcess]:
    """Start the demo app in a child process; return ``(port, handle)`` once it listens.

    Call ``handle.stop()`` (or use it as a context manager) to end it. Raises DemoError, with the
    child's stderr, when it exits or has not printed its port within ``timeout`` seconds.
    """
    config = config or DemoConfig()
    # Not a with-block: the file outlives this call (DemoProcess.stop closes it).
    stderr = tempfile.TemporaryFile("w+", encoding="utf-8")  # noqa: SIM115
    process = subprocess.Popen(
        [python or sys.executable, "-m", "grpc_channel.demo", *config.to_argv()],
        stdin=subprocess.DEVNULL,
        stdout=subprocess.PIPE,
        stderr=stderr,
        text=True,
        env=_child_env(config.app_token),
    )
    lines: queue.Queue[str] = queue.Queue()
    assert process.stdout is not None
    stdout = process.stdout

    def read_first_line() -> None:
        lines.put(stdout.readline())

    threading.Thread(target=read_first_line, name="demo-stdout", daemon=True).start()
    try:
        line = lines.get(timeout=timeout).strip()
    except queue.Empty:
        line = ""
    match = _LISTENING.match(line)
    if match is None:
        handle = DemoProcess(process, config.host, 0, stderr)
        handle.stop(timeout=2.0)
        stderr_text = _read_all(stderr)
        raise DemoError(
            f"demo app did not report its port within {timeout} s (first line {line!r}); "
            f"stderr: {stderr_text[-2000:]!r}"
        )
    return int(match["port"]), DemoProcess(process, config.host, int(match["port"]), stderr)


def _read_all(stream: IO[str]) -> str:
    with contextlib.suppress(ValueError, OSError):
        stream.seek(0)
        return stream.read()
    return ""


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The demo app's options (shared by ``python -m grpc_channel.demo`` and the CLI)."""
    parser.add_argument("--host", default="127.0.0.1", help="loopback address (default 127.0.0.1)")
    parser.add_argument("--port", type=int, default=0, help="port; 0 picks a free one (default)")
    parser.add_argument("--delay-ms", type=float, default=0.0, help="sleep in every OnInvoke")
    parser.add_argument(
        "--stall-after", type=int, default=None, help="OnInvoke calls before the one-time stall"
    )
    parser.add_argument("--stall-ms", type=float, default=0.0, help="length of the one-time stall")
    parser.add_argument("--threads", type=int, default=32, help="handler threads (default 32)")
    parser.add_argument(
        "--app-token-env",
        action="store_true",
        help="require dapr-api-token to equal the APP_API_TOKEN environment variable",
    )


def config_from_args(args: argparse.Namespace) -> DemoConfig:
    token: str | None = None
    if args.app_token_env:
        token = os.environ.get("APP_API_TOKEN") or None
        if token is None:
            raise DemoError("--app-token-env given but APP_API_TOKEN is not set")
    return DemoConfig(
        host=args.host,
        port=args.port,
        delay_ms=args.delay_ms,
        stall_after=args.stall_after,
        stall_ms=args.stall_ms,
        threads=args.threads,
        app_token=token,
    )


def serve_until_signalled(config: DemoConfig, out: Callable[[str], Any] = print) -> int:
    """Run the app until SIGTERM or SIGINT; report the address through ``out`` first."""
    stop = threading.Event()

    def on_signal(signum: int, frame: object) -> None:
        stop.set()

    previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}
    server = DemoServer(config)
    try:
        server.start()
        out(f"demo app listening on {server.address}")
        while not stop.wait(0.5):
            pass
    finally:
        server.stop(grace=1.0)
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    return 0


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m grpc_channel.demo``: serve the demo app; returns the exit code."""
    parser = argparse.ArgumentParser(
        prog="python -m grpc_channel.demo", description="Serve the demo AppCallback app."
    )
    add_arguments(parser)
    args = parser.parse_args(argv)
    try:
        config = config_from_args(args)
    except DemoError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    return serve_until_signalled(config, lambda line: print(line, flush=True))


if __name__ == "__main__":
    raise SystemExit(main())
