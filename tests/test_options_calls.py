"""Call options at work on real calls, sync and aio: order, hooks, limits, compression,
wait-for-ready, deadlines and per-RPC credentials (the engine through wrap, and directly)."""

from __future__ import annotations

import asyncio
import threading
import time
from collections.abc import Awaitable, Callable
from typing import Any

import grpc
import pytest
from support_harness import free_port
from support_options import echo_modules, serve

from grpc_channel._engine import AsyncEngine, CallPlan, SyncEngine
from grpc_channel.call_options import (
    CallInfo,
    CallOption,
    Peer,
    call_content_subtype,
    call_metadata,
    force_codec,
    header,
    max_call_recv_msg_size,
    max_call_send_msg_size,
    on_finish,
    peer,
    per_rpc_credentials,
    timeout,
    trailer,
    use_compressor,
    wait_for_ready,
)
from grpc_channel.encoding import get_codec
from grpc_channel.interceptors._errors import LocalRpcError
from grpc_channel.metadata import Metadata, outgoing_metadata
from grpc_channel.stubs import wrap

AIO = [pytest.param(False, id="sync"), pytest.param(True, id="aio")]


class Caller:
    """One body for sync and aio: every method is a coroutine; sync stubs simply block."""

    def __init__(self, stub: Any, aio: bool) -> None:
        self.stub = stub
        self.aio = aio

    async def unary(self, request: Any, *opts: Any, **kw: Any) -> Any:
        result = self.stub.Unary(request, *opts, **kw)
        return await result if self.aio else result

    async def server_stream(self, request: Any, *opts: Any, **kw: Any) -> list[Any]:
        it = self.stub.ServerStream(request, *opts, **kw)
        if self.aio:
            return [r async for r in it]
        return list(it)

    async def client_stream(self, requests: list[Any], *opts: Any, **kw: Any) -> Any:
        result = self.stub.ClientStream(iter(requests), *opts, **kw)
        return await result if self.aio else result

    async def bidi(self, requests: list[Any], *opts: Any, **kw: Any) -> list[Any]:
        it = self.stub.Bidi(iter(requests), *opts, **kw)
        if self.aio:
            return [r async for r in it]
        return list(it)


def run(
    aio: bool,
    port: int,
    body: Callable[[Caller], Awaitable[None]],
    *defaults: CallOption,
    secure: bool | None = False,
    credentials: grpc.ChannelCredentials | None = None,
) -> None:
    """Run ``body`` against a wrapped Echo stub on a fresh channel to ``port``, closed after."""
    _, pb2_grpc = echo_modules()
    target = f"127.0.0.1:{port}"

    async def main() -> None:
        if aio:
            channel: Any = (
                grpc.aio.secure_channel(target, credentials)
                if credentials
                else grpc.aio.insecure_channel(target)
            )
        else:
            channel = (
                grpc.secure_channel(target, credentials)
                if credentials
                else grpc.insecure_channel(target)
            )
        try:
            stub = wrap(pb2_grpc.EchoStub, channel, *defaults, target=target, secure=secure)
            await body(Caller(stub, aio))
        finally:
            if aio:
                await channel.close(None)
            else:
                channel.close()

    asyncio.run(main())


class Probe(CallOption):
    """Records the folded CallInfo when its before() runs (put it last)."""

    def __init__(self) -> None:
        self.seen: dict[str, Any] = {}

    def before(self, info: CallInfo) -> None:
        self.seen = {
            "timeout": info.timeout,
            "wait_for_ready": info.wait_for_ready,
            "compressor": info.compressor,
            "max_recv": info.max_recv_msg_size,
            "metadata": info.metadata,
        }


