"""ConcurrencyLimit against real servers (sync and aio, wrapper and interceptors, client and server)
and its pure state machine and adaptive algorithms."""

from __future__ import annotations

import asyncio
import random
import threading
import time
from concurrent import futures
from typing import Any

import grpc
import grpc.aio
import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from support_harness import (
    MODES,
    SHAPES,
    SS,
    SU,
    US,
    UU,
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
from grpc_channel.interceptors._limit import AimdLimit, GradientLimit, LimiterState, Waiter
from grpc_channel.interceptors._policy import ClientCall, ClientPolicy


class MaxProbe(ClientPolicy):
    """Placed after a limiter: counts calls between its start and finish (what the limit bounds)."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.now = 0
        self.max = 0
        self.finished = 0

    def client_start(self, call: ClientCall) -> None:
        with self.lock:
            self.now += 1
            self.max = max(self.max, self.now)

    def client_finish(self, call: ClientCall) -> None:
        with self.lock:
            self.now -= 1
            self.finished += 1


# ---------------------------------------------------------------------------------------------
# The 1,000-call stress runs


def _plan(seed: int, n: int) -> list[tuple[str, bytes, float | None, bool]]:
    """(shape, request, timeout, cancel) for n calls: ok, slow, raising, aborting, expiring,
    cancelled."""
    rng = random.Random(seed)
    plan = []
    for _ in range(n):
        shape = rng.choice(SHAPES)
        kind = rng.random()
        timeout: float | None = None
        cancel = False
        if kind < 0.35:
            request = b"sleep=%.3f" % rng.uniform(0, 0.004)
        elif kind < 0.5:
            request = b"raise"
        elif kind < 0.6:
            request = b"abort=UNAVAILABLE"
        elif kind < 0.8:
            request, timeout = b"sleep=0.02", rng.uniform(0.001, 0.015)
        else:
            request, cancel = b"sleep=0.01;n=50", True
        plan.append((shape, request, timeout, cancel))
    return plan


def _sync_one(channel: Any, shape: str, request: bytes, timeout: Any, cancel: bool) -> None:
    try:
        if not cancel:
            call_sync(channel, shape, request, timeout=timeout)
            return
        if shape == "unary_unary":
            fut = channel.unary_unary(UU).future(request)
            fut.cancel()
            with pytest.raises((grpc.RpcError, grpc.FutureCancelledError)):
                fut.result()
        elif shape == "stream_unary":
            fut = channel.stream_unary(SU).future(iter([request]))
            fut.cancel()
            with pytest.raises((grpc.RpcError, grpc.FutureCancelledError)):
                fut.result()
        else:
            method = channel.unary_stream(US) if shape == "unary_stream" else None
            stream = (
                method(request)
                if method is not None
                else channel.stream_stream(SS)(iter([request]))
            )
            stream.cancel()
            with pytest.raises(grpc.RpcError):
                list(stream)
    except grpc.RpcError as exc:
        assert exc.code() in (
            grpc.StatusCode.UNKNOWN,
            grpc.StatusCode.UNAVAILABLE,
            grpc.StatusCode.DEADLINE_EXCEEDED,
            grpc.StatusCode.CANCELLED,
        )


@pytest.mark.parametrize("mode", MODES)
def test_sync_thousand_calls_never_exceed_the_limit_and_leak_no_slot(mode: str) -> None:
    client_limit = ConcurrencyLimit(4, name="client")
    probe = MaxProbe()
    server_limit = ConcurrencyLimit(3, name="server")
    rec = Recorder()
    plan = _plan(1, 1000)
    with sync_server(rec, compose(server_limit).server_interceptors(), workers=24) as port:
        with sync_client(port, compose(client_limit, probe), mode) as channel:
            with futures.ThreadPoolExecutor(16) as pool:
                for f in [pool.submit(_sync_one, channel, *p) for p in plan]:
                    f.result()
            assert wait_until(lambda: probe.now == 0)
        assert wait_until(lambda: server_limit.in_flight == 0 and rec.running == 0)
    assert client_limit.in_flight == 0 and client_limit.queued == 0
    assert probe.max <= 4 and probe.now == 0
    assert server_limit.queued == 0
    assert rec.max_running <= 3  # the handlers the server limit let run at once
    assert rec.handled > 0


@pytest.mark.parametrize("mode", MODES)
def test_aio_thousand_calls_never_exceed_the_limit_and_leak_no_slot(mode: str) -> None:
    client_limit = ConcurrencyLimit(4, name="client")
    probe = MaxProbe()
    server_limit = ConcurrencyLimit(3, name="server")
    rec = Recorder()
    plan = _plan(2, 1000)

    async def one(channel: Any, shape: str, request: bytes, timeout: Any, cancel: bool) -> None:
        task = asyncio.ensure_future(call_aio(channel, shape, request, timeout=timeout))
        if cancel:
            await asyncio.sleep(random.uniform(0, 0.01))
            task.cancel()
        try:
            await task
        except asyncio.CancelledError:
            assert cancel
        except grpc.RpcError as exc:
            assert exc.code() in (
                grpc.StatusCode.UNKNOWN,
                grpc.StatusCode.UNAVAILABLE,
                grpc.StatusCode.DEADLINE_EXCEEDED,
                grpc.StatusCode.CANCELLED,
            )

    async def main() -> None:
        async with aio_server(rec, compose(server_limit).aio_server_interceptors()) as port:
            async with aio_client(port, compose(client_limit, probe), mode) as channel:
                await asyncio.gather(*(one(channel, *p) for p in plan))
                assert await async_wait_until(lambda: client_limit.in_flight == 0)
            assert await async_wait_until(lambda: server_limit.in_flight == 0)

    asyncio.run(main())
    assert client_limit.in_flight == 0 and client_limit.queued == 0
    assert probe.max <= 4 and probe.now == 0
    assert server_limit.queued == 0 and rec.running == 0
    assert rec.max_running <= 3
    assert rec.handled > 0


# ---------------------------------------------------------------------------------------------
# Waiting: deadline, queue bound, streams


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("aio", [False, True])
def test_caller_queued_past_its_deadline_gets_deadline_exceeded(
    aio: bool, mode: str, shape: str
) -> None:
    limit = ConcurrencyLimit(1)
    rec = Recorder()
    if aio:

        async def main() -> Any:
            async with aio_server(rec) as port, aio_client(port, compose(limit), mode) as channel:
                holder = asyncio.ensure_future(call_aio(channel, "unary_unary", b"sleep=0.5"))
                assert await async_wait_until(lambda: limit.in_flight == 1)
                with pytest.raises(grpc.RpcError) as info:
                    await call_aio(channel, shape, b"x", timeout=0.05)
                assert limit.queued == 0
                await holder
                return info.value

        err = asyncio.run(main())
    else:
        with sync_server(rec) as port, sync_client(port, compose(limit), mode) as channel:
            with futures.ThreadPoolExecutor(1) as pool:
                holder = pool.submit(call_sync, channel, "unary_unary", b"sleep=0.5")
                assert wait_until(lambda: limit.in_flight == 1)
                with pytest.raises(grpc.RpcError) as info:
                    call_sync(channel, shape, b"x", timeout=0.05)
                assert limit.queued == 0
                holder.result()
            err = info.value
    assert err.code() is grpc.StatusCode.DEADLINE_EXCEEDED
    assert "waiting for a slot" in err.details()
    assert rec.handled == 1  # only the slot holder reached the server
    assert limit.in_flight == 0


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("aio", [False, True])
def test_full_queue_refuses_at_once_with_resource_exhausted(aio: bool, mode: str) -> None:
    limit = ConcurrencyLimit(1, max_queue=1)
    rec = Recorder()
    if aio:

        async def main() -> Any:
            async with aio_server(rec) as port, aio_client(port, compose(limit), mode) as channel:
                holder = asyncio.ensure_future(call_aio(channel, "unary_unary", b"sleep=0.3"))
                assert await async_wait_until(lambda: limit.in_flight == 1)
                waiter = asyncio.ensure_future(call_aio(channel, "unary_unary", b"w"))
                assert await async_wait_until(lambda: limit.queued == 1)
                with pytest.raises(grpc.RpcError) as info:
                    await call_aio(channel, "unary_stream", b"x")
                assert await waiter == [b"echo:w"]
                await holder
                return info.value

        err = asyncio.run(main())
    else:
        with sync_server(rec) as port, sync_client(port, compose(limit), mode) as channel:
            with futures.ThreadPoolExecutor(2) as pool:
                holder = pool.submit(call_sync, channel, "unary_unary", b"sleep=0.3")
                assert wait_until(lambda: limit.in_flight == 1)
                waiter = pool.submit(call_sync, channel, "unary_unary", b"w")
                assert wait_until(lambda: limit.queued == 1)
                with pytest.raises(grpc.RpcError) as info:
                    call_sync(channel, "unary_stream", b"x")
                assert waiter.result() == [b"echo:w"]
                holder.result()
            err = info.value
    assert err.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "max_queue=1" in err.details()
    assert rec.handled == 2
    assert limit.in_flight == 0 and limit.queued == 0


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("aio", [False, True])
def test_stream_holds_its_slot_until_it_ends(aio: bool, mode: str) -> None:
    limit = ConcurrencyLimit(1, max_queue=0)
    rec = Recorder()
    if aio:

        async def main() -> None:
            async with aio_server(rec) as port, aio_client(port, compose(limit), mode) as channel:
                stream = channel.unary_stream(US)(b"n=2")
                assert await stream.read() == b"0:n=2"
                assert limit.in_flight == 1
                with pytest.raises(grpc.RpcError):
                    await channel.unary_unary(UU)(b"x")
                assert [m async for m in stream] == [b"1:n=2"]
                assert await async_wait_until(lambda: limit.in_flight == 0)
                assert await channel.unary_unary(UU)(b"y") == b"echo:y"

        asyncio.run(main())
    else:
        with sync_server(rec) as port, sync_client(port, compose(limit), mode) as channel:
            stream = channel.unary_stream(US)(b"n=2")
            assert next(stream) == b"0:n=2"
            assert limit.in_flight == 1
            with pytest.raises(grpc.RpcError) as info:
                channel.unary_unary(UU)(b"x")
            assert info.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
            assert list(stream) == [b"1:n=2"]
            assert limit.in_flight == 0
            assert channel.unary_unary(UU)(b"y") == b"echo:y"
    assert limit.in_flight == 0


# Long enough for the test to see the call queued and send a third one while it waits (on a loaded
# machine too); the first call holds its slot until the test opens the gate, so the order is fixed.
_QUEUED_DEADLINE = 1.0


@pytest.mark.parametrize("aio", [False, True])
def test_server_limit_refuses_and_times_out_queued_handlers(aio: bool) -> None:
    limit = ConcurrencyLimit(1, max_queue=1, name="srv")
    rec = Recorder()
    if aio:

        async def main() -> list[Any]:
            async with (
                aio_server(rec, [limit.aio_server_interceptor()]) as port,
                aio_client(port) as channel,
            ):
                holder = asyncio.ensure_future(call_aio(channel, "unary_unary", b"hold"))
                assert await async_wait_until(lambda: limit.in_flight == 1)
                queued = asyncio.ensure_future(
                    call_aio(channel, "unary_unary", b"q", timeout=_QUEUED_DEADLINE)
                )
                assert await async_wait_until(lambda: limit.queued == 1)
                errors = []
                with pytest.raises(grpc.RpcError) as full:
                    await call_aio(channel, "unary_unary", b"x")
                errors.append(full.value)
                with pytest.raises(grpc.RpcError) as late:
                    await queued
                errors.append(late.value)
                # The client's deadline can fire before the server's waiter sees its own: open
                # the gate only once it has left the queue, or the freed slot would go to it.
                assert await async_wait_until(lambda: limit.queued == 0)
                rec.gate.set()
                await holder
                return errors

        errors = asyncio.run(main())
    else:
        with (
            sync_server(rec, [limit.server_interceptor()]) as port,
            sync_client(port) as channel,
            futures.ThreadPoolExecutor(2) as pool,
        ):
            holder = pool.submit(call_sync, channel, "unary_unary", b"hold")
            assert wait_until(lambda: limit.in_flight == 1)
            queued = pool.submit(call_sync, channel, "unary_unary", b"q", timeout=_QUEUED_DEADLINE)
            assert wait_until(lambda: limit.queued == 1)
            errors = []
            with pytest.raises(grpc.RpcError) as full:
                call_sync(channel, "unary_unary", b"x")
            errors.append(full.value)
            with pytest.raises(grpc.RpcError) as late:
                queued.result()
            errors.append(late.value)
            assert wait_until(lambda: limit.queued == 0)  # as in the aio branch
            rec.gate.set()
            holder.result()
    assert errors[0].code() is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert errors[1].code() is grpc.StatusCode.DEADLINE_EXCEEDED
    assert rec.handled == 1
    assert wait_until(lambda: limit.in_flight == 0 and limit.queued == 0)


def test_aio_waiter_cancelled_while_queued_leaves_the_queue() -> None:
    limit = ConcurrencyLimit(1)
    rec = Recorder()

    async def main() -> None:
        async with aio_server(rec) as port, aio_client(port, compose(limit)) as channel:
            holder = asyncio.ensure_future(call_aio(channel, "unary_unary", b"sleep=0.2"))
            assert await async_wait_until(lambda: limit.in_flight == 1)
            waiter = asyncio.ensure_future(call_aio(channel, "unary_unary", b"w"))
            assert await async_wait_until(lambda: limit.queued == 1)
            waiter.cancel()
            with pytest.raises(asyncio.CancelledError):
                await waiter
            assert limit.queued == 0
            await holder
            assert limit.in_flight == 0

    asyncio.run(main())
    assert rec.handled == 1


def test_aio_call_cancelled_through_its_cancel_while_queued() -> None:
    """``call.cancel()`` before the grpcio call exists (the call waits for a slot) cancels the
    awaiting task and leaves neither a queue entry nor a slot behind."""
    limit = ConcurrencyLimit(1)
    rec = Recorder()

    async def main() -> None:
        async with aio_server(rec) as port, aio_client(port, compose(limit)) as channel:
            holder = asyncio.ensure_future(call_aio(channel, "unary_unary", b"sleep=0.2"))
            assert await async_wait_until(lambda: limit.in_flight == 1)
            call = channel.unary_unary(UU)(b"w")

            async def wait_for_it() -> Any:
                return await call

            waiter = asyncio.ensure_future(wait_for_it())
            assert await async_wait_until(lambda: limit.queued == 1)
            assert call.cancel()
            with pytest.raises(asyncio.CancelledError):
                await waiter
            assert call.done() and call.cancelled()
            assert limit.queued == 0
            await holder
            assert limit.in_flight == 0

    asyncio.run(main())
    assert rec.handled == 1


# ---------------------------------------------------------------------------------------------
# Adaptive limits


def test_aimd_limit_moves_down_on_errors_and_back_up() -> None:
    limit = ConcurrencyLimit(AimdLimit(10, min_limit=1, max_limit=20))
    rec = Recorder()
    with sync_server(rec) as port, sync_client(port, compose(limit)) as channel:
        for _ in range(30):
            with pytest.raises(grpc.RpcError):
                channel.unary_unary(UU)(b"abort=UNAVAILABLE")
        low = limit.limit
        with futures.ThreadPoolExecutor(8) as pool:
            for f in [pool.submit(channel.unary_unary(UU), b"sleep=0.003") for _ in range(200)]:
                f.result()
        high = limit.limit
    assert low < 10
    assert high > low
    assert limit.in_flight == 0


def test_aimd_limit_moves_down_on_latency() -> None:
    limit = ConcurrencyLimit(AimdLimit(10, timeout=0.01))
    rec = Recorder()
    with sync_server(rec) as port, sync_client(port, compose(limit)) as channel:
        for _ in range(5):
            channel.unary_unary(UU)(b"sleep=0.05")  # slower than the AIMD timeout
    assert limit.limit < 10


def test_gradient_limit_grows_under_steady_latency_and_shrinks_when_it_rises() -> None:
    limit = ConcurrencyLimit(GradientLimit(4, max_limit=12), name="gradient")
    rec = Recorder()
    with sync_server(rec, workers=32) as port, sync_client(port, compose(limit)) as channel:
        mc = channel.unary_unary(UU)
        with futures.ThreadPoolExecutor(16) as pool:
            for f in [pool.submit(mc, b"sleep=0.002") for _ in range(300)]:
                f.result()
            grown = limit.limit
            for f in [pool.submit(mc, b"sleep=0.08") for _ in range(80)]:
                f.result()
        shrunk = limit.limit
    assert grown > 4
    assert shrunk < grown


def test_aio_adaptive_limit_moves_down_on_errors() -> None:
    limit = ConcurrencyLimit(AimdLimit(10))
    rec = Recorder()

    async def main() -> None:
        async with aio_server(rec) as port, aio_client(port, compose(limit), "icpt") as channel:
            for _ in range(20):
                with pytest.raises(grpc.RpcError):
                    await channel.unary_unary(UU)(b"abort=RESOURCE_EXHAUSTED")

    asyncio.run(main())
    assert limit.limit < 10
    assert limit.in_flight == 0


def test_state_machine_hands_slots_to_the_oldest_waiter() -> None:
    state = LimiterState(2, None, None)
    assert state.try_acquire() and state.try_acquire()
    assert not state.try_acquire()
    first, second = Waiter(), Waiter()
    state.enqueue(first)
    state.enqueue(second)
    assert state.release(0.0, False, False) is first
    assert first.granted and not second.granted
    assert state.in_flight == 2  # handed over, never dropped
    assert state.abandon(second) is True and not state.queue
    assert state.abandon(first) is False  # it owns a slot now
    assert state.release(0.0, False, False) is None
    assert state.in_flight == 1
    bounded = LimiterState(1, 1, None)
    assert bounded.try_acquire()
    assert not bounded.queue_full()
    bounded.enqueue(Waiter())
    assert bounded.queue_full()


def test_aimd_and_gradient_arithmetic() -> None:
    aimd = AimdLimit(10, min_limit=2, max_limit=11, backoff_ratio=0.5, timeout=1.0)
    assert aimd.update(10, 0.1, 10, True) == 5
    assert aimd.update(3, 0.1, 1, True) == 2  # floor
    assert aimd.update(10, 2.0, 10, False) == 5  # too slow counts as a drop
    assert aimd.update(10, 0.1, 5, False) == 11  # busy enough: +1
    assert aimd.update(11, 0.1, 11, False) == 11  # ceiling
    assert aimd.update(10, 0.1, 4, False) == 10  # app-limited: unchanged
    grad = GradientLimit(10, smoothing=1.0, tolerance=1.0, queue_size=0)
    assert grad.update(10, 0.01, 10, False) == 10  # first sample sets the baseline
    assert grad.update(10, 0.04, 10, False) == pytest.approx(5.0)  # 4x slower: halved
    assert grad.update(10, 0.0, 10, True) == pytest.approx(5.0)  # a drop: halved


@pytest.mark.parametrize(
    ("args", "kwargs", "error"),
    [
        ((0,), {}, ValueError),
        ((True,), {}, ValueError),
        (("4",), {}, TypeError),
        ((4,), {"max_queue": -1}, ValueError),
        ((4,), {"name": ""}, ValueError),
        ((4,), {"drop_codes": ["UNAVAILABLE"]}, TypeError),
    ],
)
def test_bad_arguments_are_refused_clearly(args: Any, kwargs: Any, error: type) -> None:
    with pytest.raises(error, match=r"limit|max_queue|name|drop_codes"):
        ConcurrencyLimit(*args, **kwargs)


def test_bad_algorithm_arguments() -> None:
    with pytest.raises(ValueError, match="min_limit <= initial"):
        AimdLimit(1, min_limit=2)
    with pytest.raises(ValueError, match="backoff_ratio"):
        AimdLimit(backoff_ratio=1.5)
    with pytest.raises(ValueError, match="tolerance"):
        GradientLimit(tolerance=0.5)


def test_metrics_are_exported_through_the_meter_provider() -> None:
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    limit = ConcurrencyLimit(3, name="exported", meter_provider=provider)
    rec = Recorder()
    try:
        with sync_server(rec) as port, sync_client(port, compose(limit)) as channel:
            stream = channel.unary_stream(US)(b"n=2")
            assert next(stream) == b"0:n=2"
            data: Any = reader.get_metrics_data()
            values = {
                m.name: [(dict(p.attributes or {}), p.value) for p in m.data.data_points]
                for rm in data.resource_metrics
                for sm in rm.scope_metrics
                for m in sm.metrics
            }
            list(stream)
    finally:
        provider.shutdown()
    attrs = {"concurrency.limiter": "exported"}
    assert values["rpc.concurrency.limit"] == [(attrs, 3)]
    assert values["rpc.concurrency.in_flight"] == [(attrs, 1)]
    assert values["rpc.concurrency.queued"] == [(attrs, 0)]
    assert limit.in_flight == 0


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("aio", [False, True])
def test_unread_stream_that_times_out_gives_its_slot_back(aio: bool, mode: str) -> None:
    limit = ConcurrencyLimit(1)
    rec = Recorder()
    if aio:

        async def main() -> None:
            async with aio_server(rec) as port, aio_client(port, compose(limit), mode) as channel:
                stream = channel.unary_stream(US)(b"sleep=0.5", timeout=0.1)
                if mode == "wrap":
                    await stream.initial_metadata()  # the wrapper starts calls lazily
                assert await async_wait_until(lambda: limit.in_flight == 1)
                # Nobody reads: the deadline ends the call and the backstop frees the slot.
                assert await async_wait_until(lambda: limit.in_flight == 0)
                assert await stream.code() is grpc.StatusCode.DEADLINE_EXCEEDED

        asyncio.run(main())
    else:
        with sync_server(rec) as port, sync_client(port, compose(limit), mode) as channel:
            stream = channel.unary_stream(US)(b"sleep=0.5", timeout=0.1)
            assert limit.in_flight == 1
            assert wait_until(lambda: limit.in_flight == 0)
            assert stream.code() is grpc.StatusCode.DEADLINE_EXCEEDED


# ---------------------------------------------------------------------------------------------
# take / give_back: the limit without a chain (the app channel's direct path)


def test_take_and_give_back_keep_the_chains_rules() -> None:
    limit = ConcurrencyLimit(1, max_queue=1)
    assert limit.take(None) is None  # free at once
    assert limit.in_flight == 1
    got: list[float | None] = []
    waiter = threading.Thread(target=lambda: got.append(limit.take(time.monotonic() + 30)))
    waiter.start()
    try:
        assert wait_until(lambda: limit.queued == 1)
        with pytest.raises(grpc.RpcError) as full:
            limit.take(None)  # the queue (max 1) is full: refused at once
        assert full.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
        before = time.monotonic()
        limit.give_back(grpc.StatusCode.OK, before)  # hands the slot to the queued caller
    finally:
        waiter.join(10)
    assert len(got) == 1 and got[0] is not None and got[0] >= before  # when it got the slot
    assert (limit.in_flight, limit.queued) == (1, 0)
    with pytest.raises(grpc.RpcError) as late:
        limit.take(time.monotonic() + 0.05)  # queued past its deadline
    assert late.value.code() is grpc.StatusCode.DEADLINE_EXCEEDED
    assert (limit.in_flight, limit.queued) == (1, 0)  # the late caller holds nothing
    limit.give_back(grpc.StatusCode.OK, time.monotonic())
    assert limit.in_flight == 0


def test_give_back_teaches_an_adaptive_limit() -> None:
    limit = ConcurrencyLimit(AimdLimit(10, min_limit=1, max_limit=20))
    for _ in range(30):
        started = time.monotonic()
        assert limit.take(None) is None
        limit.give_back(grpc.StatusCode.UNAVAILABLE, started)  # a drop code: the limit shrinks
    assert limit.limit < 10
    assert limit.in_flight == 0
