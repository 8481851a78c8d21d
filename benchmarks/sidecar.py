"""``python -m grpc_channel.bench.sidecar``: what the sidecar proxy adds, beside direct grpcio.

Four arms call one echo app (its own process, a ``grpc.aio`` server on 127.0.0.1):

- ``direct``: straight to the app; ``direct-again``: the same on a channel of its own, an A/A
  row whose ratio to ``direct`` shows the run's noise;
- ``1hop``: caller -> sidecar ``app`` -> app;
- ``2hop``: caller -> sidecar ``front`` -> sidecar ``app`` -> app.

Each sidecar is a :class:`~grpc_channel.sidecar.Sidecar` in a process of its own (as deployed: the
caller's and a sidecar's CPU never share an event loop or a GIL), started by this module's own
runner (``--serve``). Three measurements, each in every one of ``--rounds`` rounds (default 7),
the arms in an order shuffled per round (seeded by ``--seed``):

- ``unary``: ``--unary-calls`` (default 400) sequential unary calls of ``--payload`` bytes
  (default 64) with a sync grpcio stub after 20 unrecorded warm-up calls; p50 and p99;
- ``inflight``: ``--inflight-calls`` (default 3000) unary calls from a ``grpc.aio`` caller keeping
  ``--inflight`` (default 64) in flight; calls per second;
- ``stream``: one bidi stream of ``--stream-messages`` (default 10000) messages of ``--payload``
  bytes, written and read concurrently by a ``grpc.aio`` caller; messages per second from the
  first write to the last echo.

A ratio is the arm's figure over ``direct``'s *in the same round*; the table gives its median over
rounds and the min-max. The targets (reported, never asserted): unary p50 <= 1.7x direct over one
hop and <= 2.5x over two; throughput at 64 in flight >= 0.6x; stream >= 0.5x.

The echo app serves ``/bench.Echo/Unary`` (unary, raw bytes back) and ``/bench.Echo/Stream``
(bidi, every message back): the demo app has no streaming method, and the bidi figure needs one.
``--proxy MODULE:CLASS`` runs the sidecars with another class taking :class:`Sidecar`'s
arguments (for trying changes on a copy); ``--uvloop`` runs their loops on uvloop (must be
importable). ``--candidate MODULE:CLASS`` (with ``--candidate-uvloop``) starts a second pair of
sidecars of that class and adds the arms ``1hop-cand`` and ``2hop-cand``: a change compared with
the current proxy in the same interleaved rounds, which across separate runs this shared 2-core
host cannot do (its load drifts by more than the effects). ``--json-out PATH`` writes the report
as JSON (schema :data:`SCHEMA`); ``grpc-channel bench --preset sidecar`` runs this module.

``main(argv)`` returns 0, or 1 when any call failed (every call must succeed; the failures are
counted per arm and measurement); bad options exit 2 (argparse). A child that does not report
its port within 30 s is killed and the run fails with the reason.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import os
import random
import select
import signal
import statistics
import subprocess
import sys
import threading
import time
from collections.abc import AsyncIterator, Coroutine, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from dataclasses import asdict, dataclass, field
from typing import Any, Final, TypeVar

import grpc
import grpc.aio

from .environment import environment
from .target import Target
from .variants import SyncCaller, Variant, VariantSettings, channel_options, sync_unary

__all__ = [
    "ARMS",
    "CANDIDATE_ARMS",
    "MEASUREMENTS",
    "SCHEMA",
    "TARGETS",
    "ArmRow",
    "Mesh",
    "Report",
    "format_table",
    "main",
    "run",
    "start_mesh",
    "variants",
]

SCHEMA: Final = "grpc-channel-bench-sidecar/2"
ARMS: Final = ("direct", "direct-again", "1hop", "2hop")
#: Extra arms with ``--candidate``: the same two routes through sidecars of the candidate class.
CANDIDATE_ARMS: Final = ("1hop-cand", "2hop-cand")
MEASUREMENTS: Final = ("unary", "inflight", "stream")
UNARY: Final = "/bench.Echo/Unary"
STREAM: Final = "/bench.Echo/Stream"
APP_ID: Final = "app"
FRONT_ID: Final = "front"
#: (measurement, arm) -> (bound, "max" or "min") on the median ratio to ``direct``.
TARGETS: Final[dict[tuple[str, str], tuple[float, str]]] = {
    ("unary", "1hop"): (1.7, "max"),
    ("unary", "2hop"): (2.5, "max"),
    ("inflight", "1hop"): (0.6, "min"),
    ("inflight", "2hop"): (0.6, "min"),
    ("stream", "1hop"): (0.5, "min"),
    ("stream", "2hop"): (0.5, "min"),
}
_WARMUP: Final = 20
_START_TIMEOUT: Final = 30.0
_CALL_TIMEOUT: Final = 30.0
_DEFAULT_PROXY: Final = "grpc_channel.sidecar:Sidecar"

T = TypeVar("T")


# -- the processes ---------------------------------------------------------------------------------


def _echo_handlers() -> grpc.GenericRpcHandler:  # type: ignore[type-arg]
    async def unary(request: bytes, context: grpc.aio.ServicerContext[bytes, bytes]) -> bytes:
        return request

    async def stream(
        requests: AsyncIterator[bytes], context: grpc.aio.ServicerContext[bytes, bytes]
    ) -> AsyncIterator[bytes]:
        async for request in requests:
            yield request

    return grpc.method_handlers_generic_handler(
        "bench.Echo",
        {
            "Unary": grpc.unary_unary_rpc_method_handler(unary),
            "Stream": grpc.stream_stream_rpc_method_handler(stream),
        },
    )


def _load_class(spec: str) -> Any:
    module, _, name = spec.partition(":")
    if not module or not name:
        raise ValueError(f"--proxy must be MODULE:CLASS, got {spec!r}")
    return getattr(importlib.import_module(module), name)


async def _serve(args: argparse.Namespace) -> None:
    """Run one server (the app or a sidecar), print its port, stop when stdin closes (the parent
    went away or asked) or on SIGTERM."""
    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    # A thread waits for stdin's EOF: the child never outlives its parent, even a killed one.
    threading.Thread(
        target=lambda: (sys.stdin.read(), loop.call_soon_threadsafe(stop.set)), daemon=True
    ).start()
    if args.serve == "app":
        server = grpc.aio.server()
        server.add_generic_rpc_handlers((_echo_handlers(),))
        port = server.add_insecure_port("127.0.0.1:0")
        await server.start()
        print(port, flush=True)
        await stop.wait()
        await server.stop(None)
        return
    from grpc_channel.sidecar import PeersResolver

    peers = dict(pair.split("=", 1) for pair in args.peer)
    sidecar_class = _load_class(args.proxy)
    sidecar = sidecar_class(
        args.app_id,
        resolver=PeersResolver(peers=peers, environ={}),
        app_address=args.app_address,
    )
    port = await sidecar.start(args.port)
    print(port, flush=True)
    await stop.wait()
    await sidecar.stop(None)


def _run_serve(args: argparse.Namespace) -> int:
    if args.uvloop:
        # Optional and untyped: imported by name so that neither mypy nor a plain install needs it.
        importlib.import_module("uvloop").run(_serve(args))
    else:
        asyncio.run(_serve(args))
    return 0


@contextmanager
def _child(argv: Sequence[str]) -> Iterator[int]:
    """A ``--serve`` child of this module; yields its port; stopped (stdin closed, then killed
    after 10 s) and reaped afterwards."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "grpc_channel.bench.sidecar", "--serve", *argv],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
    )
    assert proc.stdin is not None and proc.stdout is not None
    try:
        ready, _, _ = select.select([proc.stdout], [], [], _START_TIMEOUT)
        line = proc.stdout.readline() if ready else ""
        if not line.strip().isdigit():
            raise RuntimeError(
                f"sidecar bench child {' '.join(argv)!r} did not report its port within "
                f"{_START_TIMEOUT:.0f} s (exit code {proc.poll()}, output {line!r})"
            )
        yield int(line)
    finally:
        proc.stdin.close()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(10)
        proc.stdout.close()


