"""Sidecars for the proxy tests: a background event loop that hosts them, and a two-hop mesh.

The sidecars run on their own loop in a daemon thread (:class:`LoopThread`), so a test may call
through them with sync grpcio stubs from its own thread, or with grpc.aio stubs inside its own
``asyncio.run``. The target app is the scripted servicer of :mod:`support_harness`.

:func:`mesh` stands up, on 127.0.0.1 ephemeral ports::

    caller -> sidecar "front" (FRONT) -> sidecar "app" (APP) -> scripted app

``front`` demands :data:`CALLER_TOKEN` and presents :data:`CLUSTER_TOKEN` to its peers; ``app``
demands :data:`CLUSTER_TOKEN` and presents :data:`APP_TOKEN` to its app. A caller reaches the app
through one sidecar by calling APP's port with CLUSTER_TOKEN, or through two by calling FRONT's
port with CALLER_TOKEN; either way with ``dapr-app-id: app``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import pathlib
import subprocess
import sys
import threading
from collections.abc import Coroutine, Iterator
from dataclasses import dataclass
from typing import Any, TypeVar

from support_harness import Recorder, aio_server, sync_server

from grpc_channel.sidecar import PeersResolver, Sidecar

T = TypeVar("T")

APP = "app"
FRONT = "front"
CALLER_TOKEN = "caller-secret"
CLUSTER_TOKEN = "cluster-secret"
APP_TOKEN = "app-secret"


class LoopThread:
    """An asyncio loop in a daemon thread; :meth:`run` runs a coroutine there and waits."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()

    def run(self, coro: Coroutine[Any, Any, T], timeout: float = 30.0) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()


@contextlib.contextmanager
def loop_thread() -> Iterator[LoopThread]:
    runner = LoopThread()
    try:
        yield runner
    finally:
        runner.close()


@dataclass
class Mesh:
    """A running two-sidecar mesh in front of a scripted app (see the module docs)."""

    loop: LoopThread
    rec: Recorder
    app_port: int
    app_sidecar: Sidecar
    front_sidecar: Sidecar

    @property
    def one_hop(self) -> tuple[int, str]:
        """(port, token) to reach the app through one sidecar."""
        return self.app_sidecar.port, CLUSTER_TOKEN

    @property
    def two_hops(self) -> tuple[int, str]:
        """(port, token) to reach the app through two sidecars."""
        return self.front_sidecar.port, CALLER_TOKEN

    def route(self, hops: int) -> tuple[int, str]:
        return self.one_hop if hops == 1 else self.two_hops


def start_sidecar(loop: LoopThread, sidecar: Sidecar) -> Sidecar:
    loop.run(sidecar.start())
    return sidecar


@contextlib.contextmanager
def scripted_app(rec: Recorder, loop: LoopThread, aio: bool) -> Iterator[int]:
    """The scripted app: a sync server, or an aio one on ``loop``; yields its port."""
    if not aio:
        with sync_server(rec, workers=32) as port:
            yield port
        return
    served = aio_server(rec)
    port = loop.run(served.__aenter__())
    try:
        yield port
    finally:
        loop.run(served.__aexit__(None, None, None))


@contextlib.contextmanager
def mesh(
    *,
    aio_app: bool = False,
    app_kw: dict[str, Any] | None = None,
    front_kw: dict[str, Any] | None = None,
) -> Iterator[Mesh]:
    """The mesh in front of a sync (or aio) scripted app; every server is stopped afterwards.
    ``app_kw`` and ``front_kw`` override the two sidecars' settings."""
    rec = Recorder()
    with loop_thread() as loop, scripted_app(rec, loop, aio_app) as app_port:
        app_sidecar = Sidecar(
            APP,
            resolver=PeersResolver(environ={}),
            app_address=f"127.0.0.1:{app_port}",
            api_token=CLUSTER_TOKEN,
            app_token=APP_TOKEN,
            **(app_kw or {}),
        )
        start_sidecar(loop, app_sidecar)
        try:
            front_sidecar = Sidecar(
                FRONT,
                resolver=PeersResolver(peers={APP: f"127.0.0.1:{app_sidecar.port}"}, environ={}),
                api_token=CALLER_TOKEN,
                peer_token=CLUSTER_TOKEN,
                **(front_kw or {}),
            )
            start_sidecar(loop, front_sidecar)
            try:
                yield Mesh(loop, rec, app_port, app_sidecar, front_sidecar)
            finally:
                loop.run(front_sidecar.stop(None))
        finally:
            loop.run(app_sidecar.stop(None))


def call_metadata(token: str | None, target: str | None = APP, *extra: tuple[str, Any]) -> Any:
    """Invocation metadata for a caller: the token, ``dapr-app-id`` and ``extra`` pairs."""
    pairs: list[tuple[str, Any]] = []
    if token is not None:
        pairs.append(("dapr-api-token", token))
    if target is not None:
        pairs.append(("dapr-app-id", target))
    return (*pairs, *extra)


def serve_scripted_app_forever() -> None:
    """Serve the sync scripted app on an ephemeral port, print the port, run until killed (the
    app process the "kill the app" test starts and kills)."""
    import time

    with sync_server(Recorder()) as port:
        sys.stdout.write(f"{port}\n")
        sys.stdout.flush()
        while True:
            time.sleep(60)


_SERVE_APP = "import support_sidecar; support_sidecar.serve_scripted_app_forever()"


@contextlib.contextmanager
def app_process() -> Iterator[tuple[subprocess.Popen[str], int]]:
    """The scripted app in a child process (so that it can be killed outright): the process and
    its port; killed and reaped afterwards."""
    here = pathlib.Path(__file__).parent
    proc = subprocess.Popen(
        [sys.executable, "-c", _SERVE_APP],
        cwd=here,
        env={**os.environ, "PYTHONPATH": os.pathsep.join([str(here), *sys.path])},
        stdout=subprocess.PIPE,
        text=True,
    )
    try:
        assert proc.stdout is not None
        port = int(proc.stdout.readline())
        yield proc, port
    finally:
        proc.kill()
        proc.wait(10)
        if proc.stdout is not None:
            proc.stdout.close()
