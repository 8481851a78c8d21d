"""Sidecars as real processes for tests: ``python -m grpc_channel.sidecar`` started, awaited on
its one JSON ready line, stopped with SIGTERM (killed when it does not exit in time).

:class:`SidecarProcess` owns one process. :meth:`~SidecarProcess.start` returns once the ready
line arrived (or raises with the process's stderr); :meth:`~SidecarProcess.terminate` sends
SIGTERM and returns the exit code; :meth:`~SidecarProcess.stop` always leaves the process reaped
(kill after ``timeout``). :func:`sidecar_process` is the context-manager form.
"""

from __future__ import annotations

import contextlib
import json
import os
import pathlib
import queue
import signal
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any

import grpc

from grpc_channel import process

__all__ = ["SidecarProcess", "sidecar_process", "write_peers"]

_ROOT = pathlib.Path(__file__).resolve().parent.parent
_READY_TIMEOUT = 30.0


def write_peers(path: pathlib.Path, peers: Mapping[str, str]) -> pathlib.Path:
    """Write a peers file (JSON) and return its path."""
    path.write_text(json.dumps(dict(peers)))
    return path


class SidecarProcess:
    """One ``python -m grpc_channel.sidecar`` process (or ``python <command>``) with ``args`` and
    extra ``env`` (tokens); the token variables of the test process are not inherited unless given
    in ``env``."""

    def __init__(
        self,
        args: Sequence[str],
        env: Mapping[str, str] | None = None,
        command: Sequence[str] = ("-m", "grpc_channel.sidecar"),
    ) -> None:
        self.args = list(args)
        self.command = list(command)
        base = {k: v for k, v in os.environ.items() if k not in _TOKEN_VARS}
        base["PYTHONPATH"] = os.pathsep.join(p for p in (str(_ROOT), base.get("PYTHONPATH")) if p)
        self.env = {**base, **(env or {})}
        self.proc: subprocess.Popen[str] | None = None
        self.ready: dict[str, Any] = {}
        self._stderr: list[str] = []
        self._threads: list[threading.Thread] = []

    @property
    def grpc_port(self) -> int:
        port: int = self.ready["grpc_port"]
        return port

    @property
    def target(self) -> str:
        return f"127.0.0.1:{self.grpc_port}"

    @property
    def http_port(self) -> int | None:
        port: int | None = self.ready.get("http_port")
        return port

    @property
    def stderr(self) -> str:
        return "".join(self._stderr)

    def start(self, timeout: float = _READY_TIMEOUT) -> SidecarProcess:
        """Launch and wait for the ready line; RuntimeError (with stderr) if it never comes."""
        self.proc = subprocess.Popen(
            [sys.executable, *self.command, *self.args],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=self.env,
            cwd=_ROOT,
        )
        lines: queue.Queue[str | None] = queue.Queue()
        assert self.proc.stdout is not None and self.proc.stderr is not None
        self._threads = [
            threading.Thread(target=_pump, args=(self.proc.stdout, lines.put, True), daemon=True),
            threading.Thread(
                target=_pump, args=(self.proc.stderr, self._stderr.append), daemon=True
            ),
        ]
        for thread in self._threads:
            thread.start()
        try:
            line = lines.get(timeout=timeout)
        except queue.Empty:
            line = None
        if line is None:
            self.stop()
            raise RuntimeError(f"sidecar {self.args} never got ready:\n{self.stderr}")
        self.ready = json.loads(line)
        return self

    def wait(self, timeout: float = 15.0) -> int:
        """Wait for the process to exit on its own; its exit code (killed after ``timeout``)."""
        assert self.proc is not None
        try:
            return self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.stop()
            raise

    def terminate(self, timeout: float = 15.0) -> int:
        """SIGTERM, then wait; the exit code (killed and re-raised after ``timeout``)."""
        assert self.proc is not None
        self.proc.send_signal(signal.SIGTERM)
        return self.wait(timeout)

    def stop(self, timeout: float = 10.0) -> None:
        """Make sure the process is gone: SIGTERM, then SIGKILL after ``timeout``; reaped."""
        proc = self.proc
        if proc is None:
            return
        process.terminate(proc, timeout)
        for thread in self._threads:
            thread.join(5)
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()


_TOKEN_VARS = ("DAPR_API_TOKEN", "APP_API_TOKEN", "GRPC_CHANNEL_PEERS")


