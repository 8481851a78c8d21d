"""The app channel, sync and aio, against two real peers on loopback: an in-process AppCallback
servicer of our own (``support_channel.OwnApp``) and the ``dapr`` SDK's ``dapr.ext.grpc.App`` in a
subprocess (``support_dapr_app``), which none of us wrote."""

from __future__ import annotations

import asyncio
import base64
import json
import threading
from collections.abc import Callable
from concurrent import futures

import grpc
import pytest
from google.rpc import error_details_pb2
from support_channel import AppPeer, OwnApp
from support_dapr_app import DaprApp
from support_harness import async_wait_until, free_port, wait_until

from grpc_channel._async_channel import AsyncChannel
from grpc_channel._async_channel import dial as aio_dial
from grpc_channel._channel_core import (
    AppChannel,
    AppNotReadyError,
    AsyncAppChannel,
    SyncAppChannel,
)
from grpc_channel.call_options import CallOption, header, metadata, timeout
from grpc_channel.channel import Channel, with_raise_errors
from grpc_channel.dial_options import (
    DialOption,
    with_app_token,
    with_default_call_options,
    with_insecure,
    with_max_concurrency,
)
from grpc_channel.invoke import InvokeMethodRequest, InvokeMethodResponse
from grpc_channel.metadata import Metadata, outgoing_metadata

pytestmark = pytest.mark.timeout(60)

AIO = pytest.mark.parametrize("aio", [False, True], ids=["sync", "aio"])

OK = grpc.StatusCode.OK.value[0]
INVALID_ARGUMENT = grpc.StatusCode.INVALID_ARGUMENT.value[0]
UNIMPLEMENTED = grpc.StatusCode.UNIMPLEMENTED.value[0]
DEADLINE_EXCEEDED = grpc.StatusCode.DEADLINE_EXCEEDED.value[0]
CANCELLED = grpc.StatusCode.CANCELLED.value[0]
UNAVAILABLE = grpc.StatusCode.UNAVAILABLE.value[0]


# -- peers ----------------------------------------------------------------------------------------


@pytest.fixture(autouse=True)
def _no_env_token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("APP_API_TOKEN", raising=False)


# -- helpers --------------------------------------------------------------------------------------


def invoke(
    port: int,
    aio: bool,
    request: InvokeMethodRequest,
    *dial_options: DialOption,
    call_options: tuple[CallOption, ...] = (),
) -> InvokeMethodResponse:
    """One invoke_method on a fresh sync or aio channel to 127.0.0.1:port."""
    if not aio:
        with Channel.local(port, *dial_options) as channel:
            return channel.invoke_method(request, *call_options)

    async def go() -> InvokeMethodResponse:
        async with AsyncChannel.local(port, *dial_options) as channel:
            return await channel.invoke_method(request, *call_options)

    return asyncio.run(go())


def seen_metadata(response: InvokeMethodResponse) -> dict[str, list[str]]:
    assert response.status.code == OK, response
    result: dict[str, list[str]] = json.loads(response.data)
    return result


def request(method: str, data: bytes = b"") -> InvokeMethodRequest:
    return InvokeMethodRequest(method).with_data(data, "text/plain")


# -- responses ------------------------------------------------------------------------------------


@AIO
def test_echo_captures_headers_and_trailers(app: AppPeer, aio: bool) -> None:
    response = invoke(app.port, aio, request("echo", b"hello"))
    assert response.status.code == OK
    assert response.data == b"hello"
    assert response.content_type == "text/plain"
    assert response.headers.get("x-app-header") == [app.name]
    assert response.trailers.get("x-app-trailer") == [app.name]


@AIO
@pytest.mark.parametrize("with_timeout", [False, True], ids=["no-options", "timeout"])
def test_headers_and_trailers_captured_through_the_policies(
    own_app: AppPeer, aio: bool, with_timeout: bool
) -> None:
    # With a token and a limit the call runs through our policies (the aio channel then reads
    # headers and trailers from the call's own record); a lone timeout(s) keeps the fast path.
    limit = with_max_concurrency(2)
    opts: tuple[CallOption, ...] = (timeout(30),) if with_timeout else ()
    response = invoke(
        own_app.port, aio, request("echo", b"hi"), with_app_token("t0k"), limit, call_options=opts
    )
    assert response.status.code == OK
    assert response.data == b"hi"
    assert response.headers.get("x-app-header") == [own_app.name]
    assert response.trailers.get("x-app-trailer") == [own_app.name]
    # Read once, the same objects come back (changes to them stick).
    response.headers.set("x-mine", "1")
    assert response.headers.get("x-mine") == ["1"]


