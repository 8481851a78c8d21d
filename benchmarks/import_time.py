"""Import time of ``grpc_channel`` beside ``grpc`` alone (the floor), in fresh interpreters.

Run ``python benchmarks/import_time.py [--runs N]`` (or ``python -m
grpc_channel.bench.import_time``). Each measurement is a new ``python`` process that times one
import statement with ``time.perf_counter`` around it, so interpreter start-up is left out;
statements are interleaved (A B C ... A B C ...) so that a busy machine slows them alike, and one
warm-up round first fills the bytecode caches. Prints the median per statement and its ratio to
``import grpc``.

What is measured (default ``--runs 10``):

- ``import grpc``: the floor, what any grpcio program pays;
- ``import grpc_channel``: the package alone (its names load lazily, on first use);
- ``from grpc_channel import dial``: what everyday code pulls in (channel, options, policies,
  OpenTelemetry API; not the OpenTelemetry SDK);
- ``import grpc_channel.interceptors``: the stand-alone interceptors package.
"""

from __future__ import annotations

import argparse
import statistics
import subprocess
import sys
from collections.abc import Sequence

__all__ = ["STATEMENTS", "main", "measure"]

#: The statements timed, the floor first.
STATEMENTS: tuple[str, ...] = (
    "import grpc",
    "import grpc_channel",
    "from grpc_channel import dial",
    "import grpc_channel.interceptors",
)

_PROBE = "import time\nt = time.perf_counter()\n{statement}\nprint(time.perf_counter() - t)\n"


def _once(statement: str) -> float:
    out = subprocess.run(
        [sys.executable, "-c", _PROBE.format(statement=statement)],
        check=True,
        capture_output=True,
        text=True,
    )
    return float(out.stdout.strip().splitlines()[-1])


def measure(statements: Sequence[str] = STATEMENTS, runs: int = 10) -> dict[str, list[float]]:
    """Seconds per run for each statement, ``runs`` fresh processes each, interleaved, after one
    unrecorded warm-up round. ``runs`` must be at least 1 (``ValueError`` otherwise)."""
    if isinstance(runs, bool) or not isinstance(runs, int) or runs < 1:
        raise ValueError(f"runs must be an int >= 1, got {runs!r}")
    for statement in statements:
        _once(statement)
    found: dict[str, list[float]] = {s: [] for s in statements}
    for _ in range(runs):
        for statement in statements:
            found[statement].append(_once(statement))
    return found


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--runs", type=int, default=10, help="processes per statement (10)")
    args = parser.parse_args(argv)
    if args.runs < 1:
        parser.error(f"--runs must be >= 1, got {args.runs}")
    results = measure(STATEMENTS, args.runs)
    floor = statistics.median(results[STATEMENTS[0]])
    print(f"median of {args.runs} fresh processes each, {sys.executable}")
    for statement, values in results.items():
        median = statistics.median(values)
        print(f"{median * 1000:8.1f} ms  x{median / floor:5.2f} of grpc  {statement}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
