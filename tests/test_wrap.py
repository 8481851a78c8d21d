"""grpc_channel.stubs.wrap: generated stubs (instance, or class + channel) taking call options."""

from __future__ import annotations

import asyncio
import contextlib
import gc
from collections.abc import AsyncIterator
from typing import Any

import grpc
import pytest
from support_options import echo_modules, serve

from grpc_channel.call_options import (
    CallInfo,
    CallOption,
    Peer,
    call_metadata,
    force_codec,
    header,
    max_call_recv_msg_size,
    on_finish,
    peer,
    timeout,
    trailer,
)
from grpc_channel.defaults import OptionError
from grpc_channel.encoding import get_codec
from grpc_channel.interceptors._errors import LocalRpcError
from grpc_channel.metadata import Metadata
from grpc_channel.stubs import bind, stub_methods, wrap

AIO = [pytest.param(False, id="sync"), pytest.param(True, id="aio")]


@contextlib.asynccontextmanager
async def either_channel(target: str, aio: bool) -> AsyncIterator[Any]:
    """A ``grpc.aio`` channel (``aio``) or a sync one to ``target``, closed on exit either way."""
    if aio:
        async with grpc.aio.insecure_channel(target) as channel:
            yield channel
    else:
        with grpc.insecure_channel(target) as sync_channel:
            yield sync_channel


def test_stub_methods_are_discovered() -> None:
    pb2, pb2_grpc = echo_modules()
    found = stub_methods(pb2_grpc.EchoStub)
    assert {name: (shape.value, path) for name, (shape, path, _, _) in found.items()} == {
        "Unary": ("unary_unary", "/grpc_channel_test.Echo/Unary"),
        "ServerStream": ("unary_stream", "/grpc_channel_test.Echo/ServerStream"),
        "ClientStream": ("stream_unary", "/grpc_channel_test.Echo/ClientStream"),
        "Bidi": ("stream_stream", "/grpc_channel_test.Echo/Bidi"),
    }
    _, _, serializer, deserializer = found["Unary"]
    assert serializer(pb2.EchoRequest(text="x")) == pb2.EchoRequest(text="x").SerializeToString()
    assert deserializer(b"") == pb2.EchoReply()


@pytest.mark.parametrize("aio", AIO)
@pytest.mark.parametrize("from_class", [False, True], ids=["instance", "class"])
def test_all_four_shapes_with_options_and_keywords(aio: bool, from_class: bool) -> None:
    pb2, pb2_grpc = echo_modules()

    async def main(port: int) -> None:
        target = f"127.0.0.1:{port}"
        async with either_channel(target, aio) as channel:
            if from_class:
                stub = wrap(
                    pb2_grpc.EchoStub, channel, call_metadata("x-default", "d"), target=target
                )
            else:
                stub = wrap(
                    pb2_grpc.EchoStub(channel), call_metadata("x-default", "d"), target=target
                )
            assert repr(stub) == "<wrapped EchoStub>"
            md, tr, where = Metadata(), Metadata(), Peer()
            finished: list[Any] = []
            opts = (header(md), trailer(tr), peer(where), on_finish(finished.append), timeout(10))

            async def wait(value: Any) -> Any:
                return await value if aio else value

            async def collect(it: Any) -> list[Any]:
                return [r async for r in it] if aio else list(it)

            reply = await wait(
                stub.Unary(pb2.EchoRequest(text="u"), *opts, metadata=[("x-kw", "k")])
            )
            assert reply.text == "u" and md.get("x-echo") == ["u"] and where.address == target
            replies = await collect(stub.ServerStream(pb2.EchoRequest(text="s", count=2), *opts))
            assert [r.index for r in replies] == [0, 1] and tr.get("x-trailer") == ["done"]
            reply = await wait(
                stub.ClientStream(
                    iter([pb2.EchoRequest(text="a"), pb2.EchoRequest(text="b")]), *opts
                )
            )
            assert reply.text == "a+b"
            replies = await collect(stub.Bidi(iter([pb2.EchoRequest(text="c")]), *opts, timeout=5))
            assert [r.text for r in replies] == ["c"]
            assert finished == [None, None, None, None]

    with serve() as (port, servicer):
        asyncio.run(main(port))
        assert all(seen["x-default"] == "d" for seen in servicer.seen)
        assert servicer.seen[0]["x-kw"] == "k"


