"""Capture: headers, trailers and status into holders, on success and failure, sync and aio."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from typing import Any

import grpc
import pytest
from support_harness import (
    MODES,
    SHAPES,
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

from grpc_channel.interceptors._capture import Capture, Captured, capture
from grpc_channel.interceptors._chain import compose
from grpc_channel.interceptors._concurrency import ConcurrencyLimit


@pytest.mark.parametrize("request_", [b"x", b"abort=NOT_FOUND"])
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("aio", [False, True])
def test_scope_captures_on_success_and_failure(
    aio: bool, mode: str, shape: str, request_: bytes
) -> None:
    chain = compose(Capture())
    rec = Recorder()
    failing = request_.startswith(b"abort")
    if aio:

        async def main() -> Captured:
            async with aio_server(rec) as port, aio_client(port, chain, mode) as channel:
                with capture() as c:
                    try:
                        out = await call_aio(channel, shape, request_)
                        assert out == expected(shape, request_)
                    except grpc.RpcError:
                        assert failing
                return c

        held = asyncio.run(main())
    else:
        with sync_server(rec) as port, sync_client(port, chain, mode) as channel, capture() as held:
            try:
                assert call_sync(channel, shape, request_) == expected(shape, request_)
            except grpc.RpcError:
                assert failing
    assert held.done
    assert held.code is (grpc.StatusCode.NOT_FOUND if failing else grpc.StatusCode.OK)
    assert held.header("x-header") == ["h"]
    assert held.trailer("x-trailer") == ["t"]
    assert held.method.startswith("/test.Svc/")
    if failing:
        assert held.details == "asked to abort"


def test_into_holder_and_no_scope() -> None:
    holder: Any = Captured()
    chain = compose(Capture(into=holder))
    rec = Recorder()
    with sync_server(rec) as port, sync_client(port, chain) as channel:
        channel.unary_unary(UU)(b"one")
        assert holder.trailer("x-trailer") == ["t"]
        assert [holder.code] == [grpc.StatusCode.OK]
        with pytest.raises(grpc.RpcError):
            channel.unary_unary(UU)(b"abort=UNAVAILABLE")
        assert holder.code is grpc.StatusCode.UNAVAILABLE
        # Outside a scope nothing else is filled; an unrelated scope stays empty.
        with capture() as other:
            pass
        assert not other.done
    assert "x-header" in repr(holder) and "'h'" not in repr(holder)


def test_refused_call_is_captured_with_empty_metadata() -> None:
    limit = ConcurrencyLimit(1, max_queue=0)
    chain = compose(Capture(), limit)
    rec = Recorder()
    with sync_server(rec) as port, sync_client(port, chain) as channel:
        stream = channel.unary_stream("/test.Svc/US")(b"n=2")
        next(stream)
        with capture() as c, pytest.raises(grpc.RpcError):
            channel.unary_unary(UU)(b"x")
        list(stream)
    assert c.code is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert c.headers == () and c.trailers == ()


def test_scopes_are_private_to_threads() -> None:
    chain = compose(Capture())
    rec = Recorder()
    results: dict[int, Captured] = {}
    with sync_server(rec) as port, sync_client(port, chain) as channel:

        def worker(i: int) -> None:
            with capture() as c:
                results[i] = c
                with contextlib.suppress(grpc.RpcError):
                    channel.unary_unary(UU)(b"abort=NOT_FOUND" if i % 2 else b"ok")

        threads = [threading.Thread(target=worker, args=(i,)) for i in range(8)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    assert sorted(results) == list(range(8))
    for i, c in results.items():
        assert c.code is (grpc.StatusCode.NOT_FOUND if i % 2 else grpc.StatusCode.OK)


def test_capture_checks_its_argument() -> None:
    with pytest.raises(TypeError, match="Captured"):
        Capture(into={})  # type: ignore[arg-type]
