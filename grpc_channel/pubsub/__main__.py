"""``python -m grpc_channel.pubsub``: the pub/sub runtime process (see :mod:`.serve`)."""

from grpc_channel.pubsub.serve import main

if __name__ == "__main__":
    raise SystemExit(main())
