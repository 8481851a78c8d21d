"""``grpc-channel bench``: the command-line front of the benchmark, and a load tester.

Without ``--target`` it starts the demo app (``grpc_channel.demo``) in its own process on
127.0.0.1 and compares every available variant calling OnInvoke, in interleaved rounds, then prints
a table and writes ``bench-report.html`` and ``bench-report.json``. ``--preset NAME`` runs a named
comparison instead (``interceptors``, ``channel``, ``channel-throughput``; options given
explicitly win over the preset's). ``--accuracy-check`` instead
checks the tool itself: two demo apps (no delay, and ``--delay-ms``, default 5), and the p50
reported against the delayed app must be within 5 % of the delay plus the bare p50 measured in the
same run; bare calls are measured back to back and after idling as long as the delay (see
``accuracy_verdict``).

With ``--target HOST:PORT`` (or the address as the last argument, as ghz takes it) it is a load
tester with ghz's flags and meanings (``-c``, ``-n``, ``-z``, ``-r``, ``-d``, ``-m``, ``-t``): one
``plain`` variant by default, a connect check and one preflight call printed before the run,
refusing to run when that call is UNIMPLEMENTED or UNAVAILABLE. See :data:`DESCRIPTION`.
"""

from __future__ import annotations

import argparse
import dataclasses
import shlex
import signal
import sys
import threading
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from pathlib import Path
from types import FrameType
from typing import Any

import grpc

from grpc_channel.demo import DemoError

from .call import ConnectError, call_once, describe_result, wait_connected
from .plain import PLAIN, PLAIN_AIO
from .report import format_table, write_reports
from .runner import (
    Arm,
    ConcurrencySchedule,
    LoadSchedule,
    LoadSpec,
    RunError,
    RunResult,
    cpu_busy,
    plan_arms,
    run,
)
from .target import (
    Target,
    TargetError,
    bytes_target,
    check_address,
    invoke_target,
    normalize_method,
)
from .target_options import (
    TIMEOUT_S,
    UsageError,
    add_target_options,
    build_typed_target,
    check_type_sources,
    connection_target,
    parse_duration,
    read_data,
    read_metadata,
    tls_from_args,
)
from .variants import VariantError, available_variants, registered_variants