def test_async_request_iterators_are_accepted() -> None:
    pb2, pb2_grpc = echo_modules()

    async def requests() -> Any:
        for text in ("x", "y"):
            yield pb2.EchoRequest(text=text)

    async def main(port: int) -> None:
        async with grpc.aio.insecure_channel(f"127.0.0.1:{port}") as channel:
            stub = wrap(pb2_grpc.EchoStub, channel)
            assert (await stub.ClientStream(requests())).text == "x+y"
            assert [r.text async for r in stub.Bidi(requests())] == ["x", "y"]

    with serve() as (port, _):
        asyncio.run(main(port))


def test_stream_response_exposes_call_methods_and_cancel() -> None:
    pb2, pb2_grpc = echo_modules()
    with serve() as (port, _), grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = wrap(pb2_grpc.EchoStub(channel))
        finished: list[Any] = []
        it = stub.ServerStream(pb2.EchoRequest(text="s", count=3), on_finish(finished.append))
        assert next(it).index == 0
        assert dict(it.initial_metadata())["x-echo"] == "s"  # grpcio's call method
        assert it.cancel()
        assert len(finished) == 1 and finished[0].code() is grpc.StatusCode.CANCELLED
        assert it.info.code is grpc.StatusCode.CANCELLED
        with pytest.raises(StopIteration):
            next(it)
        assert len(finished) == 1


def test_abandoned_stream_still_finishes_once() -> None:
    pb2, pb2_grpc = echo_modules()
    with serve() as (port, _), grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = wrap(pb2_grpc.EchoStub, channel)
        finished: list[Any] = []
        it = stub.ServerStream(pb2.EchoRequest(text="s", count=5), on_finish(finished.append))
        next(it)
        del it
        gc.collect()
        assert len(finished) == 1 and finished[0] is not None


def test_instance_stub_checks_receive_limit_after_decoding_and_refuses_codecs() -> None:
    pb2, pb2_grpc = echo_modules()
    with serve() as (port, _), grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = wrap(pb2_grpc.EchoStub(channel))
        with pytest.raises(LocalRpcError) as info:
            stub.Unary(pb2.EchoRequest(text="big", count=300), max_call_recv_msg_size(100))
        assert info.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
        finished: list[Any] = []
        with pytest.raises(OptionError) as err:
            stub.Unary(
                pb2.EchoRequest(text="j"),
                force_codec(get_codec("json")),
                on_finish(finished.append),
            )
        assert str(err.value).startswith(
            "/grpc_channel_test.Echo/Unary: force_codec/call_content_subtype need a stub wrapped "
            "from its class and channel"
        )
        assert finished == [err.value]


def test_rewrap_adds_defaults_after_existing_ones() -> None:
    pb2, pb2_grpc = echo_modules()
    with serve() as (port, servicer), grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        first = wrap(pb2_grpc.EchoStub(channel), call_metadata("k", "1"))
        second = wrap(first, call_metadata("k", "2"))
        assert repr(second) == "<wrapped EchoStub>"
        assert len(getattr(second, "default_call_options")) == 2  # noqa: B009
        second.Unary(pb2.EchoRequest(text="r"))
        assert [v for k, v in servicer.seen_pairs[-1] if k == "k"] == ["1", "2"]


def test_wrap_refusals() -> None:
    _, pb2_grpc = echo_modules()
    with pytest.raises(OptionError) as info:
        wrap(pb2_grpc.EchoStub)
    assert str(info.value) == (
        "wrap: EchoStub is a class; pass a channel after it: wrap(EchoStub, channel, *call_options)"
    )
    with pytest.raises(OptionError) as info:
        wrap(pb2_grpc.EchoStub, "127.0.0.1:1")  # type: ignore[call-overload]
    assert (
        str(info.value) == "wrap: got str as the channel; pass a grpc.Channel or grpc.aio.Channel"
    )
    with grpc.insecure_channel("127.0.0.1:1") as channel:
        with pytest.raises(OptionError) as info:
            wrap(channel)
        assert str(info.value) == (
            "wrap: got Channel; pass a generated stub, or a stub class and a channel"
        )
        with pytest.raises(OptionError) as info:
            wrap(pb2_grpc.EchoStub(channel), "timeout")  # type: ignore[call-overload]
        assert str(info.value) == (
            "wrap: got str as a default call option; pass CallOption objects"
        )
        with pytest.raises(OptionError) as info:
            wrap(object())
        assert str(info.value).startswith("wrap: cannot build object from a channel")

    class NotAStub:
        def __init__(self, channel: Any) -> None:
            self.channel = channel

    with pytest.raises(OptionError) as info:
        wrap(NotAStub, grpc.insecure_channel("127.0.0.1:1"))
    assert str(info.value) == (
        "wrap: NotAStub creates no multicallables from its channel; pass a generated stub or "
        "stub class"
    )


