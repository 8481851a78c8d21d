"""The ``grpc-channel`` command: ``grpc-channel demo|bench|call|sidecar ...``.

``demo`` serves the demo AppCallback app on loopback until SIGTERM/SIGINT (see
``grpc_channel.demo``); ``bench`` runs the invoke-latency benchmark (see
``grpc_channel.bench.cli``), also a load tester for any server with ghz's flags; ``call`` makes
one unary call and prints it (see ``grpc_channel.bench.call``); ``sidecar`` runs the sidecar
proxy beside an app until SIGTERM/SIGINT (see ``grpc_channel.sidecar.serve``). ``main(argv)``
returns the exit code: 0 success, 1 a failed run or check, 2 a usage error.
"""

from __future__ import annotations

import argparse
import shlex
import sys
from collections.abc import Sequence

__all__ = ["main"]


def _parser() -> argparse.ArgumentParser:
    from grpc_channel import demo
    from grpc_channel.bench import call as bench_call
    from grpc_channel.bench import cli as bench_cli
    from grpc_channel.sidecar import serve as sidecar_serve

    parser = argparse.ArgumentParser(
        prog="grpc-channel",
        description="grpc-channel tools: a demo app, a benchmark and load tester, one-off calls "
        "and the sidecar.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    demo_parser = commands.add_parser(
        "demo",
        help="serve the demo AppCallback app on loopback",
        description=demo.__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    demo.add_arguments(demo_parser)
    bench_parser = commands.add_parser(
        "bench",
        help="benchmark invoke latency (default: all variants against the demo app), or load "
        "a server of yours with ghz's flags (--target)",
        description=bench_cli.DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    bench_cli.add_arguments(bench_parser)
    call_parser = commands.add_parser(
        "call",
        help="make one unary call and print the response, headers, trailers and status",
        description=bench_call.DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    bench_call.add_arguments(call_parser)
    sidecar_parser = commands.add_parser(
        "sidecar",
        help="run the sidecar proxy beside an app",
        description=sidecar_serve.__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    sidecar_serve.add_arguments(sidecar_parser)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the ``grpc-channel`` command with ``argv`` (default: ``sys.argv[1:]``)."""
    argv_list = list(sys.argv[1:] if argv is None else argv)
    args = _parser().parse_args(argv_list)
    if args.command == "demo":
        from grpc_channel import demo

        try:
            config = demo.config_from_args(args)
        except demo.DemoError as exc:
            print(f"error: {exc}", file=sys.stderr)
            return 2
        return demo.serve_until_signalled(config, lambda line: print(line, flush=True))
    if args.command == "sidecar":
        from grpc_channel.sidecar import serve as sidecar_serve

        return sidecar_serve.run(sidecar_serve.config_from_args(args), "grpc-channel sidecar")
    if args.command == "call":
        from grpc_channel.bench import call as bench_call

        return bench_call.execute(args)
    from grpc_channel.bench import cli as bench_cli

    return bench_cli.execute(args, f"grpc-channel {shlex.join(argv_list)}")


if __name__ == "__main__":
    raise SystemExit(main())