@pytest.mark.parametrize("aio", AIO)
def test_option_order_defaults_then_dial_then_call(aio: bool) -> None:
    pb2, _ = echo_modules()
    library, dial, call = Probe(), Probe(), Probe()

    async def body(c: Caller) -> None:
        with outgoing_metadata({"k": "ctx"}):
            await c.unary(pb2.EchoRequest(text="a"), dial)
            await c.unary(
                pb2.EchoRequest(text="b"),
                timeout(30),
                call_metadata("k", "call"),
                max_call_recv_msg_size(1000),
                call,
                timeout=40,
                metadata=[("k", "kw")],
            )

    with serve(options=[("grpc.compression_enabled_algorithms_bitset", 1)]) as (port, servicer):

        async def bare(c: Caller) -> None:
            await c.unary(pb2.EchoRequest(text="lib"), library)

        run(aio, port, bare)
        assert library.seen == {
            "timeout": None,
            "wait_for_ready": None,
            "compressor": None,
            "max_recv": None,
            "metadata": (),
        }
        run(
            aio,
            port,
            body,
            timeout(50),
            wait_for_ready(True),
            use_compressor("identity"),
            call_metadata("k", "dial"),
        )
    assert dial.seen == {
        "timeout": 50.0,
        "wait_for_ready": True,
        "compressor": "identity",
        "max_recv": None,
        "metadata": (("k", "ctx"), ("k", "dial")),
    }
    assert call.seen == {
        "timeout": 30.0,
        "wait_for_ready": True,
        "compressor": "identity",
        "max_recv": 1000,
        "metadata": (("k", "ctx"), ("k", "dial"), ("k", "kw"), ("k", "call")),
    }
    sent = [v for k, v in servicer.seen_pairs[-1] if k == "k"]
    assert sent == ["ctx", "dial", "kw", "call"]


@pytest.mark.parametrize("aio", AIO)
def test_per_call_compressor_overrides_dial_default(aio: bool) -> None:
    pb2, _ = echo_modules()

    async def body(c: Caller) -> None:
        # The default (gzip) is refused by the identity-only server: proof it is used ...
        with pytest.raises(grpc.RpcError) as info:
            await c.unary(pb2.EchoRequest(text="x"))
        assert info.value.code() is grpc.StatusCode.UNIMPLEMENTED
        assert "gzip" in (info.value.details() or "")
        with pytest.raises(grpc.RpcError) as info:
            await c.unary(pb2.EchoRequest(text="x"), use_compressor("deflate"))
        assert "deflate" in (info.value.details() or "")
        # ... and a per-call option wins over it.
        reply = await c.unary(pb2.EchoRequest(text="x"), use_compressor("identity"))
        assert reply.text == "x"

    with serve(options=[("grpc.compression_enabled_algorithms_bitset", 1)]) as (port, _):
        run(aio, port, body, use_compressor("gzip"))


@pytest.mark.parametrize("aio", AIO)
def test_compressor_reaches_a_gzip_server(aio: bool) -> None:
    pb2, _ = echo_modules()

    async def body(c: Caller) -> None:
        reply = await c.unary(
            pb2.EchoRequest(text="z", payload=b"p" * 4096), use_compressor("gzip")
        )
        assert reply.payload == b"p" * 4096

    with serve() as (port, _):
        run(aio, port, body)


@pytest.mark.parametrize("aio", AIO)
def test_after_runs_on_failed_calls_with_headers_trailers_peer(aio: bool) -> None:
    pb2, _ = echo_modules()

    async def body(c: Caller) -> None:
        for call in (
            lambda *o: c.unary(pb2.EchoRequest(text="fail"), *o),
            lambda *o: c.server_stream(pb2.EchoRequest(text="fail"), *o),
            lambda *o: c.client_stream([pb2.EchoRequest(text="fail")], *o),
        ):
            md, tr, where = Metadata(), Metadata(), Peer()
            errors: list[BaseException | None] = []
            with pytest.raises(grpc.RpcError) as info:
                await call(header(md), trailer(tr), peer(where), on_finish(errors.append))
            assert info.value.code() is grpc.StatusCode.INVALID_ARGUMENT
            assert info.value.details() == "bad request"
            assert md.get("x-fail-header") == ["h"]
            assert tr.get("x-fail-trailer") == ["t"]
            assert where.address == f"127.0.0.1:{port}"
            assert len(errors) == 1 and errors[0] is info.value

    with serve() as (port, _):
        run(aio, port, body)


