"""``python -m grpc_channel.bench.response_metadata``: what reading a call's headers and trailers
costs.

Times, inside real calls to the demo app (started on 127.0.0.1 in its own process), only the read
of an ended call's initial and trailing metadata as pairs: grpcio's public accessors against the
fast reads of :mod:`grpc_channel.interceptors._response_metadata`, sync and aio. Each call is made,
then only the read is timed (``perf_counter_ns``), so the figures are the cost in place, after a
network wait, not in a hot loop. Ways are interleaved in rounds (shuffled order per round) and the
report gives the median over all reads of each way, and its ratio to the public read.

Options: ``--rounds N`` (default 10), ``--calls N`` per way per round (default 300).
"""

from __future__ import annotations

import argparse
import asyncio
import random
import statistics
import time
from collections.abc import Awaitable, Callable

import grpc
import grpc.aio
from google.protobuf import any_pb2

from grpc_channel.appcallback import ON_INVOKE
from grpc_channel.demo import start_demo
from grpc_channel.interceptors import ended_call_metadata, read_response_metadata
from grpc_channel.v1 import common_pb2

_REQUEST = common_pb2.InvokeRequest(
    method="echo", content_type="text/plain", data=any_pb2.Any(value=b"x" * 100)
)
_TOKEN = (("dapr-api-token", "bench"),)


def _sync_ways(channel: grpc.Channel) -> dict[str, Callable[[], int]]:
    stub = channel.unary_unary(
        ON_INVOKE,
        request_serializer=common_pb2.InvokeRequest.SerializeToString,
        response_deserializer=common_pb2.InvokeResponse.FromString,
    )

    def public() -> int:
        _, call = stub.with_call(_REQUEST, metadata=_TOKEN)
        start = time.perf_counter_ns()
        tuple(call.initial_metadata() or ()), tuple(call.trailing_metadata() or ())
        return time.perf_counter_ns() - start

    def fast() -> int:
        _, call = stub.with_call(_REQUEST, metadata=_TOKEN)
        start = time.perf_counter_ns()
        ended_call_metadata(call)
        return time.perf_counter_ns() - start

    return {"sync public": public, "sync fast": fast}


def _aio_ways(channel: grpc.aio.Channel) -> dict[str, Callable[[], Awaitable[int]]]:
    stub = channel.unary_unary(
        ON_INVOKE,
        request_serializer=common_pb2.InvokeRequest.SerializeToString,
        response_deserializer=common_pb2.InvokeResponse.FromString,
    )

    async def public() -> int:
        call = stub(_REQUEST, metadata=_TOKEN)
        await call
        start = time.perf_counter_ns()
        tuple(await call.initial_metadata()), tuple(await call.trailing_metadata())
        return time.perf_counter_ns() - start

    async def fast() -> int:
        call = stub(_REQUEST, metadata=_TOKEN)
        await call
        start = time.perf_counter_ns()
        await read_response_metadata(call)
        return time.perf_counter_ns() - start

    return {"aio public": public, "aio fast": fast}


def _report(samples: dict[str, list[int]]) -> None:
    medians = {name: statistics.median(values) / 1000 for name, values in samples.items()}
    print(f"{'way':12s} {'reads':>6s} {'median us':>10s} {'vs public':>10s}")
    for name, median in medians.items():
        public = medians[name.split()[0] + " public"]
        print(f"{name:12s} {len(samples[name]):6d} {median:10.2f} {median / public:10.3f}")


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m grpc_channel.bench.response_metadata")
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--calls", type=int, default=300)
    args = parser.parse_args(argv)
    if args.rounds < 1 or args.calls < 1:
        parser.error("--rounds and --calls must be at least 1")
    port, demo = start_demo()
    try:
        target = f"127.0.0.1:{port}"
        with grpc.insecure_channel(target) as channel:
            sync_ways = _sync_ways(channel)
            samples: dict[str, list[int]] = {name: [] for name in sync_ways}

            async def run_aio() -> None:
                async with grpc.aio.insecure_channel(target) as aio_channel:
                    aio_ways = _aio_ways(aio_channel)
                    samples.update({name: [] for name in aio_ways})
                    for _ in range(50):  # warm-up
                        for sync_way in sync_ways.values():
                            sync_way()
                        for aio_way in aio_ways.values():
                            await aio_way()
                    for round_index in range(args.rounds):
                        names = [*sync_ways, *aio_ways]
                        random.Random(round_index).shuffle(names)
                        for name in names:
                            for _ in range(args.calls):
                                if name in sync_ways:
                                    samples[name].append(sync_ways[name]())
                                else:
                                    samples[name].append(await aio_ways[name]())

            asyncio.run(run_aio())
        _report(samples)
    finally:
        demo.stop()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
