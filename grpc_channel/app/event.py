"""A pub/sub event as a topic handler receives it, and the statuses a handler answers with.

:class:`TopicEvent` carries the CloudEvent fields of Dapr's ``TopicEventRequest`` (``data`` as raw
bytes, ``extensions`` as a plain ``dict`` of JSON values) plus the gRPC invocation metadata of the
delivery (``metadata``: a key sent more than once has its values joined by ``", "``, a ``-bin``
value is base64; the ``dapr-api-token`` is left out, see :mod:`grpc_channel.app.app`). Its
``repr`` lists the metadata keys, never their values, which may carry credentials.

A handler returns a :class:`TopicEventStatus` or ``None`` (SUCCESS); raising means RETRY.
"""

from __future__ import annotations

import dataclasses
import enum
from typing import Any

from google.protobuf import json_format

from grpc_channel.app._payload import Payload, safe_keys
from grpc_channel.v1 import appcallback_pb2

__all__ = ["TopicEvent", "TopicEventStatus"]

_Status = appcallback_pb2.TopicEventResponse.TopicEventResponseStatus


class TopicEventStatus(enum.IntEnum):
    """What the app tells Dapr about one event (``TopicEventResponse.status``): SUCCESS (done),
    RETRY (redeliver later, as the pub/sub's retry policy allows), DROP (never redeliver; sent to
    the dead letter topic when the subscription has one)."""

    SUCCESS = _Status.Value("SUCCESS")
    RETRY = _Status.Value("RETRY")
    DROP = _Status.Value("DROP")


@dataclasses.dataclass(frozen=True)
class TopicEvent(Payload):
    """One delivered event. ``text()`` and ``json()`` read ``data``."""

    id: str
    source: str
    type: str
    spec_version: str
    data_content_type: str
    data: bytes
    topic: str
    pubsub_name: str
    path: str
    extensions: dict[str, Any] = dataclasses.field(default_factory=dict)
    metadata: dict[str, str] = dataclasses.field(default_factory=dict, repr=False)

    @classmethod
    def from_request(
        cls,
        request: appcallback_pb2.TopicEventRequest,
        invocation_metadata: dict[str, str] | None = None,
    ) -> TopicEvent:
        """The event of a ``TopicEventRequest``; ``invocation_metadata`` as built by the server."""
        return cls(
            id=request.id,
            source=request.source,
            type=request.type,
            spec_version=request.spec_version,
            data_content_type=request.data_content_type,
            data=request.data,
            topic=request.topic,
            pubsub_name=request.pubsub_name,
            path=request.path,
            extensions=json_format.MessageToDict(request.extensions),
            metadata=dict(invocation_metadata or {}),
        )

    def __repr__(self) -> str:
        fields = ", ".join(
            f"{f.name}={getattr(self, f.name)!r}" for f in dataclasses.fields(self) if f.repr
        )
        return f"TopicEvent({fields}, metadata keys={safe_keys(self.metadata)})"
