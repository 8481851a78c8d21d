"""The app channel's options, tracing, the generic ``invoke`` path and refused input, sync and aio,
against our own AppCallback servicer and (for tracing) the ``dapr`` SDK's App."""

from __future__ import annotations

import asyncio
import json
from typing import Any

import grpc
import pytest
from google.protobuf import empty_pb2
from support_channel import AppPeer, OwnApp
from support_harness import free_port
from support_tracing import Telemetry

from grpc_channel._async_channel import AsyncChannel
from grpc_channel._async_channel import dial as aio_dial
from grpc_channel._channel_core import RaiseErrorsDialOption
from grpc_channel.appcallback import HEALTH_CHECK, ON_INVOKE
from grpc_channel.call_options import CallOption, header, metadata, on_finish, timeout, trailer
from grpc_channel.channel import Channel, dial, with_raise_errors
from grpc_channel.defaults import OptionError
from grpc_channel.dial_options import (
    DialOption,
    fold_dial_options,
    with_codec,
    with_default_call_options,
    with_insecure,
    with_tracing,
)
from grpc_channel.interceptors._tracing import TracingSpec
from grpc_channel.invoke import InvokeMethodRequest, InvokeMethodResponse
from grpc_channel.metadata import Metadata, outgoing_metadata
from grpc_channel.v1 import appcallback_pb2, common_pb2

pytestmark = pytest.mark.timeout(60)

AIO = pytest.mark.parametrize("aio", [False, True], ids=["sync", "aio"])
OK = 0


