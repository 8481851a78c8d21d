"""The pure steps of one delivery, shared by every subscription of the runtime: turning a broker
message into a CloudEvent, the app's answer into a :class:`Verdict`, message metadata into call
options, and a publish argument into bytes. No I/O here.
"""

from __future__ import annotations

import enum
import json
import logging
from collections.abc import Mapping
from types import MappingProxyType
from typing import Final

import grpc

from grpc_channel.call_options import CallOption, call_metadata
from grpc_channel.defaults import OptionError
from grpc_channel.pubsub.brokers.base import BrokerMessage
from grpc_channel.pubsub.cloudevents import (
    DAPR_EVENT_TYPE,
    SPEC_VERSION,
    CloudEvent,
    CloudEventError,
    parse_cloud_event,
)
from grpc_channel.v1 import appcallback_pb2

__all__ = [
    "RAW_CONTENT_TYPE",
    "Verdict",
    "event_of",
    "metadata_options",
    "payload_bytes",
    "verdict_of_error",
    "verdict_of_response",
]

_log = logging.getLogger("grpc_channel.pubsub.runtime")

RAW_CONTENT_TYPE: Final = "application/octet-stream"
"""Content type of a message that is not a CloudEvent (a ``rawPayload`` publish)."""

_Status = appcallback_pb2.TopicEventResponse.TopicEventResponseStatus
_SUCCESS: Final = _Status.Value("SUCCESS")
_RETRY: Final = _Status.Value("RETRY")
_DROP: Final = _Status.Value("DROP")


class Verdict(enum.Enum):
    """What one delivery attempt decided."""

    SUCCESS = "success"
    RETRY = "retry"  # RETRY, an unknown status, or a gRPC error other than UNIMPLEMENTED
    DROP = "drop"
    UNIMPLEMENTED = "unimplemented"  # the app has no handler: acked, never retried


def verdict_of_response(response: appcallback_pb2.TopicEventResponse) -> Verdict:
    """SUCCESS (the default of an empty response), RETRY, DROP; an unknown status is RETRY."""
    status = response.status
    if status == _SUCCESS:
        return Verdict.SUCCESS
    if status == _DROP:
        return Verdict.DROP
    if status != _RETRY:
        _log.warning("app answered unknown topic event status %d; treating it as RETRY", status)
    return Verdict.RETRY


def verdict_of_error(code: grpc.StatusCode | None) -> Verdict:
    """UNIMPLEMENTED drops the event; every other failure (timeouts included) is retried."""
    return Verdict.UNIMPLEMENTED if code is grpc.StatusCode.UNIMPLEMENTED else Verdict.RETRY


def _raw_event(message: BrokerMessage, pubsub: str, topic: str) -> CloudEvent:
    # Dapr's wrapping of raw payloads: the bytes as data, the pubsub component as source.
    attributes = {
        "id": message.id,
        "source": pubsub,
        "type": DAPR_EVENT_TYPE,
        "specversion": SPEC_VERSION,
        "datacontenttype": RAW_CONTENT_TYPE,
        "topic": topic,
        "pubsubname": pubsub,
    }
    return CloudEvent(
        id=message.id,
        source=pubsub,
        type=DAPR_EVENT_TYPE,
        spec_version=SPEC_VERSION,
        data_content_type=RAW_CONTENT_TYPE,
        topic=topic,
        pubsub_name=pubsub,
        data=message.data,
        data_bytes=message.data,
        extensions=MappingProxyType({}),
        attributes=MappingProxyType(attributes),
    )


def event_of(message: BrokerMessage, pubsub: str, topic: str) -> CloudEvent:
    """The CloudEvent of ``message`` as subscription ``pubsub``/``topic`` delivers it.

    A payload that is not a valid CloudEvent is wrapped as Dapr wraps raw payloads (data = the
    bytes, content type ``application/octet-stream``, id = the message id). ``topic`` and
    ``pubsub_name`` are the subscription's, not the envelope's: a dead-lettered event keeps the
    envelope of its original topic but is delivered on the dead-letter topic.
    """
    try:
        return parse_cloud_event(message.data, topic=topic, pubsub_name=pubsub)
    except CloudEventError:
        return _raw_event(message, pubsub, topic)


def metadata_options(metadata: Mapping[str, str]) -> tuple[CallOption, ...]:
    """The message's metadata as gRPC call metadata. A key gRPC cannot carry (reserved, bad
    characters, a bad value) is left out and logged by name; values are never logged."""
    if not metadata:
        return ()
    try:
        return (call_metadata(dict(metadata)),)
    except OptionError:
        pass
    kept: dict[str, str] = {}
    for key, value in metadata.items():
        try:
            call_metadata(key, value)
        except OptionError:
            _log.warning("message metadata key %r cannot be sent as gRPC metadata; left out", key)
            continue
        kept[key] = value
    return (call_metadata(kept),) if kept else ()


def payload_bytes(data: object, content_type: str | None) -> tuple[bytes, str | None]:
    """``data`` as bytes, with the content type to publish it under.

    Bytes-like data goes as is (content type as given); a ``str`` as UTF-8 (``text/plain`` unless
    given); anything else as JSON (``application/json`` unless given; ints stay exact). A value
    JSON cannot encode raises ``TypeError`` naming its type.
    """
    if isinstance(data, bytes | bytearray | memoryview):
        return bytes(data), content_type
    if isinstance(data, str):
        return data.encode("utf-8"), content_type or "text/plain"
    try:
        encoded = json.dumps(data, separators=(",", ":"), ensure_ascii=False, allow_nan=False)
    except (TypeError, ValueError) as exc:
        raise TypeError(
            f"publish data of type {type(data).__name__} is not JSON-serialisable ({exc}); "
            "pass bytes, str, or a JSON value"
        ) from None
    return encoded.encode("utf-8"), content_type or "application/json"
