"""The pub/sub runtime process (``python -m grpc_channel.pubsub``): killed with SIGKILL mid-stream
and started again, it loses no event (Redis Streams and NATS JetStream); it stops cleanly on
SIGTERM, sends the app token from ``APP_API_TOKEN`` without logging it, and refuses bad flags with
exit status 2 naming the flag.

Our App (sync server) runs in the test process; the runtime is a child process; events are
published from the test process straight to the broker, as another app's sidecar would.
"""

from __future__ import annotations

import asyncio
import os
import pathlib
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import Counter
from collections.abc import Iterator

import pytest
from support_harness import wait_until

from grpc_channel.app import App, TopicEvent
from grpc_channel.pubsub import envelope_for_publish
from grpc_channel.pubsub.brokers import load_component_file
from grpc_channel.pubsub.serve import READY_MESSAGE, main

ROOT = pathlib.Path(__file__).resolve().parents[1]
PUBSUB = "pubsub"
EVENTS = 200
HANDLER_SECONDS = 0.05  # keeps deliveries in flight when the runtime is killed
RUNTIME_CONCURRENCY = 4
KILL_AFTER = 20  # delivered events before the kill
# The runtime refuses a subscription without any route, and the App lists an empty default route
# for a handler registered without one; so every handler here names its route.
ROUTE = "/events"


# -- helpers ---------------------------------------------------------------------------------------


def _component_yaml(kind: str, url: str) -> str:
    """A component whose unacked messages come back within seconds of a crash."""
    if kind == "redis":
        host = url.removeprefix("redis://").split("/", 1)[0]
        entries = {"redisHost": host, "processingTimeout": "2s", "redeliverInterval": "500ms"}
        kind_name = "pubsub.redis"
    else:
        entries = {"natsURL": url, "ackWait": "2s", "nakDelay": "100ms"}
        kind_name = "pubsub.jetstream"
    metadata = "".join(f"    - name: {k}\n      value: {v!r}\n" for k, v in entries.items())
    return (
        "apiVersion: dapr.io/v1alpha1\nkind: Component\nmetadata:\n"
        f"  name: {PUBSUB}\nspec:\n  type: {kind_name}\n  version: v1\n  metadata:\n{metadata}"
    )


class RuntimeProcess:
    """One ``python -m grpc_channel.pubsub`` child, its stderr in a file."""

    def __init__(self, args: list[str], log: pathlib.Path, token: str | None = None) -> None:
        env = {k: v for k, v in os.environ.items() if k != "APP_API_TOKEN"}
        env["GRPC_VERBOSITY"] = "ERROR"
        if token is not None:
            env["APP_API_TOKEN"] = token
        self.log = log
        with log.open("wb") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "grpc_channel.pubsub", *args],
                cwd=ROOT,
                env=env,
                stdout=out,
                stderr=subprocess.STDOUT,
            )

    def text(self) -> str:
        return self.log.read_text(errors="replace")

    def wait_ready(self, timeout: float = 60.0) -> str:
        """The ready line; fails with the log when the process exits or never gets ready."""
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            for line in self.text().splitlines():
                if READY_MESSAGE in line:
                    return line
            if self.process.poll() is not None:
                break
            time.sleep(0.02)
        pytest.fail(f"runtime not ready (exit {self.process.poll()}):\n{self.text()[-3000:]}")

    def terminate(self, timeout: float = 30.0) -> int:
        self.process.send_signal(signal.SIGTERM)
        return self.process.wait(timeout)

    def close(self) -> None:
        if self.process.poll() is None:
            self.process.kill()
        self.process.wait(10)


@pytest.fixture
def runtimes() -> Iterator[list[RuntimeProcess]]:
    """Every runtime process a test starts, killed at its end if still running."""
    started: list[RuntimeProcess] = []
    yield started
    for runtime in started:
        runtime.close()


