"""The app's dispatch logic, written once for the sync and the asyncio server.

A server hands every call to :meth:`Dispatcher.prepare` with the method path, the request and the
invocation metadata. That checks the app token and routes the call, and answers either an
:data:`Outcome` at once (a refusal, the subscription list, the default health answer) or a
:class:`HandlerCall`: the user handler to run and how to turn what it returned, or raised, into an
outcome. Running the handler is the only thing the servers do differently (directly, on a worker
thread, or on an event loop); sending an outcome is the only other I/O.

Nothing here logs a metadata value: tokens travel there.
"""

from __future__ import annotations

import dataclasses
import hmac
import inspect
import json
import logging
from collections.abc import Callable, Iterable, Mapping
from typing import Any, Final, TypeAlias

import grpc
from google.protobuf import any_pb2
from google.protobuf.message import Message

from grpc_channel.app._payload import metadata_dict
from grpc_channel.app.errors import AbortCall
from grpc_channel.app.event import TopicEvent, TopicEventStatus
from grpc_channel.app.request import MethodRequest, MethodResponse
from grpc_channel.app.subscriptions import Subscriptions
from grpc_channel.appcallback import (
    HEALTH_CHECK,
    LIST_TOPIC_SUBSCRIPTIONS,
    ON_INVOKE,
    ON_TOPIC_EVENT,
)
from grpc_channel.invoke import PROTOBUF_CONTENT_TYPE
from grpc_channel.metadata import Metadata, MetadataPairs
from grpc_channel.v1 import appcallback_pb2, common_pb2

_log = logging.getLogger("grpc_channel.app")

TOKEN_KEY: Final = "dapr-api-token"
# Handlers never see the app token: the app checked it already, and a handler that forwarded its
# incoming metadata would hand the token on (the leak Dapr #7344 describes).
_HIDDEN_KEYS: Final = frozenset({TOKEN_KEY})
BYTES_CONTENT_TYPE: Final = "application/octet-stream"
TEXT_CONTENT_TYPE: Final = "text/plain; charset=UTF-8"
JSON_CONTENT_TYPE: Final = "application/json"

# Dapr drops an event whose delivery fails with UNIMPLEMENTED and retries on any other code; the
# dapr SDK's App answers an unknown route with UNIMPLEMENTED too. No handler in this process will
# ever take the event, so redelivering it would only loop.
UNKNOWN_ROUTE_CODE: Final = grpc.StatusCode.UNIMPLEMENTED

MethodHandler: TypeAlias = Callable[[MethodRequest], Any]
HealthHandler: TypeAlias = Callable[[], Any]
Handler: TypeAlias = Callable[..., Any]


@dataclasses.dataclass(frozen=True)
class Reply:
    """Answer ``message``, sending ``headers`` first (if any) and ``trailers`` at the end."""

    message: Message
    headers: MetadataPairs = ()
    trailers: MetadataPairs = ()


@dataclasses.dataclass(frozen=True)
class Failure:
    """End the call with ``code``, ``details`` and ``trailers``."""

    code: grpc.StatusCode
    details: str
    trailers: MetadataPairs = ()


Outcome: TypeAlias = Reply | Failure


@dataclasses.dataclass(frozen=True)
class HandlerCall:
    """A user handler to run with ``args``; :meth:`finish` turns its result or exception into the
    call's outcome."""

    handler: Handler
    args: tuple[Any, ...]
    on_result: Callable[[Any], Outcome]
    on_error: Callable[[Exception], Outcome]

    def finish(self, result: Any = None, error: Exception | None = None) -> Outcome:
        if error is None:
            try:
                return self.on_result(result)
            except Exception as exc:  # a result we cannot send is the handler's error
                error = exc
        if isinstance(error, AbortCall):
            return _aborted(error)
        return self.on_error(error)


