"""Retry against real servers: attempts, max attempts, deadline, streams, replayed request streams,
pushback, the grpc-previous-rpc-attempts header; sync and aio; plus the backoff arithmetic."""

from __future__ import annotations

import asyncio
import itertools
from typing import Any

import grpc
import grpc.aio
import pytest
from support_harness import (
    MODES,
    SHAPES,
    SU,
    US,
    UU,
    Recorder,
    aio_client,
    aio_server,
    call_aio,
    call_sync,
    expected,
    sync_client,
    sync_server,
)

from grpc_channel.interceptors._chain import compose
from grpc_channel.interceptors._deadline import Deadline
from grpc_channel.interceptors._policy import ClientCall, ClientPolicy
from grpc_channel.interceptors._retry import PREVIOUS_ATTEMPTS_HEADER, Backoff, Retry
from grpc_channel.interceptors._token import AppToken

_ids = itertools.count()


def fast_retry(max_attempts: int = 3, **kw: Any) -> Retry:
    return Retry(max_attempts, base_delay=0.005, max_delay=0.02, **kw)


class Attempts(ClientPolicy):
    """After Retry in the chain: sees every attempt and its outgoing metadata."""

    def __init__(self) -> None:
        self.seen: list[int] = []
        self.headers: list[str | bytes | None] = []

    def client_start(self, call: ClientCall) -> None:
        self.seen.append(call.attempt)
        self.headers.append(dict(call.metadata).get(PREVIOUS_ATTEMPTS_HEADER))


def _one(aio: bool, mode: str, shape: str, chain: Any, request: bytes, **kw: Any) -> Any:
    rec = Recorder()
    if aio:

        async def main() -> Any:
            async with aio_server(rec) as port, aio_client(port, chain, mode) as channel:
                try:
                    return await call_aio(channel, shape, request, **kw)
                except grpc.RpcError as exc:
                    return exc

        return asyncio.run(main()), rec
    with sync_server(rec) as port, sync_client(port, chain, mode) as channel:
        try:
            return call_sync(channel, shape, request, **kw), rec
        except grpc.RpcError as exc:
            return exc, rec


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("aio", [False, True])
def test_retries_until_success_and_sends_previous_attempts(
    aio: bool, mode: str, shape: str
) -> None:
    seen = Attempts()
    chain = compose(fast_retry(3, attempt_header="x-previous-rpc-attempts"), AppToken("tok"), seen)
    request = b"id=%d;fail_first=2:UNAVAILABLE" % next(_ids)
    out, rec = _one(aio, mode, shape, chain, request)
    assert out == expected(shape, request)
    assert sum(rec.attempts.values()) == 3
    assert rec.previous_attempts == [None, "1", "2"]
    assert seen.seen == [1, 2, 3]
    assert seen.headers == [None, None, None]  # a custom attempt_header replaces the default
    # Inner policies add their metadata afresh per attempt: one token each time.
    assert all(md["dapr-api-token"] == "tok" for md in rec.metadata)


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("aio", [False, True])
def test_max_attempts_is_honoured(aio: bool, shape: str) -> None:
    request = b"id=%d;fail_first=10:UNAVAILABLE" % next(_ids)
    out, rec = _one(aio, "wrap", shape, compose(fast_retry(3)), request)
    assert isinstance(out, grpc.RpcError)
    assert out.code() is grpc.StatusCode.UNAVAILABLE
    assert sum(rec.attempts.values()) == 3


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("aio", [False, True])
def test_retries_stop_at_the_deadline(aio: bool, mode: str) -> None:
    retry = Retry(10_000, base_delay=0.02, multiplier=1.0, jitter=0.0, max_delay=0.02)
    chain = compose(Deadline(0.3), retry)
    out, rec = _one(aio, mode, "unary_unary", chain, b"abort=UNAVAILABLE")
    assert isinstance(out, grpc.RpcError)
    assert out.code() in (
        grpc.StatusCode.UNAVAILABLE,
        grpc.StatusCode.DEADLINE_EXCEEDED,
    )
    assert 1 < rec.handled < 10_000  # retried, and stopped long before max_attempts
    assert all(left is not None and left <= 0.35 for left in rec.remaining)


@pytest.mark.parametrize("aio", [False, True])
def test_non_retryable_codes_are_not_retried(aio: bool) -> None:
    out, rec = _one(aio, "wrap", "unary_unary", compose(fast_retry(5)), b"abort=NOT_FOUND")
    assert out.code() is grpc.StatusCode.NOT_FOUND
    assert rec.handled == 1
    custom = compose(fast_retry(3, retryable_codes=[grpc.StatusCode.NOT_FOUND]))
    out, rec = _one(aio, "wrap", "unary_unary", custom, b"abort=NOT_FOUND")
    assert rec.handled == 3