@dataclass(frozen=True)
class Mesh:
    """Ports of the running app and sidecars (``cand_*``: the candidate's, 0 without one)."""

    app: int
    app_sidecar: int
    front_sidecar: int
    cand_app_sidecar: int = 0
    cand_front_sidecar: int = 0

    def port(self, arm: str) -> int:
        ports = {
            "direct": self.app,
            "direct-again": self.app,
            "1hop": self.app_sidecar,
            "2hop": self.front_sidecar,
            "1hop-cand": self.cand_app_sidecar,
            "2hop-cand": self.cand_front_sidecar,
        }
        if not ports.get(arm):
            raise ValueError(f"no route for arm {arm!r} in this mesh")
        return ports[arm]


def _sidecar_pair(stack: ExitStack, app: int, proxy: str, uvloop: bool) -> tuple[int, int]:
    extra = [f"--proxy={proxy}", *(["--uvloop"] if uvloop else [])]
    near = stack.enter_context(
        _child(["sidecar", f"--app-id={APP_ID}", f"--app-address=127.0.0.1:{app}", *extra])
    )
    front = stack.enter_context(
        _child(["sidecar", f"--app-id={FRONT_ID}", f"--peer={APP_ID}=127.0.0.1:{near}", *extra])
    )
    return near, front