@AIO
def test_app_error_with_bad_request_detail_is_a_response(app: AppPeer, aio: bool) -> None:
    response = invoke(app.port, aio, request("fail"))
    assert response.status.code == INVALID_ARGUMENT
    assert response.status.message == "name is required"
    assert len(response.status.details) == 1
    detail = error_details_pb2.BadRequest()
    assert response.status.details[0].Unpack(detail)
    assert [(v.field, v.description) for v in detail.field_violations] == [
        ("name", "must not be empty")
    ]
    # The status travelled in this trailer; its content is in status.details now.
    assert "grpc-status-details-bin" not in response.trailers


@AIO
def test_app_error_raised_when_asked(app: AppPeer, aio: bool) -> None:
    with pytest.raises(grpc.RpcError) as caught:
        invoke(app.port, aio, request("fail"), with_raise_errors())
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT


@AIO
def test_unknown_method_is_unimplemented(app: AppPeer, aio: bool) -> None:
    response = invoke(app.port, aio, request("no-such-method"))
    assert response.status.code == UNIMPLEMENTED
    assert "no-such-method" in response.status.message


@AIO
def test_unsupported_version_is_refused_before_the_wire(app: AppPeer, aio: bool) -> None:
    app.reset()
    response = invoke(app.port, aio, request("echo").with_api_version(2))
    assert response.status.code == UNIMPLEMENTED
    assert response.status.message == "Unsupported spec version: 2"
    assert app.stats()["calls"] == 0
    with pytest.raises(grpc.RpcError) as caught:
        invoke(app.port, aio, request("echo").with_api_version(0), with_raise_errors())
    assert caught.value.details() == "Unsupported spec version: 0"


@AIO
def test_internal_metadata_is_converted(app: AppPeer, aio: bool) -> None:
    raw = b"\x00\x01binary"
    req = request("metadata").with_metadata(
        {
            "Content-Type": "application/json",  # permanent HTTP header: renamed
            "X-Custom": ["a", "b"],  # lower-cased, values kept in order
            "payload-bin": base64.b64encode(raw).decode(),  # base64 decoded for gRPC
            "traceparent": "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01",  # not copied
            "destination-app-id": "other",  # dropped
        }
    )
    seen = seen_metadata(invoke(app.port, aio, req))
    assert seen["dapr-content-type"] == ["application/json"]
    assert seen["x-custom"] == ["a", "b"]
    assert [base64.b64decode(v) for v in seen["payload-bin"]] == [raw]
    assert "traceparent" not in seen
    assert "destination-app-id" not in seen


# -- the app token ---------------------------------------------------------------------------------


@AIO
def test_token_from_option_reaches_the_app(app: AppPeer, aio: bool) -> None:
    seen = seen_metadata(invoke(app.port, aio, request("metadata"), with_app_token("s3cret")))
    assert seen["dapr-api-token"] == ["s3cret"]


