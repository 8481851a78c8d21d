"""``grpc-channel bench``: the command-line front of the benchmark.

Without ``--target`` it starts the demo app (``grpc_channel.demo``) in its own process on
127.0.0.1 and compares every available variant calling OnInvoke, in interleaved rounds, then prints
a table and writes ``bench-report.html`` and ``bench-report.json``. ``--preset NAME`` runs a named
comparison instead (``interceptors``, ``channel``, ``channel-throughput``; options given
explicitly win over the preset's). ``--accuracy-check`` instead
checks the tool itself: two demo apps (no delay, and ``--delay-ms``, default 5), and the p50
reported against the delayed app must be within 5 % of the delay plus the bare p50 measured in the
same run; bare calls are measured back to back and after idling as long as the delay (see
``accuracy_verdict``).
"""

from __future__ import annotations

import argparse
import shlex
import sys
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path
from typing import Any

from grpc_channel.demo import DemoError

from .report import format_table, write_reports
from .runner import Arm, LoadSpec, RunError, RunResult, cpu_busy, plan_arms, run
from .target import (
    Target,
    TargetError,
    bytes_target,
    invoke_target,
    json_target,
    reflect_descriptor_set,
)
from .variants import VariantError, available_variants, registered_variants

__all__ = [
    "ACCURACY_TOLERANCE",
    "PRESETS",
    "accuracy_verdict",
    "add_arguments",
    "execute",
    "main",
    "run_command",
]

ACCURACY_TOLERANCE = 0.05
"""The accuracy check passes when the reported p50 is within 5 % of delay + bare p50."""

_INVOKE_METADATA = ["x-request-id=bench", "x-tenant=demo", "accept=application/json"]
PRESETS: dict[str, dict[str, Any]] = {
    "interceptors": {
        "about": "issue 3, policies as interceptors vs composed, with/without tracing, sync+aio",
        # grpc-*-by-hand: reference, the token sent and headers/trailers read with plain grpcio.
        "variants": "grpc-sync,grpc-sync-again,grpc-sync-by-hand,intercept,chain,"
        "intercept+tracing,chain+tracing,chain+lean-tracing,grpc-aio,grpc-aio-again,"
        "grpc-aio-by-hand,intercept-aio,chain-aio,intercept-aio+tracing,chain-aio+tracing,"
        "chain-aio+lean-tracing",
    },
    "channel": {
        "about": "issue 4, Channel.invoke_method sync and aio vs bare stubs, 3 metadata pairs",
        "metadata": _INVOKE_METADATA,
        # channel/channel-aio compare with grpc-{sync,aio}-invoke (the same bytes and metadata on
        # the wire); grpc-sync/grpc-aio and the *-same-work stubs are there for reference.
        "variants": "grpc-sync,grpc-sync-again,grpc-sync-invoke,grpc-sync-same-work,channel,"
        "channel+tracing,channel+lean-tracing,grpc-aio,grpc-aio-again,grpc-aio-invoke,"
        "grpc-aio-same-work,channel-aio,channel-aio+tracing,channel-aio+lean-tracing",
    },
    "channel-throughput": {
        "about": "issue 4, aio with 64 calls in flight (see the rps ratio)",
        "variants": "grpc-aio,grpc-aio-invoke,channel-aio",
        "metadata": _INVOKE_METADATA,
        "concurrency": 64,
        "demo_threads": 64,
        # 2000-call blocks keep 64 calls in flight long enough to reach a steady state.
        "rounds": 8,
        "block": 2000,
    },
}
"""Named comparisons (``--preset``): each sets the variants and, for some, load options."""

_DEFAULTS = {"concurrency": 1, "demo_threads": 32, "rounds": 40, "block": 100}