__all__ = [
    "ACCURACY_TOLERANCE",
    "DESCRIPTION",
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
PRESETS["sidecar"] = {
    "about": "issue 13, the sidecar proxy vs direct calls: unary p50 over 1 and 2 hops, 64 in "
    "flight, bidi stream (python -m grpc_channel.bench.sidecar; takes --rounds and --json-out)",
}
"""Named comparisons (``--preset``): each sets the variants and, for some, load options."""

_DEFAULTS = {"concurrency": 1, "demo_threads": 32, "rounds": 40, "block": 100}
# Against a server of one's own with ghz's flags: ghz's defaults (200 calls, 50 in flight).
_TARGET_DEFAULTS = {"total": 200, "concurrency": 50}
_PLAIN = PLAIN
# A preflight call ending with one of these means the run would measure nothing useful.
_REFUSED = (grpc.StatusCode.UNIMPLEMENTED, grpc.StatusCode.UNAVAILABLE)

DESCRIPTION = """Benchmark and load tester for unary gRPC calls.

Without --target: starts the demo app on 127.0.0.1, shows one sample call, and compares every
available way of calling it (bare grpcio, our interceptors, our Channel) in interleaved rounds;
prints a table and writes bench-report.html and bench-report.json.

With --target HOST:PORT (or HOST:PORT as the last argument, as ghz takes it): a load tester for
your server with ghz's flags: -c concurrency, -n total calls, -z duration, -r calls per second
(open loop), -d request JSON, -m metadata, -t per-call timeout; counts and durations are totals
over the run. It runs one variant (plain: a bare grpcio call) unless --variants or --preset asks
for more, first checks the connection (--connect-timeout) and makes one preflight call whose
response it prints, and refuses to run (exit 1) when that call is UNIMPLEMENTED or UNAVAILABLE.
Message types come from --proto, --descriptor-set or server reflection. Plaintext by default;
TLS with --cacert/--cert/--key/--tls. --variants plain-aio makes the same bare call with grpc.aio.
-d data and -m metadata values may hold ghz template actions ({{.RequestNumber}}, unique over the
run, also with --workers). --load-schedule changes the open-loop rate over the run, and
--concurrency-schedule the closed loop's calls in flight, with ghz's names and meanings.

Example, the same as ghz --insecure --call helloworld.Greeter.SayHello -d '{"name":"Joe"}'
-n 2000 -c 20 127.0.0.1:50051:

  grpc-channel bench --call helloworld.Greeter/SayHello -d '{"name":"Joe"}' -n 2000 -c 20 \\
      127.0.0.1:50051

Exit codes: 0 done; 1 a failed run (unreachable target, refused preflight, every call of a
variant failed, --max-error-rate exceeded); 2 a usage error; 130 interrupted (Ctrl-C: the calls
measured so far are reported and written).
"""


def _check_combinations(args: argparse.Namespace) -> None:
    """Refuse options that the other options would leave unused or contradict (nothing is
    silently ignored)."""

    def given(*names: str) -> list[str]:
        return ["--" + n.replace("_", "-") for n in names if getattr(args, n, None) is not None]

    raw_payload = args.payload_file is not None or args.payload_hex is not None
    typed = args.data is not None or args.data_file is not None
    if raw_payload and typed:
        raise _UsageError("give one of -d/--data and --payload-file/--payload-hex")
    if typed and args.method is None:
        raise _UsageError("-d/--data needs --call METHOD (the method the data is for)")
    unused = given("size", "invoke_method", "content_type")
    if unused and (raw_payload or typed or args.method is not None):
        raise _UsageError(
            f"{', '.join(unused)} shape the demo app's OnInvoke request; drop them with "
            "--call, -d/--data or --payload-*"
        )
    type_sources = given("descriptor_set", "proto", "request_type", "response_type")
    type_sources += ["--reflect"] if args.reflect else []
    if type_sources and (raw_payload or not (typed or args.method is not None)):
        raise _UsageError(
            f"{', '.join(type_sources)} give the types of a JSON request: they need --call "
            "(and -d/--data), not --payload-*"
        )
    check_type_sources(args)
    demo = given("delay_ms", "stall_after", "stall_ms", "demo_threads")
    if args.target is not None and demo:
        raise _UsageError(f"{', '.join(demo)} configure the demo app; drop them with --target")
    if args.rate is not None and args.mode == "closed":
        raise _UsageError("-r/--rps sends calls on a schedule (the open loop); drop --mode closed")
    shaping = given("load_start", "load_step", "load_end", "load_step_duration")
    if args.load_schedule == "const":
        if shaping:
            raise _UsageError(f"{', '.join(shaping)} need --load-schedule step or line")
    else:
        missing = [f for f in ("--load-start", "--load-step") if f not in shaping]
        if missing:
            raise _UsageError(f"--load-schedule {args.load_schedule} needs {', '.join(missing)}")
        if args.rate is not None:
            raise _UsageError("-r/--rps is a constant rate; --load-start starts the schedule")
        if args.mode == "closed":
            raise _UsageError("a load schedule is an open-loop rate; drop --mode closed")
        if args.load_schedule == "line" and args.load_step_duration is not None:
            raise _UsageError("--load-step-duration applies to --load-schedule step only")
    _check_concurrency_schedule(args)
    paths = given("html", "json_out", "csv", "prometheus_out", "hdr_out")
    if args.no_files and paths:
        raise _UsageError(f"--no-files contradicts {', '.join(paths)}")
    if args.max_error_rate is not None and not 0 <= args.max_error_rate <= 1:
        raise _UsageError(f"--max-error-rate is a fraction in 0..1, got {args.max_error_rate}")
    if args.connect_timeout is not None and not args.connect_timeout > 0:
        raise _UsageError("--connect-timeout must be > 0")
    if args.accuracy_check:
        if args.target is not None or given("stall_after", "stall_ms", "preset", "baseline"):
            raise _UsageError(
                "--accuracy-check starts its own demo apps and arms; it takes no --target, "
                "--stall-*, --preset or --baseline"
            )
        if args.variants is not None and "," in args.variants:
            raise _UsageError("--accuracy-check measures one variant; give one name")
        if args.mode == "open" or args.rate is not None:
            raise _UsageError("--accuracy-check runs the closed loop")


_CONCURRENCY_FLAGS = (
    "concurrency_start",
    "concurrency_end",
    "concurrency_step",
    "concurrency_step_duration",
    "concurrency_max_duration",
)


def _check_concurrency_schedule(args: argparse.Namespace) -> None:
    """Refuse --concurrency-* options that contradict each other or the load options."""
    shaping = [
        "--" + n.replace("_", "-") for n in _CONCURRENCY_FLAGS if getattr(args, n) is not None
    ]
    kind = args.concurrency_schedule
    if kind == "const":
        if shaping:
            raise _UsageError(f"{', '.join(shaping)} need --concurrency-schedule step or line")
        return
    flag = f"--concurrency-schedule {kind}"
    if args.concurrency is not None:
        raise _UsageError(
            f"-c/--concurrency is a constant number of calls in flight; {flag} starts at "
            "--concurrency-start: give one of them"
        )
    if args.rate is not None or args.mode == "open" or args.load_schedule != "const":
        raise _UsageError(
            f"{flag} changes the closed loop's calls in flight; drop -r/--rps, --mode open "
            "and --load-*"
        )
    if getattr(args, "given_rounds_or_block", None):
        raise _UsageError(
            f"{flag} runs each variant in one block (its clock starts there); drop "
            f"{' and '.join(args.given_rounds_or_block)}"
        )
    if kind == "line" and args.concurrency_step_duration is not None:
        raise _UsageError("--concurrency-step-duration applies to --concurrency-schedule step only")
    if args.accuracy_check:
        raise _UsageError(f"--accuracy-check runs a constant closed loop; drop {flag}")
    _concurrency_schedule(args)


def _concurrency_schedule(args: argparse.Namespace) -> ConcurrencySchedule | None:
    """The --concurrency-* options as a schedule (None for const)."""
    if args.concurrency_schedule == "const":
        return None
    step_seconds = 1.0
    if args.concurrency_step_duration is not None:
        step_seconds = parse_duration(args.concurrency_step_duration, "--concurrency-step-duration")
    max_seconds = None
    if args.concurrency_max_duration is not None:
        max_seconds = parse_duration(args.concurrency_max_duration, "--concurrency-max-duration")
    step = 1 if args.concurrency_step is None else args.concurrency_step
    end = args.concurrency_end
    try:
        return ConcurrencySchedule(
            kind=args.concurrency_schedule,
            start=1 if args.concurrency_start is None else args.concurrency_start,
            step=step,
            end=end,
            step_seconds=step_seconds,
            max_seconds=max_seconds,
        )
    except RunError as exc:
        raise _UsageError(f"--concurrency-*: {exc}") from exc


def _apply_preset(args: argparse.Namespace) -> None:
    """Fill options not given on the command line from the preset, then from the defaults.

    Records which load options were given (``args.given``), since the rounds give way to a small
    ``--calls`` unless given. Concurrency defaults to one call in flight per worker; against
    ``--target`` without a preset, ``--rounds`` or ``--block``, to ghz's defaults (``-c 50``,
    ``-n 200`` unless ``-z`` or ``--calls`` says how long) and the plain variant, no warm-up.
    """
    preset = PRESETS.get(args.preset or "", {})
    args.given = {
        key for key in ("rounds", "block", "concurrency") if getattr(args, key) is not None
    }
    target_mode = getattr(args, "target", None) is not None and args.preset is None
    if target_mode and args.variants is None:
        args.variants = _PLAIN
    concurrency_schedule = _concurrency_schedule(args)
    if concurrency_schedule is not None:
        # As many senders as the schedule ever has active; the schedule gates them.
        args.concurrency = concurrency_schedule.peak
    # --rounds/--block ask for the benchmark's interleaved comparison: its defaults then apply.
    if target_mode and args.rounds is None and args.block is None:
        if args.concurrency is None:
            args.concurrency = max(_TARGET_DEFAULTS["concurrency"], args.workers)
        how_long = (args.total, args.calls, args.duration)
        if all(v is None for v in how_long):
            args.total = _TARGET_DEFAULTS["total"]
        if args.warmup is None:
            args.warmup = 0
    if concurrency_schedule is not None:
        args.rounds = 1  # one block per variant: the schedule's clock runs once
        args.given.add("rounds")
    if args.warmup is None:
        args.warmup = 200
    if args.load_schedule != "const":
        args.rate = args.load_start  # the schedule's first rate; it changes from there
    if args.mode is None:
        args.mode = "open" if args.rate is not None else "closed"
    defaults = {**_DEFAULTS, "concurrency": max(_DEFAULTS["concurrency"], args.workers)}
    for key in ("variants", "concurrency", "demo_threads", "rounds", "block"):
        if getattr(args, key) is None:
            setattr(args, key, preset.get(key, defaults.get(key)))
    if not args.metadata:
        args.metadata = list(preset.get("metadata", []))


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``bench`` options (ghz's short flags and meanings where ghz has the option)."""
    target = parser.add_argument_group("target (default: start the demo app and call its OnInvoke)")
    target.add_argument(
        "address",
        nargs="?",
        metavar="HOST:PORT",
        help="the server to load, as ghz takes it (the same as --target; default: the demo app)",
    )
    target.add_argument(
        "--target",
        dest="targets",
        action="append",
        metavar="HOST:PORT",
        help="a running server instead of the demo app; runs the plain variant only unless "
        "--variants or --preset says otherwise; give it twice for an A/B of two servers, "
        "interleaved in rounds, B's ratios against A (default: none, the demo app)",
    )
    parser.set_defaults(target=None)
    tls = parser.add_argument_group(
        "TLS (default: plaintext; --cacert, --cert, --key or --tls turn TLS on)"
    )
    add_target_options(target, bench=True, tls_group=tls)
    target.add_argument(
        "--json",
        dest="json_request",
        metavar="JSON",
        help="deprecated alias of -d/--data (prints a note); --json-out names the JSON report "
        "(default: none)",
    )
    target.add_argument(
        "--payload-file",
        "-B",
        "--binary-file",
        dest="payload_file",
        metavar="PATH",
        help="request as raw bytes read from this file, no types needed (default: none)",
    )
    target.add_argument(
        "--payload-hex", metavar="HEX", help="request as raw bytes written in hex (default: none)"
    )
    demo_request = parser.add_argument_group("the demo app's OnInvoke request (no --call)")
    demo_request.add_argument("--size", type=int, help="OnInvoke data bytes (default: 100)")
    demo_request.add_argument("--invoke-method", help="InvokeRequest.method (default: echo)")
    demo_request.add_argument(
        "--content-type",
        help="InvokeRequest.content_type (default: application/octet-stream)",
    )
    demo = parser.add_argument_group("demo app (when no --target)")
    demo.add_argument("--delay-ms", type=float, help="demo app delay per call (default: 0)")
    demo.add_argument(
        "--stall-after", type=int, help="demo app: calls before its one-time stall (default: none)"
    )
    demo.add_argument("--stall-ms", type=float, help="demo app: stall length (default: 0)")
    demo.add_argument("--demo-threads", type=int, help="demo app handler threads (default: 32)")
    load = parser.add_argument_group(
        "load (counts and durations are totals over the run, as in ghz)"
    )
    load.add_argument(
        "--mode",
        choices=("closed", "open"),
        help="closed: each sender calls again when its call ends; open: calls sent on a "
        "schedule at -r/--rps (default: closed, or open when -r is given)",
    )
    load.add_argument(
        "-c",
        "--concurrency",
        type=int,
        help="calls in flight (open loop: senders), over all workers (default: 50 with "
        "--target and no --rounds/--block, as ghz; else one per worker)",
    )
    load.add_argument(
        "-r",
        "--rps",
        "--rate",
        dest="rate",
        type=float,
        help="calls per second over all workers; implies the open loop (default: none, as "
        "fast as the closed loop goes)",
    )
    total = load.add_mutually_exclusive_group()
    total.add_argument(
        "-n",
        "--total",
        type=int,
        help="measured calls in the whole run, shared evenly by the variants (default: 200 "
        "with --target and no --rounds/--block, as ghz; else --rounds x --block per variant)",
    )
    total.add_argument(
        "--calls",
        type=int,
        help="measured calls per variant, split over the rounds (default: none)",
    )
    total.add_argument(
        "-z",
        "--duration",
        metavar="DURATION",
        help="run for this long in total (seconds or 10s, 1m), shared evenly by the variants; "
        "with -r it means -r x DURATION calls (default: none)",
    )
    load.add_argument(
        "--rounds",
        type=int,
        help="interleaved rounds (default: 40; 1 for a single variant's closed loop against "
        "--target)",
    )
    load.add_argument("--block", type=int, help="calls per variant per round (default: 100)")
    load.add_argument(
        "--warmup",
        type=int,
        help="unrecorded warm-up calls per variant, on top of the measured ones (default: 0 "
        "with --target, so the server sees -n calls plus the one preflight call; else 200)",
    )
    load.add_argument(
        "--workers", type=int, default=1, help="load-generating processes (default: 1)"
    )
    load.add_argument(
        "--load-schedule",
        choices=("const", "step", "line"),
        default="const",
        help="open-loop rate over time, as ghz: const (-r throughout), step (--load-start, "
        "changed by --load-step every --load-step-duration), line (changed by --load-step "
        "per second); step and line stop changing at --load-end (default: const)",
    )
    load.add_argument(
        "--load-start", type=float, metavar="RPS", help="schedule's first rate (default: none)"
    )
    load.add_argument(
        "--load-step",
        type=float,
        metavar="RPS",
        help="schedule's rate change per step (line: per second) (default: none)",
    )
    load.add_argument(
        "--load-end",
        type=float,
        metavar="RPS",
        help="rate where the schedule stops changing (default: none, it keeps changing)",
    )
    load.add_argument(
        "--load-step-duration",
        metavar="DURATION",
        help="step schedule: how long each rate lasts, seconds or 5s (default: 1s)",
    )
    load.add_argument(
        "--concurrency-schedule",
        choices=("const", "step", "line"),
        default="const",
        help="closed-loop calls in flight over time, as ghz: const (-c throughout), step "
        "(--concurrency-start, changed by --concurrency-step every --concurrency-step-duration), "
        "line (changed by --concurrency-step per second); step and line stop changing at "
        "--concurrency-end or after --concurrency-max-duration; a rising schedule needs one of "
        "them (default: const)",
    )
    load.add_argument(
        "--concurrency-start",
        type=int,
        metavar="N",
        help="schedule's first number of calls in flight (default: 1)",
    )
    load.add_argument(
        "--concurrency-end",
        type=int,
        metavar="N",
        help="calls in flight where the schedule stops changing (default: none; a falling "
        "schedule then stops at 1)",
    )
    load.add_argument(
        "--concurrency-step",
        type=int,
        metavar="N",
        help="schedule's change of calls in flight per step (line: per second), may be "
        "negative (default: 1)",
    )
    load.add_argument(
        "--concurrency-step-duration",
        metavar="DURATION",
        help="step schedule: how long each level lasts, seconds or 5s (default: 1s)",
    )
    load.add_argument(
        "--concurrency-max-duration",
        metavar="DURATION",
        help="the schedule stops changing after this long, seconds or 1m (default: none)",
    )
    load.add_argument(
        "--max-error-rate",
        type=float,
        metavar="FRACTION",
        help="exit 1 when more than this fraction of a variant's calls failed, 0 to 1 "
        "(default: none; a variant whose calls all failed always exits 1)",
    )
    pick = parser.add_argument_group("variants")
    pick.add_argument(
        "--variants",
        help="comma-separated names, see --list-variants (default: all available against the "
        "demo app; plain with --target)",
    )
    pick.add_argument(
        "--preset",
        choices=sorted(PRESETS),
        help="a named comparison; options given explicitly win (default: none): "
        + "; ".join(f"{name}: {p['about']}" for name, p in sorted(PRESETS.items())),
    )
    pick.add_argument(
        "--baseline",
        help="compare every variant with this one (default: the bare stub of its family)",
    )
    pick.add_argument("--list-variants", action="store_true", help="list variants and exit")
    out = parser.add_argument_group("output")
    out.add_argument(
        "--html",
        "--html-out",
        dest="html",
        metavar="PATH",
        help="HTML report path (default: bench-report.html)",
    )
    out.add_argument(
        "--json-out", metavar="PATH", help="JSON report path (default: bench-report.json)"
    )
    out.add_argument(
        "--csv", "--csv-out", dest="csv", metavar="PATH", help="CSV report path (default: none)"
    )
    out.add_argument(
        "--prometheus-out",
        metavar="PATH",
        help="Prometheus text exposition file: per-variant latency summary and histogram, "
        "calls by code (default: none)",
    )
    out.add_argument(
        "--hdr-out",
        metavar="DIR_OR_PREFIX",
        help="HdrHistogram .hgrm percentile files, one per variant: DIR/<variant>.hgrm for a "
        "folder (created when given with a trailing /), else PREFIX<variant>.hgrm (default: none)",
    )
    out.add_argument(
        "--no-files",
        action="store_true",
        help="write no report files (refused with a report path given)",
    )
    out.add_argument(
        "--quiet", action="store_true", help="no table, sample or preflight call on stdout"
    )
    bar = out.add_mutually_exclusive_group()
    bar.add_argument(
        "--progress",
        dest="progress",
        action="store_true",
        default=None,
        help="draw a progress bar on stderr (default: only when stderr is a terminal)",
    )
    bar.add_argument("--no-progress", dest="progress", action="store_false", help="no progress bar")
    check = parser.add_argument_group("self-check")
    check.add_argument(
        "--accuracy-check",
        action="store_true",
        help="check the tool against a demo app that sleeps --delay-ms (default: 5)",
    )


_UsageError = UsageError


def _load(args: argparse.Namespace, arm_count: int = 1) -> LoadSpec:
    """The load from the options, for ``arm_count`` variants.

    ``-n N`` is the run's total: each variant makes N / arm_count calls (N must split evenly);
    ``--calls N`` is per variant. Either is exact, split over the rounds (fewer rounds when there
    are fewer calls and ``--rounds`` was not given). ``-z`` is the run's length, shared by the
    variants; in the open loop it means ``-r x DURATION`` calls. Warm-up calls come on top. A
    single variant's closed loop runs one round unless ``--rounds`` is given (rounds exist to
    interleave variants; one round keeps ``-c`` calls in flight the whole run).
    """
    given: set[str] = getattr(args, "given", set())
    if "block" in given and any(v is not None for v in (args.calls, args.duration, args.total)):
        raise _UsageError("--block sets the calls per round; -n, --calls and -z the total")
    if args.rounds < 1:
        raise _UsageError(f"--rounds must be >= 1, got {args.rounds}")
    calls = args.calls
    if calls is not None and calls < 1:
        raise _UsageError(f"--calls must be >= 1, got {calls}")
    if args.total is not None:
        if args.total < 1:
            raise _UsageError(f"-n/--total must be >= 1, got {args.total}")
        calls, extra = divmod(args.total, arm_count)
        if extra or calls < 1:
            raise _UsageError(
                f"-n/--total {args.total} does not split evenly over {arm_count} variants; "
                f"give a multiple of {arm_count}"
            )
    rounds = args.rounds
    single_closed = (
        args.target is not None
        and arm_count == 1
        and args.mode == "closed"
        and "rounds" not in given
    )
    if single_closed and "block" not in given:
        rounds = 1
    block_seconds = None
    schedule = _schedule(args)
    if args.duration is not None:
        seconds = parse_duration(args.duration, "-z/--duration")
        if not seconds > 0:
            raise _UsageError(f"-z/--duration must be > 0, got {args.duration!r}")
        per_arm = seconds / arm_count
        if schedule is not None:
            calls = max(1, schedule.calls_within(per_arm))
        elif args.mode == "open" and args.rate is not None and args.rate > 0:
            calls = max(1, round(args.rate * per_arm))
        else:
            block_seconds = per_arm / rounds
    if calls is not None and calls < rounds:
        if "rounds" in given:
            raise _UsageError(
                f"{calls} calls per variant are fewer than --rounds {rounds}: every round "
                "measures at least one call per variant"
            )
        rounds = calls
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
            schedule=schedule,
            concurrency_schedule=_concurrency_schedule(args),
        )
    except RunError as exc:
        if schedule is not None and calls is None:
            raise _UsageError("a load schedule needs -n or -z (how many calls)") from exc
        raise _UsageError(str(exc)) from exc


def _schedule(args: argparse.Namespace) -> LoadSchedule | None:
    """The --load-* options as a schedule (None for const)."""
    if args.load_schedule == "const":
        return None
    step_seconds = 1.0
    if args.load_step_duration is not None:
        step_seconds = parse_duration(args.load_step_duration, "--load-step-duration")
    try:
        return LoadSchedule(
            kind=args.load_schedule,
            start=args.load_start,
            step=args.load_step,
            end=args.load_end,
            step_seconds=step_seconds,
        )
    except RunError as exc:
        raise _UsageError(f"--load-*: {exc}") from exc


def _timeout(args: argparse.Namespace) -> float | None:
    """Per-call timeout: -t (0 means none); by default 20 s against --target, none otherwise."""
    if args.timeout is None:
        return TIMEOUT_S if args.target is not None else None
    return args.timeout or None


def _build_target(args: argparse.Namespace, address: str) -> Target:
    """The target the options describe: raw bytes (--payload-*), a JSON request (-d or --call),
    or the demo app's OnInvoke; with the metadata, timeout, TLS and authority options."""
    raw = [args.payload_file, args.payload_hex]
    timeout = _timeout(args)
    connect_timeout = 10.0 if args.connect_timeout is None else args.connect_timeout
    data = args.data  # resolved by run_command (files and stdin read once)
    method = None
    if args.method is not None:
        try:
            method = normalize_method(args.method)
        except TargetError as exc:
            raise _UsageError(f"--call: {exc}") from None
    from grpc_channel.appcallback import ON_INVOKE

    if data is not None or (method is not None and method != ON_INVOKE and raw == [None, None]):
        return build_typed_target(
            args,
            address,
            "{}" if data is None else data,
            timeout=timeout,
            connect_timeout=connect_timeout,
        )
    metadata = read_metadata(args)
    extra = {"tls": tls_from_args(args), "authority": args.authority}
    if args.payload_file is not None or args.payload_hex is not None:
        if method is None:
            raise _UsageError("--payload-file/--payload-hex need --call METHOD")
        if args.payload_file is not None:
            try:
                payload = Path(args.payload_file).read_bytes()
            except OSError as exc:
                raise _UsageError(
                    f"--payload-file: cannot read {args.payload_file}: {exc.strerror}"
                ) from None
        else:
            try:
                payload = bytes.fromhex(args.payload_hex)
            except ValueError as exc:
                raise _UsageError(f"--payload-hex is not hex: {exc}") from exc
        target = bytes_target(address, method, payload, metadata=metadata, timeout=timeout)
        return dataclasses.replace(target, **extra)
    size = 100 if args.size is None else args.size
    if size < 0:
        raise _UsageError(f"--size must be >= 0, got {size}")
    target = invoke_target(
        address,
        method=args.invoke_method or "echo",
        data=b"x" * size,
        content_type=args.content_type or "application/octet-stream",
        metadata=metadata,
        timeout=timeout,
    )
    return dataclasses.replace(target, **extra)


def _preflight(args: argparse.Namespace, address: str) -> Target:
    """Against --target: check the connection, build the target (reflection included), make one
    call and show it; a call the server cannot serve stops here (RunError: exit 1)."""
    connect_timeout = 10.0 if args.connect_timeout is None else args.connect_timeout
    try:
        wait_connected(connection_target(args, address), connect_timeout)
    except ConnectError as exc:
        raise RunError(str(exc)) from None
    target = _build_target(args, address)
    result = call_once(target)
    if not args.quiet:
        print("preflight " + "\n".join(describe_result(target, result)), flush=True)
        print("", flush=True)
    if result.code in _REFUSED:
        hint = ""
        if result.code is grpc.StatusCode.UNIMPLEMENTED and args.method is None:
            hint = " (no --call given: the default is the demo app's OnInvoke)"
        elif result.code is grpc.StatusCode.UNAVAILABLE and target.tls is None:
            hint = " (a TLS server? give --cacert or --tls)"
        raise RunError(
            f"preflight call {target.method} failed with {result.code.name}: {result.details}"
            f"{hint}; not running"
        )
    if not result.ok and not args.quiet:
        print(
            f"note: the preflight call failed with {result.code.name}; running anyway (failed "
            "calls are counted by status code)",
            flush=True,
        )
    return target


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
    from grpc_channel.app import App, MethodRequest, MethodResponse, TopicEvent
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

    @app.method("echo")
    def echo(request: MethodRequest) -> MethodResponse:
        return MethodResponse(data=request.data, content_type=request.content_type)

    def wait_for(count: int) -> None:
        with arrived:
            if not arrived.wait_for(lambda: len(received) >= count, timeout=10):
                raise RuntimeError("sample publish: the event did not reach the subscriber")

    async def publish_all(port: int) -> tuple[list[float], str]:
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
        return latencies, await _sample_sidecar_call(port)

    port = app.start(0)
    try:
        latencies_ms, sidecar_line = asyncio.run(publish_all(port))
    finally:
        app.stop()
    event = received[0][1]
    out(f"sample publish: PubSubRuntime (in-memory broker) -> App on 127.0.0.1:{port} (orders)")
    out(f"  event:    id {event.id} type {event.type} source {event.source!r}")
    out(f"  data:     {event.json()} ({event.data_content_type})")
    median_ms = statistics.median(latencies_ms)
    out(f"  latency:  {median_ms:.3f} ms publish to handler (median of 20 events)")
    out(sidecar_line)
    out("")


async def _sample_sidecar_call(app_port: int) -> str:
    """Start an in-process :class:`~grpc_channel.sidecar.Sidecar` (with its Dapr API) in front of
    the App on ``app_port``, make one ``InvokeService`` call to the App's ``echo`` through it, as
    a Dapr client would, stop the sidecar, and return one line saying what happened. The call is
    the first on a new connection, so its latency includes the connection set-up."""
    import time

    import grpc.aio

    from grpc_channel.sidecar import PeersResolver, Sidecar
    from grpc_channel.sidecar.dapr_api import INVOKE_SERVICE, DaprApi, sidecar_call_app
    from grpc_channel.v1 import common_pb2, runtime_pb2

    sidecar = Sidecar(
        "bench", resolver=PeersResolver(environ={}), app_address=f"127.0.0.1:{app_port}"
    )
    sidecar.add_services(DaprApi("bench", call_app=sidecar_call_app(sidecar)).handler())
    port = await sidecar.start(0)
    try:
        message = common_pb2.InvokeRequest(method="echo", content_type="text/plain")
        message.data.value = b"hi via the sidecar"
        request = runtime_pb2.InvokeServiceRequest(id="bench", message=message)
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            call = channel.unary_unary(
                INVOKE_SERVICE,
                request_serializer=runtime_pb2.InvokeServiceRequest.SerializeToString,
                response_deserializer=common_pb2.InvokeResponse.FromString,
            )
            started = time.perf_counter()
            reply: common_pb2.InvokeResponse = await call(request, timeout=5)
            elapsed_ms = (time.perf_counter() - started) * 1e3
    finally:
        await sidecar.stop(None)
    return (
        f"sample sidecar: InvokeService -> Sidecar on 127.0.0.1:{port} -> App 'echo': "
        f"{reply.data.value!r} in {elapsed_ms:.1f} ms (first call, connection set-up included)"
    )


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
    if args.preset == "sidecar":  # a harness of its own (processes, arms, ratios): delegate
        from .sidecar import main as sidecar_main

        # Its own harness takes only these two; any other option would be silently ignored.
        ignored = [
            flag
            for flag, value in (
                ("--target/HOST:PORT", args.targets or args.address),
                ("--calls", args.calls),
                ("--duration", args.duration),
                ("--variants", args.variants),
                ("--html", args.html),
                ("--csv", args.csv),
                ("--prometheus-out", args.prometheus_out),
                ("--hdr-out", args.hdr_out),
            )
            if value
        ]
        if ignored:
            raise _UsageError(
                "--preset sidecar runs the sidecar harness (python -m grpc_channel.bench.sidecar), "
                f"which takes only --rounds and --json-out; drop {', '.join(ignored)}"
            )
        forwarded = ["--rounds", str(args.rounds)] if args.rounds else []
        if args.json_out:
            forwarded += ["--json-out", str(args.json_out)]
        return sidecar_main(forwarded)
    targets = [*(args.targets or []), *([args.address] if args.address is not None else [])]
    if len(targets) > 2:
        raise _UsageError(
            f"at most two servers (an A/B): got {len(targets)} from --target and HOST:PORT"
        )
    args.target = targets[0] if targets else None
    second = targets[1] if len(targets) == 2 else None
    if second is not None:
        try:
            check_address(second)
        except TargetError as exc:
            raise _UsageError(str(exc)) from None
    if args.json_request is not None:
        if args.data is not None or args.data_file is not None:
            raise _UsageError("--json is the deprecated name of -d/--data: give one of them")
        print("note: --json is deprecated; use -d/--data (same meaning)", file=sys.stderr)
        args.data = args.json_request
    if args.target is not None:
        try:
            check_address(args.target)
        except TargetError as exc:
            raise _UsageError(str(exc)) from None
    args.given_rounds_or_block = [
        flag
        for flag, value in (("--rounds", args.rounds), ("--block", args.block))
        if value is not None
    ]
    _check_combinations(args)
    # Report paths default here, not in the parser, so --no-files can tell a path given.
    args.html = "bench-report.html" if args.html is None else args.html
    args.json_out = "bench-report.json" if args.json_out is None else args.json_out
    # Files and stdin are read (and refused when missing) before anything connects; the data is
    # read once, since stdin can be read only once.
    args.data, args.data_file = read_data(args), None
    read_metadata(args)
    tls_from_args(args)
    if args.method is not None:
        try:
            normalize_method(args.method)
        except TargetError as exc:
            raise _UsageError(f"--call: {exc}") from None
    # Measured before the demo apps start, so their start-up does not count as other work.
    busy = cpu_busy()
    # Variants named on the command line must all run; a preset's are skipped when unavailable.
    strict = args.variants is not None
    _apply_preset(args)
    _load(args)  # usage errors in the load options before anything starts
    stop = threading.Event()
    notes: list[str] = []
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
                target = _preflight(args, args.target)
            else:
                address = stack.enter_context(_demo_app(args, args.delay_ms or 0.0))
                if not args.quiet and args.stall_after is None:
                    show_sample_invoke(address)
                    show_sample_publish()
                target = _build_target(args, address)
            names = [n.strip() for n in args.variants.split(",")] if args.variants else None
            _only_plain(target, names)
            arms, skipped = plan_arms(target, names, args.baseline, strict=strict)
            if second is not None:
                arms_b, _ = plan_arms(_preflight(args, second), names, args.baseline)
                arms = _a_b_arms(arms, arms_b)
                notes.append(f"A/B: A is {args.target}, B is {second}; B's ratios are to A")
        load = _load(args, len(arms))
        with _stop_on_sigint(stop):
            result = run(
                arms,
                load,
                skipped=skipped,
                command=command,
                progress=args.progress,
                busy_before=busy,
                stop=stop,
            )
    if load.schedule is not None and load.total_calls:
        first, last, mean = load.schedule.rates(load.total_calls)
        notes.append(
            f"load schedule {load.schedule.kind}: the asked rate shown is the schedule's mean over "
            f"the run ({mean:.4g}/s), from {first:.4g}/s to {last:.4g}/s at the last call; the "
            f"rate changed by {load.schedule.step:g}/s "
            + (
                "per second"
                if load.schedule.kind == "line"
                else f"every {load.schedule.step_seconds:g} s"
            )
            + (f" up to {load.schedule.end:g}/s" if load.schedule.end is not None else "")
        )
    if load.concurrency_schedule is not None:
        schedule = load.concurrency_schedule
        notes.append(
            f"concurrency schedule {schedule.kind}: calls in flight from {schedule.start} to "
            f"{schedule.final} (at most {schedule.peak}), changed by {schedule.step:+d} "
            + ("per second" if schedule.kind == "line" else f"every {schedule.step_seconds:g} s")
            + (
                f", for at most {schedule.max_seconds:g} s"
                if schedule.max_seconds is not None
                else ""
            )
            + "; the clock starts with each variant's block"
        )
    result.notes.extend(notes)
    # A variant none of whose calls ended OK has no latency: the run failed, whatever the table.
    # An interrupted run reports what it measured and exits 130, whatever it measured.
    dead = [] if result.interrupted else [arm for arm in result.arms if not arm.ok]
    verdict: tuple[bool, list[str]] | None = None
    if args.accuracy_check and not dead:
        verdict = accuracy_verdict(result, args.delay_ms or 5.0)
        result.notes.extend(verdict[1])
    if not args.quiet:
        sys.stdout.write(format_table(result))
    if not args.no_files:
        written = write_reports(
            result,
            html_path=args.html or None,
            json_path=args.json_out or None,
            csv_path=args.csv,
            prometheus_path=args.prometheus_out,
            hdr_out=args.hdr_out,
        )
        if not args.quiet or result.interrupted:
            for path in written:
                print(f"wrote report {path}")
    if result.interrupted:
        print("interrupted: the report covers the calls measured until then", file=sys.stderr)
        return 130
    too_many = [
        arm
        for arm in result.arms
        if args.max_error_rate is not None
        and arm.calls
        and arm.failed / arm.calls > args.max_error_rate
    ]
    for arm in too_many:
        print(
            f"error: {arm.label}: {arm.failed} of {arm.calls} calls failed "
            f"({arm.failed / arm.calls:.1%}), more than --max-error-rate {args.max_error_rate:g}",
            file=sys.stderr,
        )
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
    if too_many:
        return 1
    if verdict is not None:
        return 0 if verdict[0] else 1
    return 0


def _a_b_arms(arms_a: Sequence[Arm], arms_b: Sequence[Arm]) -> list[Arm]:
    """Two servers' arms in one interleaved run: labels get @A / @B, each B arm compares with
    the same variant's A arm (so its ratio is B over A in the same round)."""
    tagged = [
        dataclasses.replace(arm, label=f"{arm.label}@A", baseline=f"{arm.baseline}@A")
        for arm in arms_a
    ]
    tagged += [
        dataclasses.replace(arm, label=f"{arm.label}@B", baseline=f"{arm.label}@A")
        for arm in arms_b
    ]
    return tagged


def _only_plain(target: Target, names: Sequence[str] | None) -> None:
    """TLS, an authority, templated data and metadata, and streaming methods are honoured by the
    plain variants only: refuse a run that would silently send plaintext, or the same data, from
    the others."""
    needs = [
        what
        for what, used in (
            ("TLS", target.tls is not None),
            ("--authority", target.authority is not None),
            ("templated -d data", target.data_template is not None),
            ("templated -m metadata", any("{{" in value for _, value in target.metadata)),
            (f"a {target.shape.replace('_', ' ')} method", target.shape != "unary"),
        )
        if used
    ]
    others = [n for n in (names or ["(all)"]) if n not in (_PLAIN, PLAIN_AIO)]
    if needs and others:
        raise _UsageError(
            f"{', '.join(needs)} work with the plain variants only (plain, plain-aio); drop "
            f"--variants {','.join(others)} (or name plain or plain-aio alone)"
        )


@contextmanager
def _stop_on_sigint(stop: threading.Event | None) -> Iterator[None]:
    """While the run runs, the first Ctrl-C (SIGINT) sets ``stop``: the calls in flight end, the
    report of what was measured (by every worker process) is written, and the command exits 130.
    A second Ctrl-C aborts at once. Only in the main thread; elsewhere Ctrl-C aborts."""
    if stop is None or threading.current_thread() is not threading.main_thread():
        yield
        return

    def on_sigint(signum: int, frame: FrameType | None) -> None:
        if stop.is_set():
            raise KeyboardInterrupt
        stop.set()
        print(
            "\ninterrupted: finishing the calls in flight, then writing the partial report "
            "(Ctrl-C again to abort)",
            file=sys.stderr,
            flush=True,
        )

    previous = signal.signal(signal.SIGINT, on_sigint)
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)


def main(argv: Sequence[str] | None = None, prog: str = "grpc-channel bench") -> int:
    """``grpc-channel bench`` as a function: parse ``argv``, run, return the exit code."""
    parser = argparse.ArgumentParser(
        prog=prog, description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter
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
    except ConnectError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except (RunError, OSError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130
