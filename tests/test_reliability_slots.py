"""Issue 16: a concurrency slot is never lost.

1. A sync caller whose wait for a slot is interrupted (KeyboardInterrupt, an OverflowError from a
   timeout too large for the lock, an exception raised into its thread) leaves the queue, and a
   slot handed to it at that very moment goes back: no ghost waiter keeps the next slot.
2. A response stream the caller drops unfinished gives its slot back (and ends its span) in every
   client form, also ``aio_client_interceptors()``, where grpc.aio used to keep it alive until
   its deadline or the channel's close.

Real servers on 127.0.0.1; interruptions are made deterministic by waiting until the caller is
parked in the limiter's wait before raising into it; conditions are polled with generous bounds.
"""

from __future__ import annotations

import asyncio
import contextlib
import ctypes
import gc
import signal
import sys
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import grpc
import grpc.aio
import pytest
from opentelemetry import trace
from support_channel import OwnApp
from support_harness import (
    MODES,
    SS,
    US,
    UU,
    Recorder,
    SyncHandler,
    aio_client,
    async_wait_until,
    sync_client,
    sync_server,
    wait_until,
)
from support_tracing import Telemetry

from grpc_channel.call_options import header, timeout
from grpc_channel.channel import Channel
from grpc_channel.dial_options import with_max_concurrency
from grpc_channel.interceptors._chain import compose
from grpc_channel.interceptors._concurrency import ConcurrencyLimit
from grpc_channel.interceptors._limit import AimdLimit
from grpc_channel.interceptors._tracing import Tracing, TracingSpec
from grpc_channel.invoke import InvokeMethodRequest
from grpc_channel.metadata import Metadata

OK = grpc.StatusCode.OK
CANCELLED = grpc.StatusCode.CANCELLED
STREAMS = ("unary_stream", "stream_stream")


class Interrupted(Exception):
    """Raised into a thread parked in the limiter's wait (an Exception, so a grpc server thread
    reports it as UNKNOWN instead of dying)."""


def _limit(kind: str) -> ConcurrencyLimit:
    # One slot; "adaptive" takes the algorithm's release path (it learns nothing from a give-up).
    return ConcurrencyLimit(1 if kind == "fixed" else AimdLimit(1, min_limit=1, max_limit=1))


def _slots(limit: ConcurrencyLimit) -> tuple[int, int]:
    return limit.in_flight, limit.queued


def _parked_in_acquire(ident: int | None = None) -> int | None:
    """The id of a thread (``ident``, or any) blocked in the limiter's wait for a slot."""
    for tid, frame in sys._current_frames().items():
        if ident is not None and tid != ident:
            continue
        if frame.f_code.co_name != "wait":
            continue  # not blocked in Event.wait (yet)
        f: Any = frame
        while f is not None:
            if f.f_code.co_name == "_acquire_sync":
                return tid
            f = f.f_back
    return None


def _raise_into(ident: int) -> None:
    """Schedule ``Interrupted`` in thread ``ident``: it is raised there at the thread's next
    Python instruction, i.e. as soon as its wait returns."""
    hit = ctypes.pythonapi.PyThreadState_SetAsyncExc(
        ctypes.c_ulong(ident), ctypes.py_object(Interrupted)
    )
    assert hit == 1


def _interrupt_as_granted(limit: ConcurrencyLimit, ident: int | None = None) -> None:
    """The race of the issue: an exception is already pending in the waiter when the holder gives
    its slot back, so the slot is handed to a waiter that is leaving."""
    assert wait_until(lambda: _parked_in_acquire(ident) is not None, 30)
    parked = _parked_in_acquire(ident)
    assert parked is not None
    _raise_into(parked)
    limit.give_back(OK, time.monotonic())


@contextlib.contextmanager
def _ctrl_c_when(ready: Callable[[], bool]) -> Iterator[list[bool]]:
    """Send SIGINT to this (the main) thread from a helper once ``ready()`` holds, as Ctrl-C in a
    CLI would; the default handler raises KeyboardInterrupt. Yields ``[ready() held]``."""
    assert threading.current_thread() is threading.main_thread()  # signals go to the main thread
    main = threading.get_ident()
    body_done = threading.Event()
    seen: list[bool] = []

    def fire() -> None:
        seen.append(wait_until(lambda: body_done.is_set() or ready(), 30))
        # Also sent when ready() never held (the caller waits without a deadline), but not once
        # the body has ended: a stray KeyboardInterrupt would stop the whole test session.
        if not body_done.is_set():
            signal.pthread_kill(main, signal.SIGINT)

    previous = signal.signal(signal.SIGINT, signal.default_int_handler)
    helper = threading.Thread(target=fire, name="ctrl-c")
    helper.start()
    try:
        yield seen
    finally:
        body_done.set()
        helper.join()
        signal.signal(signal.SIGINT, previous)