def _check_combinations(args: argparse.Namespace) -> None:
    """Refuse options that the other options would leave unused (nothing is silently ignored)."""

    def given(*names: str) -> list[str]:
        return ["--" + n.replace("_", "-") for n in names if getattr(args, n) is not None]

    raw_payload = args.payload_file is not None or args.payload_hex is not None
    if raw_payload or args.json_request is not None:
        if unused := given("size", "invoke_method", "content_type"):
            raise _UsageError(
                f"{', '.join(unused)} shape the OnInvoke request; drop them with a "
                "payload given by --payload-*/--json"
            )
    else:
        if unused := given("descriptor_set", "request_type", "response_type"):
            raise _UsageError(f"{', '.join(unused)} need --json")
        if args.reflect:
            raise _UsageError("--reflect needs --json")
    demo = given("delay_ms", "stall_after", "stall_ms", "demo_threads")
    if args.target is not None and demo:
        raise _UsageError(f"{', '.join(demo)} configure the demo app; drop them with --target")
    if args.accuracy_check:
        if args.target is not None or given("stall_after", "stall_ms", "preset", "baseline"):
            raise _UsageError(
                "--accuracy-check starts its own demo apps and arms; it takes no --target, "
                "--stall-*, --preset or --baseline"
            )
        if args.variants is not None and "," in args.variants:
            raise _UsageError("--accuracy-check measures one variant; give one name")
        if args.mode != "closed":
            raise _UsageError("--accuracy-check runs the closed loop")