@AIO
def test_token_from_environment_reaches_the_app(
    app: AppPeer, aio: bool, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("APP_API_TOKEN", "from-env")
    seen = seen_metadata(invoke(app.port, aio, request("metadata")))
    assert seen["dapr-api-token"] == ["from-env"]
    seen = seen_metadata(invoke(app.port, aio, request("metadata"), with_app_token("explicit")))
    assert seen["dapr-api-token"] == ["explicit"]


@AIO
def test_a_callers_token_in_request_metadata_never_reaches_the_app(app: AppPeer, aio: bool) -> None:
    req = request("metadata").with_metadata({"dapr-api-token": "callers-own", "x-keep": "k"})
    seen = seen_metadata(invoke(app.port, aio, req, with_app_token("s3cret")))
    assert seen["dapr-api-token"] == ["s3cret"]  # replaced, never two values
    assert seen["x-keep"] == ["k"]
    seen = seen_metadata(invoke(app.port, aio, req))
    assert "dapr-api-token" not in seen  # dropped when the channel has no token
    assert seen["x-keep"] == ["k"]


@AIO
def test_plain_invokes_send_what_the_policy_chain_sends(own_app: AppPeer, aio: bool) -> None:
    """A plain invoke (no call options) runs the limit and token inline; one with a call option
    goes through the policy chain. The app must not tell them apart, whatever the context sets."""
    req = request("metadata").with_metadata(
        {"dapr-api-token": "callers-own", "x-keep": "k", "Accept": "json"}
    )
    dial = (
        with_app_token("s3cret"),
        with_max_concurrency(4),
        with_default_call_options(metadata("x-default", "d")),
    )
    through_chain: tuple[CallOption, ...] = (header(Metadata()),)
    keys = ("dapr-api-token", "x-keep", "dapr-accept", "x-default", "x-context")

    async def calls_aio() -> list[dict[str, list[str]]]:
        async with AsyncChannel.local(own_app.port, *dial) as channel:
            out = [seen_metadata(await channel.invoke_method(req))]
            with outgoing_metadata({"x-context": "c", "dapr-api-token": "ctx"}):
                out.append(seen_metadata(await channel.invoke_method(req)))
                out.append(seen_metadata(await channel.invoke_method(req, *through_chain)))
            out.append(seen_metadata(await channel.invoke_method(req)))
            out.append(seen_metadata(await channel.invoke_method(req, *through_chain)))
            assert channel.concurrency_limit is not None
            assert channel.concurrency_limit.in_flight == 0
            return out

    if aio:
        seen = asyncio.run(calls_aio())
    else:
        with Channel.local(own_app.port, *dial) as channel:
            seen = [seen_metadata(channel.invoke_method(req))]
            with outgoing_metadata({"x-context": "c", "dapr-api-token": "ctx"}):
                seen.append(seen_metadata(channel.invoke_method(req)))
                seen.append(seen_metadata(channel.invoke_method(req, *through_chain)))
            seen.append(seen_metadata(channel.invoke_method(req)))
            seen.append(seen_metadata(channel.invoke_method(req, *through_chain)))
            assert channel.concurrency_limit is not None
            assert channel.concurrency_limit.in_flight == 0
    picked = [{k: s.get(k) for k in keys} for s in seen]
    plain = {
        "dapr-api-token": ["s3cret"],  # the channel's token only, never the caller's
        "x-keep": ["k"],
        "dapr-accept": ["json"],
        "x-default": ["d"],
        "x-context": None,
    }
    in_context = {**plain, "x-context": ["c"]}
    assert picked == [plain, in_context, in_context, plain, plain]


@AIO
def test_no_token_sent_when_none_set(app: AppPeer, aio: bool) -> None:
    seen = seen_metadata(invoke(app.port, aio, request("metadata")))
    assert "dapr-api-token" not in seen


# -- deadlines -------------------------------------------------------------------------------------


@AIO
def test_app_sees_the_callers_deadline(app: AppPeer, aio: bool) -> None:
    with_deadline = invoke(app.port, aio, request("deadline"), call_options=(timeout(30),))
    remaining = json.loads(with_deadline.data)["time_remaining"]
    assert remaining is not None
    # grpc rounds the encoded timeout up a little; the point is that the app got *our* deadline.
    assert 0 < remaining <= 31
    without = invoke(app.port, aio, request("deadline"))
    assert json.loads(without.data)["time_remaining"] is None


@AIO
def test_deadline_and_unreachable_app_are_responses(app: AppPeer, aio: bool) -> None:
    late = invoke(app.port, aio, request("sleep", b"5"), call_options=(timeout(0.05),))
    assert late.status.code == DEADLINE_EXCEEDED
    nobody = invoke(free_port(), aio, request("echo"))
    assert nobody.status.code == UNAVAILABLE
    with pytest.raises(grpc.RpcError) as caught:
        invoke(free_port(), aio, request("echo"), with_raise_errors())
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
    assert wait_until(lambda: app.stats()["in_flight"] == 0, 15), (
        "gave up waiting for the app to finish the late call"
    )


# -- concurrency ----------------------------------------------------------------------------------


Job = tuple[InvokeMethodRequest, tuple[CallOption, ...], bool]


def _run_many(
    port: int,
    aio: bool,
    jobs: list[Job],
    *dial_options: DialOption,
    then: int = 0,
) -> tuple[list[int | str], list[int], tuple[int, int]]:
    """Run all ``jobs`` (request, call options, cancel?) at once on one channel, then ``then`` more
    echo calls on the same channel, one after the other. Returns the status code of each job (or
    ``"cancelled"`` for a job whose task was cancelled after it started: aio only; see
    test_close_cancels_sync_calls for sync), the codes of the later calls, and the limiter's
    (in_flight, queued) once the jobs were done."""
    later = [(request("echo"), (timeout(10),))] * then
    if not aio:
        with Channel.local(port, *dial_options) as channel:
            with futures.ThreadPoolExecutor(max_workers=len(jobs)) as pool:
                done: list[int | str] = list(
                    pool.map(lambda job: channel.invoke_method(job[0], *job[1]).status.code, jobs)
                )
            slots = _slots(channel)
            return done, [channel.invoke_method(r, *o).status.code for r, o in later], slots

    async def go() -> tuple[list[int | str], list[int], tuple[int, int]]:
        async with AsyncChannel.local(port, *dial_options) as channel:
            tasks = [
                asyncio.ensure_future(channel.invoke_method(req, *opts)) for req, opts, _ in jobs
            ]
            await asyncio.sleep(0.1)
            for task, (_, _, cancel) in zip(tasks, jobs, strict=True):
                if cancel:
                    task.cancel()
            results: list[int | str] = []
            for task in tasks:
                try:
                    results.append((await task).status.code)
                except asyncio.CancelledError:
                    results.append("cancelled")
            slots = _slots(channel)
            more = [(await channel.invoke_method(r, *o)).status.code for r, o in later]
            return results, more, slots

    return asyncio.run(go())


def _slots(channel: Channel | AsyncChannel) -> tuple[int, int]:
    limit = channel.concurrency_limit
    assert limit is not None
    return limit.in_flight, limit.queued


@AIO
def test_max_concurrency_bounds_calls_in_the_app(app: AppPeer, aio: bool) -> None:
    app.reset()
    jobs: list[Job] = [(request("sleep", b"0.01"), (), False) for _ in range(100)]
    codes, _, slots = _run_many(app.port, aio, jobs, with_max_concurrency(4))
    assert codes == [OK] * 100
    assert slots == (0, 0)
    stats = app.stats()
    assert stats["calls"] == 100
    assert 1 <= stats["max_in_flight"] <= 4


@AIO
def test_slots_come_back_after_errors_deadlines_and_cancellations(app: AppPeer, aio: bool) -> None:
    app.reset()
    jobs: list[Job] = []
    for i in range(100):
        kind = i % 4
        if kind == 0:  # deadline: in the app, or while queued for a slot
            jobs.append((request("sleep", b"5"), (timeout(0.05),), False))
        elif kind == 1:  # app error
            jobs.append((request("fail"), (), False))
        elif kind == 2:  # cancelled by the caller (aio); a plain quick call (sync)
            jobs.append((request("sleep", b"5" if aio else b"0.001"), (timeout(30),), aio))
        else:
            jobs.append((request("sleep", b"0.001"), (), False))
    # A leaked slot would make the 8 later calls on the same channel queue until their deadline.
    codes, later, slots = _run_many(app.port, aio, jobs, with_max_concurrency(4), then=8)
    assert slots == (0, 0)  # no slot held, nobody waiting
    assert set(codes[0::4]) == {DEADLINE_EXCEEDED}
    assert set(codes[1::4]) == {INVALID_ARGUMENT}
    assert set(codes[2::4]) == ({"cancelled"} if aio else {OK})
    assert set(codes[3::4]) == {OK}
    assert later == [OK] * 8
    # The app's own count drains too. (Its maximum is not checked here: a cancelled or expired call
    # frees its slot at once on our side, while the app notices a moment later, so a handler that is
    # still unwinding may overlap the next call. test_max_concurrency_bounds_calls_in_the_app checks
    # the bound.)
    assert wait_until(lambda: app.stats()["in_flight"] == 0, 15), (
        "gave up waiting for calls in the app to drain"
    )


@AIO
def test_waiting_for_a_slot_ends_at_the_callers_deadline(app: AppPeer, aio: bool) -> None:
    app.reset()
    # One slot: the first call holds it for 1 s; the second cannot get it within its 0.2 s.
    jobs: list[Job] = [
        (request("sleep", b"1"), (timeout(30),), False),
        (request("echo"), (timeout(0.2),), False),
    ]
    if aio:
        codes, _, _ = _run_many(app.port, aio, jobs, with_max_concurrency(1))
    else:
        with (
            Channel.local(app.port, with_max_concurrency(1)) as channel,
            futures.ThreadPoolExecutor(max_workers=1) as pool,
        ):
            first = pool.submit(channel.invoke_method, jobs[0][0], *jobs[0][1])
            assert wait_until(lambda: app.stats()["in_flight"] == 1, 15), (
                "gave up waiting for the first call in the app"
            )
            second = channel.invoke_method(jobs[1][0], *jobs[1][1])
            codes = [first.result().status.code, second.status.code]
    assert codes == [OK, DEADLINE_EXCEEDED]
    assert app.stats()["calls"] == 1  # the second call never reached the app


@AIO
def test_health_probe_takes_no_slot(app: AppPeer, aio: bool) -> None:
    app.reset()
    busy = request("sleep", b"1")
    if aio:

        async def go() -> bool:
            async with AsyncChannel.local(app.port, with_max_concurrency(1)) as channel:
                task = asyncio.ensure_future(channel.invoke_method(busy))
                assert await async_wait_until(lambda: app.stats()["in_flight"] == 1, 15), (
                    "gave up waiting for busy"
                )
                healthy = await channel.health_probe(timeout=0.5)
                assert (await task).status.code == OK
                return healthy

        healthy = asyncio.run(go())
    else:
        with (
            Channel.local(app.port, with_max_concurrency(1)) as channel,
            futures.ThreadPoolExecutor(max_workers=1) as pool,
        ):
            pending = pool.submit(channel.invoke_method, busy)
            assert wait_until(lambda: app.stats()["in_flight"] == 1, 15), (
                "gave up waiting for the busy call in the app"
            )
            limit = channel.concurrency_limit
            assert limit is not None and limit.in_flight == 1
            healthy = channel.health_probe(timeout=0.5)  # would time out queued behind the call
            assert pending.result().status.code == OK
    assert healthy is True


def test_aio_cancellation_reaches_the_app(app: AppPeer) -> None:
    app.reset()

    async def go() -> None:
        async with AsyncChannel.local(app.port) as channel:
            task = asyncio.ensure_future(channel.invoke_method(request("sleep", b"10")))
            assert await async_wait_until(lambda: app.stats()["in_flight"] == 1, 15), (
                "gave up waiting for the call"
            )
            task.cancel()
            with pytest.raises(asyncio.CancelledError):
                await task

    asyncio.run(go())
    assert wait_until(lambda: app.stats()["cancelled"] == 1, 15), (
        "gave up waiting for the app to see the cancellation"
    )
    assert app.stats()["in_flight"] == 0


@AIO
def test_close_cancels_calls_in_flight_and_queued(app: AppPeer, aio: bool) -> None:
    app.reset()
    slow = request("sleep", b"10")
    if aio:

        async def go() -> list[int]:
            channel = await AsyncChannel.local(app.port, with_max_concurrency(2))
            tasks = [asyncio.ensure_future(channel.invoke_method(slow)) for _ in range(4)]
            assert await async_wait_until(lambda: app.stats()["in_flight"] == 2, 15), (
                "gave up waiting for 2 calls"
            )
            await channel.close()
            return [(await task).status.code for task in tasks]

        codes = asyncio.run(go())
    else:
        channel = Channel.local(app.port, with_max_concurrency(2))
        with futures.ThreadPoolExecutor(max_workers=4) as pool:
            pending = [pool.submit(channel.invoke_method, slow) for _ in range(4)]
            assert wait_until(lambda: app.stats()["in_flight"] == 2, 15), (
                "gave up waiting for two calls in the app"
            )
            channel.close()
            codes = [f.result().status.code for f in pending]
    # Two were in the app, two waited for a slot: all end CANCELLED (none runs after close).
    assert codes == [CANCELLED] * 4
    assert wait_until(lambda: app.stats()["cancelled"] == 2, 15), (
        "gave up waiting for the app to see both cancellations"
    )
    assert app.stats()["calls"] == 2


# -- health and readiness -------------------------------------------------------------------------


@AIO
def test_health_probe(app: AppPeer, aio: bool) -> None:
    async def probe(port: int) -> bool:
        async with AsyncChannel.local(port) as channel:
            return await channel.health_probe(timeout=5)

    def probe_sync(port: int) -> bool:
        with Channel.local(port) as channel:
            return channel.health_probe(timeout=5)

    run: Callable[[int], bool] = (lambda p: asyncio.run(probe(p))) if aio else probe_sync
    assert run(app.port) is True
    assert run(free_port()) is False


def _late_own_app(port: int, started: list[OwnApp]) -> threading.Timer:
    def start() -> None:
        started.append(OwnApp(port).start())

    timer = threading.Timer(1.0, start)
    timer.start()
    return timer


@pytest.mark.parametrize("peer", ["own", "dapr"])
@AIO
def test_wait_until_ready_finds_an_app_started_after_the_channel(peer: str, aio: bool) -> None:
    port = free_port()
    started: list[OwnApp] = []
    dapr: DaprApp | None = None
    timer: threading.Timer | None = None

    def start_app() -> None:
        nonlocal dapr, timer
        if peer == "own":
            timer = _late_own_app(port, started)
        else:
            dapr = DaprApp(port, start_delay=1.0).start(wait=False)

    try:
        if aio:

            async def go() -> InvokeMethodResponse:
                async with AsyncChannel.local(port) as channel:
                    start_app()
                    await channel.wait_until_ready(30)
                    return await channel.invoke_method(request("echo", b"late"))

            response = asyncio.run(go())
        else:
            with Channel.local(port) as channel:
                start_app()
                channel.wait_until_ready(30)
                response = channel.invoke_method(request("echo", b"late"))
        assert response.status.code == OK
        assert response.data == b"late"
    finally:
        if timer is not None:
            timer.join()
        for own in started:
            own.stop()
        if dapr is not None:
            dapr.stop()


@AIO
def test_wait_until_ready_times_out_cleanly(aio: bool) -> None:
    port = free_port()
    if aio:

        async def go() -> None:
            async with AsyncChannel.local(port) as channel:
                await channel.wait_until_ready(0.5)

        with pytest.raises(AppNotReadyError) as caught:
            asyncio.run(go())
    else:
        with Channel.local(port) as channel, pytest.raises(AppNotReadyError) as caught:
            channel.wait_until_ready(0.5)
    assert isinstance(caught.value, TimeoutError)
    assert f"127.0.0.1:{port}" in str(caught.value)
    assert "0.5 s" in str(caught.value)


# -- the protocol ---------------------------------------------------------------------------------


def test_both_channels_satisfy_the_app_channel_protocol(own_app: OwnApp) -> None:
    with Channel.local(own_app.port) as channel:
        sync_view: SyncAppChannel = channel  # checked by mypy
        assert isinstance(channel, AppChannel)
        assert sync_view.base_address == f"127.0.0.1:{own_app.port}"
        assert sync_view.invoke_method(request("echo")).status.code == OK

    async def go() -> None:
        channel = await aio_dial(f"127.0.0.1:{own_app.port}", *_insecure())
        aio_view: AsyncAppChannel = channel  # checked by mypy
        assert isinstance(channel, AppChannel)
        try:
            assert aio_view.base_address == f"127.0.0.1:{own_app.port}"
            assert (await aio_view.invoke_method(request("echo"))).status.code == OK
            assert await aio_view.health_probe() is True
        finally:
            await aio_view.close()
        await channel.close()  # idempotent

    asyncio.run(go())


def _insecure() -> tuple[DialOption, ...]:
    return (with_insecure(),)