def _run_thread(target: Callable[[], Any]) -> tuple[threading.Thread, list[Any]]:
    """Run ``target`` in a thread; the list gets its result or the exception it raised."""
    out: list[Any] = []

    def body() -> None:
        try:
            out.append(target())
        except BaseException as exc:
            out.append(exc)

    thread = threading.Thread(target=body, name="queued-caller")
    thread.start()
    return thread, out


# -- 1. an interrupted wait -----------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["fixed", "adaptive"])
def test_take_with_a_timeout_too_large_for_the_lock_leaves_no_waiter(kind: str) -> None:
    limit = _limit(kind)
    assert limit.take(None) is None  # the only slot is held
    # Accepted, then the wait itself overflows: the waiter must not stay queued.
    with pytest.raises(OverflowError):
        limit.take(time.monotonic() + 1e300)
    assert _slots(limit) == (1, 0)
    limit.give_back(OK, time.monotonic())
    assert _slots(limit) == (0, 0)  # not handed to a ghost
    assert limit.take(time.monotonic() + 30) is None  # the next caller gets it at once
    limit.give_back(OK, time.monotonic())
    assert _slots(limit) == (0, 0)


@pytest.mark.parametrize("kind", ["fixed", "adaptive"])
def test_take_interrupted_as_its_slot_is_granted_gives_the_slot_back(kind: str) -> None:
    limit = _limit(kind)
    assert limit.take(None) is None
    thread, out = _run_thread(lambda: limit.take(None))
    try:
        _interrupt_as_granted(limit, thread.ident)
    finally:
        thread.join(30)
    assert isinstance(out[0], Interrupted)
    assert wait_until(lambda: _slots(limit) == (0, 0))
    assert limit.take(time.monotonic() + 30) is None
    limit.give_back(OK, time.monotonic())


@pytest.mark.parametrize("mode", MODES)
def test_sync_client_call_interrupted_as_its_slot_is_granted_gives_the_slot_back(
    mode: str,
) -> None:
    limit = ConcurrencyLimit(1)
    with sync_server(Recorder()) as port, sync_client(port, compose(limit), mode) as channel:
        call = channel.unary_unary(UU)
        assert limit.take(None) is None  # held, as by a call in flight
        thread, out = _run_thread(lambda: call(b"queued"))  # no deadline: waits for the slot
        try:
            _interrupt_as_granted(limit, thread.ident)
        finally:
            thread.join(30)
        assert isinstance(out[0], Interrupted)
        assert wait_until(lambda: _slots(limit) == (0, 0))
        assert call(b"next", timeout=30) == b"echo:next"
        assert _slots(limit) == (0, 0)


def test_sync_server_handler_interrupted_as_its_slot_is_granted_gives_the_slot_back() -> None:
    limit = ConcurrencyLimit(1)
    rec = Recorder()
    with (
        sync_server(rec, [limit.server_interceptor()]) as port,
        sync_client(port) as channel,
    ):
        call = channel.unary_unary(UU)
        assert limit.take(None) is None  # the server's one slot is held
        queued = call.future(b"queued", timeout=60)
        try:
            _interrupt_as_granted(limit)  # the handler thread parked in server_acquire
        finally:
            error = queued.exception(60)
        assert isinstance(error, grpc.RpcError)
        assert error.code() is grpc.StatusCode.UNKNOWN  # the handler thread raised
        assert rec.handled == 0
        assert wait_until(lambda: _slots(limit) == (0, 0))
        assert call(b"next", timeout=30) == b"echo:next"
        assert wait_until(lambda: _slots(limit) == (0, 0))


def _invoke_request() -> InvokeMethodRequest:
    return InvokeMethodRequest("echo").with_data(b"hi", "text/plain")


@pytest.mark.parametrize("path", ["direct", "chain"])
def test_channel_invoke_interrupted_by_ctrl_c_while_queued_frees_its_place(path: str) -> None:
    # "direct": a plain invoke takes the slot inline (ConcurrencyLimit.take); "chain": a call
    # option sends it through the interceptor chain (client_acquire).
    options: tuple[Any, ...] = () if path == "direct" else (header(Metadata()),)
    with OwnApp() as app, Channel.local(app.port, with_max_concurrency(1)) as channel:
        limit = channel.concurrency_limit
        assert limit is not None
        assert limit.take(None) is None  # held, as by a call in flight
        with _ctrl_c_when(lambda: limit.queued == 1) as ready, pytest.raises(KeyboardInterrupt):
            channel.invoke_method(_invoke_request(), *options)  # no deadline: it waits
        assert ready == [True]
        assert _slots(limit) == (1, 0)  # the interrupted caller left the queue
        limit.give_back(OK, time.monotonic())
        assert _slots(limit) == (0, 0)
        response = channel.invoke_method(_invoke_request(), timeout(30), *options)
        assert response.status.code == OK.value[0]
        assert response.data == b"hi"
        assert _slots(limit) == (0, 0)


