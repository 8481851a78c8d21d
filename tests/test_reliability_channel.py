"""Issue 16: the app channel's reliability defects, sync and aio, against real servers on loopback
(our own AppCallback servicer, ``support_channel.OwnApp``, and the ``dapr`` SDK's App).

- HealthCheck (``health_probe``, ``wait_until_ready``) speaks protobuf whatever codec is dialled;
- a call ``invoke_method`` refuses locally (closed channel, API version) still runs its call
  options: ``on_finish`` once with the error, ``header``/``trailer`` emptied;
- after ``close()``, or racing it, nothing surfaces grpcio's ``ValueError`` / ``UsageError``;
- codec call options on ``invoke_method`` get an error that says what the app channel supports;
- the app only ever receives the channel's own ``dapr-api-token``, whatever the caller's metadata
  (context outgoing metadata, ``call_metadata``, default metadata) carried.
"""

from __future__ import annotations

import asyncio
import inspect
import json
import threading
from collections.abc import Awaitable, Callable
from concurrent import futures
from typing import Any

import grpc
import pytest
from google.protobuf import empty_pb2
from support_channel import AppPeer, OwnApp
from support_dapr_app import DaprApp
from support_harness import wait_until

from grpc_channel._async_channel import AsyncChannel
from grpc_channel._channel_core import AppNotReadyError
from grpc_channel.appcallback import HEALTH_CHECK, ON_INVOKE
from grpc_channel.call_options import (
    CallOption,
    Peer,
    call_content_subtype,
    call_metadata,
    force_codec,
    header,
    on_finish,
    peer,
    per_rpc_credentials,
    trailer,
)
from grpc_channel.channel import Channel, with_raise_errors
from grpc_channel.defaults import OptionError
from grpc_channel.dial_options import (
    DialOption,
    with_app_token,
    with_codec,
    with_default_call_options,
    with_max_concurrency,
)
from grpc_channel.encoding import get_codec
from grpc_channel.invoke import InvokeMethodRequest, InvokeMethodResponse
from grpc_channel.metadata import Metadata, outgoing_metadata
from grpc_channel.v1 import appcallback_pb2, common_pb2

pytestmark = pytest.mark.timeout(120)

AIO = pytest.mark.parametrize("aio", [False, True], ids=["sync", "aio"])

OK = grpc.StatusCode.OK.value[0]
CANCELLED = grpc.StatusCode.CANCELLED.value[0]
UNIMPLEMENTED = grpc.StatusCode.UNIMPLEMENTED.value[0]
TOKEN = "dapr-api-token"


@pytest.fixture(autouse=True)
def _no_env_token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("APP_API_TOKEN", raising=False)


# -- helpers --------------------------------------------------------------------------------------


async def settle(value: Any) -> Any:
    """One test body for both channels: an aio result is awaited, a sync one is already there."""
    return await value if inspect.isawaitable(value) else value


def on_channel(
    port: int, aio: bool, body: Callable[[Any], Awaitable[Any]], *dial_options: DialOption
) -> Any:
    """Run ``body(channel)`` on a fresh sync or aio channel to 127.0.0.1:port, closed after."""

    async def go() -> Any:
        if aio:
            async with AsyncChannel.local(port, *dial_options) as achannel:
                return await body(achannel)
        with Channel.local(port, *dial_options) as channel:
            return await body(channel)

    return asyncio.run(go())


async def open_local(port: int, aio: bool, *dial_options: DialOption) -> Any:
    """A sync or aio channel to 127.0.0.1:port; the caller closes it."""
    if aio:
        return await AsyncChannel.local(port, *dial_options)
    return Channel.local(port, *dial_options)


async def closed_channel(port: int, aio: bool, *dial_options: DialOption) -> Any:
    """A channel that was opened and closed."""
    channel = await open_local(port, aio, *dial_options)
    await settle(channel.close())
    return channel


def echo(data: bytes = b"hi") -> InvokeMethodRequest:
    return InvokeMethodRequest("echo").with_data(data, "text/plain")


def raw_echo() -> bytes:
    message = common_pb2.InvokeRequest(method="echo", content_type="text/plain")
    message.data.value = b"raw"
    return message.SerializeToString()


