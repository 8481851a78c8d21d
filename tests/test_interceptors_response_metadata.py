"""Reading a call's headers and trailers where grpcio keeps them
(grpc_channel.interceptors._response_metadata).

A server sends repeated and binary keys in a known order. The fast path must give exactly those
pairs in that order, sync and aio; the public path the same pairs; captures made through our sync
and aio chains must match for every call shape.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator, Iterator
from typing import Any

import grpc
import grpc.aio
import pytest
from support_harness import METHODS, SHAPES, Recorder, SyncHandler, call_aio, call_sync, sync_server

from grpc_channel.interceptors._capture import Capture, Captured, capture
from grpc_channel.interceptors._chain import compose
from grpc_channel.interceptors._response_metadata import (
    ended_call_metadata,
    read_response_metadata,
    uses_fast_path,
)

HEADERS = (("x-a", "1"), ("x-b", "2"), ("x-a", "3"), ("x-c-bin", b"\x00\xff"))
TRAILERS = (("x-t", "1"), ("x-u-bin", b"\x01"), ("x-t", "2"))
# Every call's script starts with these headers and trailers (repeated keys, -bin values in hex).
SCRIPT = b"header=x-a:1,x-b:2,x-a:3,x-c-bin:00ff;trailer=x-t:1,x-u-bin:01,x-t:2"
REC = Recorder()
RELEASE = REC.gate  # holds a b"hold" call in its handler until set


@pytest.fixture(scope="module")
def port() -> Iterator[int]:
    with sync_server(REC, workers=4, handler=SyncHandler(REC, SCRIPT)) as bound:
        yield bound


class _PassThrough(grpc.aio.UnaryUnaryClientInterceptor):  # type: ignore[misc]
    async def intercept_unary_unary(self, continuation: Any, details: Any, request: Any) -> Any:
        return await continuation(details, request)


@contextlib.asynccontextmanager
async def _aio_channel(port: int, *interceptors: Any) -> AsyncIterator[grpc.aio.Channel]:
    channel = grpc.aio.insecure_channel(f"127.0.0.1:{port}", interceptors=list(interceptors))
    try:
        yield channel
    finally:
        await channel.close(None)


def test_ended_sync_calls_are_read_from_their_state(port: int) -> None:
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        _, call = channel.unary_unary(METHODS["unary_unary"]).with_call(b"x")
        fast = uses_fast_path(call)
        pairs = ended_call_metadata(call)
        public = (tuple(call.initial_metadata()), tuple(call.trailing_metadata()))
        stream = channel.unary_stream(METHODS["unary_stream"])(b"x")
        assert len(list(stream)) == 3
        stream_pairs = ended_call_metadata(stream)
        stream_fast = uses_fast_path(stream)
    # The fast path is live on the grpcio this project pins (were grpcio's internals to move, the
    # public path would still give the right pairs, only slower: this test says so).
    assert fast
    assert pairs == public == (HEADERS, TRAILERS)
    assert stream_fast
    assert stream_pairs == (HEADERS, TRAILERS)


def test_a_sync_call_still_running_is_read_through_the_public_accessors(port: int) -> None:
    RELEASE.clear()
    timer = threading.Timer(0.2, RELEASE.set)
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        future = channel.unary_unary(METHODS["unary_unary"]).future(b"hold")
        try:
            running = uses_fast_path(future)  # the handler is held: the call cannot have ended
            timer.start()
            pairs = ended_call_metadata(future)  # waits for the headers and the status
            assert future.result() == b"echo:hold"
        finally:
            RELEASE.set()
            timer.cancel()
    assert not running
    assert pairs == (HEADERS, TRAILERS)


def test_grpc_aio_calls_read_the_cores_pairs_in_wire_order(port: int) -> None:
    with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        _, call = channel.unary_unary(METHODS["unary_unary"]).with_call(b"x")
        sync_pairs = (tuple(call.initial_metadata()), tuple(call.trailing_metadata()))

    async def main() -> tuple[bool, Any]:
        async with _aio_channel(port) as channel:
            call = channel.unary_unary(METHODS["unary_unary"])(b"x")
            assert await call == b"echo:x"
            return uses_fast_path(call), await read_response_metadata(call)

    core, (headers, trailers) = asyncio.run(main())
    # The fast path is live on the grpcio this project pins (a grpcio whose internals moved
    # would still be correct through the public path, but slower: this test says so).
    assert core
    assert headers == HEADERS
    assert trailers == TRAILERS
    assert (headers, trailers) == sync_pairs
    assert all(type(pair) is not list and len(pair) == 2 for pair in headers + trailers)


def test_other_call_objects_take_the_public_path_with_the_same_pairs(port: int) -> None:
    async def main() -> tuple[bool, Any, Any]:
        async with _aio_channel(port, _PassThrough()) as channel:
            call = channel.unary_unary(METHODS["unary_unary"])(b"x")
            assert await call == b"echo:x"
            public = (tuple(await call.initial_metadata()), tuple(await call.trailing_metadata()))
            return uses_fast_path(call), await read_response_metadata(call), public

    core, (headers, trailers), public = asyncio.run(main())
    assert not core
    assert (headers, trailers) == public
    assert sorted(headers, key=repr) == sorted(HEADERS, key=repr)
    assert sorted(trailers, key=repr) == sorted(TRAILERS, key=repr)


def test_waits_for_a_call_still_running(port: int) -> None:
    async def main() -> Any:
        async with _aio_channel(port) as channel:
            call = channel.unary_unary(METHODS["unary_unary"])(b"x")
            pairs = await read_response_metadata(call)  # before the response is awaited
            assert await call == b"echo:x"
            return pairs

    assert asyncio.run(main()) == (HEADERS, TRAILERS)


@pytest.mark.parametrize("shape", SHAPES)
def test_aio_chain_captures_what_the_sync_chain_captures(port: int, shape: str) -> None:
    chain = compose(Capture())
    with grpc.insecure_channel(f"127.0.0.1:{port}") as raw, capture() as sync_held:
        call_sync(chain.wrap(raw), shape, b"x")

    async def main() -> Captured:
        async with _aio_channel(port) as raw:
            with capture() as held:
                await call_aio(chain.wrap_aio(raw), shape, b"x")
            return held

    aio_held = asyncio.run(main())
    assert sync_held.headers == HEADERS
    assert sync_held.trailers == TRAILERS
    assert aio_held.headers == sync_held.headers
    assert aio_held.trailers == sync_held.trailers
