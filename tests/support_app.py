"""Helpers for the App tests: serve an :class:`~grpc_channel.app.App` on the sync or the asyncio
server, and call it with plain grpcio stubs (independent of the code under test).

``serving(app, aio)`` yields the bound port and stops the server (and, for asyncio, the event loop
thread it runs on) when the block ends. The asyncio server runs on a loop in a background thread so
the tests can use blocking grpcio clients in either mode.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import Iterator
from typing import Any

import grpc
from google.protobuf import empty_pb2
from google.protobuf.message import Message

from grpc_channel.app import App
from grpc_channel.appcallback import (
    HEALTH_CHECK,
    LIST_TOPIC_SUBSCRIPTIONS,
    ON_INVOKE,
    ON_TOPIC_EVENT,
    method_types,
)
from grpc_channel.v1 import appcallback_pb2, common_pb2

__all__ = ["AppClient", "serving"]

_TIMEOUT = 10.0


@contextlib.contextmanager
def serving(app: App, aio: bool) -> Iterator[int]:
    """Serve ``app`` on 127.0.0.1 (sync ``grpc.server`` or ``grpc.aio``); yield the port."""
    if not aio:
        port = app.start(0)
        try:
            yield port
        finally:
            app.stop()
        return
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="test-aio-app", daemon=True)
    thread.start()
    try:
        port = asyncio.run_coroutine_threadsafe(app.start_async(0), loop).result(_TIMEOUT)
        try:
            yield port
        finally:
            asyncio.run_coroutine_threadsafe(app.stop_async(None), loop).result(_TIMEOUT)
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(_TIMEOUT)
        loop.close()


class AppClient:
    """Plain grpcio calls to the four AppCallback methods on ``127.0.0.1:port``."""

    def __init__(self, port: int) -> None:
        self.channel = grpc.insecure_channel(f"127.0.0.1:{port}")

    def call(
        self, path: str, request: Message, metadata: tuple[tuple[str, str], ...] = ()
    ) -> tuple[Any, grpc.Call]:
        request_type, response_type = method_types(path)
        assert isinstance(request, request_type)
        stub = self.channel.unary_unary(
            path,
            request_serializer=request_type.SerializeToString,
            response_deserializer=response_type.FromString,
        )
        reply, call = stub.with_call(request, timeout=_TIMEOUT, metadata=metadata or None)
        return reply, call

    def invoke(
        self, method: str, data: bytes = b"", content_type: str = "text/plain", **kw: Any
    ) -> tuple[common_pb2.InvokeResponse, grpc.Call]:
        request = common_pb2.InvokeRequest(method=method, content_type=content_type)
        request.data.value = data
        return self.call(ON_INVOKE, request, **kw)

    def event(
        self, pubsub: str, topic: str, path: str = "", data: bytes = b"{}", **kw: Any
    ) -> appcallback_pb2.TopicEventResponse:
        request = appcallback_pb2.TopicEventRequest(
            id="ev-1",
            source="tests",
            type="com.example.order",
            spec_version="1.0",
            data_content_type="application/json",
            topic=topic,
            data=data,
            pubsub_name=pubsub,
            path=path,
        )
        reply: appcallback_pb2.TopicEventResponse = self.call(ON_TOPIC_EVENT, request, **kw)[0]
        return reply

    def subscriptions(self, **kw: Any) -> appcallback_pb2.ListTopicSubscriptionsResponse:
        reply: appcallback_pb2.ListTopicSubscriptionsResponse = self.call(
            LIST_TOPIC_SUBSCRIPTIONS, empty_pb2.Empty(), **kw
        )[0]
        return reply

    def health(self, **kw: Any) -> appcallback_pb2.HealthCheckResponse:
        reply: appcallback_pb2.HealthCheckResponse = self.call(
            HEALTH_CHECK, empty_pb2.Empty(), **kw
        )[0]
        return reply

    def close(self) -> None:
        self.channel.close()

    def __enter__(self) -> AppClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
