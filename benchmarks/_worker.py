"""Worker process entry: ``python -m grpc_channel.bench._worker`` (started by
``grpc_channel.bench.runner``)."""

from .runner import worker_main

if __name__ == "__main__":
    raise SystemExit(worker_main())
