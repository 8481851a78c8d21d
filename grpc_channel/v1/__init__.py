"""Generated protobuf modules of the ``grpc_channel.v1`` proto package (see ``proto/``).

Do not edit the ``*_pb2`` modules by hand: run ``python scripts/gen_protos.py``.
"""