@pytest.mark.parametrize("aio", AIO)
def test_after_on_success_all_shapes(aio: bool) -> None:
    pb2, _ = echo_modules()

    async def body(c: Caller) -> None:
        md, tr = Metadata({"stale": "x"}), Metadata()
        assert (await c.unary(pb2.EchoRequest(text="u"), header(md), trailer(tr))).text == "u"
        assert md == Metadata({"x-echo": "u"})  # replaced, not merged
        assert tr.get("x-trailer") == ["done"]
        replies = await c.server_stream(pb2.EchoRequest(text="s", count=3), header(md), trailer(tr))
        assert [r.index for r in replies] == [0, 1, 2]
        assert md.get("x-echo") == ["s"] and tr.get("x-trailer") == ["done"]
        reply = await c.client_stream(
            [pb2.EchoRequest(text="a"), pb2.EchoRequest(text="b")], header(md)
        )
        assert (reply.text, reply.index) == ("a+b", 2)
        assert md.get("x-echo") == ["a+b"]
        replies = await c.bidi([pb2.EchoRequest(text="p"), pb2.EchoRequest(text="q")], trailer(tr))
        assert [r.text for r in replies] == ["p", "q"]
        assert tr.get("x-trailer") == ["done"]

    with serve() as (port, _):
        run(aio, port, body)


class Refuse(CallOption):
    def before(self, info: CallInfo) -> None:
        raise LocalRpcError(grpc.StatusCode.FAILED_PRECONDITION, "refused by test")


class CountAfter(CallOption):
    def __init__(self) -> None:
        self.count = 0

    def after(self, info: CallInfo) -> None:
        self.count += 1


@pytest.mark.parametrize("aio", AIO)
def test_on_finish_exactly_once_success_failure_refusal(aio: bool) -> None:
    pb2, _ = echo_modules()

    async def body(c: Caller) -> None:
        got: list[BaseException | None] = []
        after = CountAfter()
        await c.unary(pb2.EchoRequest(text="ok"), on_finish(got.append), after)
        assert got == [None] and after.count == 1

        got.clear()
        with pytest.raises(grpc.RpcError):
            await c.unary(pb2.EchoRequest(text="fail"), on_finish(got.append), after)
        assert len(got) == 1 and isinstance(got[0], grpc.RpcError) and after.count == 2

        got.clear()
        with pytest.raises(LocalRpcError) as info:
            await c.unary(pb2.EchoRequest(text="ok"), on_finish(got.append), after, Refuse())
        assert info.value.details() == "refused by test"
        assert got == [info.value]
        assert after.count == 2  # after() does not run for a call refused before the wire

        got.clear()
        replies = await c.server_stream(pb2.EchoRequest(text="s", count=2), on_finish(got.append))
        assert len(replies) == 2 and got == [None]

        got.clear()
        with pytest.raises(grpc.RpcError):
            await c.bidi([pb2.EchoRequest(text="fail")], on_finish(got.append))
        assert len(got) == 1 and got[0] is not None

    with serve() as (port, servicer):
        run(aio, port, body)
        # The refused call never reached the server: 2 unary + 2 streams.
        assert len(servicer.seen) == 4


class Boom(CallOption):
    def after(self, info: CallInfo) -> None:
        raise RuntimeError("hook failed")


@pytest.mark.parametrize("aio", AIO)
def test_hook_exception_runs_other_hooks_then_propagates(aio: bool) -> None:
    pb2, _ = echo_modules()

    async def body(c: Caller) -> None:
        got: list[BaseException | None] = []
        after = CountAfter()
        # Success: the hook's error is raised, after every other hook ran.
        with pytest.raises(RuntimeError, match="hook failed"):
            await c.unary(pb2.EchoRequest(text="ok"), Boom(), after, on_finish(got.append))
        assert after.count == 1 and got == [None]
        # Failure: the call's error wins; the hook's error is its __context__.
        with pytest.raises(grpc.RpcError) as info:
            await c.unary(pb2.EchoRequest(text="fail"), Boom(), after, on_finish(got.append))
        assert isinstance(info.value.__context__, RuntimeError)
        assert after.count == 2 and len(got) == 2

        def bad_callback(error: BaseException | None) -> None:
            raise ValueError("callback failed")

        with pytest.raises(ValueError, match="callback failed"):
            await c.unary(
                pb2.EchoRequest(text="ok"), on_finish(bad_callback), on_finish(got.append)
            )
        assert len(got) == 3 and got[-1] is None

    with serve() as (port, _):
        run(aio, port, body)