@pytest.fixture(autouse=True)
def _no_env_token(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("APP_API_TOKEN", raising=False)


def on_channel(port: int, aio: bool, body: Any, *dial_options: DialOption) -> Any:
    """Run ``body(channel)`` on a fresh channel to 127.0.0.1:port; for aio ``body`` is awaited."""
    if not aio:
        with Channel.local(port, *dial_options) as channel:
            return body(channel)

    async def go() -> Any:
        async with AsyncChannel.local(port, *dial_options) as channel:
            return await body(channel)

    return asyncio.run(go())


def echo() -> InvokeMethodRequest:
    return InvokeMethodRequest("echo").with_data(b"hi", "text/plain")


def invoke_with(
    port: int, aio: bool, req: InvokeMethodRequest, *opts: CallOption, dial_options: Any = ()
) -> InvokeMethodResponse:
    response: InvokeMethodResponse = on_channel(
        port, aio, lambda ch: ch.invoke_method(req, *opts), *dial_options
    )
    return response


# -- call options on invoke_method ----------------------------------------------------------------


@AIO
def test_call_options_apply_to_invoke_method(own_app: OwnApp, aio: bool) -> None:
    headers, trailers = Metadata(), Metadata()
    finished: list[BaseException | None] = []
    response = invoke_with(
        own_app.port,
        aio,
        InvokeMethodRequest("metadata").with_metadata({"x-from-request": "r"}),
        metadata("x-from-option", "o"),
        header(headers),
        trailer(trailers),
        on_finish(finished.append),
        timeout(30),
    )
    assert response.status.code == OK
    seen = json.loads(response.data)
    assert seen["x-from-request"] == ["r"]
    assert seen["x-from-option"] == ["o"]
    assert finished == [None]
    # header()/trailer() holders and the response carry the same metadata.
    assert response.headers == headers
    assert response.trailers == trailers


@AIO
def test_invoke_method_keeps_protobuf_on_a_json_channel_with_call_options(
    own_app: OwnApp, aio: bool
) -> None:
    # OnInvoke speaks protobuf whatever codec the channel is dialled with; call options must not
    # switch the call to the channel's codec (the route's codec is the call's default).
    headers = Metadata()
    response = invoke_with(
        own_app.port, aio, echo(), timeout(30), header(headers), dial_options=[with_codec("json")]
    )
    assert response.status.code == OK, response.status
    assert response.data == b"hi"
    assert headers.get("x-app-header") == ["own"]


@AIO
def test_call_options_capture_an_app_error_too(own_app: OwnApp, aio: bool) -> None:
    finished: list[BaseException | None] = []
    response = invoke_with(
        own_app.port, aio, InvokeMethodRequest("fail"), on_finish(finished.append)
    )
    assert response.status.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    assert len(response.status.details) == 1
    assert len(finished) == 1 and isinstance(finished[0], grpc.RpcError)


@AIO
def test_dial_level_defaults_and_context_metadata_reach_the_app(own_app: OwnApp, aio: bool) -> None:
    dial_options = (with_default_call_options(metadata("x-default", "d")),)
    with outgoing_metadata(Metadata({"x-context": "c"})):
        response = invoke_with(
            own_app.port, aio, InvokeMethodRequest("metadata"), dial_options=dial_options
        )
    seen = json.loads(response.data)
    assert seen["x-default"] == ["d"]
    assert seen["x-context"] == ["c"]


# -- tracing --------------------------------------------------------------------------------------


@pytest.mark.parametrize("spans", ["sdk", "lean"])
@pytest.mark.parametrize("peer", ["own", "dapr"])
@AIO
def test_one_span_per_invoke_and_trace_context_reaches_the_app(
    peer: str, aio: bool, spans: str, request: pytest.FixtureRequest
) -> None:
    app: AppPeer = request.getfixturevalue(f"{peer}_app")
    telemetry = Telemetry(lean=spans == "lean")
    spec = TracingSpec(**telemetry.span_source(), meter_provider=telemetry.meter_provider)
    try:

        def body(channel: Any) -> Any:
            return [channel.invoke_method(InvokeMethodRequest("metadata")) for _ in range(3)]

        async def abody(channel: Any) -> Any:
            return [await channel.invoke_method(InvokeMethodRequest("metadata")) for _ in range(3)]

        responses = on_channel(app.port, aio, abody if aio else body, with_tracing(spec))
        clients = [s for s in telemetry.spans() if s.kind.name == "CLIENT"]
        assert len(clients) == 3
        assert {s.name for s in clients} == {ON_INVOKE.lstrip("/")}
        for span, response in zip(clients, responses, strict=True):
            parents = json.loads(response.data)["traceparent"]
            assert len(parents) == 1
            _, trace_id, span_id, _ = parents[0].split("-")
            ctx = span.get_span_context()
            assert ctx is not None
            assert trace_id == format(ctx.trace_id, "032x")
            assert span_id == format(ctx.span_id, "016x")
    finally:
        telemetry.shutdown()


# -- the generic invoke path ----------------------------------------------------------------------


@AIO
def test_generic_invoke_raw_bytes_and_messages(own_app: OwnApp, aio: bool) -> None:
    raw_request = common_pb2.InvokeRequest(method="echo", content_type="text/plain")
    raw_request.data.value = b"raw"
    headers = Metadata()

    def body(channel: Any) -> Any:
        raw = channel.invoke(ON_INVOKE, raw_request.SerializeToString(), header(headers))
        msg = channel.invoke(
            HEALTH_CHECK, empty_pb2.Empty(), response_type=appcallback_pb2.HealthCheckResponse
        )
        return raw, msg

    async def abody(channel: Any) -> Any:
        raw = await channel.invoke(ON_INVOKE, raw_request.SerializeToString(), header(headers))
        msg = await channel.invoke(
            HEALTH_CHECK, empty_pb2.Empty(), response_type=appcallback_pb2.HealthCheckResponse
        )
        return raw, msg

    raw, msg = on_channel(own_app.port, aio, abody if aio else body)
    assert isinstance(raw, bytes)
    assert common_pb2.InvokeResponse.FromString(raw).data.value == b"raw"
    assert headers.get("x-app-header") == ["own"]
    assert isinstance(msg, appcallback_pb2.HealthCheckResponse)


@AIO
def test_generic_invoke_raises_rpc_errors(own_app: OwnApp, aio: bool) -> None:
    def body(channel: Any) -> Any:
        return channel.invoke("/no.Such/Method", b"")

    async def abody(channel: Any) -> Any:
        return await channel.invoke("/no.Such/Method", b"")

    with pytest.raises(grpc.RpcError) as caught:
        on_channel(own_app.port, aio, abody if aio else body)
    assert caught.value.code() == grpc.StatusCode.UNIMPLEMENTED


def test_generic_invoke_refuses_bad_input(own_app: OwnApp) -> None:
    with Channel.local(own_app.port) as channel:
        with pytest.raises(ValueError, match="full method path"):
            channel.invoke("OnInvoke", b"")
        with pytest.raises(TypeError, match="response_type"):
            channel.invoke(HEALTH_CHECK, empty_pb2.Empty())
        with pytest.raises(TypeError, match="bytes or a protobuf message"):
            channel.invoke(HEALTH_CHECK, "text")  # type: ignore[arg-type]
        with pytest.raises(TypeError, match="response_type is for message payloads"):
            channel.invoke(HEALTH_CHECK, b"", response_type=appcallback_pb2.HealthCheckResponse)


# -- refused input and lifecycle ------------------------------------------------------------------


def test_refused_input_is_named(own_app: OwnApp) -> None:
    with pytest.raises(ValueError, match="port must be an int from 1 to 65535, got 0"):
        Channel.local(0)
    with pytest.raises(ValueError, match="port"):
        AsyncChannel.local(70000)
    with pytest.raises(OptionError, match="no transport security"):
        dial(own_app.target)
    with Channel.local(own_app.port) as channel:
        with pytest.raises(TypeError, match="InvokeMethodRequest, got str"):
            channel.invoke_method("echo")  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="timeout: got -1; seconds must be a finite number"):
            channel.wait_until_ready(-1)
        with pytest.raises(ValueError, match="timeout: got nan; seconds must be a finite number"):
            channel.health_probe(float("nan"))
        with pytest.raises(ValueError, match=r"timeout: got 0; seconds must be .* > 0"):
            channel.health_probe(0)
        with pytest.raises(ValueError, match="X-Bad Key"):
            channel.invoke_method(InvokeMethodRequest("echo").with_metadata({"X-Bad Key": "v"}))
    with pytest.raises(OptionError, match="with_raise_errors"):
        fold_dial_options(with_raise_errors())
    with pytest.raises(OptionError, match="True or False"):
        with_raise_errors("yes")  # type: ignore[arg-type]
    assert with_raise_errors() == RaiseErrorsDialOption(True)