@contextmanager
def start_mesh(
    proxy: str = _DEFAULT_PROXY,
    uvloop: bool = False,
    candidate: str | None = None,
    candidate_uvloop: bool = False,
) -> Iterator[Mesh]:
    """Start the echo app and two sidecars (and two of the ``candidate`` class when given), each
    in its own process; stop them all afterwards."""
    with ExitStack() as stack:
        app = stack.enter_context(_child(["app"]))
        near, front = _sidecar_pair(stack, app, proxy, uvloop)
        cand = (0, 0)
        if candidate is not None:
            cand = _sidecar_pair(stack, app, candidate, candidate_uvloop)
        yield Mesh(app, near, front, *cand)


# -- the caller ------------------------------------------------------------------------------------


_METADATA: Final = (("dapr-app-id", APP_ID),)


def _metadata(arm: str) -> tuple[tuple[str, str], ...] | None:
    return None if arm.startswith("direct") else _METADATA


@dataclass
class _Sample:
    value: float  # p50 seconds (unary) or per second (inflight, stream)
    p99: float | None = None
    failures: int = 0
    errors: list[str] = field(default_factory=list)


def _note(sample: _Sample, err: BaseException) -> None:
    sample.failures += 1
    if len(sample.errors) < 3:
        sample.errors.append(
            f"{err.code().name}: {err.details()}" if isinstance(err, grpc.RpcError) else repr(err)
        )


def _percentile(sorted_values: Sequence[float], q: float) -> float:
    return sorted_values[min(len(sorted_values) - 1, int(q * len(sorted_values)))]


def _unary_block(channel: grpc.Channel, arm: str, calls: int, payload: bytes) -> _Sample:
    call = channel.unary_unary(UNARY, None, None)
    metadata = _metadata(arm)
    sample = _Sample(0.0)
    latencies: list[float] = []
    for i in range(_WARMUP + calls):
        start = time.perf_counter()
        try:
            reply = call(payload, metadata=metadata, timeout=_CALL_TIMEOUT)
        except grpc.RpcError as err:
            _note(sample, err)
            continue
        elapsed = time.perf_counter() - start
        if reply != payload:
            _note(sample, ValueError("echo differs from the request"))
        elif i >= _WARMUP:
            latencies.append(elapsed)
    latencies.sort()
    if latencies:
        sample.value = _percentile(latencies, 0.5)
        sample.p99 = _percentile(latencies, 0.99)
    return sample


async def _inflight_block(
    channel: grpc.aio.Channel, arm: str, calls: int, inflight: int, payload: bytes
) -> _Sample:
    call = channel.unary_unary(UNARY, None, None)
    metadata = _metadata(arm)
    sample = _Sample(0.0)
    left = calls

    async def sender() -> None:
        nonlocal left
        while left > 0:
            left -= 1
            try:
                reply = await call(payload, metadata=metadata, timeout=_CALL_TIMEOUT)
            except grpc.RpcError as err:
                _note(sample, err)
                continue
            if reply != payload:
                _note(sample, ValueError("echo differs from the request"))

    for _ in range(_WARMUP):
        await call(payload, metadata=metadata, timeout=_CALL_TIMEOUT)
    start = time.perf_counter()
    await asyncio.gather(*(sender() for _ in range(inflight)))
    sample.value = calls / (time.perf_counter() - start)
    return sample


async def _stream_block(
    channel: grpc.aio.Channel, arm: str, messages: int, payload: bytes
) -> _Sample:
    sample = _Sample(0.0)
    call = channel.stream_stream(STREAM, None, None)(
        None, metadata=_metadata(arm), timeout=_CALL_TIMEOUT * 4
    )

    async def writer() -> None:
        for _ in range(messages):
            await call.write(payload)
        await call.done_writing()

    start = time.perf_counter()
    try:
        write = asyncio.ensure_future(writer())
        received = 0
        async for reply in call:
            received += 1 if reply == payload else 0
        await write
        code = await call.code()
    except grpc.RpcError as err:
        _note(sample, err)
        return sample
    finally:
        if not call.done():
            call.cancel()
    elapsed = time.perf_counter() - start
    if code is not grpc.StatusCode.OK or received != messages:
        _note(sample, ValueError(f"stream ended {code.name} with {received}/{messages} echoes"))
    sample.value = messages / elapsed
    return sample