@pytest.mark.parametrize("aio", AIO)
def test_message_size_limits_both_ways(aio: bool) -> None:
    pb2, _ = echo_modules()

    async def body(c: Caller) -> None:
        request = pb2.EchoRequest(text="x", payload=b"p" * 200)
        size = request.ByteSize()
        with pytest.raises(LocalRpcError) as info:
            await c.unary(request, max_call_send_msg_size(100))
        assert info.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
        assert info.value.details() == (
            f"request message of {size} bytes is over this call's send limit of 100 bytes "
            "(max_call_send_msg_size)"
        )
        assert (await c.unary(request, max_call_send_msg_size(size))).payload == request.payload

        md = Metadata()
        with pytest.raises(LocalRpcError) as info:
            await c.unary(
                pb2.EchoRequest(text="x", payload=b"p" * 200),
                max_call_recv_msg_size(50),
                header(md),
            )
        assert info.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
        assert info.value.details().startswith("response message of ")
        assert info.value.details().endswith(
            "over this call's receive limit of 50 bytes (max_call_recv_msg_size)"
        )
        assert md.get("x-echo") == ["x"]  # headers kept on the refused response

        # Streams: a too-large message in the middle of a request stream stops it.
        with pytest.raises(LocalRpcError) as info:
            await c.client_stream(
                [pb2.EchoRequest(text="a"), pb2.EchoRequest(text="b", payload=b"p" * 500)],
                max_call_send_msg_size(100),
            )
        assert info.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
        with pytest.raises(LocalRpcError) as info:
            await c.server_stream(
                pb2.EchoRequest(text="s", count=3, payload=b"big"), max_call_recv_msg_size(50)
            )
        assert info.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED

    with serve() as (port, servicer):
        run(aio, port, body)
        texts = [pairs for pairs in servicer.seen]
        # The unary call over the send limit never reached the server: 1 ok + 1 recv-limited
        # + the client stream (started, then cancelled) + the server stream.
        assert len(texts) in (3, 4)


@pytest.mark.parametrize("aio", AIO)
def test_timeout_expires_with_deadline_exceeded(aio: bool) -> None:
    pb2, _ = echo_modules()

    async def body(c: Caller) -> None:
        codes: list[Any] = []
        with pytest.raises(grpc.RpcError) as info:
            await c.unary(pb2.EchoRequest(text="wait"), timeout(0.2), on_finish(codes.append))
        assert info.value.code() is grpc.StatusCode.DEADLINE_EXCEEDED
        assert codes[0].code() is grpc.StatusCode.DEADLINE_EXCEEDED
        with pytest.raises(grpc.RpcError) as info:
            await c.server_stream(pb2.EchoRequest(text="wait"), timeout(0.2))
        assert info.value.code() is grpc.StatusCode.DEADLINE_EXCEEDED

    with serve() as (port, _):
        run(aio, port, body)


@pytest.mark.parametrize("aio", AIO)
def test_wait_for_ready_waits_for_a_server_started_later(aio: bool) -> None:
    pb2, _ = echo_modules()
    port = free_port()
    started = threading.Event()
    stop = threading.Event()

    def late_server() -> None:
        # Start the server only once the call is under way (no timing is asserted).
        started.wait(10)
        time.sleep(0.3)
        with serve(port=port):
            stop.wait(30)

    thread = threading.Thread(target=late_server)
    thread.start()

    class Started(CallOption):
        def before(self, info: CallInfo) -> None:
            started.set()

    async def body(c: Caller) -> None:
        with pytest.raises(grpc.RpcError) as info:
            await c.unary(pb2.EchoRequest(text="early"), timeout(5))
        assert info.value.code() is grpc.StatusCode.UNAVAILABLE  # fail fast by default
        reply = await c.unary(
            pb2.EchoRequest(text="late"), wait_for_ready(), timeout(20), Started()
        )
        assert reply.text == "late"

    try:
        run(aio, port, body)
    finally:
        started.set()
        stop.set()
        thread.join()


class TokenCreds:
    """grpc-go style per-RPC credentials."""

    def __init__(self, secure_only: bool) -> None:
        self.secure_only = secure_only
        self.methods: list[str] = []

    def get_request_metadata(self, method: str) -> dict[str, str]:
        self.methods.append(method)
        return {"authorization": "Bearer abc"}

    def require_transport_security(self) -> bool:
        return self.secure_only


