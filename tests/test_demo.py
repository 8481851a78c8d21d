"""The demo app: what OnInvoke and HealthCheck answer, its token check, its process helper."""

from __future__ import annotations

import asyncio
from typing import Any

import grpc
import grpc.aio
import pytest
from google.rpc import error_details_pb2
from grpc_status import rpc_status
from support_bench import demo_process, demo_server

from grpc_channel import demo
from grpc_channel.appcallback import HEALTH_CHECK, ON_INVOKE
from grpc_channel.demo import DemoConfig, DemoError
from grpc_channel.v1 import appcallback_pb2, common_pb2


def _request(method: str = "echo", data: bytes = b"payload") -> common_pb2.InvokeRequest:
    request = common_pb2.InvokeRequest(method=method, content_type="text/plain")
    request.data.value = data
    return request


def _invoke(channel: grpc.Channel) -> grpc.UnaryUnaryMultiCallable:  # type: ignore[type-arg]
    return channel.unary_unary(
        ON_INVOKE,
        request_serializer=common_pb2.InvokeRequest.SerializeToString,
        response_deserializer=common_pb2.InvokeResponse.FromString,
    )


@pytest.mark.parametrize("aio", [False, True])
def test_on_invoke_echoes_and_sends_a_header_and_a_trailer(aio: bool) -> None:
    with demo_server() as app:
        if aio:

            async def call() -> tuple[common_pb2.InvokeResponse, list[tuple[str, str | bytes]]]:
                async with grpc.aio.insecure_channel(app.address) as channel:
                    method = channel.unary_unary(
                        ON_INVOKE,
                        request_serializer=common_pb2.InvokeRequest.SerializeToString,
                        response_deserializer=common_pb2.InvokeResponse.FromString,
                    )
                    pending = method(_request())
                    response = await pending
                    header = await pending.initial_metadata()
                    trailer = await pending.trailing_metadata()
                    return response, [(key, value) for key, value in (*header, *trailer)]

            response, metadata = asyncio.run(call())
        else:
            with grpc.insecure_channel(app.address) as channel:
                response, call_ = _invoke(channel).with_call(_request())
                received = (*call_.initial_metadata(), *call_.trailing_metadata())
                metadata = [(key, value) for key, value in received]
        assert app.calls == 1
    assert response.data.value == b"payload"
    assert response.content_type == "text/plain"
    assert (demo.HEADER_KEY, "1") in metadata
    assert (demo.TRAILER_KEY, "ok") in metadata


def test_error_method_answers_a_status_with_bad_request_details() -> None:
    with (
        demo_server() as app,
        grpc.insecure_channel(app.address) as channel,
        pytest.raises(grpc.RpcError) as caught,
    ):
        _invoke(channel)(_request(method=demo.ERROR_METHOD))
    error: Any = caught.value
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert error.details() == "demo error"
    status = rpc_status.from_call(error)
    assert status is not None and len(status.details) == 1
    detail = error_details_pb2.BadRequest()
    assert status.details[0].Unpack(detail)
    assert detail.field_violations[0].field == "method"
    trailers = dict(error.trailing_metadata())
    assert trailers[demo.TRAILER_KEY] == "ok"


def test_health_check_answers_and_other_paths_are_unimplemented() -> None:
    with demo_server() as app, grpc.insecure_channel(app.address) as channel:
        health = channel.unary_unary(
            HEALTH_CHECK, None, appcallback_pb2.HealthCheckResponse.FromString
        )
        assert health(b"") == appcallback_pb2.HealthCheckResponse()
        other = channel.unary_unary("/dapr.proto.runtime.v1.AppCallback/OnTopicEvent", None, None)
        with pytest.raises(grpc.RpcError) as caught:
            other(b"")
        failure: Any = caught.value
        assert failure.code() == grpc.StatusCode.UNIMPLEMENTED
        assert app.calls == 0


def test_app_token_is_required_on_invoke_but_not_on_health() -> None:
    with (
        demo_server(DemoConfig(app_token="s3cret")) as app,
        grpc.insecure_channel(app.address) as channel,
    ):
        invoke = _invoke(channel)
        for metadata in ((), (("dapr-api-token", "wrong"),)):
            with pytest.raises(grpc.RpcError) as caught:
                invoke(_request(), metadata=metadata)
            error: Any = caught.value
            assert error.code() == grpc.StatusCode.UNAUTHENTICATED
            assert "s3cret" not in error.details()
        response = invoke(_request(), metadata=(("dapr-api-token", "s3cret"),))
        assert response.data.value == b"payload"
        health = channel.unary_unary(HEALTH_CHECK, None, None)
        assert health(b"") == b""


def test_child_process_reports_its_port_serves_and_stops_cleanly() -> None:
    with demo_process(DemoConfig(delay_ms=1.0, app_token="t0k")) as app:
        assert app.port > 0 and app.running
        with grpc.insecure_channel(app.address) as channel:
            response = _invoke(channel)(_request(data=b"x"), metadata=(("dapr-api-token", "t0k"),))
        assert response.data.value == b"x"
        assert app.stop() == 0
        assert not app.running


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"host": "0.0.0.0"}, "loopback"),
        ({"host": "example.com"}, "loopback"),
        ({"port": 70000}, "port"),
        ({"delay_ms": -1.0}, ">= 0"),
        ({"stall_ms": 5.0}, "stall_after"),
        ({"threads": 0}, "threads"),
        ({"app_token": ""}, "non-empty"),
    ],
)
def test_bad_config_is_refused(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(DemoError, match=match):
        DemoConfig(**kwargs)  # type: ignore[arg-type]


def test_loopback_hosts_are_accepted() -> None:
    for host in ("127.0.0.1", "127.0.0.2", "::1", "localhost"):
        assert DemoConfig(host=host).host == host


def test_command_line_refuses_a_non_loopback_host(capsys: pytest.CaptureFixture[str]) -> None:
    assert demo.main(["--host", "10.1.2.3"]) == 2
    assert "loopback" in capsys.readouterr().err


def test_command_line_refuses_app_token_env_without_the_variable(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.delenv("APP_API_TOKEN", raising=False)
    assert demo.main(["--app-token-env"]) == 2
    assert "APP_API_TOKEN" in capsys.readouterr().err


def test_config_round_trips_through_its_command_line() -> None:
    config = DemoConfig(delay_ms=2.5, stall_after=3, stall_ms=40.0, threads=4)
    import argparse

    parser = argparse.ArgumentParser()
    demo.add_arguments(parser)
    assert demo.config_from_args(parser.parse_args(config.to_argv())) == config


def test_bytes_that_are_not_an_invoke_request_get_invalid_argument() -> None:
    with (
        demo_server() as app,
        grpc.insecure_channel(app.address) as channel,
        pytest.raises(grpc.RpcError) as caught,
    ):
        channel.unary_unary(ON_INVOKE, None, None)(b"\xff\xff\xff")
    error: Any = caught.value
    assert error.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert "InvokeRequest" in error.details()


def test_grpc_channel_demo_command_checks_its_options(capsys: pytest.CaptureFixture[str]) -> None:
    from grpc_channel.cli import main

    assert main(["demo", "--host", "192.168.1.1"]) == 2
    assert "loopback" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        main(["demo", "--port", "not-a-number"])