def is_grpcio_usage_error(exc: BaseException | None) -> bool:
    """grpcio's own refusals of a closed channel, which must never reach a caller."""
    return type(exc) is ValueError or isinstance(exc, grpc.aio.UsageError)


# -- 3: HealthCheck speaks protobuf whatever the channel's codec -----------------------------------


CODEC_DIALS = pytest.mark.parametrize(
    "dial_codec",
    [
        pytest.param(lambda: with_codec("json"), id="with_codec-json"),
        pytest.param(lambda: with_codec("raw"), id="with_codec-raw"),
        pytest.param(
            lambda: with_default_call_options(force_codec(get_codec("json"))),
            id="default-force_codec-json",
        ),
    ],
)


@CODEC_DIALS
@AIO
def test_health_and_readiness_speak_protobuf_whatever_the_codec(
    dapr_app: DaprApp, aio: bool, dial_codec: Callable[[], DialOption]
) -> None:
    async def body(channel: Any) -> tuple[bool, InvokeMethodResponse, InvokeMethodResponse]:
        await settle(channel.wait_until_ready(20))
        healthy = await settle(channel.health_probe(5))
        plain = await settle(channel.invoke_method(echo()))
        with_options = await settle(channel.invoke_method(echo(), header(Metadata())))
        return healthy, plain, with_options

    healthy, plain, with_options = on_channel(dapr_app.port, aio, body, dial_codec())
    assert healthy is True
    assert (plain.status.code, plain.data) == (OK, b"hi")
    assert (with_options.status.code, with_options.data) == (OK, b"hi")


# -- 5: local refusals run the call options -------------------------------------------------------


@pytest.mark.parametrize("raise_errors", [False, True], ids=["response", "raised"])
@pytest.mark.parametrize("refusal", ["closed", "version"])
@AIO
def test_local_refusals_run_on_finish_once_and_empty_header_and_trailer(
    own_app: OwnApp, aio: bool, refusal: str, raise_errors: bool
) -> None:
    finished: list[BaseException | None] = []
    by_default: list[BaseException | None] = []
    headers, trailers = Metadata({"stale": "h"}), Metadata({"stale": "t"})
    seen_peer = Peer()
    seen_peer.address = "stale"
    dial_options: tuple[DialOption, ...] = (
        with_default_call_options(on_finish(by_default.append)),
        *((with_raise_errors(),) if raise_errors else ()),
    )
    req = echo() if refusal == "closed" else echo().with_api_version(2)
    options = (on_finish(finished.append), header(headers), trailer(trailers), peer(seen_peer))
    own_app.reset()

    async def body() -> InvokeMethodResponse | BaseException:
        if refusal == "closed":
            channel = await closed_channel(own_app.port, aio, *dial_options)
        else:
            channel = await open_local(own_app.port, aio, *dial_options)
        try:
            response: InvokeMethodResponse = await settle(channel.invoke_method(req, *options))
            return response
        except grpc.RpcError as exc:
            return exc
        finally:
            await settle(channel.close())

    outcome = asyncio.run(body())
    code, message = (
        (CANCELLED, "the channel is closed")
        if refusal == "closed"
        else (UNIMPLEMENTED, "Unsupported spec version: 2")
    )
    assert len(finished) == 1 and len(by_default) == 1
    error = finished[0]
    assert isinstance(error, grpc.RpcError)
    assert by_default[0] is error
    assert (error.code().value[0], error.details()) == (code, message)
    if raise_errors:
        assert outcome is error
    else:
        assert isinstance(outcome, InvokeMethodResponse)
        assert (outcome.status.code, outcome.status.message) == (code, message)
        assert not outcome.headers and not outcome.trailers
    # The holders say what the response says: nothing came back.
    assert not headers and not trailers
    assert not seen_peer.address  # no peer was reached
    assert own_app.stats()["calls"] == 0


class _NeedsTls:
    """grpc-go style per-RPC credentials that require transport security."""

    def get_request_metadata(self, uri: str) -> dict[str, str]:
        return {"x-creds": "c"}

    def require_transport_security(self) -> bool:
        return True