@pytest.mark.parametrize("aio", AIO)
def test_per_rpc_credentials_metadata_arrives(aio: bool) -> None:
    pb2, _ = echo_modules()
    creds = TokenCreds(secure_only=False)
    strict = TokenCreds(secure_only=True)

    async def body(c: Caller) -> None:
        await c.unary(pb2.EchoRequest(text="a"), per_rpc_credentials(creds))
        got: list[Any] = []
        with pytest.raises(LocalRpcError) as info:
            await c.unary(
                pb2.EchoRequest(text="b"), per_rpc_credentials(strict), on_finish(got.append)
            )
        assert info.value.code() is grpc.StatusCode.UNAUTHENTICATED
        assert info.value.details() == (
            "per_rpc_credentials: the credentials require transport security and this channel "
            "is insecure"
        )
        assert got == [info.value]
        with pytest.raises(LocalRpcError) as info:
            await c.unary(
                pb2.EchoRequest(text="c"),
                per_rpc_credentials(grpc.access_token_call_credentials("t")),
            )
        assert info.value.details().startswith("per_rpc_credentials: grpc.CallCredentials")

    with serve() as (port, servicer):
        run(aio, port, body)
        assert len(servicer.seen) == 1
        assert servicer.seen[0]["authorization"] == "Bearer abc"
    assert creds.methods == ["/grpc_channel_test.Echo/Unary"]
    assert strict.methods == []


@pytest.mark.parametrize("aio", AIO)
def test_per_rpc_credentials_over_a_secure_channel(aio: bool) -> None:
    pb2, _ = echo_modules()
    strict = TokenCreds(secure_only=True)

    async def body(c: Caller) -> None:
        await c.unary(pb2.EchoRequest(text="a"), per_rpc_credentials(strict))
        await c.unary(
            pb2.EchoRequest(text="b"),
            per_rpc_credentials(grpc.access_token_call_credentials("grpc-token")),
        )

    local = grpc.local_channel_credentials(grpc.LocalConnectionType.LOCAL_TCP)
    with serve(local_tls=True) as (port, servicer):
        run(aio, port, body, secure=True, credentials=local)
        assert servicer.seen[0]["authorization"] == "Bearer abc"
        assert servicer.seen[1]["authorization"] == "Bearer grpc-token"


@pytest.mark.parametrize("aio", AIO)
def test_security_unknown_refuses_strict_credentials(aio: bool) -> None:
    pb2, _ = echo_modules()

    async def body(c: Caller) -> None:
        with pytest.raises(LocalRpcError) as info:
            await c.unary(pb2.EchoRequest(text="a"), per_rpc_credentials(TokenCreds(True)))
        assert (
            "security is unknown (wrap(..., secure=True) if it is secure)" in info.value.details()
        )

    with serve() as (port, _):
        run(aio, port, body, secure=None)


@pytest.mark.parametrize("aio", AIO)
def test_codec_chosen_per_call_is_used_on_the_wire(aio: bool) -> None:
    pb2, _ = echo_modules()
    json_codec = get_codec("json")

    async def main(port: int) -> None:
        target = f"127.0.0.1:{port}"
        request = pb2.EchoRequest(text="j", payload=b"pp")
        if aio:
            async with grpc.aio.insecure_channel(target) as channel:
                engine = AsyncEngine(channel, CallPlan(target=target))
                a = await engine.unary_unary(
                    "/raw.Echo/Echo", request, pb2.EchoReply, force_codec(json_codec)
                )
                b = await engine.unary_unary(
                    "/raw.Echo/Echo", request, pb2.EchoReply, call_content_subtype("JSON")
                )
                c = await engine.unary_unary("/raw.Echo/Echo", request, pb2.EchoReply)
        else:
            with grpc.insecure_channel(target) as channel:
                engine_s = SyncEngine(channel, CallPlan(target=target))
                a = engine_s.unary_unary(
                    "/raw.Echo/Echo", request, pb2.EchoReply, force_codec(json_codec)
                )
                b = engine_s.unary_unary(
                    "/raw.Echo/Echo", request, pb2.EchoReply, call_content_subtype("JSON")
                )
                c = engine_s.unary_unary("/raw.Echo/Echo", request, pb2.EchoReply)
        for reply in (a, b, c):
            assert (reply.text, reply.payload) == ("j", b"pp")  # same numbers and JSON names

    with serve() as (port, servicer):
        asyncio.run(main(port))
        assert servicer.raw[0].startswith(b"{") and b'"text": "j"' in servicer.raw[0]
        assert servicer.raw[1] == servicer.raw[0]
        assert servicer.raw[2] == pb2.EchoRequest(text="j", payload=b"pp").SerializeToString()


