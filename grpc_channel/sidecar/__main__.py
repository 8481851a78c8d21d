"""``python -m grpc_channel.sidecar``: the sidecar as a process (see :mod:`.serve`)."""

from grpc_channel.sidecar.serve import main

if __name__ == "__main__":
    raise SystemExit(main())