@AIO
def test_calls_on_a_closed_channel_are_cancelled_responses(own_app: OwnApp, aio: bool) -> None:
    if aio:

        async def go() -> InvokeMethodResponse:
            channel = await aio_dial(own_app.target, with_insecure())
            await channel.close()
            await channel.close()
            return await channel.invoke_method(echo())

        response = asyncio.run(go())
    else:
        channel = dial(own_app.target, with_insecure())
        channel.close()
        channel.close()
        response = channel.invoke_method(echo())
    assert response.status.code == grpc.StatusCode.CANCELLED.value[0]
    assert response.status.message == "the channel is closed"


def test_repr_and_base_address(own_app: OwnApp) -> None:
    channel = Channel.local(own_app.port)
    assert channel.base_address == own_app.target
    assert repr(channel) == f"Channel({own_app.target!r}, open)"
    channel.close()
    assert repr(channel) == f"Channel({own_app.target!r}, closed)"

    async def go() -> str:
        async with aio_dial(own_app.target, with_insecure()) as achannel:
            assert achannel.base_address == own_app.target
            return repr(achannel)

    assert asyncio.run(go()) == f"AsyncChannel({own_app.target!r}, open)"


def test_unreachable_app_health_probe_is_false_quickly() -> None:
    with Channel.local(free_port()) as channel:
        assert channel.health_probe(timeout=2) is False