@pytest.mark.parametrize("aio", AIO)
def test_engine_info_api_returns_failures(aio: bool) -> None:
    pb2, _ = echo_modules()

    async def main(port: int) -> None:
        target = f"127.0.0.1:{port}"
        path = "/grpc_channel_test.Echo/Unary"
        if aio:
            async with grpc.aio.insecure_channel(target) as channel:
                engine = AsyncEngine(channel, CallPlan(target=target))
                ok = await engine.unary_unary_info(path, pb2.EchoRequest(text="i"), pb2.EchoReply)
                bad = await engine.unary_unary_info(
                    path, pb2.EchoRequest(text="fail"), pb2.EchoReply
                )
        else:
            with grpc.insecure_channel(target) as channel:
                engine_s = SyncEngine(channel, CallPlan(target=target))
                ok = engine_s.unary_unary_info(path, pb2.EchoRequest(text="i"), pb2.EchoReply)
                bad = engine_s.unary_unary_info(path, pb2.EchoRequest(text="fail"), pb2.EchoReply)
        assert ok.code is grpc.StatusCode.OK and ok.response.text == "i" and ok.error is None
        assert ok.headers == (("x-echo", "i"),) and ok.trailers == (("x-trailer", "done"),)
        assert ok.peer == target and ok.sent
        assert bad.code is grpc.StatusCode.INVALID_ARGUMENT and bad.details == "bad request"
        assert bad.headers == (("x-fail-header", "h"),)
        assert bad.trailers == (("x-fail-trailer", "t"),)
        assert isinstance(bad.error, grpc.RpcError) and bad.response is None

    with serve() as (port, _):
        asyncio.run(main(port))


def test_refuses_non_option_arguments() -> None:
    pb2, _ = echo_modules()

    async def body(c: Caller) -> None:
        with pytest.raises(ValueError) as info:
            await c.unary(pb2.EchoRequest(text="a"), "timeout=2")
        assert str(info.value) == (
            "call options: got str; pass CallOption objects (header(md), timeout(s), ...) after "
            "the request"
        )

    with serve() as (port, servicer):
        run(False, port, body)
        assert servicer.seen == []


@pytest.mark.parametrize("aio", AIO)
def test_request_iterator_exception_is_what_the_caller_sees(aio: bool) -> None:
    pb2, _ = echo_modules()

    def requests() -> Any:
        yield pb2.EchoRequest(text="a")
        raise KeyError("producer broke")

    async def body(c: Caller) -> None:
        got: list[Any] = []
        with pytest.raises(KeyError, match="producer broke"):
            result = c.stub.ClientStream(requests(), on_finish(got.append))
            if aio:
                await result
        assert len(got) == 1 and isinstance(got[0], KeyError)
        with pytest.raises(KeyError, match="producer broke"):
            it = c.stub.Bidi(requests(), on_finish(got.append))
            if aio:
                _ = [r async for r in it]
            else:
                list(it)
        assert len(got) == 2 and isinstance(got[1], KeyError)

    with serve() as (port, _):
        run(aio, port, body)


def test_aio_stream_cancel_and_drop_finish_once() -> None:
    pb2, _ = echo_modules()

    async def body(c: Caller) -> None:
        got: list[Any] = []
        it = c.stub.ServerStream(pb2.EchoRequest(text="s", count=5), on_finish(got.append))
        assert (await it.read()).index == 0
        assert it.cancel()
        with pytest.raises(asyncio.CancelledError):
            await it.read()
        assert len(got) == 1 and got[0] is not None
        dropped = c.stub.ServerStream(pb2.EchoRequest(text="s", count=5), on_finish(got.append))
        assert (await dropped.read()).index == 0
        del dropped
        assert len(got) == 2 and got[1].code() is grpc.StatusCode.CANCELLED

    with serve() as (port, _):
        run(True, port, body)
