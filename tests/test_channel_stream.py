"""The raw streaming path of both app channels, ``Channel.stream`` / ``AsyncChannel.stream``,
against the scripted servicer of :mod:`support_harness` on 127.0.0.1 (a real grpcio server).

Every call shape travels as one stream-stream call on raw bytes; the channel's policies (the
concurrency slot, the app token) and the call's deadline apply as for ``invoke``.
"""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
import pytest
from support_harness import METHODS, SHAPES, SS, Recorder, expected, wait_until

from grpc_channel import aio, dial, on_finish, with_app_token, with_insecure, with_max_concurrency

TOKEN = "stream-secret"


def _requests(shape: str, first: bytes) -> list[bytes]:
    """What a caller of ``shape`` sends: one message, or ``first`` then ``b"more"``."""
    return [first, b"more"] if shape.startswith("stream_") else [first]


def _run(aio_mode: bool, port: int, body: Any, *options: Any) -> Any:
    """Run ``body(channel)`` on a sync channel, or ``await body(channel)`` on an aio one, both
    dialled to ``port`` with ``options``; the channel is closed afterwards."""
    target = f"127.0.0.1:{port}"
    if not aio_mode:
        with dial(target, with_insecure(), *options) as channel:
            return body(channel)

    async def main() -> Any:
        async with aio.dial(target, with_insecure(), *options) as channel:
            return await body(channel)

    return asyncio.run(main())


def _collect(aio_mode: bool, stream: Any) -> Any:
    """The response messages of ``stream`` (a coroutine for aio)."""
    if not aio_mode:
        return list(stream)

    async def read() -> list[bytes]:
        return [reply async for reply in stream]

    return read()


@pytest.mark.parametrize("aio_mode", [False, True])
@pytest.mark.parametrize("shape", SHAPES)
def test_every_shape_travels_as_a_raw_stream(shape: str, aio_mode: bool, served: int) -> None:
    sent = _requests(shape, b"n=2" if shape == "unary_stream" else b"hello")

    def sync_body(channel: Any) -> Any:
        stream = channel.stream(METHODS[shape], iter(sent))
        return list(stream), stream.code(), dict(stream.initial_metadata())

    async def aio_body(channel: Any) -> Any:
        stream = channel.stream(METHODS[shape], sent)
        replies = [reply async for reply in stream]
        return replies, await stream.code(), dict(await stream.initial_metadata())

    replies, code, headers = _run(aio_mode, served, aio_body if aio_mode else sync_body)
    assert replies == expected(shape, sent[0], sent[1:])
    assert code is grpc.StatusCode.OK
    assert headers.get("x-header") == "h"


def test_async_request_iterable_is_accepted(served: int) -> None:
    # aio only: the sync channel takes plain iterables.
    async def requests() -> Any:
        for item in (b"a", b"b", b"c"):
            yield item

    async def body(channel: Any) -> list[bytes]:
        return [reply async for reply in channel.stream(SS, requests())]

    assert _run(True, served, body) == [b"a", b"b", b"c"]


@pytest.mark.parametrize("aio_mode", [False, True])
def test_slot_is_held_while_streaming_and_released_at_the_end(aio_mode: bool, served: int) -> None:
    finished: list[BaseException | None] = []

    def sync_body(channel: Any) -> tuple[int, int]:
        stream = channel.stream(SS, iter([b"x", b"y"]), on_finish(finished.append))
        first = next(stream)
        during = channel.concurrency_limit.in_flight
        assert first == b"x"
        rest = list(stream)
        assert rest == [b"y"]
        return during, channel.concurrency_limit.in_flight

    async def aio_body(channel: Any) -> tuple[int, int]:
        stream = channel.stream(SS, [b"x", b"y"], on_finish(finished.append))
        first = await stream.read()
        during = channel.concurrency_limit.in_flight
        assert first == b"x"
        assert [reply async for reply in stream] == [b"y"]
        return during, channel.concurrency_limit.in_flight

    body = aio_body if aio_mode else sync_body
    during, after = _run(aio_mode, served, body, with_max_concurrency(1))
    assert (during, after) == (1, 0)
    assert finished == [None]