@pytest.mark.parametrize("shape", ["unary_stream", "stream_stream"])
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("aio", [False, True])
def test_no_retry_once_the_response_stream_began(aio: bool, mode: str, shape: str) -> None:
    rec = Recorder()
    request = b"n=3;fail_after=UNAVAILABLE"
    chain = compose(fast_retry(5))
    received: list[bytes] = []
    if aio:

        async def main() -> Any:
            async with aio_server(rec) as port, aio_client(port, chain, mode) as channel:
                call = (
                    channel.unary_stream(US)(request)
                    if shape == "unary_stream"
                    else channel.stream_stream("/test.Svc/SS")(iter([request]))
                )
                with pytest.raises(grpc.RpcError) as info:
                    async for m in call:
                        received.append(m)
                return info.value

        err = asyncio.run(main())
    else:
        with sync_server(rec) as port, sync_client(port, chain, mode) as channel:
            stream = (
                channel.unary_stream(US)(request)
                if shape == "unary_stream"
                else channel.stream_stream("/test.Svc/SS")(iter([request]))
            )
            with pytest.raises(grpc.RpcError) as info:
                for m in stream:
                    received.append(m)
            err = info.value
    assert err.code() is grpc.StatusCode.UNAVAILABLE
    assert rec.handled == 1
    if shape == "unary_stream":
        assert received == [b"0:" + request]


def test_aio_writer_fed_request_streams_are_not_retried() -> None:
    rec = Recorder()
    request = b"id=%d;fail_first=1:UNAVAILABLE" % next(_ids)

    async def main() -> Any:
        async with aio_server(rec) as port, aio_client(port, compose(fast_retry(3))) as channel:
            call = channel.stream_unary(SU)()
            await call.write(request)
            await call.done_writing()
            with pytest.raises(grpc.RpcError) as info:
                await call
            return info.value

    err = asyncio.run(main())
    assert err.code() is grpc.StatusCode.UNAVAILABLE
    assert rec.handled == 1


@pytest.mark.parametrize("pushback", [b"-1", b"junk"])
def test_pushback_trailer_can_forbid_retrying(pushback: bytes) -> None:
    request = b"abort=UNAVAILABLE;pushback=" + pushback
    out, rec = _one(False, "wrap", "unary_unary", compose(fast_retry(5)), request)
    assert out.code() is grpc.StatusCode.UNAVAILABLE
    assert rec.handled == 1


def test_pushback_trailer_sets_the_wait() -> None:
    request = b"id=%d;fail_first=1:UNAVAILABLE;pushback=1" % next(_ids)
    out, rec = _one(
        False, "wrap", "unary_unary", compose(Retry(3, base_delay=60.0, max_delay=60.0)), request
    )
    assert out == [b"echo:" + request]  # a 60 s backoff would have hit the test timeout
    assert rec.handled == 2


@pytest.mark.parametrize("mode", MODES)
def test_sync_future_retries(mode: str) -> None:
    rec = Recorder()
    request = b"id=%d;fail_first=1:UNAVAILABLE" % next(_ids)
    with sync_server(rec) as port, sync_client(port, compose(fast_retry(3)), mode) as channel:
        fut = channel.unary_unary(UU).future(request)
        assert fut.result() == b"echo:" + request
        assert fut.code() is grpc.StatusCode.OK
    assert rec.handled == 2


@pytest.mark.parametrize("aio", [False, True])
def test_default_attempt_header_is_sent(aio: bool) -> None:
    seen = Attempts()
    request = b"id=%d;fail_first=2:UNAVAILABLE" % next(_ids)
    out, rec = _one(aio, "wrap", "unary_unary", compose(fast_retry(3), seen), request)
    assert out == [b"echo:" + request]
    # grpc core accepts the header and consumes it on the server (handlers never see it).
    assert seen.headers == [None, "1", "2"]
    assert rec.handled == 3


def test_backoff_follows_grpc_go() -> None:
    b = Backoff(base_delay=0.1, multiplier=2.0, jitter=0.0, max_delay=1.0)
    assert b.delay(0, 0.9) == 0.1
    assert b.delay(1, 0.5) == pytest.approx(0.2)
    assert b.delay(3, 0.5) == pytest.approx(0.8)
    assert b.delay(10, 0.5) == pytest.approx(1.0)
    j = Backoff(base_delay=0.1, multiplier=2.0, jitter=0.2, max_delay=1.0)
    assert j.delay(2, 0.0) == pytest.approx(0.4 * 0.8)
    assert j.delay(2, 1.0) == pytest.approx(0.4 * 1.2)


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"max_attempts": 0}, "max_attempts"),
        ({"retryable_codes": [grpc.StatusCode.OK]}, "OK"),
        ({"multiplier": 0.5}, "multiplier"),
        ({"jitter": 2}, "jitter"),
        ({"base_delay": 2.0, "max_delay": 1.0}, "max_delay"),
        ({"attempt_header": "Attempts"}, "attempt_header"),
        ({"attempt_header": "x-bin"}, "attempt_header"),
    ],
)
def test_bad_retry_arguments(kwargs: dict[str, Any], match: str) -> None:
    with pytest.raises((ValueError, TypeError), match=match):
        Retry(**kwargs)
