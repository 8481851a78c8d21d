"""``python -m grpc_channel.bench``: the same as ``grpc-channel bench``."""

from .cli import main

if __name__ == "__main__":
    raise SystemExit(main(prog="python -m grpc_channel.bench"))
