"""``python -m benchmarks``: the same as ``grpc-channel bench``."""

from benchmarks.cli import main

if __name__ == "__main__":
    raise SystemExit(main(prog="python -m benchmarks"))
