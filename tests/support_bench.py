"""Shared helpers for the benchmark and demo-app tests: demo apps that are always stopped, a server
with gRPC reflection, and fake variants that need no server (to test the harness's accounting)."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Iterator
from concurrent import futures
from contextlib import contextmanager

import grpc
from google.protobuf import any_pb2, descriptor_pb2, descriptor_pool
from grpc_reflection.v1alpha import reflection

from grpc_channel.bench.target import Target
from grpc_channel.bench.variants import AsyncCaller, SyncCaller, Variant, VariantSettings
from grpc_channel.demo import DemoConfig, DemoProcess, DemoServer, start_demo
from grpc_channel.v1 import common_pb2


@contextmanager
def demo_process(config: DemoConfig | None = None) -> Iterator[DemoProcess]:
    """The demo app in a child process on 127.0.0.1:0, stopped on exit."""
    _port, handle = start_demo(config)
    try:
        yield handle
    finally:
        handle.stop()


@contextmanager
def demo_server(config: DemoConfig | None = None) -> Iterator[DemoServer]:
    """The demo app in this process on 127.0.0.1:0, stopped on exit."""
    server = DemoServer(config)
    server.start()
    try:
        yield server
    finally:
        server.stop()


def descriptor_set() -> bytes:
    """Our InvokeRequest plus a service that declares OnInvoke under Dapr's path."""
    fds = descriptor_pb2.FileDescriptorSet()
    any_pb2.DESCRIPTOR.CopyToProto(fds.file.add())
    common_pb2.DESCRIPTOR.CopyToProto(fds.file.add())
    service_file = fds.file.add(
        name="bench_test/appcallback.proto",
        package="dapr.proto.runtime.v1",
        dependency=[common_pb2.DESCRIPTOR.name],
        syntax="proto3",
    )
    service = service_file.service.add(name="AppCallback")
    service.method.add(
        name="OnInvoke",
        input_type=".grpc_channel.v1.InvokeRequest",
        output_type=".grpc_channel.v1.InvokeResponse",
    )
    # Files in reverse order: the loader must sort out the imports itself.
    fds.file.reverse()
    return fds.SerializeToString()


@contextmanager
def reflecting_server() -> Iterator[str]:
    """OnInvoke echo plus gRPC server reflection over a pool that declares the service."""
    pool = descriptor_pool.DescriptorPool()
    fds = descriptor_pb2.FileDescriptorSet.FromString(descriptor_set())
    for file_proto in reversed(fds.file):  # descriptor_set lists dependants first
        pool.Add(file_proto)

    def on_invoke(request: bytes, context: grpc.ServicerContext) -> bytes:
        parsed = common_pb2.InvokeRequest.FromString(request)
        return common_pb2.InvokeResponse(content_type=parsed.content_type).SerializeToString()

    server = grpc.server(futures.ThreadPoolExecutor(max_workers=4))
    server.add_generic_rpc_handlers(
        [
            grpc.method_handlers_generic_handler(
                "dapr.proto.runtime.v1.AppCallback",
                {"OnInvoke": grpc.unary_unary_rpc_method_handler(on_invoke)},
            )
        ]
    )
    reflection.enable_server_reflection(
        ["dapr.proto.runtime.v1.AppCallback", reflection.SERVICE_NAME], server, pool=pool
    )
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield f"127.0.0.1:{port}"
    finally:
        server.stop(None)


def fake_variant(
    name: str,
    *,
    aio: bool = False,
    stall_at: int | None = None,
    stall_s: float = 0.0,
    fail_every: int | None = None,
) -> Variant:
    """A variant that calls nothing: each call returns at once, except call number ``stall_at``
    (0-based, counted over every call the caller makes, warm-up included), which first sleeps
    ``stall_s``; with ``fail_every=n`` every n-th call fails with UNAVAILABLE. Sleeps never end
    early, so a test can bound latencies from below without timing races."""

    def outcome(number: int) -> str:
        if fail_every is not None and number % fail_every == fail_every - 1:
            return "UNAVAILABLE"
        return "OK"

    def sync_factory(target: Target, settings: VariantSettings) -> SyncCaller:
        lock = threading.Lock()
        count = [0]

        def call() -> str:
            with lock:
                number = count[0]
                count[0] += 1
            if number == stall_at:
                time.sleep(stall_s)
            return outcome(number)

        return SyncCaller(call, lambda: None)

    async def aio_factory(target: Target, settings: VariantSettings) -> AsyncCaller:
        count = [0]

        async def call() -> str:
            number = count[0]
            count[0] += 1
            if number == stall_at:
                await asyncio.sleep(stall_s)
            return outcome(number)

        async def close() -> None:
            return None

        return AsyncCaller(call, close)

    if aio:
        return Variant(name, "test: no server, an optional stall", aio_factory=aio_factory)
    return Variant(name, "test: no server, an optional stall", sync_factory=sync_factory)