def _pump(stream: Any, sink: Callable[[Any], None], eof: object = False) -> None:
    """Copy ``stream``'s lines into ``sink`` (a reader thread per pipe, so a chatty stderr never
    blocks the process); ``sink(None)`` at the end when ``eof``."""
    for line in stream:
        sink(line)
    if eof:
        sink(None)


@contextlib.contextmanager
def sidecar_process(
    args: Sequence[str], env: Mapping[str, str] | None = None
) -> Iterator[SidecarProcess]:
    """A started :class:`SidecarProcess`, stopped (and reaped) afterwards."""
    process = SidecarProcess(args, env)
    try:
        yield process.start()
    finally:
        process.stop()


class RecordingApp:
    """A dapr SDK ``App`` in its own process that records the events of its subscription (pubsub
    ``pubsub``, topic ``topic``, default ``orders``) and of that subscription's dead-letter topic
    ``<topic>-dead``; :meth:`events` asks it (through OnInvoke ``events``) for
    ``[{"topic", "data", "id", "handler"}, ...]`` in arrival order, ``handler`` being ``"topic"``
    or ``"dead"``.

    The subscription allows one delivery attempt (``retryMaxAttempts: 1``): a failed attempt goes
    to the dead-letter topic at once, so a test sees any attempt that should not have counted.
    ``port`` (default: a free one) lets a second app take the place of a stopped one."""

    def __init__(self, topic: str = "orders", port: int | None = None) -> None:
        from support_harness import free_port

        self.port = free_port() if port is None else port
        self.topic = topic
        self._proc: subprocess.Popen[bytes] | None = None

    def start(self) -> RecordingApp:
        env = {k: v for k, v in os.environ.items() if k not in _TOKEN_VARS}
        here = pathlib.Path(__file__).resolve().parent
        env["PYTHONPATH"] = os.pathsep.join(map(str, (here, _ROOT)))
        self._proc = subprocess.Popen(
            [sys.executable, str(pathlib.Path(__file__).resolve()), str(self.port), self.topic],
            env=env,
            stdout=subprocess.DEVNULL,
        )
        from support_harness import wait_until

        if not wait_until(self._answers, timeout=_READY_TIMEOUT):
            self.stop()
            raise RuntimeError(f"the recording app on port {self.port} never answered")
        return self

    def _answers(self) -> bool:
        assert self._proc is not None
        if self._proc.poll() is not None:
            raise RuntimeError(f"the recording app exited with {self._proc.returncode}")
        try:
            self.events()
        except grpc.RpcError:
            return False
        return True

    def events(self) -> list[dict[str, Any]]:
        from support_dapr_app import app_call

        target = f"127.0.0.1:{self.port}"
        result: list[dict[str, Any]] = json.loads(app_call(target, "events", timeout=2.0))
        return result

    def stop(self) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()


@contextlib.contextmanager
def recording_app(topic: str = "orders", port: int | None = None) -> Iterator[RecordingApp]:
    """A started :class:`RecordingApp`, stopped afterwards."""
    app = RecordingApp(topic, port)
    try:
        yield app.start()
    finally:
        app.stop()


def _serve_recording_app(port: int, topic: str) -> None:
    from dapr.clients.grpc._response import TopicEventResponse
    from dapr.ext.grpc import App

    app = App()
    app.register_health_check(lambda: None)
    seen: list[dict[str, Any]] = []
    lock = threading.Lock()

    def record(event: Any, handler: str) -> Any:
        data = event.Data()
        text = data.decode() if isinstance(data, bytes) else str(data)
        record = {"topic": event.Subject(), "data": text, "id": event.EventID(), "handler": handler}
        with lock:
            seen.append(record)
        return TopicEventResponse("success")

    dead = f"{topic}-dead"
    one_attempt = {"retryMaxAttempts": "1"}

    @app.subscribe("pubsub", topic, metadata=one_attempt, dead_letter_topic=dead)  # type: ignore[untyped-decorator]
    def orders(event: Any) -> Any:
        return record(event, "topic")

    @app.subscribe(pubsub_name="pubsub", topic=dead)  # type: ignore[untyped-decorator]
    def dead_letters(event: Any) -> Any:
        return record(event, "dead")

    @app.method("events")  # type: ignore[untyped-decorator]
    def events(request: Any) -> Any:
        with lock:
            return json.dumps(seen)

    app.run(port, "127.0.0.1")


if __name__ == "__main__":
    _serve_recording_app(int(sys.argv[1]), sys.argv[2])