def test_default_codec_option_applies_to_class_wrapped_stub() -> None:
    """A default force_codec must replace the generated (protobuf) serializers, also on the
    fast path of calls without their own options."""
    pb2, _ = echo_modules()

    class RawEchoStub:
        def __init__(self, channel: Any) -> None:
            self.Echo = channel.unary_unary(
                "/raw.Echo/Echo",
                request_serializer=pb2.EchoRequest.SerializeToString,
                response_deserializer=pb2.EchoReply.FromString,
            )

    with serve() as (port, servicer), grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = wrap(RawEchoStub, channel, force_codec(get_codec("json")))
        reply = stub.Echo(pb2.EchoRequest(text="j"))
        assert reply.text == "j"
        reply = stub.Echo(pb2.EchoRequest(text="k"), timeout(5))
        assert reply.text == "k"
        assert all(raw.startswith(b"{") for raw in servicer.raw)
        plain = wrap(RawEchoStub, channel)
        assert plain.Echo(pb2.EchoRequest(text="p")).text == "p"
        assert servicer.raw[-1] == pb2.EchoRequest(text="p").SerializeToString()


@pytest.mark.parametrize("aio", AIO)
def test_wrap_over_a_composed_policy_channel(aio: bool) -> None:
    """wrap() on a channel wrapped by grpc_channel.interceptors.compose(...): both layers apply."""
    from grpc_channel.interceptors._chain import compose
    from grpc_channel.interceptors._token import AppToken

    pb2, pb2_grpc = echo_modules()
    chain = compose(AppToken("tok"))

    async def main(port: int) -> None:
        target = f"127.0.0.1:{port}"
        md = Metadata()
        if aio:
            raw = grpc.aio.insecure_channel(target)
            try:
                stub = wrap(pb2_grpc.EchoStub, chain.wrap_aio(raw), call_metadata("x-opt", "1"))
                assert (await stub.Unary(pb2.EchoRequest(text="c"), header(md))).text == "c"
                inst = wrap(pb2_grpc.EchoStub(chain.wrap_aio(raw)), aio=True)
                assert [r.index async for r in inst.ServerStream(pb2.EchoRequest(count=2))] == [
                    0,
                    1,
                ]
            finally:
                await raw.close(None)
        else:
            with grpc.insecure_channel(target) as raw_sync:
                stub = wrap(pb2_grpc.EchoStub, chain.wrap(raw_sync), call_metadata("x-opt", "1"))
                assert stub.Unary(pb2.EchoRequest(text="c"), header(md)).text == "c"
                inst = wrap(pb2_grpc.EchoStub(chain.wrap(raw_sync)))
                assert [r.index for r in inst.ServerStream(pb2.EchoRequest(count=2))] == [0, 1]
        assert md.get("x-echo") == ["c"]

    with serve() as (port, servicer):
        asyncio.run(main(port))
        assert servicer.seen[0]["dapr-api-token"] == "tok"
        assert servicer.seen[0]["x-opt"] == "1"
        assert servicer.seen[1]["dapr-api-token"] == "tok"


def test_hook_error_on_a_cancelled_stream_is_logged(caplog: pytest.LogCaptureFixture) -> None:
    pb2, pb2_grpc = echo_modules()

    class Boom(CallOption):
        def after(self, info: CallInfo) -> None:
            raise RuntimeError("after failed")

    with serve() as (port, _), grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
        stub = wrap(pb2_grpc.EchoStub(channel))
        it = stub.ServerStream(pb2.EchoRequest(text="s", count=3), Boom())
        next(it)
        with caplog.at_level("ERROR", logger="grpc_channel"):
            it.cancel()
    assert "a call option hook failed after /grpc_channel_test.Echo/ServerStream ended" in (
        caplog.text
    )


