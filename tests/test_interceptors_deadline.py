"""Deadline: default and maximum timeouts, and the remaining time travels."""

from __future__ import annotations

import asyncio
from concurrent import futures
from typing import Any

import grpc
import pytest
from support_harness import (
    MODES,
    SHAPES,
    Recorder,
    aio_client,
    aio_server,
    async_wait_until,
    call_aio,
    call_sync,
    sync_client,
    sync_server,
    wait_until,
)

from grpc_channel.interceptors._chain import compose
from grpc_channel.interceptors._concurrency import ConcurrencyLimit
from grpc_channel.interceptors._deadline import Deadline


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("aio", [False, True])
def test_default_timeout_applies_to_calls_without_one(aio: bool, mode: str, shape: str) -> None:
    chain = compose(Deadline(0.2))
    rec = Recorder()
    if aio:

        async def main() -> Any:
            async with aio_server(rec) as port, aio_client(port, chain, mode) as channel:
                with pytest.raises(grpc.RpcError) as info:
                    await call_aio(channel, shape, b"sleep=0.6")
                await call_aio(channel, shape, b"fast", timeout=30)
                return info.value

        err = asyncio.run(main())
    else:
        with sync_server(rec) as port, sync_client(port, chain, mode) as channel:
            with pytest.raises(grpc.RpcError) as info:
                call_sync(channel, shape, b"sleep=0.6")
            call_sync(channel, shape, b"fast", timeout=30)
            err = info.value
    assert err.code() is grpc.StatusCode.DEADLINE_EXCEEDED
    first, second = rec.remaining
    assert first is not None and first <= 0.25  # 0.2 s, rounded up on the wire
    assert second is not None and second > 1.0  # the caller's own timeout wins


@pytest.mark.parametrize("aio", [False, True])
def test_maximum_caps_longer_timeouts(aio: bool) -> None:
    chain = compose(Deadline(maximum=0.5))
    rec = Recorder()
    if aio:

        async def main() -> None:
            async with aio_server(rec) as port, aio_client(port, chain) as channel:
                await call_aio(channel, "unary_unary", b"a", timeout=100)
                await call_aio(channel, "unary_unary", b"b")

        asyncio.run(main())
    else:
        with sync_server(rec) as port, sync_client(port, chain) as channel:
            call_sync(channel, "unary_unary", b"a", timeout=100)
            call_sync(channel, "unary_unary", b"b")
    # (grpc-timeout travels rounded up to its unit: allow a little slack over 0.5 s)
    assert all(left is not None and left <= 0.55 for left in rec.remaining)


@pytest.mark.parametrize("aio", [False, True])
def test_time_spent_queued_is_deducted_from_what_travels(aio: bool) -> None:
    limit = ConcurrencyLimit(1)
    chain = compose(Deadline(5.0), limit)
    rec = Recorder()
    if aio:

        async def main() -> None:
            async with aio_server(rec) as port, aio_client(port, chain) as channel:
                holder = asyncio.ensure_future(call_aio(channel, "unary_unary", b"sleep=0.5"))
                assert await async_wait_until(lambda: limit.in_flight == 1)
                await call_aio(channel, "unary_unary", b"queued")
                await holder

        asyncio.run(main())
    else:
        with (
            sync_server(rec) as port,
            sync_client(port, chain) as channel,
            futures.ThreadPoolExecutor(1) as pool,
        ):
            holder = pool.submit(call_sync, channel, "unary_unary", b"sleep=0.5")
            assert wait_until(lambda: limit.in_flight == 1)
            call_sync(channel, "unary_unary", b"queued")
            holder.result()
    first, second = rec.remaining
    assert first is not None and second is not None
    # The queued call waited for the 0.5 s holder: what reached the server is shorter.
    assert second < 4.7 and second < first


def test_deadline_passed_before_the_wire_fails_locally() -> None:
    rec = Recorder()
    with (
        sync_server(rec) as port,
        sync_client(port, compose(Deadline(5.0))) as channel,
        pytest.raises(grpc.RpcError) as info,
    ):
        channel.unary_unary("/test.Svc/UU")(b"x", timeout=-1)
    assert info.value.code() is grpc.StatusCode.DEADLINE_EXCEEDED
    assert rec.handled == 0


@pytest.mark.parametrize(
    ("args", "kwargs", "error"),
    [
        ((), {}, ValueError),
        ((0,), {}, ValueError),
        ((float("inf"),), {}, ValueError),
        (("5",), {}, TypeError),
        ((5.0,), {"maximum": 1.0}, ValueError),
    ],
)
def test_bad_deadline_arguments(args: Any, kwargs: Any, error: type) -> None:
    with pytest.raises(error):
        Deadline(*args, **kwargs)
