"""The sidecar's core seams: local delivery through its app channel (token, concurrency limit,
sizes), ``Sidecar.unary`` for in-process callers, ``add_services`` and the ``observer``.

Real servers on 127.0.0.1: the scripted app of :mod:`support_harness`, sidecars on a background
loop (:mod:`support_sidecar`), grpc.aio callers in their own ``asyncio.run``.
"""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
import grpc.aio
import pytest
from support_harness import SS, SU, UU, wait_until
from support_sidecar import (
    APP,
    APP_TOKEN,
    FRONT,
    call_metadata,
    loop_thread,
    mesh,
)

from grpc_channel.aio import AsyncChannel
from grpc_channel.interceptors import MetadataPairs
from grpc_channel.sidecar import PeersResolver, Sidecar
from grpc_channel.sidecar.proxy import AdmittedCall, UnaryReply

OWN = "dapr-caller-app-id"


def _aio_channel(port: int) -> Any:
    return grpc.aio.insecure_channel(f"127.0.0.1:{port}")


def _tokens(pairs: Any) -> list[Any]:
    return [v for k, v in pairs if k == "dapr-api-token"]


# --- local delivery through the app channel -------------------------------------------------------


def test_the_app_channel_is_dialled_on_start_and_closed_on_stop() -> None:
    with mesh() as m:
        channel = m.app_sidecar.app_channel
        assert isinstance(channel, AsyncChannel)
        assert channel.base_address == f"127.0.0.1:{m.app_port}"
        assert m.front_sidecar.app_channel is None  # no app address: no channel
        m.loop.run(m.app_sidecar.stop(1))
        assert m.app_sidecar.app_channel is None
        assert "closed" in repr(channel)


def test_app_max_concurrency_caps_the_calls_at_the_app_and_all_complete() -> None:
    with mesh(app_kw={"app_max_concurrency": 2}) as m:
        port, token = m.route(1)

        async def run() -> list[bytes]:
            async with _aio_channel(port) as channel:
                method = channel.unary_unary(UU)
                return list(
                    await asyncio.gather(
                        *(
                            method(b"sleep=0.05;plain;%d" % i, metadata=call_metadata(token))
                            for i in range(10)
                        )
                    )
                )

        replies = asyncio.run(run())
        assert replies == [b"sleep=0.05;plain;%d" % i for i in range(10)]
        assert m.rec.handled == 10
        assert m.rec.max_running == 2
        limit = m.app_sidecar.app_channel.concurrency_limit  # type: ignore[union-attr]
        assert limit is not None and limit.in_flight == 0 and limit.queued == 0


def test_a_stream_holds_its_app_slot_until_cancelled_and_a_waiter_honours_its_deadline() -> None:
    with mesh(app_kw={"app_max_concurrency": 1}) as m:
        port, token = m.route(1)
        limit = m.app_sidecar.app_channel.concurrency_limit  # type: ignore[union-attr]
        assert limit is not None

        async def run() -> None:
            async with _aio_channel(port) as channel:
                stream = channel.stream_stream(SS)(
                    iter([b"stay_open"]), metadata=call_metadata(token)
                )
                assert await stream.read() == b"stay_open"
                assert limit.in_flight == 1
                # The one slot is the stream's: a unary call waits, then gives up at its deadline.
                with pytest.raises(grpc.aio.AioRpcError) as waited:
                    await channel.unary_unary(UU)(b"x", metadata=call_metadata(token), timeout=0.3)
                assert waited.value.code() is grpc.StatusCode.DEADLINE_EXCEEDED
                assert m.rec.handled == 1  # it never reached the app
                stream.cancel()
                # The caller's cancel reaches the sidecar: the slot is given back.
                while limit.in_flight:
                    await asyncio.sleep(0.01)
                reply = await channel.unary_unary(UU)(b"y", metadata=call_metadata(token))
                assert reply == b"echo:y"

        asyncio.run(run())
        assert limit.in_flight == 0 and limit.queued == 0
        assert wait_until(lambda: m.rec.ended == 2)


def test_the_app_token_is_sent_once_by_the_channel_on_every_shape() -> None:
    with mesh() as m:
        port, token = m.route(2)

        async def run() -> list[bytes]:
            async with _aio_channel(port) as channel:
                return [
                    reply
                    async for reply in channel.stream_stream(SS)(
                        iter([b"a", b"b"]), metadata=call_metadata(token)
                    )
                ]

        assert asyncio.run(run()) == [b"a", b"b"]
        (seen,) = m.rec.seen
        assert _tokens(seen.pairs) == [APP_TOKEN]
        assert seen.metadata[OWN] == FRONT