def is_async(handler: Handler) -> bool:
    """True for an ``async def`` function (or a callable object whose ``__call__`` is one)."""
    return inspect.iscoroutinefunction(handler) or inspect.iscoroutinefunction(
        getattr(handler, "__call__", None)  # noqa: B004 - we want the method, not callability
    )


def _aborted(abort: AbortCall) -> Failure:
    try:
        trailers = Metadata(abort.trailers).to_grpc()
    except ValueError as exc:
        return Failure(grpc.StatusCode.INTERNAL, f"AbortCall trailers refused: {exc}")
    return Failure(abort.code, abort.details, trailers)


def _pack(value: Any, method: str) -> tuple[any_pb2.Any, str]:
    """``value`` as the response ``Any`` and the content type it implies."""
    data = any_pb2.Any()
    if isinstance(value, bytes | bytearray | memoryview):
        data.value = bytes(value)
        return data, BYTES_CONTENT_TYPE
    if isinstance(value, str):
        data.value = value.encode("utf-8")
        return data, TEXT_CONTENT_TYPE
    if isinstance(value, dict | list):
        data.value = json.dumps(value, ensure_ascii=False, separators=(",", ":")).encode("utf-8")
        return data, JSON_CONTENT_TYPE
    if isinstance(value, any_pb2.Any):
        data.CopyFrom(value)
        return data, PROTOBUF_CONTENT_TYPE
    if isinstance(value, Message):
        data.Pack(value)
        return data, PROTOBUF_CONTENT_TYPE
    raise TypeError(
        f"method {method!r} returned {type(value).__name__}; a method handler returns bytes, str,"
        " dict, list, a protobuf message, None or a MethodResponse"
    )


def method_reply(method: str, result: Any) -> Reply:
    """Turn a method handler's return value into the ``InvokeResponse`` reply (see
    :mod:`grpc_channel.app.request` for the rules). ``TypeError`` for a value it cannot send,
    ``MetadataError`` for headers or trailers that cannot travel."""
    if result is None:
        return Reply(common_pb2.InvokeResponse())
    headers: MetadataPairs = ()
    trailers: MetadataPairs = ()
    content_type: str | None = None
    if isinstance(result, MethodResponse):
        headers = Metadata(result.headers).to_grpc()
        trailers = Metadata(result.trailers).to_grpc()
        content_type = result.content_type
        result = result.data
    if result is None:
        data, implied = any_pb2.Any(), ""
    else:
        data, implied = _pack(result, method)
    response = common_pb2.InvokeResponse(
        data=data, content_type=implied if content_type is None else content_type
    )
    return Reply(response, headers, trailers)


def topic_reply(route: str, result: Any) -> Reply:
    """A topic handler's return value as the ``TopicEventResponse``; ``TypeError`` otherwise."""
    if result is None:
        result = TopicEventStatus.SUCCESS
    if not isinstance(result, TopicEventStatus):
        raise TypeError(
            f"topic handler for {route} returned {type(result).__name__}; a topic handler returns"
            " a TopicEventStatus or None"
        )
    return Reply(appcallback_pb2.TopicEventResponse(status=int(result)))  # type: ignore[arg-type]


def _route_text(request: appcallback_pb2.TopicEventRequest) -> str:
    return f"pubsub {request.pubsub_name!r} topic {request.topic!r} path {request.path!r}"


