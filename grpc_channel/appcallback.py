"""The method paths of an application's callback services, and the message types each one carries.

Only the method path and the field numbers travel on the wire, so these paths are Dapr's
(``dapr.proto.runtime.v1``) while the messages live in our own proto package, ``grpc_channel.v1``.
Clients call them with ``channel.unary_unary(path, ...)``; an app-side server registers them with a
generic handler (see :func:`method_types`).
"""

from __future__ import annotations

from typing import Final

from google.protobuf import empty_pb2
from google.protobuf.message import Message

from grpc_channel.v1 import appcallback_pb2, common_pb2

__all__ = [
    "APP_CALLBACK_HEALTH_CHECK_SERVICE",
    "APP_CALLBACK_SERVICE",
    "HEALTH_CHECK",
    "LIST_TOPIC_SUBSCRIPTIONS",
    "METHOD_TYPES",
    "ON_INVOKE",
    "ON_TOPIC_EVENT",
    "method_types",
]

APP_CALLBACK_SERVICE: Final = "dapr.proto.runtime.v1.AppCallback"
APP_CALLBACK_HEALTH_CHECK_SERVICE: Final = "dapr.proto.runtime.v1.AppCallbackHealthCheck"

ON_INVOKE: Final = f"/{APP_CALLBACK_SERVICE}/OnInvoke"
"""InvokeRequest → InvokeResponse: service invocation."""
LIST_TOPIC_SUBSCRIPTIONS: Final = f"/{APP_CALLBACK_SERVICE}/ListTopicSubscriptions"
"""google.protobuf.Empty → ListTopicSubscriptionsResponse: the app's pub/sub subscriptions."""
ON_TOPIC_EVENT: Final = f"/{APP_CALLBACK_SERVICE}/OnTopicEvent"
"""TopicEventRequest → TopicEventResponse: delivery of one pub/sub event."""
HEALTH_CHECK: Final = f"/{APP_CALLBACK_HEALTH_CHECK_SERVICE}/HealthCheck"
"""google.protobuf.Empty → HealthCheckResponse (empty): the app's health probe."""

METHOD_TYPES: Final[dict[str, tuple[type[Message], type[Message]]]] = {
    ON_INVOKE: (common_pb2.InvokeRequest, common_pb2.InvokeResponse),
    LIST_TOPIC_SUBSCRIPTIONS: (empty_pb2.Empty, appcallback_pb2.ListTopicSubscriptionsResponse),
    ON_TOPIC_EVENT: (appcallback_pb2.TopicEventRequest, appcallback_pb2.TopicEventResponse),
    HEALTH_CHECK: (empty_pb2.Empty, appcallback_pb2.HealthCheckResponse),
}
"""Method path → (request message class, response message class), for every AppCallback method."""


def method_types(path: str) -> tuple[type[Message], type[Message]]:
    """Return the (request, response) message classes of an AppCallback method path.

    Raises:
        KeyError: ``path`` is not one of the paths above; the message lists the known paths.
    """
    try:
        return METHOD_TYPES[path]
    except KeyError:
        known = ", ".join(sorted(METHOD_TYPES))
        raise KeyError(f"unknown AppCallback method path {path!r}; known paths: {known}") from None