def test_1000_concurrent_unary_calls_each_get_their_own_reply() -> None:
    with mesh() as m:
        port, token = m.route(1)

        async def run() -> list[tuple[bytes, bytes]]:
            async with _aio_channel(port) as channel:
                method = channel.unary_unary(UU)

                async def one(i: int) -> tuple[bytes, bytes]:
                    request = b"plain;%d;" % i + bytes([i % 251]) * (i % 61)
                    return request, await method(request, metadata=call_metadata(token))

                return list(await asyncio.gather(*(one(i) for i in range(1000))))

        pairs = asyncio.run(run())
        assert len(pairs) == 1000
        assert all(request == reply for request, reply in pairs)
        assert m.rec.handled == 1000
        assert wait_until(lambda: m.app_sidecar.in_flight == 0)


# --- Sidecar.unary --------------------------------------------------------------------------------


def test_unary_to_the_own_app_goes_through_the_app_channel() -> None:
    with mesh() as m:
        metadata: MetadataPairs = (("x-k", "v"), ("dapr-api-token", "forged"))
        reply = m.loop.run(m.app_sidecar.unary(APP, UU, b"hi", metadata=metadata, timeout=20))
        assert reply == b"echo:hi"
        (seen,) = m.rec.seen
        assert _tokens(seen.pairs) == [APP_TOKEN]
        assert seen.metadata["x-k"] == "v"
        assert seen.metadata[OWN] == APP
        assert seen.remaining is not None and 0 < seen.remaining <= 21  # grpc rounds deadlines up


def test_unary_to_another_app_goes_through_its_sidecar() -> None:
    with mesh() as m:
        reply = m.loop.run(m.front_sidecar.unary(APP, UU, b"plain;x"))
        assert reply == b"plain;x"
        (seen,) = m.rec.seen
        assert seen.metadata[OWN] == FRONT
        assert _tokens(seen.pairs) == [APP_TOKEN]


def test_unary_errors_carry_the_upstream_status() -> None:
    with mesh() as m:
        request = b"details;trailer=x-t:1;abort=INVALID_ARGUMENT:bad name"
        with pytest.raises(grpc.RpcError) as raised:
            m.loop.run(m.front_sidecar.unary(APP, UU, request))
        err: Any = raised.value
        assert err.code() is grpc.StatusCode.INVALID_ARGUMENT
        assert err.details() == "bad name"
        keys = [k for k, _ in err.trailing_metadata()]
        assert "x-t" in keys and "grpc-status-details-bin" in keys


def test_unary_to_an_unknown_id_is_not_found_naming_it() -> None:
    with mesh() as m:
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            m.loop.run(m.front_sidecar.unary("nobody", UU, b"x"))
        assert raised.value.code() is grpc.StatusCode.NOT_FOUND
        assert "'nobody'" in (raised.value.details() or "")


@pytest.mark.parametrize(
    ("args", "kwargs", "error", "message"),
    [
        ((APP, "no-slash", b"x"), {}, ValueError, "method"),
        ((APP, UU, "text"), {}, TypeError, "request must be bytes"),
        (("", UU, b"x"), {}, ValueError, "app_id"),
        ((APP, UU, b"x"), {"caller": " peer"}, ValueError, "caller"),
        ((APP, UU, b"x"), {"caller": ""}, ValueError, "caller"),
        ((APP, UU, b"x"), {"admission": object()}, ValueError, "admission"),
    ],
)
def test_unary_bad_arguments_are_refused(
    args: Any, kwargs: dict[str, Any], error: type, message: str
) -> None:
    with mesh() as m, pytest.raises(error, match=message):
        m.loop.run(m.app_sidecar.unary(*args, **kwargs))