def _apply_preset(args: argparse.Namespace) -> None:
    """Fill options not given on the command line from the preset, then from the defaults.

    Records which load options were given (``args.given``), since the rounds give way to a small
    ``--calls`` unless given. Concurrency defaults to one call in flight per worker.
    """
    preset = PRESETS.get(args.preset or "", {})
    args.given = {
        key for key in ("rounds", "block", "concurrency") if getattr(args, key) is not None
    }
    defaults = {**_DEFAULTS, "concurrency": max(_DEFAULTS["concurrency"], args.workers)}
    for key in ("variants", "concurrency", "demo_threads", "rounds", "block"):
        if getattr(args, key) is None:
            setattr(args, key, preset.get(key, defaults.get(key)))
    if not args.metadata:
        args.metadata = list(preset.get("metadata", []))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``bench`` options."""
    target = parser.add_argument_group("target (default: start the demo app, call OnInvoke)")
    target.add_argument("--target", help="host:port of a running server instead of the demo app")
    target.add_argument(
        "--method",
        help="unary method path /pkg.Service/Method (default: AppCallback OnInvoke)",
    )
    target.add_argument("--size", type=int, help="OnInvoke data bytes (default 100)")
    target.add_argument("--invoke-method", help="InvokeRequest.method (default echo)")
    target.add_argument(
        "--content-type", help="InvokeRequest.content_type (default application/octet-stream)"
    )
    target.add_argument("--payload-file", help="request as raw bytes read from this file")
    target.add_argument("--payload-hex", help="request as raw bytes written in hex")
    target.add_argument("--json", dest="json_request", help="request as JSON text, or @file")
    target.add_argument("--descriptor-set", help="FileDescriptorSet file for --json")
    target.add_argument(
        "--reflect",
        action="store_true",
        help="for --json: get the method's types from the server by gRPC server reflection",
    )
    target.add_argument("--request-type", help="request message full name (with --json)")
    target.add_argument("--response-type", help="response message full name (with --json)")
    target.add_argument(
        "--metadata", action="append", default=[], metavar="KEY=VALUE", help="repeatable"
    )
    target.add_argument("--timeout", type=float, help="per-call timeout in seconds")
    demo = parser.add_argument_group("demo app (when no --target)")
    demo.add_argument("--delay-ms", type=float, help="demo app delay per call (default 0)")
    demo.add_argument("--stall-after", type=int, help="demo app: calls before its one-time stall")
    demo.add_argument("--stall-ms", type=float, help="demo app: stall length")
    demo.add_argument("--demo-threads", type=int, help="demo app handler threads (default 32)")
    load = parser.add_argument_group("load")
    load.add_argument("--mode", choices=("closed", "open"), default="closed")
    load.add_argument(
        "--concurrency",
        type=int,
        help="calls in flight (open loop: senders), all workers (default: one per worker)",
    )
    load.add_argument("--rate", type=float, help="open loop: calls per second (all workers)")
    load.add_argument("--rounds", type=int, help="interleaved rounds (default 40)")
    load.add_argument("--block", type=int, help="calls per variant per round (default 100)")
    total = load.add_mutually_exclusive_group()
    total.add_argument(
        "--calls",
        type=int,
        help="exactly this many measured calls per variant, split over the rounds (not --block)",
    )
    total.add_argument(
        "--duration", type=float, help="seconds of calling per variant (split over the rounds)"
    )
    load.add_argument(
        "--warmup", type=int, default=200, help="unrecorded warm-up calls per variant (extra)"
    )
    load.add_argument("--workers", type=int, default=1, help="load-generating processes")
    pick = parser.add_argument_group("variants")
    pick.add_argument("--variants", help="comma-separated names (default: all available)")
    pick.add_argument(
        "--preset",
        choices=sorted(PRESETS),
        help="a named comparison; options given explicitly win: "
        + "; ".join(f"{name}: {p['about']}" for name, p in sorted(PRESETS.items())),
    )
    pick.add_argument("--baseline", help="compare every variant with this one")
    pick.add_argument("--list-variants", action="store_true", help="list variants and exit")
    out = parser.add_argument_group("output")
    out.add_argument("--html", default="bench-report.html", help="HTML report path")
    out.add_argument("--json-out", default="bench-report.json", help="JSON report path")
    out.add_argument("--csv", help="CSV report path (default: none)")
    out.add_argument("--no-files", action="store_true", help="write no report files")
    out.add_argument("--quiet", action="store_true", help="no table on stdout")
    bar = out.add_mutually_exclusive_group()
    bar.add_argument("--progress", dest="progress", action="store_true", default=None)
    bar.add_argument("--no-progress", dest="progress", action="store_false")
    check = parser.add_argument_group("self-check")
    check.add_argument(
        "--accuracy-check",
        action="store_true",
        help="check the tool against a demo app that sleeps --delay-ms (default 5)",
    )


class _UsageError(ValueError):
    pass


def _metadata(pairs: Sequence[str]) -> tuple[tuple[str, str], ...]:
    result = []
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise _UsageError(f"--metadata takes KEY=VALUE, got {pair!r}")
        result.append((key.strip().lower(), value))
    return tuple(result)


def _read_text(value: str) -> str:
    if value.startswith("@"):
        return Path(value[1:]).read_text(encoding="utf-8")
    return value


def _load(args: argparse.Namespace) -> LoadSpec:
    """The load from the options. ``--calls N`` is exact: N measured calls per variant, split over
    the rounds (fewer rounds when N is smaller and ``--rounds`` was not given); in the open loop
    ``--duration`` is the calls that long at ``--rate``. Warm-up calls come on top."""
    given: set[str] = getattr(args, "given", set())
    if "block" in given and (args.calls is not None or args.duration is not None):
        raise _UsageError("--block sets the calls per round; --calls and --duration the total")
    if args.rounds < 1:
        raise _UsageError(f"--rounds must be >= 1, got {args.rounds}")
    calls = args.calls
    block_seconds = None
    if args.duration is not None:
        if not args.duration > 0:
            raise _UsageError(f"--duration must be > 0 seconds, got {args.duration}")
        if args.mode == "open" and args.rate is not None and args.rate > 0:
            calls = max(1, round(args.rate * args.duration))
        else:
            block_seconds = args.duration / args.rounds
    rounds = args.rounds
    if calls is not None:
        if calls < 1:
            raise _UsageError(f"--calls must be >= 1, got {calls}")
        if calls < rounds:
            if "rounds" in given:
                raise _UsageError(
                    f"--calls {calls} is fewer than --rounds {rounds}: every round measures at "
                    "least one call per variant"
                )
            rounds = args.rounds = calls
    try:
        return LoadSpec(
            mode=args.mode,
            concurrency=args.concurrency,
            rate=args.rate,
            rounds=rounds,
            block_calls=args.block,
            block_seconds=block_seconds,
            warmup_calls=args.warmup,
            workers=args.workers,
            calls=calls,
        )
    except RunError as exc:
        raise _UsageError(str(exc)) from exc


def _build_target(args: argparse.Namespace, address: str) -> Target:
    metadata = _metadata(args.metadata)
    raw = [args.payload_file, args.payload_hex, args.json_request]
    if sum(v is not None for v in raw) > 1:
        raise _UsageError("give at most one of --payload-file, --payload-hex and --json")
    if args.json_request is not None:
        if args.method is None or (args.descriptor_set is None) == (not args.reflect):
            raise _UsageError("--json needs --method and one of --descriptor-set and --reflect")
        if args.reflect:
            descriptors = reflect_descriptor_set(address, args.method)
        else:
            descriptors = Path(args.descriptor_set).read_bytes()
        return json_target(
            address,
            args.method,
            _read_text(args.json_request),
            descriptors,
            request_type=args.request_type,
            response_type=args.response_type,
            metadata=metadata,
            timeout=args.timeout,
        )
    if args.payload_file is not None or args.payload_hex is not None:
        if args.method is None:
            raise _UsageError("--payload-file/--payload-hex need --method")
        if args.payload_file is not None:
            payload = Path(args.payload_file).read_bytes()
        else:
            try:
                payload = bytes.fromhex(args.payload_hex)
            except ValueError as exc:
                raise _UsageError(f"--payload-hex is not hex: {exc}") from exc
        return bytes_target(address, args.method, payload, metadata=metadata, timeout=args.timeout)
    from grpc_channel.appcallback import ON_INVOKE

    if args.method not in (None, ON_INVOKE):
        raise _UsageError(f"--method {args.method} needs a payload (--payload-*, or --json)")
    size = 100 if args.size is None else args.size
    if size < 0:
        raise _UsageError(f"--size must be >= 0, got {size}")
    return invoke_target(
        address,
        method=args.invoke_method or "echo",
        data=b"x" * size,
        content_type=args.content_type or "application/octet-stream",
        metadata=metadata,
        timeout=args.timeout,
    )


@contextmanager
def _demo_app(args: argparse.Namespace, delay_ms: float, stall: bool = True) -> Iterator[str]:
    from grpc_channel.demo import DemoConfig, start_demo

    config = DemoConfig(
        delay_ms=delay_ms,
        stall_after=args.stall_after if stall else None,
        stall_ms=(args.stall_ms or 0.0) if stall else 0.0,
        threads=args.demo_threads,
    )
    _port, handle = start_demo(config)
    try:
        yield handle.address
    finally:
        handle.stop()


def show_sample_invoke(address: str, out: Callable[[str], Any] = print) -> None:
    """Invoke the demo app once through :class:`grpc_channel.Channel` and print what came back.

    The first call also sets up the connection, so the latency shown is the median of 20 warm calls.
    """
    import statistics
    import time

    from grpc_channel import InvokeMethodRequest, dial, timeout, with_insecure

    port = address.rsplit(":", 1)[1]
    with dial(address, with_insecure()) as channel:
        channel.wait_until_ready(10)
        request = InvokeMethodRequest("echo").with_data(b"hello from grpc-channel", "text/plain")
        response = channel.invoke_method(request, timeout(5))
        latencies_ms = []
        for _ in range(20):
            started = time.perf_counter()
            channel.invoke_method(request, timeout(5))
            latencies_ms.append((time.perf_counter() - started) * 1e3)
    status = response.status
    out(f"sample invoke: Channel.invoke_method -> demo app on 127.0.0.1:{port} (OnInvoke 'echo')")
    out(f"  status:   {status.code} {status.grpc_code.name} {status.message!r}")
    out(f"  headers:  {dict(response.headers.items())}")
    out(f"  trailers: {dict(response.trailers.items())}")
    out(f"  data:     {response.data!r} ({response.content_type})")
    median_ms = statistics.median(latencies_ms)
    out(f"  latency:  {median_ms:.3f} ms (median of 20 warm calls; percentiles below)")
    out("")


def show_sample_publish(out: Callable[[str], Any] = print) -> None:
    """Publish one event through the pub/sub runtime (in-memory broker) to a subscriber of an App
    served on loopback, and print what the handler received and the publish-to-handler latency
    (median of 20 more events)."""
    import asyncio
    import statistics
    import threading
    import time

    from grpc_channel.aio import AsyncChannel
    from grpc_channel.app import App, TopicEvent
    from grpc_channel.pubsub import PubSubRuntime
    from grpc_channel.pubsub.brokers import MemoryBroker

    app = App(app_token="")
    received: list[tuple[float, TopicEvent]] = []
    arrived = threading.Condition()

    @app.subscribe("pubsub", "orders")
    def orders(event: TopicEvent) -> None:
        with arrived:
            received.append((time.perf_counter(), event))
            arrived.notify_all()

    def wait_for(count: int) -> None:
        with arrived:
            if not arrived.wait_for(lambda: len(received) >= count, timeout=10):
                raise RuntimeError("sample publish: the event did not reach the subscriber")

    async def publish_all(port: int) -> list[float]:
        async with (
            AsyncChannel.local(port) as channel,
            MemoryBroker() as broker,
            PubSubRuntime(channel, {"pubsub": broker}, app_id="bench") as runtime,
        ):
            await runtime.publish("pubsub", "orders", {"order": 1, "amount": 2**63 - 1})
            await asyncio.to_thread(wait_for, 1)
            latencies = []
            for i in range(20):
                sent = time.perf_counter()
                await runtime.publish("pubsub", "orders", {"order": i + 2})
                await asyncio.to_thread(wait_for, i + 2)
                latencies.append((received[-1][0] - sent) * 1e3)
            return latencies

    port = app.start(0)
    try:
        latencies_ms = asyncio.run(publish_all(port))
    finally:
        app.stop()
    event = received[0][1]
    out(f"sample publish: PubSubRuntime (in-memory broker) -> App on 127.0.0.1:{port} (orders)")
    out(f"  event:    id {event.id} type {event.type} source {event.source!r}")
    out(f"  data:     {event.json()} ({event.data_content_type})")
    median_ms = statistics.median(latencies_ms)
    out(f"  latency:  {median_ms:.3f} ms publish to handler (median of 20 events)")
    out("")


def accuracy_verdict(result: RunResult, delay_ms: float) -> tuple[bool, list[str]]:
    """Judge an accuracy-check run (arms ``bare``, ``bare-idle``, ``delayed``).

    Two comparisons, both reported: the delayed p50 against delay + the back-to-back bare p50, and
    against delay + the p50 of bare calls made after ``delay_ms`` of idling (``bare-idle``). The
    second is the verdict: a call that waits 5 ms pays the wake-up cost of idle threads and CPUs
    (large in virtual machines), which back-to-back bare calls never pay, and which is no error
    of the measurement.
    """
    delayed = result.arm("delayed").latency.percentile(50) / 1e6
    lines = []
    within: dict[str, bool] = {}
    for label, what in (("bare", "back-to-back bare"), ("bare-idle", "idle-matched bare")):
        bare = result.arm(label).latency.percentile(50) / 1e6
        expected = delay_ms + bare
        error = (delayed - expected) / expected
        ok = within[label] = abs(error) <= ACCURACY_TOLERANCE
        lines.append(
            f"accuracy vs {what}: delayed p50 {delayed:.3f} ms, expected {expected:.3f} ms "
            f"(delay {delay_ms:g} ms + {label} p50 {bare:.3f} ms): {error * 100:+.2f} % "
            f"({'within' if ok else 'outside'} {ACCURACY_TOLERANCE * 100:g} %)"
        )
    return within["bare-idle"], lines


def _list_variants(out: Callable[[str], Any]) -> None:
    from .target import invoke_target as make

    probe = make("127.0.0.1:1")
    usable, skipped = available_variants(probe)
    reasons = dict(skipped)
    for variant in registered_variants():
        state = "available" if variant in usable else f"unavailable: {reasons[variant.name]}"
        out(f"{variant.name:24} {variant.kind:5} {variant.description} [{state}]")


def run_command(args: argparse.Namespace, command: str) -> int:
    """Run ``bench`` with parsed ``args``; return the exit code (``command`` names the run)."""
    if args.list_variants:
        _list_variants(print)
        return 0
    _check_combinations(args)
    # Measured before the demo apps start, so their start-up does not count as other work.
    busy = cpu_busy()
    # Variants named on the command line must all run; a preset's are skipped when unavailable.
    strict = args.variants is not None
    _apply_preset(args)
    load = _load(args)
    with ExitStack() as stack:
        if args.accuracy_check:
            delay = args.delay_ms or 5.0
            bare_address = stack.enter_context(_demo_app(args, 0.0, stall=False))
            slow_address = stack.enter_context(_demo_app(args, delay, stall=False))
            variant = (args.variants or "grpc-sync").split(",")[0]
            bare_target = _build_target(args, bare_address)
            slow_target = _build_target(args, slow_address)
            arms = [
                Arm("bare", variant, bare_target, "bare"),
                Arm("bare-idle", variant, bare_target, "bare", pause_ms=delay),
                Arm("delayed", variant, slow_target, "bare"),
            ]
            skipped: list[tuple[str, str]] = []
        else:
            if args.target is not None:
                address = args.target
            else:
                address = stack.enter_context(_demo_app(args, args.delay_ms or 0.0))
                if not args.quiet and args.stall_after is None:
                    show_sample_invoke(address)
                    show_sample_publish()
            target = _build_target(args, address)
            names = [n.strip() for n in args.variants.split(",")] if args.variants else None
            arms, skipped = plan_arms(target, names, args.baseline, strict=strict)
        result = run(
            arms,
            load,
            skipped=skipped,
            command=command,
            progress=args.progress,
            busy_before=busy,
        )
    # A variant none of whose calls ended OK has no latency: the run failed, whatever the table.
    dead = [arm for arm in result.arms if not arm.ok]
    verdict: tuple[bool, list[str]] | None = None
    if args.accuracy_check and not dead:
        verdict = accuracy_verdict(result, args.delay_ms or 5.0)
        result.notes.extend(verdict[1])
    if not args.quiet:
        sys.stdout.write(format_table(result))
    if not args.no_files:
        written = write_reports(
            result, html_path=args.html or None, json_path=args.json_out or None, csv_path=args.csv
        )
        if not args.quiet:
            for path in written:
                print(f"wrote {path}")
    if dead:
        for arm in dead:
            example = next(iter(arm.errors), "no message")
            print(
                f"error: {arm.label}: all {arm.calls} calls failed "
                f"({' '.join(f'{c}={n}' for c, n in arm.failed_codes.items())}), e.g. {example}; "
                "no latency is reported for it",
                file=sys.stderr,
            )
        return 1
    if verdict is not None:
        return 0 if verdict[0] else 1
    return 0


def main(argv: Sequence[str] | None = None, prog: str = "grpc-channel bench") -> int:
    """``grpc-channel bench`` as a function: parse ``argv``, run, return the exit code."""
    parser = argparse.ArgumentParser(
        prog=prog, description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    add_arguments(parser)
    args = parser.parse_args(argv)
    argv_list = list(sys.argv[1:] if argv is None else argv)
    return execute(args, f"{prog} {shlex.join(argv_list)}".strip())


def execute(args: argparse.Namespace, command: str) -> int:
    """Run with error handling: usage and run errors print ``error: ...`` and return 2 or 1."""
    try:
        return run_command(args, command)
    except (_UsageError, TargetError, VariantError, DemoError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except (RunError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
