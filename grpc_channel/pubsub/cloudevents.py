"""CloudEvents 1.0 JSON envelopes, built as Dapr builds them on publish and read back on delivery.

Publishing (:func:`envelope_for_publish` → bytes to hand to a broker; :func:`new_cloud_event` →
the envelope as a dict):

- attributes: ``id`` (a fresh uuid4 unless given), ``source`` (the publishing app id), ``type``
  ``"com.dapr.event.sent"``, ``specversion`` ``"1.0"``, ``datacontenttype``, ``topic``,
  ``pubsubname``, ``time`` (RFC 3339, UTC, microseconds, ``Z``), and ``traceparent`` /
  ``tracestate`` only when given.
- ``datacontenttype`` is the caller's; when none is given it is ``"text/plain"`` for an empty
  payload and ``"application/json"`` otherwise.
- the payload goes to ``data`` as a JSON value when the content type is JSON (``application/json``
  or any ``application/*+json``, parameters and case ignored) and the bytes parse; as a string for
  ``text/*`` when the bytes are UTF-8; otherwise to ``data_base64``. An empty payload gives no data
  attribute at all.
- a payload whose content type is ``application/cloudevents+json`` is already an envelope: it is
  kept as is, and only the missing ones of ``id``, ``source``, ``type``, ``specversion``, ``topic``
  and ``pubsubname`` are filled in. It must be a JSON object (:class:`CloudEventError` otherwise).
- metadata ``rawPayload: "true"`` (case-insensitive) passes the bytes through untouched: no
  envelope.

Unlike Dapr, JSON integers stay exact at any size (``json`` keeps them as ``int``; nothing goes
through a float, Dapr issue 3837), and ``application/*+json`` data is delivered rather than emptied.
Non-integer numbers become the nearest double and are written in its shortest form (``1.10`` is
written ``1.1``); a number too large for a double, ``NaN`` or ``Infinity`` makes the payload "not
JSON", so it travels as ``data_base64`` instead of being corrupted.

Delivering (:func:`parse_cloud_event` → :class:`CloudEvent`): a stored envelope is checked (a JSON
object; ``id``, ``source``, ``type`` non-empty strings; ``specversion`` ``"1.0"``; optional string
attributes are strings; not both ``data`` and ``data_base64``) and turned into a
``TopicEventRequest`` (:meth:`CloudEvent.to_topic_event_request`) or into the dict CEL routing
rules see (:meth:`CloudEvent.cel_activation`). A missing ``datacontenttype`` reads as
``"application/json"`` (the CloudEvents JSON format's rule), or ``"application/octet-stream"`` when
the event carries ``data_base64``. Every malformed envelope raises :class:`CloudEventError`, a
``ValueError`` naming the offending attribute.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import json
import math
import time as _time
import uuid
from _json import encode_basestring, make_encoder
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from types import MappingProxyType
from typing import Any, Final

from google.protobuf import struct_pb2

from grpc_channel.v1 import appcallback_pb2

__all__ = [
    "CLOUDEVENTS_CONTENT_TYPE",
    "DAPR_EVENT_TYPE",
    "RAW_PAYLOAD_METADATA_KEY",
    "SPEC_VERSION",
    "CloudEvent",
    "CloudEventError",
    "envelope_for_publish",
    "is_json_content_type",
    "is_raw_payload",
    "is_text_content_type",
    "new_cloud_event",
    "parse_cloud_event",
]

DAPR_EVENT_TYPE: Final = "com.dapr.event.sent"
"""The ``type`` Dapr gives the events it wraps."""
SPEC_VERSION: Final = "1.0"
"""The only CloudEvents ``specversion`` written and accepted."""
CLOUDEVENTS_CONTENT_TYPE: Final = "application/cloudevents+json"
"""Content type of a payload that already is a CloudEvent."""
RAW_PAYLOAD_METADATA_KEY: Final = "rawPayload"
"""Publish metadata key; the value ``"true"`` sends the bytes without an envelope."""

_JSON_DEFAULT: Final = "application/json"
_EMPTY_DEFAULT: Final = "text/plain"
_BINARY_DEFAULT: Final = "application/octet-stream"

# Attributes that have a field of their own in TopicEventRequest (or are the data itself);
# every other attribute is an extension.
_MAPPED_ATTRIBUTES: Final = frozenset(
    {
        "id",
        "source",
        "type",
        "specversion",
        "datacontenttype",
        "topic",
        "pubsubname",
        "data",
        "data_base64",
    }
)
_REQUIRED_ATTRIBUTES: Final = ("id", "source", "type", "specversion")
_OPTIONAL_STRING_ATTRIBUTES: Final = ("datacontenttype", "topic", "pubsubname")


class CloudEventError(ValueError):
    """A CloudEvent envelope (or a payload claiming to be one) is malformed.

    ``attribute`` names the offending attribute (``"envelope"`` when the whole document is wrong).
    """

    def __init__(self, attribute: str, problem: str) -> None:
        super().__init__(f"CloudEvent attribute {attribute!r}: {problem}")
        self.attribute = attribute


def _media_type(content_type: str) -> str:
    return content_type.split(";", 1)[0].strip().lower()


def is_json_content_type(content_type: str) -> bool:
    """True for ``application/json`` and any ``application/*+json`` (parameters ignored)."""
    media = _media_type(content_type)
    return media == _JSON_DEFAULT or (media.startswith("application/") and media.endswith("+json"))


def is_text_content_type(content_type: str) -> bool:
    """True for any ``text/*`` media type (parameters ignored)."""
    return _media_type(content_type).startswith("text/")


def is_raw_payload(metadata: Mapping[str, str] | None) -> bool:
    """True when publish metadata asks for the bytes to be sent without an envelope."""
    if metadata is None:
        return False
    return metadata.get(RAW_PAYLOAD_METADATA_KEY, "").strip().lower() == "true"


def _reject_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


def _finite_float(text: str) -> float:
    value = float(text)
    if not math.isfinite(value):
        raise ValueError(f"number {text} does not fit a double")
    return value


# Built once: json.loads/json.dumps with any non-default argument build a new decoder/encoder
# (and its scanner) per call, which costs more than decoding a small envelope.
_DECODER: Final = json.JSONDecoder(parse_constant=_reject_constant, parse_float=_finite_float)
_ENCODER: Final = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False)
# The C encoder behind _ENCODER, also built once: JSONEncoder.encode builds a new one per call,
# a third of the cost of encoding an envelope. Same output as _ENCODER.encode (compact, UTF-8
# strings, shortest float repr, NaN written as NaN). No cycle check (markers None): everything
# encoded here came out of the JSON decoder, and a cycle cannot. Stateless, so thread-safe.
_C_ENCODE: Final = make_encoder(
    None, _ENCODER.default, encode_basestring, None, ":", ",", False, False, True
)


def _loads(raw: bytes | str) -> Any:
    """Strict JSON: ints stay exact ints; NaN, Infinity and overflowing numbers are refused.
    Bytes are decoded as ``json.loads`` decodes them (UTF-8, -16 or -32, BOM allowed); a str
    starting with a BOM is refused, as ``json.loads`` refuses it."""
    if isinstance(raw, str):
        if raw.startswith("\ufeff"):
            raise json.JSONDecodeError("Unexpected UTF-8 BOM (decode using utf-8-sig)", raw, 0)
        return _DECODER.decode(raw)
    if not isinstance(raw, bytes | bytearray):
        raise TypeError(
            f"the JSON object must be str, bytes or bytearray, not {type(raw).__name__}"
        )
    return _DECODER.decode(raw.decode(json.detect_encoding(raw), "surrogatepass"))


def _dumps(value: Any) -> bytes:
    return "".join(_C_ENCODE(value, 0)).encode("utf-8")


def _rfc3339_utc(moment: datetime) -> str:
    if moment.tzinfo is None:
        raise ValueError("time must be timezone-aware (naive datetimes are ambiguous)")
    text = moment.astimezone(UTC).isoformat(timespec="microseconds")
    return text.replace("+00:00", "Z")


# The current second's "YYYY-MM-DDTHH:MM:SS", reused while the second lasts: formatting a
# datetime per published event cost more than the rest of the envelope.
_second_prefix: tuple[int, str] = (-1, "")


def _now_rfc3339() -> str:
    """Now as :func:`_rfc3339_utc` writes it (UTC, microseconds, ``Z``)."""
    global _second_prefix
    second, nanos = divmod(_time.time_ns(), 1_000_000_000)
    cached, prefix = _second_prefix
    if second != cached:
        prefix = datetime.fromtimestamp(second, UTC).strftime("%Y-%m-%dT%H:%M:%S")
        _second_prefix = (second, prefix)
    return f"{prefix}.{nanos // 1000:06d}Z"


def _place_data(envelope: dict[str, Any], data: bytes, content_type: str) -> None:
    """Put the payload under ``data`` or ``data_base64`` as the content type says."""
    if not data:
        return
    if is_json_content_type(content_type):
        try:
            envelope["data"] = _loads(data)
            return
        except ValueError:  # also UnicodeDecodeError and json.JSONDecodeError
            pass
    elif is_text_content_type(content_type):
        try:
            envelope["data"] = data.decode("utf-8")
            return
        except UnicodeDecodeError:
            pass
    envelope["data_base64"] = base64.b64encode(data).decode("ascii")


def _existing_cloud_event(data: bytes) -> dict[str, Any]:
    try:
        document = _loads(data)
    except ValueError as exc:
        raise CloudEventError("envelope", f"payload is not valid JSON ({exc})") from None
    if not isinstance(document, dict):
        kind = type(document).__name__
        raise CloudEventError("envelope", f"must be a JSON object, got {kind}")
    return document


def new_cloud_event(
    data: bytes,
    *,
    source: str,
    topic: str,
    pubsub_name: str,
    data_content_type: str | None = None,
    traceparent: str | None = None,
    tracestate: str | None = None,
    event_id: str | None = None,
    time: datetime | None = None,
) -> dict[str, Any]:
    """The CloudEvent envelope Dapr would publish for ``data``, as a JSON-ready dict.

    ``event_id`` defaults to a fresh uuid4, ``time`` to now (it must be timezone-aware). A
    ``data_content_type`` of ``application/cloudevents+json`` keeps the payload's own envelope and
    fills only its missing required attributes (raising :class:`CloudEventError` when the payload is
    not a JSON object). An empty ``source``, ``topic`` or ``pubsub_name`` raises
    :class:`CloudEventError` naming the attribute.
    """
    for attribute, value in (("source", source), ("topic", topic), ("pubsubname", pubsub_name)):
        if not value:
            raise CloudEventError(attribute, "is required and must be a non-empty string")
    if data_content_type and _media_type(data_content_type) == CLOUDEVENTS_CONTENT_TYPE:
        envelope = _existing_cloud_event(data)
        defaults = {
            "id": event_id or str(uuid.uuid4()),
            "source": source,
            "type": DAPR_EVENT_TYPE,
            "specversion": SPEC_VERSION,
            "topic": topic,
            "pubsubname": pubsub_name,
        }
        for key, value in defaults.items():
            envelope.setdefault(key, value)
        return envelope

    content_type = data_content_type or (_JSON_DEFAULT if data else _EMPTY_DEFAULT)
    envelope = {
        "id": event_id or str(uuid.uuid4()),
        "source": source,
        "type": DAPR_EVENT_TYPE,
        "specversion": SPEC_VERSION,
        "datacontenttype": content_type,
        "topic": topic,
        "pubsubname": pubsub_name,
        "time": _now_rfc3339() if time is None else _rfc3339_utc(time),
    }
    if traceparent:
        envelope["traceparent"] = traceparent
    if tracestate:
        envelope["tracestate"] = tracestate
    _place_data(envelope, data, content_type)
    return envelope


def envelope_for_publish(
    data: bytes,
    *,
    source: str,
    topic: str,
    pubsub_name: str,
    data_content_type: str | None = None,
    metadata: Mapping[str, str] | None = None,
    traceparent: str | None = None,
    tracestate: str | None = None,
    event_id: str | None = None,
    time: datetime | None = None,
) -> bytes:
    """The bytes a broker stores for one publish: ``data`` itself under ``rawPayload``, otherwise
    the compact JSON of :func:`new_cloud_event` (same arguments and errors)."""
    if is_raw_payload(metadata):
        return bytes(data)
    envelope = new_cloud_event(
        data,
        source=source,
        topic=topic,
        pubsub_name=pubsub_name,
        data_content_type=data_content_type,
        traceparent=traceparent,
        tracestate=tracestate,
        event_id=event_id,
        time=time,
    )
    raw = _dumps(envelope)
    _remember(raw, envelope)
    return raw


# Envelopes this process wrote lately, with the dict they were written from: a delivery in the
# same process (a runtime delivering what it published) takes that dict instead of decoding the
# bytes again. The dict is exactly what decoding the bytes gives (JSON written by _dumps reads
# back equal: exact ints, shortest-repr doubles, strings), and validation still runs on it. Each
# entry serves one parse and is removed (a redelivery, or a second group, decodes afresh, so no
# two events share objects). Bounded in entries and envelope size; a miss just decodes.
_RECENT_LIMIT: Final = 256
_RECENT_MAX_BYTES: Final = 16 * 1024
_recent: dict[bytes, dict[str, Any]] = {}


def _remember(raw: bytes, envelope: dict[str, Any]) -> None:
    if len(raw) > _RECENT_MAX_BYTES:
        return
    if len(_recent) >= _RECENT_LIMIT:
        # The oldest goes. Another thread may change the dict meanwhile: then skip eviction once.
        with contextlib.suppress(KeyError, RuntimeError, StopIteration):
            del _recent[next(iter(_recent))]
    _recent[raw] = envelope


@dataclass(frozen=True)
class CloudEvent:
    """One parsed CloudEvent envelope (see :func:`parse_cloud_event`).

    ``data`` is the data as the envelope holds it: a JSON value, a string, the decoded bytes of
    ``data_base64``, or ``None`` when the event carries no data. ``data_bytes`` is what the
    subscriber receives: compact JSON for JSON content types (and for non-string data), UTF-8 for
    a string, the decoded bytes for ``data_base64``, ``b""`` for no data. ``extensions`` holds
    every attribute that has no field of its own in ``TopicEventRequest`` (``time``, ``subject``,
    ``traceparent``...). ``attributes`` is the whole envelope as parsed (both read-only views).
    """

    id: str
    source: str
    type: str
    spec_version: str
    data_content_type: str
    topic: str
    pubsub_name: str
    data: Any
    data_bytes: bytes
    extensions: Mapping[str, Any] = field(default_factory=dict)
    attributes: Mapping[str, Any] = field(default_factory=dict, repr=False)

    def to_topic_event_request(self, path: str = "") -> appcallback_pb2.TopicEventRequest:
        """The delivery message for this event; ``path`` is the route the router chose.

        Raises :class:`CloudEventError` when an extension holds a number no double can carry
        (``google.protobuf.Struct`` stores numbers as doubles).
        """
        request = appcallback_pb2.TopicEventRequest(
            id=self.id,
            source=self.source,
            type=self.type,
            spec_version=self.spec_version,
            data_content_type=self.data_content_type,
            topic=self.topic,
            data=self.data_bytes,
            pubsub_name=self.pubsub_name,
            path=path,
        )
        # Filled in place, all at once (the common case): a Struct built apart and passed to the
        # constructor would be copied into the request. Set even when empty, as it always was.
        request.extensions.SetInParent()
        try:
            request.extensions.update(self.extensions)
        except (OverflowError, ValueError, TypeError):
            # Names the one that cannot be carried (and replaces what was half-added).
            request.extensions.CopyFrom(self._extensions_one_by_one())
        return request

    def _extensions_one_by_one(self) -> struct_pb2.Struct:
        extensions = struct_pb2.Struct()
        for key, value in self.extensions.items():
            try:
                extensions.update({key: value})
            except (OverflowError, ValueError, TypeError) as exc:
                raise CloudEventError(key, f"cannot be carried as an extension ({exc})") from None
        return extensions

    def cel_activation(self) -> dict[str, Any]:
        """The envelope as routing rules see it, under the name ``event``.

        ``event.data`` is the parsed JSON value (for JSON content types), the string, or the
        decoded bytes of ``data_base64``; ``data_base64`` itself is not shown.
        """
        view = {k: v for k, v in self.attributes.items() if k != "data_base64"}
        view["datacontenttype"] = self.data_content_type
        if self.data is not None:
            view["data"] = self.data
        return view


def _data_of(envelope: Mapping[str, Any], content_type: str) -> tuple[Any, bytes]:
    if "data_base64" in envelope:
        encoded = envelope["data_base64"]
        if not isinstance(encoded, str):
            raise CloudEventError("data_base64", "must be a base64 string")
        try:
            decoded = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError) as exc:
            raise CloudEventError("data_base64", f"is not valid base64 ({exc})") from None
        return decoded, decoded
    if "data" not in envelope:
        return None, b""
    value = envelope["data"]
    if isinstance(value, str) and not is_json_content_type(content_type):
        return value, value.encode("utf-8")
    return value, _dumps(value)


def parse_cloud_event(
    raw: bytes | str, *, topic: str | None = None, pubsub_name: str | None = None
) -> CloudEvent:
    """Parse a stored envelope; raise :class:`CloudEventError` naming what is malformed.

    ``topic`` / ``pubsub_name``, when given, replace the envelope's in the event's fields (a
    delivery reports the subscription's, see the runtime); ``attributes`` keeps the envelope's.
    By default the fields are the envelope's (``""`` when it has none).
    """
    envelope = _recent.pop(raw, None) if type(raw) is bytes else None
    if envelope is None:
        try:
            envelope = _loads(raw)
        except (ValueError, TypeError) as exc:
            raise CloudEventError("envelope", f"is not valid JSON ({exc})") from None
    if not isinstance(envelope, dict):
        kind = type(envelope).__name__
        raise CloudEventError("envelope", f"must be a JSON object, got {kind}")
    for name in _REQUIRED_ATTRIBUTES:
        value = envelope.get(name)
        if not isinstance(value, str) or not value:
            raise CloudEventError(
                name, f"is required and must be a non-empty string, got {value!r}"
            )
    if envelope["specversion"] != SPEC_VERSION:
        spec = envelope["specversion"]
        raise CloudEventError("specversion", f"must be {SPEC_VERSION!r}, got {spec!r}")
    for name in _OPTIONAL_STRING_ATTRIBUTES:
        if name in envelope and not isinstance(envelope[name], str):
            raise CloudEventError(name, f"must be a string, got {envelope[name]!r}")
    if "data" in envelope and "data_base64" in envelope:
        raise CloudEventError("data_base64", "cannot be present together with 'data'")
    default_type = _BINARY_DEFAULT if "data_base64" in envelope else _JSON_DEFAULT
    content_type = envelope.get("datacontenttype") or default_type
    data, data_bytes = _data_of(envelope, content_type)
    return CloudEvent(
        id=envelope["id"],
        source=envelope["source"],
        type=envelope["type"],
        spec_version=envelope["specversion"],
        data_content_type=content_type,
        topic=envelope.get("topic", "") if topic is None else topic,
        pubsub_name=envelope.get("pubsubname", "") if pubsub_name is None else pubsub_name,
        data=data,
        data_bytes=data_bytes,
        extensions=MappingProxyType(
            {k: v for k, v in envelope.items() if k not in _MAPPED_ATTRIBUTES}
        ),
        attributes=MappingProxyType(envelope),
    )
