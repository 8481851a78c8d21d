"""The chain itself: hook order, finish exactly once on every path, metadata, refusals, streams,
futures; sync and aio; as channel wrappers and as grpcio interceptors; all four call shapes."""

from __future__ import annotations

import asyncio
import gc
import threading
from typing import Any

import grpc
import grpc.aio
import pytest
from support_harness import (
    MODES,
    SHAPES,
    SS,
    US,
    UU,
    Recorder,
    aio_client,
    aio_server,
    async_wait_until,
    call_aio,
    call_sync,
    expected,
    refused_code,
    sync_client,
    sync_server,
    wait_until,
)

from grpc_channel.interceptors._chain import Chain, compose
from grpc_channel.interceptors._errors import LocalRpcError
from grpc_channel.interceptors._policy import (
    CallShape,
    ClientCall,
    ClientPolicy,
    ServerCall,
    ServerPolicy,
)
from grpc_channel.interceptors._run import outcome_code, record_error


class Probe(ClientPolicy, ServerPolicy):
    """Logs its hooks; adds ``x-probe-<name>`` to outgoing metadata."""

    wants_response_metadata = True

    def __init__(self, name: str) -> None:
        self.name = name
        self.events: list[tuple[Any, ...]] = []
        self.lock = threading.Lock()

    def _log(self, *event: Any) -> None:
        with self.lock:
            self.events.append(event)

    def client_start(self, call: ClientCall) -> None:
        self._log(self.name, "start", call.method, call.shape.value)
        call.metadata.append((f"x-probe-{self.name}", "1"))

    def client_finish(self, call: ClientCall) -> None:
        self._log(
            self.name,
            "finish",
            call.code,
            dict(call.initial_metadata).get("x-header"),
            dict(call.trailing_metadata).get("x-trailer"),
        )

    def server_start(self, call: ServerCall) -> None:
        self._log(self.name, "server_start", call.method, call.metadata_value("x-probe-a"))

    def server_finish(self, call: ServerCall) -> None:
        self._log(self.name, "server_finish", call.code)

    def finishes(self) -> list[tuple[Any, ...]]:
        return [e for e in self.events if e[1] == "finish"]


class Refuse(ClientPolicy, ServerPolicy):
    def __init__(self, code: grpc.StatusCode = grpc.StatusCode.RESOURCE_EXHAUSTED) -> None:
        self.code = code

    def client_start(self, call: ClientCall) -> None:
        raise LocalRpcError(self.code, "refused by test policy")

    def server_start(self, call: ServerCall) -> None:
        raise LocalRpcError(self.code, "refused by test policy")


def _code(exc: BaseException) -> Any:
    return exc.code()  # type: ignore[attr-defined]


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("aio", [False, True])
def test_hooks_run_in_order_and_finish_once(aio: bool, mode: str, shape: str) -> None:
    a, b, s = Probe("a"), Probe("b"), Probe("s")
    client = compose(a, b)
    server = compose(s)
    rec = Recorder()
    request = b"id=1"

    if aio:

        async def main() -> list[bytes]:
            async with (
                aio_server(rec, server.aio_server_interceptors()) as port,
                aio_client(port, client, mode) as channel,
            ):
                return await call_aio(channel, shape, request)

        out = asyncio.run(main())
    else:
        with (
            sync_server(rec, server.server_interceptors()) as port,
            sync_client(port, client, mode) as channel,
        ):
            out = call_sync(channel, shape, request)
            assert wait_until(lambda: len(a.finishes()) == 1)

    assert out == expected(shape, request)
    method = {"unary_unary": UU, "unary_stream": US}.get(shape, f"/test.Svc/{shape[0].upper()}U")
    if shape == "stream_stream":
        method = SS
    order = [(e[0], e[1]) for e in a.events + b.events]
    assert order == [("a", "start"), ("a", "finish"), ("b", "start"), ("b", "finish")]
    assert a.events[0][2] == method and a.events[0][3] == shape
    assert a.finishes() == [("a", "finish", grpc.StatusCode.OK, "h", "t")]
    assert b.finishes() == [("b", "finish", grpc.StatusCode.OK, "h", "t")]
    assert s.events == [
        ("s", "server_start", method, "1"),
        ("s", "server_finish", grpc.StatusCode.OK),
    ]
    # Both probes' metadata reached the handler.
    assert rec.metadata[0]["x-probe-a"] == "1" and rec.metadata[0]["x-probe-b"] == "1"


class Shared(ClientPolicy):
    def __init__(self, name: str, log: list[str]) -> None:
        self.name = name
        self.log = log

    def client_start(self, call: ClientCall) -> None:
        self.log.append(f"{self.name}.start")

    def client_finish(self, call: ClientCall) -> None:
        self.log.append(f"{self.name}.finish")