@pytest.mark.parametrize("aio_mode", [False, True])
def test_slot_is_released_when_the_stream_fails(aio_mode: bool, served: int) -> None:
    def sync_body(channel: Any) -> tuple[grpc.StatusCode, int]:
        with pytest.raises(grpc.RpcError) as raised:
            list(channel.stream(SS, iter([b"fail_after=ABORTED", b"more"])))
        return raised.value.code(), channel.concurrency_limit.in_flight

    async def aio_body(channel: Any) -> tuple[grpc.StatusCode, int]:
        with pytest.raises(grpc.RpcError) as raised:
            await _collect(True, channel.stream(SS, [b"fail_after=ABORTED", b"more"]))
        return raised.value.code(), channel.concurrency_limit.in_flight

    body = aio_body if aio_mode else sync_body
    code, after = _run(aio_mode, served, body, with_max_concurrency(1))
    assert code is grpc.StatusCode.ABORTED
    assert after == 0


@pytest.mark.parametrize("aio_mode", [False, True])
def test_slot_is_released_on_cancel_and_the_server_sees_it_end(
    aio_mode: bool, served: int, recorder: Recorder
) -> None:
    def sync_body(channel: Any) -> tuple[int, grpc.StatusCode]:
        stream = channel.stream(SS, iter([b"stay_open"]))
        assert next(stream) == b"stay_open"
        stream.cancel()
        assert wait_until(lambda: channel.concurrency_limit.in_flight == 0)
        return channel.concurrency_limit.in_flight, stream.code()

    async def aio_body(channel: Any) -> tuple[int, grpc.StatusCode]:
        stream = channel.stream(SS, [b"stay_open"])
        assert await stream.read() == b"stay_open"
        stream.cancel()
        with pytest.raises(asyncio.CancelledError):
            await stream.read()
        return channel.concurrency_limit.in_flight, await stream.code()

    body = aio_body if aio_mode else sync_body
    after, code = _run(aio_mode, served, body, with_max_concurrency(1))
    assert after == 0
    assert code is grpc.StatusCode.CANCELLED
    assert wait_until(lambda: recorder.ended == 1)


@pytest.mark.parametrize("aio_mode", [False, True])
def test_token_is_stamped_once_and_the_deadline_travels(
    aio_mode: bool, served: int, recorder: Recorder
) -> None:
    # A caller's own dapr-api-token is dropped: only the channel's reaches the server.
    metadata = (("dapr-api-token", "forged"), ("x-extra", "1"))

    def sync_body(channel: Any) -> list[bytes]:
        return list(channel.stream(SS, iter([b"a"]), timeout=30, metadata=metadata))

    async def aio_body(channel: Any) -> list[bytes]:
        return await _collect(True, channel.stream(SS, [b"a"], timeout=30, metadata=metadata))

    body = aio_body if aio_mode else sync_body
    assert _run(aio_mode, served, body, with_app_token(TOKEN)) == [b"a"]
    (seen,) = recorder.seen
    assert [v for k, v in seen.pairs if k == "dapr-api-token"] == [TOKEN]
    assert seen.metadata["x-extra"] == "1"
    assert seen.remaining is not None and 0 < seen.remaining <= 31  # grpc rounds deadlines up


@pytest.mark.parametrize("aio_mode", [False, True])
@pytest.mark.parametrize("method", ["", "no-slash", "/only.service", 42])
def test_bad_method_path_is_refused_clearly(aio_mode: bool, method: Any, served: int) -> None:
    def sync_body(channel: Any) -> str:
        with pytest.raises((ValueError, TypeError)) as raised:
            channel.stream(method, iter([b"a"]))
        return str(raised.value)

    async def aio_body(channel: Any) -> str:
        with pytest.raises((ValueError, TypeError)) as raised:
            channel.stream(method, [b"a"])
        return str(raised.value)

    message = _run(aio_mode, served, aio_body if aio_mode else sync_body)
    assert "method" in message


@pytest.mark.parametrize("aio_mode", [False, True])
def test_closed_channel_answers_cancelled(aio_mode: bool, served: int) -> None:
    target = f"127.0.0.1:{served}"
    if not aio_mode:
        channel = dial(target, with_insecure())
        channel.close()
        with pytest.raises(grpc.RpcError) as raised:
            list(channel.stream(SS, iter([b"a"])))
        assert raised.value.code() is grpc.StatusCode.CANCELLED
        return

    async def main() -> grpc.StatusCode:
        channel = await aio.dial(target, with_insecure())
        await channel.close()
        with pytest.raises(grpc.RpcError) as raised:
            await _collect(True, channel.stream(SS, [b"a"]))
        code: grpc.StatusCode = raised.value.code()
        return code

    assert asyncio.run(main()) is grpc.StatusCode.CANCELLED