class _Loop:
    """A grpc.aio event loop in a thread, so that the sync unary blocks run in the main thread
    while the aio channels live across rounds."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self._thread.start()

    def run(self, coro: Coroutine[Any, Any, T]) -> T:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(_CALL_TIMEOUT * 10)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self._thread.join(10)
        self.loop.close()


# -- variants for ``grpc-channel bench`` -----------------------------------------------------------


def _sidecar_factory(hops: int) -> Any:
    def factory(target: Target, settings: VariantSettings) -> SyncCaller:
        stack = ExitStack()
        try:
            near = stack.enter_context(
                _child(["sidecar", f"--app-id={APP_ID}", f"--app-address={target.address}"])
            )
            port = near
            if hops == 2:
                port = stack.enter_context(
                    _child(["sidecar", f"--app-id={FRONT_ID}", f"--peer={APP_ID}=127.0.0.1:{near}"])
                )
            channel = stack.enter_context(
                grpc.insecure_channel(f"127.0.0.1:{port}", options=channel_options())
            )
        except BaseException:
            stack.close()
            raise
        routed = Target(
            address=f"127.0.0.1:{port}",
            method=target.method,
            payload=target.payload,
            metadata=(*target.metadata, *_METADATA),
            timeout=target.timeout,
        )
        return SyncCaller(sync_unary(channel, routed, raw=True), stack.close)

    factory.__module__ = __name__
    return factory


def variants() -> list[Variant]:
    """``sidecar-1hop`` and ``sidecar-2hop``: the bare raw-bytes sync stub calling the target
    through one sidecar (own process) or two, each variant starting its own sidecars per worker
    and stopping them in ``close``. They compare with ``grpc-sync-raw``."""
    return [
        Variant(
            f"sidecar-{hops}hop",
            f"raw-bytes sync stub through {hops} sidecar process{'es' if hops == 2 else ''}",
            sync_factory=_sidecar_factory(hops),
            baselines=("grpc-sync-raw",),
        )
        for hops in (1, 2)
    ]


# -- the report ------------------------------------------------------------------------------------


@dataclass
class ArmRow:
    """One arm of one measurement: figures per round and ratios to ``direct``'s in that round."""

    measurement: str
    arm: str
    unit: str
    values: list[float] = field(default_factory=list)
    p99s: list[float] = field(default_factory=list)
    ratios: list[float] = field(default_factory=list)
    p99_ratios: list[float] = field(default_factory=list)
    failures: int = 0
    errors: list[str] = field(default_factory=list)

    @property
    def median(self) -> float | None:
        return statistics.median(self.values) if self.values else None

    @property
    def ratio(self) -> float | None:
        return statistics.median(self.ratios) if self.ratios else None

    @property
    def p99_ratio(self) -> float | None:
        return statistics.median(self.p99_ratios) if self.p99_ratios else None

    @property
    def target(self) -> str | None:
        bound = TARGETS.get((self.measurement, self.arm.removesuffix("-cand")))
        if bound is None:
            return None
        return f"{'<=' if bound[1] == 'max' else '>='} {bound[0]}"

    @property
    def met(self) -> bool | None:
        bound = TARGETS.get((self.measurement, self.arm.removesuffix("-cand")))
        ratio = self.ratio
        if bound is None or ratio is None:
            return None
        return ratio <= bound[0] if bound[1] == "max" else ratio >= bound[0]

    def to_json(self) -> dict[str, Any]:
        out = asdict(self)
        out.update(
            median=self.median,
            ratio=self.ratio,
            p99_ratio=self.p99_ratio,
            target=self.target,
            met=self.met,
        )
        return out


@dataclass
class Report:
    """The whole run: settings, environment and one row per (measurement, arm)."""

    settings: dict[str, Any]
    rows: list[ArmRow]
    environment: dict[str, Any] = field(default_factory=dict)

    @property
    def failures(self) -> int:
        return sum(row.failures for row in self.rows)

    def row(self, measurement: str, arm: str) -> ArmRow:
        for row in self.rows:
            if (row.measurement, row.arm) == (measurement, arm):
                return row
        raise KeyError((measurement, arm))

    def to_json(self) -> dict[str, Any]:
        return {
            "schema": SCHEMA,
            "settings": self.settings,
            "environment": self.environment,
            "rows": [row.to_json() for row in self.rows],
            "failures": self.failures,
        }