@pytest.mark.parametrize("local", [True, False], ids=["own-app", "via-its-sidecar"])
def test_unary_call_returns_the_apps_headers_and_trailers(local: bool) -> None:
    with mesh() as m:
        sidecar = m.app_sidecar if local else m.front_sidecar
        request = b"header=x-h:1,x-h-bin:00ff;trailer=x-t:2"
        result = m.loop.run(sidecar.unary_call(APP, UU, request))
        assert isinstance(result, UnaryReply)
        assert result.reply == b"echo:" + request
        assert ("x-h", "1") in result.headers and ("x-h-bin", b"\x00\xff") in result.headers
        assert ("x-t", "2") in result.trailers
        assert not [k for k, _ in (*result.headers, *result.trailers) if k.startswith(":")]
        # A failure carries the app's headers and trailers on the error.
        failing = b"header=x-h:3;trailer=x-t:4;abort=ABORTED:busy"
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            m.loop.run(sidecar.unary_call(APP, UU, failing))
        err = raised.value
        assert (err.code(), err.details()) == (grpc.StatusCode.ABORTED, "busy")
        assert ("x-h", "3") in list(err.initial_metadata())
        assert ("x-t", "4") in list(err.trailing_metadata())


def test_unary_honours_caller_only_on_delivery_to_the_own_app() -> None:
    with mesh() as m:
        forged: MetadataPairs = (("dapr-caller-app-id", "forged"),)
        m.loop.run(m.app_sidecar.unary(APP, UU, b"a", caller="peer", metadata=forged))
        m.loop.run(m.app_sidecar.unary(APP, UU, b"b", metadata=forged))
        m.loop.run(m.front_sidecar.unary(APP, UU, b"c", caller="peer"))
        callers = [seen.metadata[OWN] for seen in m.rec.seen]
        # The previous hop's id for the own app; the own id otherwise (a forged key is dropped;
        # a call to another app always names this app).
        assert callers == ["peer", APP, FRONT]
        assert all(_tokens(seen.pairs) == [APP_TOKEN] for seen in m.rec.seen)


def test_admit_caps_and_observes_and_its_unary_calls_use_the_same_place() -> None:
    observer = _Recording()
    with mesh(app_kw={"observer": observer, "max_in_flight": 1}) as m:
        sidecar = m.app_sidecar

        async def run() -> tuple[int, int, bytes]:
            admitted = sidecar.admit("/svc.Api/Do", APP, (("traceparent", "ignored"),))
            assert isinstance(admitted, AdmittedCall) and not admitted.ended
            held = sidecar.in_flight
            with pytest.raises(grpc.aio.AioRpcError) as full:
                sidecar.admit("/svc.Api/Do", APP)
            assert full.value.code() is grpc.StatusCode.RESOURCE_EXHAUSTED
            assert "max_in_flight=1" in (full.value.details() or "")
            reply = await sidecar.unary(APP, UU, b"x", admission=admitted)
            during = sidecar.in_flight
            admitted.end(grpc.StatusCode.OK)
            admitted.end(grpc.StatusCode.INTERNAL)  # only the first end counts
            with pytest.raises(ValueError, match="admission"):
                await sidecar.unary(APP, UU, b"x", admission=admitted)
            return held, during, reply

        held, during, reply = m.loop.run(run())
        assert (held, during, reply) == (1, 1, b"echo:x")
        assert sidecar.in_flight == 0
        assert observer.log == [
            ("begin", "/svc.Api/Do", APP, True),
            ("end", "/svc.Api/Do", APP, True, grpc.StatusCode.OK),
        ]
        (seen,) = m.rec.seen
        assert seen.metadata.get("x-observed") == "yes"  # the observer's metadata went upstream
        with pytest.raises(ValueError, match="target_app"):
            sidecar.admit("/svc.Api/Do", " ")
        with pytest.raises(ValueError, match="method"):
            sidecar.admit("no-slash", APP)


# --- add_services ---------------------------------------------------------------------------------


class _Hello(grpc.GenericRpcHandler):  # type: ignore[type-arg]
    """Answers /test.Hello/Hi itself; every other method is left to the next handler."""

    def service(self, details: grpc.HandlerCallDetails) -> Any:
        if details.method != "/test.Hello/Hi":
            return None

        async def hi(request: bytes, context: Any) -> bytes:
            return b"hello " + request

        return grpc.unary_unary_rpc_method_handler(hi)