@pytest.mark.parametrize("mode", MODES)
def test_first_listed_is_outermost(mode: str) -> None:
    log: list[str] = []
    chain = compose(Shared("outer", log), compose(Shared("mid", log)), Shared("inner", log))
    rec = Recorder()
    with sync_server(rec) as port, sync_client(port, chain, mode) as channel:
        channel.unary_unary(UU)(b"x")
    assert log == [
        "outer.start",
        "mid.start",
        "inner.start",
        "inner.finish",
        "mid.finish",
        "outer.finish",
    ]


@pytest.mark.parametrize("failure", ["abort=UNAVAILABLE", "raise"])
@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("aio", [False, True])
def test_failures_finish_once_with_the_code(aio: bool, mode: str, shape: str, failure: str) -> None:
    a, s = Probe("a"), Probe("s")
    rec = Recorder()
    want = grpc.StatusCode.UNAVAILABLE if failure.startswith("abort") else grpc.StatusCode.UNKNOWN

    if aio:

        async def main() -> Any:
            async with (
                aio_server(rec, compose(s).aio_server_interceptors()) as port,
                aio_client(port, compose(a), mode) as channel,
            ):
                with pytest.raises(grpc.RpcError) as info:
                    await call_aio(channel, shape, failure.encode())
                return info.value

        err = asyncio.run(main())
    else:
        with (
            sync_server(rec, compose(s).server_interceptors()) as port,
            sync_client(port, compose(a), mode) as channel,
        ):
            with pytest.raises(grpc.RpcError) as info:
                call_sync(channel, shape, failure.encode())
            err = info.value
            assert wait_until(lambda: len(a.finishes()) == 1)
    assert _code(err) is want
    finishes = a.finishes()
    assert len(finishes) == 1
    assert finishes[0][2] is want
    assert finishes[0][3] == "h" and finishes[0][4] == "t"  # metadata of a failed call too
    assert s.events[-1] == ("s", "server_finish", want)
    assert len([e for e in s.events if e[1] == "server_finish"]) == 1


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("aio", [False, True])
def test_inner_refusal_finishes_outer_and_never_reaches_server(
    aio: bool, mode: str, shape: str
) -> None:
    a = Probe("a")
    chain = compose(a, Refuse())
    rec = Recorder()
    if aio:

        async def main() -> Any:
            async with aio_server(rec) as port, aio_client(port, chain, mode) as channel:
                with pytest.raises(grpc.RpcError) as info:
                    await call_aio(channel, shape, b"x")
                return info.value

        err = asyncio.run(main())
    else:
        with sync_server(rec) as port, sync_client(port, chain, mode) as channel:
            with pytest.raises(grpc.RpcError) as info:
                call_sync(channel, shape, b"x")
            err = info.value
    assert _code(err) is grpc.StatusCode.RESOURCE_EXHAUSTED
    assert "refused by test policy" in err.details()
    assert a.finishes() == [("a", "finish", grpc.StatusCode.RESOURCE_EXHAUSTED, None, None)]
    assert rec.handled == 0


@pytest.mark.parametrize("shape", SHAPES)
@pytest.mark.parametrize("aio", [False, True])
def test_server_refusal_aborts_before_the_handler(aio: bool, shape: str) -> None:
    s = Probe("s")
    server = compose(s, Refuse(grpc.StatusCode.PERMISSION_DENIED))
    rec = Recorder()
    if aio:

        async def main() -> Any:
            async with (
                aio_server(rec, server.aio_server_interceptors()) as port,
                aio_client(port) as channel,
            ):
                with pytest.raises(grpc.RpcError) as info:
                    await call_aio(channel, shape, b"x")
                return info.value

        err = asyncio.run(main())
    else:
        with sync_server(rec, server.server_interceptors()) as port, sync_client(port) as channel:
            with pytest.raises(grpc.RpcError) as info:
                call_sync(channel, shape, b"x")
            err = info.value
    assert refused_code(err, aio, shape) in (grpc.StatusCode.PERMISSION_DENIED, None)
    assert rec.handled == 0
    assert s.events[-1] == ("s", "server_finish", grpc.StatusCode.PERMISSION_DENIED)