def _fmt_value(row: ArmRow, value: float | None) -> str:
    if value is None:
        return "-"
    return f"{value * 1000:.3f} ms" if row.unit == "s" else f"{value:,.0f}/s"


def format_table(report: Report) -> str:
    """The report as a text table: median figure, median ratio (min-max) and target per row."""
    lines = [
        f"{'measure':<9}{'arm':<13}{'median':>13}{'ratio':>7}{'  min-max':<14}"
        f"{'p99 ratio':>10}  {'target':<8}{'fails':>6}"
    ]
    for row in report.rows:
        spread = f"  {min(row.ratios):.2f}-{max(row.ratios):.2f}" if row.ratios else "  -"
        ratio = f"{row.ratio:.2f}" if row.ratio is not None else "-"
        p99 = f"{row.p99_ratio:.2f}" if row.p99_ratio is not None else ""
        target = row.target or ""
        if row.met is not None:
            target += " ok" if row.met else " MISS"
        lines.append(
            f"{row.measurement:<9}{row.arm:<13}{_fmt_value(row, row.median):>13}{ratio:>7}"
            f"{spread:<14}{p99:>10}  {target:<8}{row.failures:>6}"
        )
    for row in report.rows:
        for error in row.errors:
            lines.append(f"  {row.measurement}/{row.arm} failed: {error}")
    return "\n".join(lines)


# -- the run ---------------------------------------------------------------------------------------


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be a positive integer, got {text}")
    return value


def run(
    *,
    rounds: int = 7,
    unary_calls: int = 400,
    inflight: int = 64,
    inflight_calls: int = 3000,
    stream_messages: int = 10_000,
    payload_bytes: int = 64,
    measurements: Sequence[str] = MEASUREMENTS,
    proxy: str = _DEFAULT_PROXY,
    uvloop: bool = False,
    candidate: str | None = None,
    candidate_uvloop: bool = False,
    seed: int = 1,
) -> Report:
    """Start the mesh, run every measurement ``rounds`` times over every arm, stop the mesh.

    Counts must be positive (ValueError naming the setting otherwise); ``measurements`` is a subset
    of :data:`MEASUREMENTS`. ``candidate`` (``MODULE:CLASS``) adds the arms of
    :data:`CANDIDATE_ARMS`, so that a change is compared with the current proxy in the same run.
    Failed calls are counted, never raised."""
    counts = {
        "rounds": rounds,
        "unary_calls": unary_calls,
        "inflight": inflight,
        "inflight_calls": inflight_calls,
        "stream_messages": stream_messages,
        "payload_bytes": payload_bytes,
    }
    for name, value in counts.items():
        if isinstance(value, bool) or not isinstance(value, int) or value < 1:
            raise ValueError(f"{name} must be a positive int, got {value!r}")
    unknown = [m for m in measurements if m not in MEASUREMENTS]
    if unknown or not measurements:
        raise ValueError(
            f"measurements must be a non-empty subset of {MEASUREMENTS}, got {unknown}"
        )
    payload = os.urandom(payload_bytes)
    rng = random.Random(seed)
    arms = (*ARMS, *(CANDIDATE_ARMS if candidate is not None else ()))
    rows = {
        (m, arm): ArmRow(m, arm, "s" if m == "unary" else "1/s")
        for m in MEASUREMENTS
        if m in measurements
        for arm in arms
    }
    with start_mesh(proxy, uvloop, candidate, candidate_uvloop) as mesh, ExitStack() as stack:
        aio_loop = _Loop()
        stack.callback(aio_loop.close)
        sync_channels: dict[str, grpc.Channel] = {}
        aio_channels: dict[str, grpc.aio.Channel] = {}
        for arm in arms:
            sync_channels[arm] = stack.enter_context(
                grpc.insecure_channel(f"127.0.0.1:{mesh.port(arm)}")
            )

            async def open_aio(port: int = mesh.port(arm)) -> grpc.aio.Channel:
                return grpc.aio.insecure_channel(f"127.0.0.1:{port}")

            aio_channels[arm] = aio_loop.run(open_aio())
        stack.callback(
            lambda: aio_loop.run(_close_all(list(aio_channels.values())))  # closed before the loop
        )
        for _ in range(rounds):
            for measurement in measurements:
                order = list(arms)
                rng.shuffle(order)
                samples: dict[str, _Sample] = {}
                for arm in order:
                    if measurement == "unary":
                        samples[arm] = _unary_block(sync_channels[arm], arm, unary_calls, payload)
                    elif measurement == "inflight":
                        samples[arm] = aio_loop.run(
                            _inflight_block(
                                aio_channels[arm], arm, inflight_calls, inflight, payload
                            )
                        )
                    else:
                        samples[arm] = aio_loop.run(
                            _stream_block(aio_channels[arm], arm, stream_messages, payload)
                        )
                _collect(rows, measurement, samples)
    settings: dict[str, Any] = {
        **counts,
        "measurements": list(measurements),
        "proxy": proxy,
        "uvloop": uvloop,
        "candidate": candidate,
        "candidate_uvloop": candidate_uvloop,
        "seed": seed,
    }
    return Report(settings, list(rows.values()), environment())