@pytest.mark.parametrize("aio", AIO)
def test_a_misspelt_grpcio_keyword_is_refused_not_dropped(aio: bool) -> None:
    pb2, pb2_grpc = echo_modules()

    async def main(port: int) -> None:
        target = f"127.0.0.1:{port}"
        async with either_channel(target, aio) as channel:
            stub = wrap(pb2_grpc.EchoStub, channel)
            with pytest.raises(TypeError, match="timout") as caught:
                result = stub.Unary(pb2.EchoRequest(text="x"), timout=1.0)  # type: ignore[call-arg]
                if aio:
                    await result
            assert "wait_for_ready" in str(caught.value)

    with serve() as (port, _):
        asyncio.run(main(port))


@pytest.mark.parametrize("aio", AIO)
def test_bound_options_apply_on_all_four_shapes(aio: bool) -> None:
    """bind(stub.Method, *options): the bound options reach the server (metadata), capture the
    response headers and trailers, and come after the stub's defaults and before per-call ones."""
    pb2, pb2_grpc = echo_modules()

    async def main(port: int) -> None:
        target = f"127.0.0.1:{port}"
        async with either_channel(target, aio) as channel:
            stub = wrap(pb2_grpc.EchoStub(channel), call_metadata("x-order", "default"))
            md, tr, finished = Metadata(), Metadata(), []
            bound_opts = (
                call_metadata("x-bound", "b", "x-order", "bound"),
                header(md),
                trailer(tr),
                on_finish(finished.append),
                timeout(10),
            )
            unary = bind(stub.Unary, *bound_opts)
            server_stream = bind(stub.ServerStream, *bound_opts)
            client_stream = bind(stub.ClientStream, *bound_opts)
            bidi = bind(stub.Bidi, *bound_opts)
            assert repr(unary).startswith("<bound <wrapped ") and "5 call option(s)" in repr(unary)

            async def wait(value: Any) -> Any:
                return await value if aio else value

            async def collect(it: Any) -> list[Any]:
                return [r async for r in it] if aio else list(it)

            reply = await wait(unary(pb2.EchoRequest(text="u"), call_metadata("x-order", "call")))
            assert reply.text == "u" and md.get("x-echo") == ["u"]
            assert tr.get("x-trailer") == ["done"]
            replies = await collect(server_stream(pb2.EchoRequest(text="s", count=2)))
            assert [r.index for r in replies] == [0, 1] and md.get("x-echo") == ["s"]
            reply = await wait(client_stream(iter([pb2.EchoRequest(text="a")]), timeout=5))
            assert reply.text == "a" and md.get("x-echo") == ["a"]
            replies = await collect(bidi(iter([pb2.EchoRequest(text="c")])))
            assert [r.text for r in replies] == ["c"] and md.get("x-echo") == ["bidi"]
            assert finished == [None, None, None, None]

    with serve() as (port, servicer):
        asyncio.run(main(port))
    assert len(servicer.seen_pairs) == 4
    assert all(("x-bound", "b") in pairs for pairs in servicer.seen_pairs)
    order = [[v for k, v in pairs if k == "x-order"] for pairs in servicer.seen_pairs]
    assert order[0] == ["default", "bound", "call"]
    assert order[1:] == [["default", "bound"]] * 3


@pytest.mark.parametrize("aio", AIO)
def test_bound_timeout_applies(aio: bool) -> None:
    pb2, pb2_grpc = echo_modules()

    async def main(port: int) -> None:
        target = f"127.0.0.1:{port}"
        async with either_channel(target, aio) as channel:
            finished: list[BaseException | None] = []
            slow = bind(wrap(pb2_grpc.EchoStub, channel).Unary, timeout(0.2))
            with pytest.raises(grpc.RpcError) as caught:
                result = slow(pb2.EchoRequest(text="wait"), on_finish(finished.append))
                if aio:
                    await result
            assert caught.value.code() is grpc.StatusCode.DEADLINE_EXCEEDED
            assert len(finished) == 1 and finished[0] is caught.value

    with serve() as (port, _):
        asyncio.run(main(port))


def test_bind_refusals() -> None:
    _, pb2_grpc = echo_modules()
    with grpc.insecure_channel("127.0.0.1:1") as channel:
        stub = wrap(pb2_grpc.EchoStub(channel))
        with pytest.raises(OptionError, match=r"bind: got .*MultiCallable; pass a method of a"):
            bind(pb2_grpc.EchoStub(channel).Unary, timeout(1))
        with pytest.raises(OptionError, match="bind: got str as a call option"):
            bind(stub.Unary, timeout(1), "x-key")  # type: ignore[arg-type]
        with pytest.raises(OptionError, match="bind: got NoneType"):
            bind(None, timeout(1))  # type: ignore[call-overload]