@pytest.mark.parametrize("mode", MODES)
@pytest.mark.parametrize("aio", [False, True])
def test_cancelled_stream_finishes_once(aio: bool, mode: str) -> None:
    a = Probe("a")
    chain = compose(a)
    rec = Recorder()
    if aio:

        async def main() -> None:
            async with aio_server(rec) as port, aio_client(port, chain, mode) as channel:
                call = channel.unary_stream(US)(b"n=100000")
                first = await call.read()
                assert first == b"0:n=100000"
                call.cancel()
                assert await async_wait_until(lambda: len(a.finishes()) == 1)

        asyncio.run(main())
    else:
        with sync_server(rec) as port, sync_client(port, chain, mode) as channel:
            stream = channel.unary_stream(US)(b"n=100000")
            assert next(stream) == b"0:n=100000"
            stream.cancel()
            with pytest.raises(grpc.RpcError):
                for _ in stream:
                    pass
            assert wait_until(lambda: len(a.finishes()) == 1)
    assert a.finishes()[0][2] is grpc.StatusCode.CANCELLED
    assert len(a.finishes()) == 1


def test_abandoned_sync_stream_is_cancelled_and_finished() -> None:
    a = Probe("a")
    rec = Recorder()
    with sync_server(rec) as port, sync_client(port, compose(a)) as channel:
        stream = channel.unary_stream(US)(b"n=100000")
        assert next(stream) == b"0:n=100000"
        del stream
        gc.collect()
        assert wait_until(lambda: len(a.finishes()) == 1)
    assert a.finishes()[0][2] is grpc.StatusCode.CANCELLED


@pytest.mark.parametrize("mode", MODES)
def test_sync_future_with_call_and_deadline(mode: str) -> None:
    a = Probe("a")
    rec = Recorder()
    with sync_server(rec) as port, sync_client(port, compose(a), mode) as channel:
        mc = channel.unary_unary(UU)
        fut = mc.future(b"f")
        assert fut.result() == b"echo:f"
        assert wait_until(lambda: len(a.finishes()) == 1)
        response, call = mc.with_call(b"w")
        assert response == b"echo:w"
        assert dict(call.trailing_metadata())["x-trailer"] == "t"
        assert call.code() is grpc.StatusCode.OK
        with pytest.raises(grpc.RpcError) as info:
            mc(b"sleep=0.4", timeout=0.05)
        assert info.value.code() is grpc.StatusCode.DEADLINE_EXCEEDED
        failed = mc.future(b"abort=NOT_FOUND")
        assert failed.exception().code() is grpc.StatusCode.NOT_FOUND
        su = channel.stream_unary("/test.Svc/SU")
        assert su.future(iter([b"a", b"b"])).result() == b"a|b"
        assert wait_until(lambda: len(a.finishes()) == 5)
    assert [f[2] for f in a.finishes()] == [
        grpc.StatusCode.OK,
        grpc.StatusCode.OK,
        grpc.StatusCode.DEADLINE_EXCEEDED,
        grpc.StatusCode.NOT_FOUND,
        grpc.StatusCode.OK,
    ]


def test_sync_future_of_a_refused_call_fails() -> None:
    with sync_server(Recorder()) as port, sync_client(port, compose(Refuse())) as channel:
        fut = channel.unary_unary(UU).future(b"x")
        assert fut.done()
        assert fut.exception().code() is grpc.StatusCode.RESOURCE_EXHAUSTED
        with pytest.raises(grpc.RpcError):
            fut.result()


def test_aio_call_objects_behave_like_grpc_aio() -> None:
    a = Probe("a")
    rec = Recorder()

    async def main() -> None:
        async with aio_server(rec) as port, aio_client(port, compose(a)) as channel:
            call = channel.unary_unary(UU)(b"x")
            # Metadata before awaiting starts the call and waits for it.
            assert dict(await call.initial_metadata())["x-header"] == "h"
            assert await call == b"echo:x"
            assert await call.code() is grpc.StatusCode.OK
            assert dict(await call.trailing_metadata())["x-trailer"] == "t"
            assert call.done()
            # Request stream fed by write()/done_writing().
            su = channel.stream_unary("/test.Svc/SU")()
            await su.write(b"p")
            await su.write(b"q")
            await su.done_writing()
            assert await su == b"p|q"
            ss = channel.stream_stream(SS)()
            await ss.write(b"r")
            await ss.done_writing()
            assert [m async for m in ss] == [b"r"]
            assert await ss.code() is grpc.StatusCode.OK
            # Cancelling a slow unary call.
            slow = channel.unary_unary(UU)(b"sleep=5")
            task = asyncio.ensure_future(slow)
            await asyncio.sleep(0.05)
            assert slow.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task
            assert await async_wait_until(lambda: len(a.finishes()) == 4)

    asyncio.run(main())
    assert [f[2] for f in a.finishes()] == [grpc.StatusCode.OK] * 3 + [grpc.StatusCode.CANCELLED]