class Deliveries:
    """Event ids the app saw, with counts (thread-safe)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts: Counter[str] = Counter()

    def record(self, event_id: str) -> None:
        with self._lock:
            self._counts[event_id] += 1

    def snapshot(self) -> Counter[str]:
        with self._lock:
            return Counter(self._counts)

    def distinct(self) -> int:
        with self._lock:
            return len(self._counts)


async def _publish(component_file: pathlib.Path, topic: str, ids: list[str]) -> None:
    (component,) = load_component_file(component_file)
    async with component.create() as broker:
        for event_id in ids:
            envelope = envelope_for_publish(
                f'{{"n": "{event_id}"}}'.encode(),
                source="publisher",
                topic=topic,
                pubsub_name=PUBSUB,
                event_id=event_id,
            )
            await broker.publish(topic, envelope, message_id=event_id)


# -- the crash test --------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["redis", "nats"])
def test_no_event_is_lost_when_the_runtime_is_killed_and_restarted(
    kind: str,
    tmp_path: pathlib.Path,
    unique_name: str,
    runtimes: list[RuntimeProcess],
    request: pytest.FixtureRequest,
) -> None:
    url = request.getfixturevalue("redis_url" if kind == "redis" else "nats_url")
    component_file = tmp_path / "pubsub.yaml"
    component_file.write_text(_component_yaml(kind, url))
    topic = unique_name
    deliveries = Deliveries()

    app = App(app_token="")

    @app.subscribe(PUBSUB, topic, route=ROUTE)
    def on_event(event: TopicEvent) -> None:
        deliveries.record(event.id)
        time.sleep(HANDLER_SECONDS)

    port = app.start(0, max_workers=2 * RUNTIME_CONCURRENCY)
    try:
        args = [
            "--app-id", f"crash-{unique_name}",
            "--app-port", str(port),
            "--components", str(component_file),
            "--concurrency", str(RUNTIME_CONCURRENCY),
            "--drain-timeout", "10",
        ]  # fmt: skip
        first = RuntimeProcess(args, tmp_path / "first.log")
        runtimes.append(first)
        assert "1 subscription" in first.wait_ready()

        ids = [f"ev-{i:04d}-{uuid.uuid4().hex[:8]}" for i in range(EVENTS)]
        asyncio.run(_publish(component_file, topic, ids))
        assert wait_until(lambda: deliveries.distinct() >= KILL_AFTER, 60), first.text()[-2000:]
        first.process.send_signal(signal.SIGKILL)
        assert first.process.wait(10) == -signal.SIGKILL
        seen_before_restart = deliveries.distinct()
        assert seen_before_restart < EVENTS, "every event arrived before the kill: no crash tested"

        second = RuntimeProcess(args, tmp_path / "second.log")
        runtimes.append(second)
        second.wait_ready()
        everything = set(ids)
        assert wait_until(lambda: everything <= set(deliveries.snapshot()), 90), (
            f"lost after the crash: {sorted(everything - set(deliveries.snapshot()))[:10]}...\n"
            f"{second.text()[-2000:]}"
        )
        assert second.terminate() == 0, second.text()[-2000:]
    finally:
        app.stop(0)

    counts = deliveries.snapshot()
    assert set(counts) == everything  # nothing but what was published
    duplicates = sum(count - 1 for count in counts.values())
    print(
        f"{kind}: {EVENTS} events, {seen_before_restart} before the kill, {duplicates} duplicates"
    )


# -- the process's other promises ------------------------------------------------------------------


def test_the_app_token_comes_from_the_environment_and_is_never_logged(
    tmp_path: pathlib.Path, unique_name: str, runtimes: list[RuntimeProcess]
) -> None:
    token = f"secret-{uuid.uuid4().hex}"
    app = App(app_token=token)  # every call without this token is refused

    @app.subscribe(PUBSUB, unique_name, route=ROUTE)
    def on_event(event: TopicEvent) -> None:
        return None

    port = app.start(0)
    try:
        runtime = RuntimeProcess(
            ["--app-id", "tokened", "--app-port", str(port)], tmp_path / "rt.log", token=token
        )
        runtimes.append(runtime)
        line = runtime.wait_ready()
        assert "1 subscription " in line and "pubsub" in line  # the default in-memory broker
        assert runtime.terminate() == 0, runtime.text()[-2000:]
    finally:
        app.stop(0)
    assert token not in runtime.text()


def test_a_runtime_whose_app_never_answers_exits_1(
    tmp_path: pathlib.Path, runtimes: list[RuntimeProcess]
) -> None:
    app = App(app_token="")
    port = app.start(0)
    app.stop(0)  # a port nobody listens on any more
    runtime = RuntimeProcess(["--app-id", "lonely", "--app-port", str(port)], tmp_path / "rt.log")
    runtimes.append(runtime)
    assert runtime.process.wait(60) == 1
    assert "could not start" in runtime.text()


def test_sigterm_while_waiting_for_the_app_exits_0(
    tmp_path: pathlib.Path, runtimes: list[RuntimeProcess]
) -> None:
    app = App(app_token="")
    port = app.start(0)
    app.stop(0)
    runtime = RuntimeProcess(["--app-id", "patient", "--app-port", str(port)], tmp_path / "rt.log")
    runtimes.append(runtime)
    # The runtime logs each failed listing attempt; the first one means it is waiting for the app.
    assert wait_until(lambda: "attempt 1 of" in runtime.text(), 30), runtime.text()
    assert runtime.terminate() == 0, runtime.text()
    assert READY_MESSAGE not in runtime.text()


@pytest.mark.parametrize(
    ("flags", "named"),
    [
        (["--app-port", "5000"], "--app-id"),
        (["--app-id", "a", "--app-port", "70000"], "--app-port"),
        (["--app-id", "a b", "--app-port", "5000"], "--app-id"),
        (["--app-id", "a", "--app-port", "5000", "--concurrency", "0"], "--concurrency"),
        (
            ["--app-id", "a", "--app-port", "5000", "--delivery-timeout", "nan"],
            "--delivery-timeout",
        ),
        (["--app-id", "a", "--app-port", "5000", "--components", "/no/such/dir"], "--components"),
    ],
)
def test_bad_flags_exit_2_naming_the_flag(
    flags: list[str], named: str, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(flags) == 2
    error_line = capsys.readouterr().err.strip().splitlines()[-1]
    assert "error:" in error_line and named in error_line


def test_an_invalid_component_file_exits_2_naming_the_flag_and_the_field(
    tmp_path: pathlib.Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "bad.yaml"
    bad.write_text(
        _component_yaml("redis", "redis://127.0.0.1:1/0").replace("version: v1", "version: v9")
    )
    assert main(["--app-id", "a", "--app-port", "5000", "--components", str(bad)]) == 2
    err = capsys.readouterr().err
    assert "--components" in err and "spec.version" in err