# -- 2. a dropped response stream -----------------------------------------------------------------


# The harness's servicer, scripted to send one message and keep the stream open until the call
# ends; its recorder counts the calls that ended (grpc may close the handler at its first yield
# when the client is gone: that counts too).
OPEN_STREAM = b"n=1;stay_open"
FIRST = {"unary_stream": b"0:x", "stream_stream": b"x"}  # the one message of each shape


def _open_aio(channel: Any, shape: str) -> Any:
    if shape == "unary_stream":
        return channel.unary_stream(US)(b"x")
    return channel.stream_stream(SS)(iter([b"x", b"y"]))


def _collected(predicate: Callable[[], bool]) -> Callable[[], bool]:
    """``predicate`` after a garbage collection (a dropped call may sit in a reference cycle)."""

    def check() -> bool:
        gc.collect()
        return predicate()

    return check


async def _read_one_and_drop(channel: Any, shape: str, ending: str) -> None:
    if ending == "break":
        async for message in _open_aio(channel, shape):
            assert message == FIRST[shape]
            break
        return
    call = _open_aio(channel, shape)
    assert await call.read() == FIRST[shape]
    if ending == "cancel":
        call.cancel()
    del call


@pytest.mark.parametrize("ending", ["del", "cancel", "break"])
@pytest.mark.parametrize("shape", STREAMS)
@pytest.mark.parametrize("mode", MODES)
def test_aio_dropped_response_stream_gives_its_slot_back(
    mode: str, shape: str, ending: str
) -> None:
    limit = ConcurrencyLimit(1)
    streams = Recorder()

    async def go() -> None:
        async with aio_client(port, compose(limit), mode) as channel:
            await _read_one_and_drop(channel, shape, ending)
            # The stream has no deadline: only the drop can give the slot back.
            assert await async_wait_until(_collected(lambda: _slots(limit) == (0, 0)), 30)
            # The next stream gets the slot (and is cancelled on purpose).
            call = _open_aio(channel, shape)
            assert await call.read() == FIRST[shape]
            assert _slots(limit) == (1, 0)
            call.cancel()
            assert await async_wait_until(lambda: _slots(limit) == (0, 0), 30)

    with sync_server(streams, handler=SyncHandler(streams, OPEN_STREAM)) as port:
        asyncio.run(go())
        assert wait_until(lambda: streams.ended == 2, 30)  # the server saw both calls end


@pytest.mark.parametrize("mode", MODES)
def test_aio_dropped_response_stream_ends_its_span(mode: str) -> None:
    tel = Telemetry()
    limit = ConcurrencyLimit(1)
    chain = compose(Tracing(TracingSpec(tracer_provider=tel.tracer_provider)), limit)
    streams = Recorder()

    def client_spans() -> list[Any]:
        return tel.spans_of_kind(trace.SpanKind.CLIENT)

    async def go() -> None:
        async with aio_client(port, chain, mode) as channel:
            await _read_one_and_drop(channel, "unary_stream", "del")
            assert await async_wait_until(_collected(lambda: len(client_spans()) == 1), 30)
            assert _slots(limit) == (0, 0)

    try:
        with sync_server(streams, handler=SyncHandler(streams, OPEN_STREAM)) as port:
            asyncio.run(go())
        (span,) = client_spans()
        assert span.attributes is not None
        assert span.attributes["rpc.grpc.status_code"] == CANCELLED.value[0]
    finally:
        tel.shutdown()


@pytest.mark.parametrize("mode", MODES)
def test_sync_dropped_response_stream_gives_its_slot_back(mode: str) -> None:
    limit = ConcurrencyLimit(1)
    streams = Recorder()
    with (
        sync_server(streams, handler=SyncHandler(streams, OPEN_STREAM)) as port,
        sync_client(port, compose(limit), mode) as channel,
    ):
        stream = channel.unary_stream(US)(b"x")
        assert next(stream) == FIRST["unary_stream"]
        assert _slots(limit) == (1, 0)
        del stream
        assert wait_until(_collected(lambda: _slots(limit) == (0, 0)), 30)
        assert wait_until(lambda: streams.ended == 1, 30)