def test_compose_checks_its_arguments() -> None:
    with pytest.raises(TypeError, match="ClientPolicy/ServerPolicy"):
        compose(object())  # type: ignore[arg-type]
    inner = compose(Probe("x"))
    outer = compose(inner, Probe("y"))
    assert isinstance(outer, Chain)
    assert [p.name for p in outer.policies] == ["x", "y"]  # type: ignore[attr-defined]

    async def aio_wrong() -> None:
        channel = grpc.aio.insecure_channel("127.0.0.1:1")
        try:
            with pytest.raises(TypeError, match="wrap_aio"):
                compose().wrap(channel)  # type: ignore[arg-type]
        finally:
            await channel.close(None)

    asyncio.run(aio_wrong())
    raw = grpc.insecure_channel("127.0.0.1:1")
    try:
        with pytest.raises(TypeError, match="wrap\\(\\)"):
            compose().wrap_aio(raw)  # type: ignore[arg-type]
    finally:
        raw.close()


def test_single_policy_spellings() -> None:
    a = Probe("a")
    rec = Recorder()
    with sync_server(rec, [a.server_interceptor()]) as port:
        raw: Any = grpc.insecure_channel(f"127.0.0.1:{port}")
        try:
            channel: Any = grpc.intercept_channel(raw, a.client_interceptor())
            assert channel.unary_unary(UU)(b"x") == b"echo:x"
            wrapped: Any = a.wrap(raw)
            assert wrapped.unary_unary(UU)(b"y") == b"echo:y"
        finally:
            raw.close()
    assert len(a.aio_client_interceptors()) == 4
    assert len(a.finishes()) == 2
    assert [e[1] for e in a.events if e[1].startswith("server")] == [
        "server_start",
        "server_finish",
    ] * 2


def test_wrapped_channel_caches_multicallables() -> None:
    raw = grpc.insecure_channel("127.0.0.1:1")
    try:
        channel: Any = compose(Probe("a")).wrap(raw)
        assert channel.unary_unary(UU) is channel.unary_unary(UU)
        assert channel.unary_unary(UU) is not channel.unary_stream(UU)
    finally:
        raw.close()


def test_registered_methods_like_generated_stubs() -> None:
    a = Probe("a")
    rec = Recorder()

    async def aio_part(port: int) -> bytes:
        async with aio_client(port, compose(a)) as channel:
            mc = channel.unary_unary(UU, None, None, _registered_method=True)
            result: bytes = await mc(b"r")
            return result

    with sync_server(rec) as port:
        with sync_client(port, compose(a)) as channel:
            mc = channel.unary_unary(UU, None, None, _registered_method=True)
            assert mc(b"s") == b"echo:s"
        assert asyncio.run(aio_part(port)) == b"echo:r"
    assert [f[2] for f in a.finishes()] == [grpc.StatusCode.OK, grpc.StatusCode.OK]


class Boom(ClientPolicy):
    def client_finish(self, call: ClientCall) -> None:
        raise RuntimeError("finish hook failed")


@pytest.mark.parametrize("request_", [b"x", b"abort=UNAVAILABLE"])
def test_a_raising_finish_hook_never_skips_the_others(request_: bytes) -> None:
    from grpc_channel.interceptors._concurrency import ConcurrencyLimit

    limit = ConcurrencyLimit(1)
    with sync_server(Recorder()) as port, sync_client(port, compose(limit, Boom())) as channel:
        # On success the hook's error surfaces; on failure the call's own error wins.
        expected_error = RuntimeError if request_ == b"x" else grpc.RpcError
        with pytest.raises(expected_error):
            channel.unary_unary(UU)(request_)
        assert limit.in_flight == 0


class _HalfBuiltError(grpc.RpcError):
    def code(self) -> grpc.StatusCode:
        raise RuntimeError("not built yet")


class _CodelessError(grpc.RpcError):
    pass


@pytest.mark.parametrize(
    ("exc", "code"),
    [
        (LocalRpcError(grpc.StatusCode.UNAVAILABLE, "down"), grpc.StatusCode.UNAVAILABLE),
        (_HalfBuiltError(), grpc.StatusCode.UNKNOWN),
        (_CodelessError(), grpc.StatusCode.UNKNOWN),
        (asyncio.CancelledError(), grpc.StatusCode.CANCELLED),
        (KeyboardInterrupt(), grpc.StatusCode.CANCELLED),
        (ValueError("boom"), grpc.StatusCode.UNKNOWN),
    ],
    ids=["rpc-error", "half-built", "codeless", "cancelled", "interrupt", "other"],
)
def test_outcome_code_is_what_the_chain_records(exc: BaseException, code: grpc.StatusCode) -> None:
    assert outcome_code(exc) is code
    call = ClientCall("/svc/M", CallShape.UNARY_UNARY, [], None, None, 0.0)
    record_error(call, exc)
    assert call.code is code
