"""An app-side AppCallback servicer of our own, in-process, for channel tests.

It serves the same methods with the same meaning as the ``dapr`` SDK app in
:mod:`support_dapr_app` (``echo``, ``fail``, ``sleep``, ``deadline``, ``metadata``, ``stats``,
``reset``; see that module's docstring), so one test body runs against both peers. Differences:
headers and trailers are sent with the plain gRPC context (``x-app-header: own``,
``x-app-trailer: own``), and an unknown method is answered UNIMPLEMENTED by us. It is registered
with a generic handler on our own ``grpc_channel.v1`` messages, listening on ``127.0.0.1`` only.
"""

from __future__ import annotations

import base64
import json
import threading
import time
from collections.abc import Iterator
from concurrent import futures
from typing import Any, Protocol

import grpc
import pytest
from google.protobuf import empty_pb2
from google.rpc import code_pb2, status_pb2
from grpc_status import rpc_status
from support_dapr_app import DaprApp, app_call, remaining, running_dapr_app
from support_harness import bad_request_detail

from grpc_channel.appcallback import APP_CALLBACK_HEALTH_CHECK_SERVICE, APP_CALLBACK_SERVICE
from grpc_channel.v1 import appcallback_pb2, common_pb2

__all__ = ["AppPeer", "OwnApp", "app", "bad_request_status", "dapr_app", "own_app"]

_HOST = "127.0.0.1"
_UNCOUNTED = frozenset({"stats", "reset"})


class AppPeer(Protocol):
    """What the channel tests need of either peer."""

    name: str

    @property
    def target(self) -> str: ...

    @property
    def port(self) -> int: ...

    def stats(self) -> dict[str, int]: ...

    def reset(self) -> None: ...


def bad_request_status() -> status_pb2.Status:
    """The status both apps' ``fail`` answers: INVALID_ARGUMENT with one BadRequest detail."""
    return status_pb2.Status(
        code=code_pb2.INVALID_ARGUMENT, message="name is required", details=[bad_request_detail()]
    )


# -- the two peers as fixtures (one of each per test module; ``app`` runs a test on both) ---------


@pytest.fixture(scope="module")
def own_app() -> Iterator[OwnApp]:
    with OwnApp() as app:
        yield app


@pytest.fixture(scope="module")
def dapr_app() -> Iterator[DaprApp]:
    with running_dapr_app() as app:
        yield app


@pytest.fixture(params=["own", "dapr"])
def app(request: pytest.FixtureRequest) -> AppPeer:
    peer: AppPeer = request.getfixturevalue(f"{request.param}_app")
    return peer


class OwnApp:
    """An in-process AppCallback server on ``127.0.0.1:port`` (a free port when ``port`` is 0)."""

    name = "own"

    def __init__(self, port: int = 0) -> None:
        self._lock = threading.Lock()
        self._in_flight = 0
        self._max_in_flight = 0
        self._calls = 0
        self._cancelled = 0
        self._server = grpc.server(futures.ThreadPoolExecutor(max_workers=32))
        invoke = grpc.unary_unary_rpc_method_handler(
            self._on_invoke,
            request_deserializer=common_pb2.InvokeRequest.FromString,
            response_serializer=common_pb2.InvokeResponse.SerializeToString,
        )
        health = grpc.unary_unary_rpc_method_handler(
            self._health,
            request_deserializer=empty_pb2.Empty.FromString,
            response_serializer=appcallback_pb2.HealthCheckResponse.SerializeToString,
        )
        self._server.add_generic_rpc_handlers(
            (
                grpc.method_handlers_generic_handler(APP_CALLBACK_SERVICE, {"OnInvoke": invoke}),
                grpc.method_handlers_generic_handler(
                    APP_CALLBACK_HEALTH_CHECK_SERVICE, {"HealthCheck": health}
                ),
            )
        )
        self._port = self._server.add_insecure_port(f"{_HOST}:{port}")
        self._started = False

    @property
    def port(self) -> int:
        return self._port

    @property
    def target(self) -> str:
        return f"{_HOST}:{self._port}"

    def start(self) -> OwnApp:
        self._server.start()
        self._started = True
        return self

    def stop(self) -> None:
        self._server.stop(None).wait()

    def __enter__(self) -> OwnApp:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def stats(self) -> dict[str, int]:
        result: dict[str, int] = json.loads(app_call(self.target, "stats"))
        return result

    def reset(self) -> None:
        app_call(self.target, "reset")

    # -- handlers ---------------------------------------------------------------------------------

    def _health(self, request: empty_pb2.Empty, context: grpc.ServicerContext) -> Any:
        return appcallback_pb2.HealthCheckResponse()

    def _on_invoke(
        self, request: common_pb2.InvokeRequest, context: grpc.ServicerContext
    ) -> common_pb2.InvokeResponse:
        counted = request.method not in _UNCOUNTED
        if counted:
            with self._lock:
                self._calls += 1
                self._in_flight += 1
                self._max_in_flight = max(self._max_in_flight, self._in_flight)
        try:
            return self._dispatch(request, context)
        finally:
            if counted:
                with self._lock:
                    self._in_flight -= 1

    def _dispatch(
        self, request: common_pb2.InvokeRequest, context: grpc.ServicerContext
    ) -> common_pb2.InvokeResponse:
        method = request.method
        if method == "echo":
            context.send_initial_metadata((("x-app-header", "own"),))
            context.set_trailing_metadata((("x-app-trailer", "own"),))
            return common_pb2.InvokeResponse(data=request.data, content_type=request.content_type)
        if method == "fail":
            context.abort_with_status(rpc_status.to_status(bad_request_status()))
        if method == "sleep":
            end = time.monotonic() + float(request.data.value.decode() or "0")
            while time.monotonic() < end:
                if not context.is_active():
                    with self._lock:
                        self._cancelled += 1
                    return _text(b"gone")
                time.sleep(0.005)
            return _text(b"slept")
        if method == "deadline":
            return _text(json.dumps({"time_remaining": remaining(context)}).encode())
        if method == "metadata":
            seen: dict[str, list[str]] = {}
            for key, value in context.invocation_metadata():
                text = base64.b64encode(value).decode() if isinstance(value, bytes) else value
                seen.setdefault(key, []).append(text)
            return _text(json.dumps(seen).encode())
        if method == "stats":
            with self._lock:
                snapshot = {
                    "in_flight": self._in_flight,
                    "max_in_flight": self._max_in_flight,
                    "calls": self._calls,
                    "cancelled": self._cancelled,
                }
            return _text(json.dumps(snapshot).encode())
        if method == "reset":
            with self._lock:
                self._max_in_flight = self._in_flight
                self._calls = 0
                self._cancelled = 0
            return _text(b"ok")
        context.abort(grpc.StatusCode.UNIMPLEMENTED, f"{method} method not implemented!")


def _text(data: bytes) -> common_pb2.InvokeResponse:
    response = common_pb2.InvokeResponse(content_type="text/plain")
    response.data.value = data
    return response