@pytest.mark.parametrize("closed", [False, True], ids=["open", "closed"])
@AIO
def test_a_before_hook_refusal_answers_alike_on_open_and_closed_channels(
    own_app: OwnApp, aio: bool, closed: bool
) -> None:
    finished: list[BaseException | None] = []
    options = (per_rpc_credentials(_NeedsTls()), on_finish(finished.append))

    async def body() -> InvokeMethodResponse:
        if closed:
            channel = await closed_channel(own_app.port, aio)
        else:
            channel = await open_local(own_app.port, aio)
        try:
            response: InvokeMethodResponse = await settle(channel.invoke_method(echo(), *options))
            return response
        finally:
            await settle(channel.close())

    response = asyncio.run(body())
    assert response.status.code == grpc.StatusCode.UNAUTHENTICATED.value[0]
    assert "transport security" in response.status.message
    assert len(finished) == 1 and isinstance(finished[0], grpc.RpcError)
    assert finished[0].code() == grpc.StatusCode.UNAUTHENTICATED


# -- 6: a closed channel, and close() racing calls ------------------------------------------------


@AIO
def test_a_closed_channel_answers_as_documented(own_app: OwnApp, aio: bool) -> None:
    finished: list[BaseException | None] = []

    async def body() -> None:
        channel = await closed_channel(own_app.port, aio)
        assert await settle(channel.health_probe(5)) is False
        with pytest.raises(AppNotReadyError, match="is closed") as not_ready:
            await settle(channel.wait_until_ready(60))
        assert isinstance(not_ready.value.__cause__, grpc.RpcError)
        assert not_ready.value.__cause__.code() == grpc.StatusCode.CANCELLED
        with pytest.raises(grpc.RpcError) as raw:
            await settle(channel.invoke(ON_INVOKE, raw_echo(), on_finish(finished.append)))
        assert raw.value.code() == grpc.StatusCode.CANCELLED
        with pytest.raises(grpc.RpcError) as message:
            await settle(
                channel.invoke(
                    HEALTH_CHECK,
                    empty_pb2.Empty(),
                    response_type=appcallback_pb2.HealthCheckResponse,
                )
            )
        assert message.value.code() == grpc.StatusCode.CANCELLED
        response = await settle(channel.invoke_method(echo()))
        assert response.status.code == CANCELLED

    asyncio.run(body())
    assert len(finished) == 1
    assert isinstance(finished[0], grpc.RpcError)
    assert finished[0].code() == grpc.StatusCode.CANCELLED