def test_added_services_are_served_ahead_of_the_proxy() -> None:
    with loop_thread() as loop:
        sidecar = Sidecar("solo", resolver=PeersResolver(environ={}))
        sidecar.add_services(_Hello())
        port = loop.run(sidecar.start())
        try:

            async def run() -> tuple[bytes, grpc.StatusCode]:
                async with _aio_channel(port) as channel:
                    hello = await channel.unary_unary("/test.Hello/Hi")(b"you")
                    with pytest.raises(grpc.aio.AioRpcError) as proxied:
                        await channel.unary_unary(UU)(b"x", metadata=call_metadata(None, "other"))
                    return hello, proxied.value.code()

            hello, code = asyncio.run(run())
            assert hello == b"hello you"
            assert code is grpc.StatusCode.NOT_FOUND  # the catch-all still routes the rest
            with pytest.raises(RuntimeError, match="already started"):
                sidecar.add_services(_Hello())
        finally:
            loop.run(sidecar.stop(None))
    with pytest.raises(TypeError, match="GenericRpcHandler"):
        Sidecar("solo", resolver=PeersResolver(environ={})).add_services(object())  # type: ignore[arg-type]


# --- the observer ---------------------------------------------------------------------------------


class _Call:
    def __init__(self, log: list[Any], key: tuple[str, str, bool]) -> None:
        self._log = log
        self._key = key

    def forward_metadata(self, pairs: MetadataPairs) -> MetadataPairs:
        return (*pairs, ("x-observed", "yes"))

    def end(self, code: grpc.StatusCode) -> None:
        self._log.append(("end", *self._key, code))


class _Recording:
    """A ProxyObserver that logs begin/end (from the sidecar's loop thread)."""

    def __init__(self) -> None:
        self.log: list[Any] = []

    def begin(self, method: str, target_app: str, local: bool, incoming: MetadataPairs) -> _Call:
        self.log.append(("begin", method, target_app, local))
        return _Call(self.log, (method, target_app, local))


def test_the_observer_sees_every_accepted_call_begin_and_end_once() -> None:
    observer = _Recording()
    with mesh(app_kw={"observer": observer}) as m:
        port, token = m.route(1)

        async def run() -> None:
            async with _aio_channel(port) as channel:
                method = channel.unary_unary(UU)
                assert await method(b"x", metadata=call_metadata(token)) == b"echo:x"
                with pytest.raises(grpc.aio.AioRpcError):
                    await method(b"abort=ABORTED", metadata=call_metadata(token))
                with pytest.raises(grpc.aio.AioRpcError):  # refused before begin: not observed
                    await method(b"x", metadata=call_metadata("wrong"))
                stream = channel.stream_stream(SS)(
                    iter([b"stay_open"]), metadata=call_metadata(token)
                )
                assert await stream.read() == b"stay_open"
                stream.cancel()

        asyncio.run(run())
        assert wait_until(lambda: len(observer.log) == 6)
        assert [e for e in observer.log if e[0] == "begin"] == [
            ("begin", UU, APP, True),
            ("begin", UU, APP, True),
            ("begin", SS, APP, True),
        ]
        assert [e[-1] for e in observer.log if e[0] == "end"] == [
            grpc.StatusCode.OK,
            grpc.StatusCode.ABORTED,
            grpc.StatusCode.CANCELLED,
        ]
        assert all(seen.metadata.get("x-observed") == "yes" for seen in m.rec.seen)
        assert m.rec.handled == 3


def test_the_observer_sees_the_size_limit_status() -> None:
    observer = _Recording()
    with mesh(app_kw={"observer": observer, "max_message_bytes": 64 * 1024}) as m:
        port, token = m.route(1)
        half = b"x" * (40 * 1024)

        async def run() -> grpc.StatusCode:
            async with _aio_channel(port) as channel:
                # Each request fits; the app joins them into one reply that does not.
                with pytest.raises(grpc.aio.AioRpcError) as raised:
                    await channel.stream_unary(SU)(
                        iter([half, half]), metadata=call_metadata(token)
                    )
                return raised.value.code()

        assert asyncio.run(run()) is grpc.StatusCode.RESOURCE_EXHAUSTED
        assert wait_until(lambda: len(observer.log) == 2)
        assert observer.log == [
            ("begin", SU, APP, True),
            ("end", SU, APP, True, grpc.StatusCode.RESOURCE_EXHAUSTED),
        ]


def test_bad_new_settings_are_refused_naming_them() -> None:
    resolver = PeersResolver(environ={})
    with pytest.raises(ValueError, match="app_max_concurrency"):
        Sidecar("a", resolver=resolver, app_max_concurrency=0)
    with pytest.raises(TypeError, match="observer"):
        Sidecar("a", resolver=resolver, observer=object())  # type: ignore[arg-type]