async def _close_all(channels: list[grpc.aio.Channel]) -> None:
    await asyncio.gather(*(channel.close(None) for channel in channels))


def _collect(
    rows: dict[tuple[str, str], ArmRow], measurement: str, samples: dict[str, _Sample]
) -> None:
    base = samples["direct"]
    for arm, sample in samples.items():
        row = rows[(measurement, arm)]
        row.failures += sample.failures
        row.errors.extend(sample.errors[: max(0, 3 - len(row.errors))])
        if sample.value <= 0:
            continue
        row.values.append(sample.value)
        if sample.p99 is not None:
            row.p99s.append(sample.p99)
        if base.value > 0:
            row.ratios.append(sample.value / base.value)
        if sample.p99 is not None and base.p99:
            row.p99_ratios.append(sample.p99 / base.p99)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m grpc_channel.bench.sidecar",
        description="Sidecar proxy overhead beside direct grpcio calls (see the module docs).",
    )
    parser.add_argument("--rounds", type=_positive, default=7)
    parser.add_argument("--unary-calls", type=_positive, default=400)
    parser.add_argument("--inflight", type=_positive, default=64)
    parser.add_argument("--inflight-calls", type=_positive, default=3000)
    parser.add_argument("--stream-messages", type=_positive, default=10_000)
    parser.add_argument("--payload", type=_positive, default=64, help="message bytes")
    parser.add_argument(
        "--measure",
        default=",".join(MEASUREMENTS),
        help=f"comma-separated subset of {','.join(MEASUREMENTS)}",
    )
    parser.add_argument("--proxy", default=_DEFAULT_PROXY, help="MODULE:CLASS of the sidecar")
    parser.add_argument("--uvloop", action="store_true", help="run the sidecars on uvloop")
    parser.add_argument(
        "--candidate", default=None, help="MODULE:CLASS of a sidecar to compare in the same run"
    )
    parser.add_argument(
        "--candidate-uvloop", action="store_true", help="run the candidate sidecars on uvloop"
    )
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--json-out", type=str, default=None)
    parser.add_argument("--serve", choices=("app", "sidecar"), help=argparse.SUPPRESS)
    parser.add_argument("--app-id", default=APP_ID, help=argparse.SUPPRESS)
    parser.add_argument("--app-address", default=None, help=argparse.SUPPRESS)
    parser.add_argument("--peer", action="append", default=[], help=argparse.SUPPRESS)
    parser.add_argument("--port", type=int, default=0, help=argparse.SUPPRESS)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.serve:
        return _run_serve(args)
    measurements = [m.strip() for m in args.measure.split(",") if m.strip()]
    bad = [m for m in measurements if m not in MEASUREMENTS]
    if bad or not measurements:
        parser.error(f"--measure takes a comma-separated subset of {','.join(MEASUREMENTS)}")
    report = run(
        rounds=args.rounds,
        unary_calls=args.unary_calls,
        inflight=args.inflight,
        inflight_calls=args.inflight_calls,
        stream_messages=args.stream_messages,
        payload_bytes=args.payload,
        measurements=measurements,
        proxy=args.proxy,
        uvloop=args.uvloop,
        candidate=args.candidate,
        candidate_uvloop=args.candidate_uvloop,
        seed=args.seed,
    )
    print(format_table(report))
    if args.json_out:
        with open(args.json_out, "w", encoding="utf-8") as out:
            json.dump(report.to_json(), out, indent=2)
    return 1 if report.failures else 0


if __name__ == "__main__":
    sys.exit(main())