class Outcomes:
    """What the racing calls saw. ``unexpected`` collects anything the docs do not promise."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.unexpected: list[str] = []
        self.finished: list[BaseException | None] = []
        self.calls = 0

    def hook(self, error: BaseException | None) -> None:
        with self.lock:
            self.finished.append(error)

    def saw(self, what: str, result: Any = None, exc: BaseException | None = None) -> None:
        with self.lock:
            self.calls += 1
            if exc is not None:
                ok = (
                    isinstance(exc, grpc.RpcError)
                    and what.startswith("invoke ")
                    and exc.code() == grpc.StatusCode.CANCELLED
                ) or (
                    what == "wait_until_ready"
                    and isinstance(exc, AppNotReadyError)
                    and "is closed" in str(exc)
                )
                if not ok:
                    self.unexpected.append(f"{what} raised {type(exc).__name__}: {exc}")
            elif what.startswith("invoke_method") and result.status.code not in (OK, CANCELLED):
                self.unexpected.append(f"{what} answered {result.status}")

    def check(self) -> None:
        assert self.unexpected == []
        assert not [e for e in self.finished if is_grpcio_usage_error(e)]
        for error in self.finished:
            if error is not None:
                assert isinstance(error, grpc.RpcError), repr(error)
                assert error.code() == grpc.StatusCode.CANCELLED, repr(error)


def operations(outcomes: Outcomes) -> list[tuple[str, Callable[[Any], Any]]]:
    """The calls that race ``close()``: every public call of the channel, on each of its paths
    (plain, through the engine with hooks, queued for a slot, raw and message ``invoke``)."""
    hook = on_finish(outcomes.hook)
    return [
        ("invoke_method plain", lambda ch: ch.invoke_method(echo())),
        (
            "invoke_method sleep+hooks",
            lambda ch: ch.invoke_method(
                InvokeMethodRequest("sleep").with_data(b"0.05", "text/plain"),
                hook,
                header(Metadata()),
            ),
        ),
        ("invoke raw", lambda ch: ch.invoke(ON_INVOKE, raw_echo(), hook)),
        (
            "invoke message",
            lambda ch: ch.invoke(
                HEALTH_CHECK, empty_pb2.Empty(), response_type=appcallback_pb2.HealthCheckResponse
            ),
        ),
        ("health_probe", lambda ch: ch.health_probe(5)),
        ("wait_until_ready", lambda ch: ch.wait_until_ready(5)),
    ]


RACE_DIALS = pytest.mark.parametrize(
    "dial_options",
    [
        pytest.param((), id="no-policies"),
        pytest.param((with_max_concurrency(2), with_app_token("s3cret")), id="limit+token"),
    ],
)
_AFTER_CLOSE = 6  # rounds each worker still runs once the channel is closed


@RACE_DIALS
def test_close_racing_sync_calls_never_surfaces_value_error(
    own_app: OwnApp, dial_options: tuple[DialOption, ...]
) -> None:
    outcomes = Outcomes()
    ops = operations(outcomes)
    channel = Channel.local(own_app.port, *dial_options)
    closed = threading.Event()

    def worker(first: int) -> None:
        after, i = 0, first
        while after < _AFTER_CLOSE:
            after += closed.is_set()
            what, op = ops[i % len(ops)]
            i += 1
            try:
                outcomes.saw(what, op(channel))
            except Exception as exc:
                outcomes.saw(what, exc=exc)

    with futures.ThreadPoolExecutor(max_workers=8) as pool:
        running = [pool.submit(worker, n) for n in range(8)]
        assert wait_until(lambda: outcomes.calls >= 16, timeout=30)
        channel.close()
        closed.set()
        for done in running:
            done.result()
    outcomes.check()


@RACE_DIALS
def test_close_racing_aio_calls_never_surfaces_usage_error(
    own_app: OwnApp, dial_options: tuple[DialOption, ...]
) -> None:
    outcomes = Outcomes()
    ops = operations(outcomes)

    async def go() -> None:
        channel = await AsyncChannel.local(own_app.port, *dial_options)
        closed = asyncio.Event()

        async def worker(first: int) -> None:
            after, i = 0, first
            while after < _AFTER_CLOSE:
                after += closed.is_set()
                what, op = ops[i % len(ops)]
                i += 1
                try:
                    outcomes.saw(what, await op(channel))
                except Exception as exc:
                    outcomes.saw(what, exc=exc)

        async def closer() -> None:
            for _ in range(3000):
                if outcomes.calls >= 16:
                    break
                await asyncio.sleep(0.01)
            await channel.close()
            closed.set()

        await asyncio.gather(closer(), *(worker(n) for n in range(8)))

    asyncio.run(go())
    outcomes.check()


# -- 10: codec call options on invoke_method ------------------------------------------------------


@pytest.mark.parametrize(
    ("option", "named"),
    [
        pytest.param(
            lambda: call_content_subtype("json"), "call_content_subtype('json')", id="subtype"
        ),
        pytest.param(lambda: force_codec(get_codec("json")), "force_codec(", id="force_codec"),
    ],
)
@AIO
def test_codec_call_options_on_invoke_method_get_a_clear_error(
    own_app: OwnApp, aio: bool, option: Callable[[], CallOption], named: str
) -> None:
    finished: list[BaseException | None] = []
    own_app.reset()

    async def body(channel: Any) -> InvokeMethodResponse:
        with pytest.raises(OptionError) as caught:
            await settle(channel.invoke_method(echo(), option(), on_finish(finished.append)))
        text = str(caught.value)
        assert named in text
        assert "OnInvoke always speaks protobuf" in text
        assert "invoke(method, message" in text
        assert "wrap" not in text  # the caller never wrapped a stub
        assert finished == [caught.value]
        # Choosing protobuf itself is what OnInvoke speaks: allowed.
        response: InvokeMethodResponse = await settle(
            channel.invoke_method(echo(), call_content_subtype("proto"))
        )
        return response

    response = on_channel(own_app.port, aio, body)
    assert (response.status.code, response.data) == (OK, b"hi")
    assert own_app.stats()["calls"] == 1  # the refused call never reached the app


# -- the app only ever sees the channel's own token ------------------------------------------------


SOURCES = pytest.mark.parametrize(
    "source",
    [
        "context",
        "call_metadata",
        "default-metadata",
        "late-default-metadata",
        "context+call_metadata",
    ],
)
CHANNEL_TOKEN = pytest.mark.parametrize("token", [None, "s3cret"], ids=["no-token", "token"])


def _token_dial(token: str | None, source: str) -> tuple[DialOption, ...]:
    dial: tuple[DialOption, ...] = (with_app_token(token),) if token is not None else ()
    if source == "default-metadata":  # folded into the channel's plan once
        dial += (with_default_call_options(call_metadata(TOKEN, "from-default")),)
    if source == "late-default-metadata":  # after a hook: applied per call
        late = (header(Metadata()), call_metadata(TOKEN, "from-default"))
        dial += (with_default_call_options(*late),)
    return dial


def _token_options(source: str) -> tuple[CallOption, ...]:
    if "call_metadata" in source:
        return (call_metadata(TOKEN, "from-option", "x-keep", "k"),)
    return ()


def _context(source: str) -> Metadata | None:
    return Metadata({TOKEN: "from-context", "x-ctx": "c"}) if "context" in source else None


@SOURCES
@CHANNEL_TOKEN
@AIO
def test_foreign_tokens_never_reach_the_app_through_invoke_method(
    app: AppPeer, aio: bool, token: str | None, source: str
) -> None:
    options = _token_options(source)
    ctx = _context(source)

    async def body(channel: Any) -> list[dict[str, list[str]]]:
        seen = []
        # A plain call (the hot path when there are no call options) and one through the engine.
        for extra in ((), (header(Metadata()),)):
            if ctx is not None:
                with outgoing_metadata(ctx):
                    call = channel.invoke_method(InvokeMethodRequest("metadata"), *options, *extra)
                    response = await settle(call)
            else:
                response = await settle(
                    channel.invoke_method(InvokeMethodRequest("metadata"), *options, *extra)
                )
            assert response.status.code == OK, response.status
            seen.append(json.loads(response.data))
        return seen

    for dial in (
        _token_dial(token, source),
        (*_token_dial(token, source), with_max_concurrency(4)),
    ):
        for seen in on_channel(app.port, aio, body, *dial):
            assert seen.get(TOKEN) == ([token] if token is not None else None), (dial, seen)
            if ctx is not None:
                assert seen["x-ctx"] == ["c"]  # the rest of the context's metadata still travels
            if options:
                assert seen["x-keep"] == ["k"]


@SOURCES
@CHANNEL_TOKEN
@AIO
def test_foreign_tokens_never_reach_the_app_through_invoke(
    own_app: OwnApp, aio: bool, token: str | None, source: str
) -> None:
    options = _token_options(source)
    ctx = _context(source)
    message = common_pb2.InvokeRequest(method="metadata")

    async def body(channel: Any) -> list[dict[str, list[str]]]:
        async def both() -> list[bytes]:
            raw = await settle(channel.invoke(ON_INVOKE, message.SerializeToString(), *options))
            reply = await settle(
                channel.invoke(
                    ON_INVOKE, message, *options, response_type=common_pb2.InvokeResponse
                )
            )
            return [common_pb2.InvokeResponse.FromString(raw).data.value, reply.data.value]

        if ctx is not None:
            with outgoing_metadata(ctx):
                replies = await both()
        else:
            replies = await both()
        return [json.loads(data) for data in replies]

    for seen in on_channel(own_app.port, aio, body, *_token_dial(token, source)):
        assert seen.get(TOKEN) == ([token] if token is not None else None), seen