class Dispatcher:
    """Routes the four AppCallback methods to an app's handlers.

    ``token``: when non-empty, every call must carry exactly one ``dapr-api-token`` metadata value
    equal to it (compared in constant time), else UNAUTHENTICATED.
    """

    def __init__(
        self,
        subscriptions: Subscriptions,
        methods: Mapping[str, MethodHandler],
        health: HealthHandler | None,
        token: str | None,
    ) -> None:
        self._subscriptions = subscriptions
        self._methods = methods
        self._health = health
        self._token = token.encode("utf-8") if token else None

    def authorize(self, pairs: Iterable[tuple[str, str | bytes]]) -> Failure | None:
        """None when the call may proceed; the UNAUTHENTICATED failure otherwise."""
        if self._token is None:
            return None
        sent = [value for key, value in pairs if key == TOKEN_KEY]
        if not sent:
            return Failure(grpc.StatusCode.UNAUTHENTICATED, f"missing {TOKEN_KEY} metadata")
        value = sent[0]
        given = value if isinstance(value, bytes) else value.encode("utf-8")
        # Evaluate the comparison even for a repeated key, so timing tells nothing about it.
        same = hmac.compare_digest(given, self._token)
        if len(sent) != 1 or not same:
            return Failure(grpc.StatusCode.UNAUTHENTICATED, f"invalid {TOKEN_KEY} metadata")
        return None

    def prepare(
        self, path: str, request: Message, pairs: Iterable[tuple[str, str | bytes]] | None
    ) -> HandlerCall | Outcome:
        """Authorize and route one call to ``path`` (an AppCallback method path)."""
        pairs = tuple(pairs or ())
        refused = self.authorize(pairs)
        if refused is not None:
            return refused
        if path == ON_INVOKE:
            assert isinstance(request, common_pb2.InvokeRequest)
            return self._invoke(request, pairs)
        if path == ON_TOPIC_EVENT:
            assert isinstance(request, appcallback_pb2.TopicEventRequest)
            return self._topic_event(request, pairs)
        if path == LIST_TOPIC_SUBSCRIPTIONS:
            return Reply(self._subscriptions.to_response())
        if path == HEALTH_CHECK:
            return self._health_check()
        return Failure(grpc.StatusCode.UNIMPLEMENTED, f"unknown method path {path!r}")

    def _invoke(
        self, request: common_pb2.InvokeRequest, pairs: MetadataPairs
    ) -> HandlerCall | Outcome:
        name = request.method
        handler = self._methods.get(name)
        if handler is None:
            return Failure(
                grpc.StatusCode.UNIMPLEMENTED, f"method {name!r} is not registered with this app"
            )

        def on_error(exc: Exception) -> Outcome:
            _log.error("method %r raised; answering INTERNAL", name, exc_info=exc)
            return Failure(grpc.StatusCode.INTERNAL, f"method {name!r} raised {type(exc).__name__}")

        return HandlerCall(
            handler,
            (MethodRequest.from_request(request, metadata_dict(pairs, _HIDDEN_KEYS)),),
            lambda result: method_reply(name, result),
            on_error,
        )

    def _topic_event(
        self, request: appcallback_pb2.TopicEventRequest, pairs: MetadataPairs
    ) -> HandlerCall | Outcome:
        route = _route_text(request)
        handler = self._subscriptions.handler_for(request.pubsub_name, request.topic, request.path)
        if handler is None:
            return Failure(UNKNOWN_ROUTE_CODE, f"no handler for {route}")

        def on_error(exc: Exception) -> Outcome:
            _log.error("topic handler for %s raised; answering RETRY", route, exc_info=exc)
            return Reply(
                appcallback_pb2.TopicEventResponse(status=int(TopicEventStatus.RETRY))  # type: ignore[arg-type]
            )

        return HandlerCall(
            handler,
            (TopicEvent.from_request(request, metadata_dict(pairs, _HIDDEN_KEYS)),),
            lambda result: topic_reply(route, result),
            on_error,
        )

    def _health_check(self) -> HandlerCall | Outcome:
        healthy = Reply(appcallback_pb2.HealthCheckResponse())
        if self._health is None:
            return healthy

        def on_result(result: Any) -> Outcome:
            if result is False:
                return Failure(grpc.StatusCode.UNAVAILABLE, "the app reports itself unhealthy")
            return healthy

        def on_error(exc: Exception) -> Outcome:
            _log.error("health check raised; answering UNAVAILABLE", exc_info=exc)
            return Failure(grpc.StatusCode.UNAVAILABLE, f"health check raised {type(exc).__name__}")

        return HandlerCall(self._health, (), on_result, on_error)
