"""CloudEvents envelopes: built as Dapr builds them on publish, parsed back into deliveries."""

from __future__ import annotations

import base64
import json
import uuid
from datetime import datetime, timedelta, timezone
from typing import Any

import pytest
from dapr.proto.runtime.v1 import appcallback_pb2 as dapr_appcallback
from google.protobuf import json_format

from grpc_channel.pubsub import (
    CloudEventError,
    envelope_for_publish,
    is_json_content_type,
    new_cloud_event,
    parse_cloud_event,
)

MOMENT = datetime(2026, 12, 4, 19, 30, 5, 123456, tzinfo=timezone(timedelta(hours=2)))


def publish(data: bytes, content_type: str | None = None, **kwargs: Any) -> dict[str, Any]:
    raw = envelope_for_publish(
        data,
        source="checkout",
        topic="orders",
        pubsub_name="pubsub",
        data_content_type=content_type,
        time=MOMENT,
        **kwargs,
    )
    decoded = json.loads(raw)
    assert isinstance(decoded, dict)
    return decoded


def test_envelope_has_dapr_attributes() -> None:
    envelope = publish(
        b'{"id": 7}', "application/json", traceparent="00-ab-cd-01", tracestate="k=v"
    )
    assert uuid.UUID(envelope.pop("id")).version == 4
    assert envelope == {
        "source": "checkout",
        "type": "com.dapr.event.sent",
        "specversion": "1.0",
        "datacontenttype": "application/json",
        "topic": "orders",
        "pubsubname": "pubsub",
        "time": "2026-12-04T17:30:05.123456Z",
        "traceparent": "00-ab-cd-01",
        "tracestate": "k=v",
        "data": {"id": 7},
    }


def test_each_publish_gets_a_fresh_id_and_trace_is_absent_unless_given() -> None:
    first, second = publish(b"1"), publish(b"1")
    assert first["id"] != second["id"]
    assert "traceparent" not in first and "tracestate" not in first


@pytest.mark.parametrize("missing", ["source", "topic", "pubsub_name"])
def test_publish_needs_source_topic_and_pubsub(missing: str) -> None:
    names = {"source": "a", "topic": "t", "pubsub_name": "p", missing: ""}
    with pytest.raises(CloudEventError) as caught:
        new_cloud_event(
            b"{}", source=names["source"], topic=names["topic"], pubsub_name=names["pubsub_name"]
        )
    assert caught.value.attribute == missing.replace("_name", "name")


def test_parsed_event_is_read_only() -> None:
    event = parse_cloud_event(json.dumps(publish(b"{}", "application/json")))
    with pytest.raises(TypeError):
        event.attributes["id"] = "changed"  # type: ignore[index]
    with pytest.raises(AttributeError):
        event.id = "changed"  # type: ignore[misc]


def test_naive_time_is_refused() -> None:
    with pytest.raises(ValueError, match="timezone-aware"):
        new_cloud_event(b"", source="a", topic="t", pubsub_name="p", time=datetime(2026, 1, 1))


@pytest.mark.parametrize(
    ("data", "given", "expected"),
    [(b"", None, "text/plain"), (b"{}", None, "application/json"), (b"", "text/csv", "text/csv")],
)
def test_default_content_type(data: bytes, given: str | None, expected: str) -> None:
    assert publish(data, given)["datacontenttype"] == expected


def test_empty_payload_carries_no_data() -> None:
    envelope = publish(b"")
    assert "data" not in envelope and "data_base64" not in envelope


def test_big_integers_stay_exact() -> None:
    """Dapr issue 3837: 2**63 + 1 must not come back as 9223372036854775808."""
    payload = b'{"n": 9223372036854775809, "m": -123456789012345678901234567890}'
    envelope = publish(payload, "application/json")
    assert envelope["data"] == {"n": 2**63 + 1, "m": -123456789012345678901234567890}
    event = parse_cloud_event(envelope_for_publish(payload, source="a", topic="t", pubsub_name="p"))
    assert event.data_bytes == b'{"n":9223372036854775809,"m":-123456789012345678901234567890}'


def test_plus_json_content_types_are_delivered_as_json() -> None:
    envelope = publish(b'{"a": [1, 2.5]}', "application/vnd.orders+json; charset=utf-8")
    assert envelope["data"] == {"a": [1, 2.5]}
    event = parse_cloud_event(json.dumps(envelope))
    assert event.data_bytes == b'{"a":[1,2.5]}'


@pytest.mark.parametrize(
    ("content_type", "expected"),
    [
        ("application/json", True),
        ("Application/JSON; charset=utf-8", True),
        ("application/cloudevents+json", True),
        ("application/problem+json", True),
        ("text/json", False),
        ("application/jsonx", False),
        ("application/octet-stream", False),
    ],
)
def test_json_content_type_detection(content_type: str, expected: bool) -> None:
    assert is_json_content_type(content_type) is expected


def test_text_goes_to_data_as_a_string() -> None:
    envelope = publish("héllo".encode(), "text/plain; charset=utf-8")
    assert envelope["data"] == "héllo"
    assert parse_cloud_event(json.dumps(envelope)).data_bytes == "héllo".encode()


@pytest.mark.parametrize(
    ("data", "content_type"),
    [
        (b"\x00\x01\xff", "application/octet-stream"),
        (b"{not json", "application/json"),
        (b"\xff\xfe", "text/plain"),  # not UTF-8
        (b'{"x": 1e999}', "application/json"),  # no double holds it: not corrupted into Infinity
        (b"NaN", "application/json"),
    ],
)
def test_other_payloads_go_to_data_base64_and_come_back_byte_exact(
    data: bytes, content_type: str
) -> None:
    envelope = publish(data, content_type)
    assert "data" not in envelope
    assert base64.b64decode(envelope["data_base64"]) == data
    event = parse_cloud_event(json.dumps(envelope))
    assert event.data_bytes == data
    assert event.data_content_type == content_type


def test_existing_cloud_event_is_kept_and_only_missing_attributes_filled() -> None:
    own = {
        "id": "mine",
        "type": "order.created",
        "specversion": "1.0",
        "subject": "o-1",
        "data": {"n": 12345678901234567890},
        "datacontenttype": "application/json",
    }
    envelope = publish(json.dumps(own).encode(), "application/cloudevents+json")
    assert envelope == {**own, "source": "checkout", "topic": "orders", "pubsubname": "pubsub"}


@pytest.mark.parametrize("payload", [b"[1, 2]", b"not json", b""])
def test_a_cloud_event_payload_must_be_a_json_object(payload: bytes) -> None:
    with pytest.raises(CloudEventError, match="'envelope'") as caught:
        publish(payload, "application/cloudevents+json")
    assert caught.value.attribute == "envelope"


@pytest.mark.parametrize("flag", ["true", "True"])
def test_raw_payload_passes_bytes_untouched(flag: str) -> None:
    data = b"\x00raw{not json"
    raw = envelope_for_publish(
        data, source="a", topic="t", pubsub_name="p", metadata={"rawPayload": flag}
    )
    assert raw == data


def test_raw_payload_false_still_wraps() -> None:
    assert publish(b"1", metadata={"rawPayload": "false"})["data"] == 1


def test_parsed_event_becomes_a_topic_event_request_dapr_can_read() -> None:
    stored = envelope_for_publish(
        b'{"price": 150}',
        source="checkout",
        topic="orders",
        pubsub_name="pubsub",
        traceparent="00-ab-cd-01",
        event_id="e-1",
        time=MOMENT,
    )
    request = parse_cloud_event(stored).to_topic_event_request("/orders/big")
    theirs = dapr_appcallback.TopicEventRequest.FromString(request.SerializeToString())
    assert (theirs.id, theirs.source, theirs.type, theirs.spec_version) == (
        "e-1",
        "checkout",
        "com.dapr.event.sent",
        "1.0",
    )
    assert (theirs.data_content_type, theirs.topic, theirs.pubsub_name, theirs.path) == (
        "application/json",
        "orders",
        "pubsub",
        "/orders/big",
    )
    assert theirs.data == b'{"price":150}'
    assert json_format.MessageToDict(theirs.extensions) == {
        "time": "2026-12-04T17:30:05.123456Z",
        "traceparent": "00-ab-cd-01",
    }


def test_cel_activation_shows_parsed_data_and_hides_base64() -> None:
    event = parse_cloud_event(json.dumps(publish(b'{"price": 150}', "application/json")))
    assert event.cel_activation()["data"] == {"price": 150}
    binary = parse_cloud_event(json.dumps(publish(b"\x00\x01", "application/octet-stream")))
    view = binary.cel_activation()
    assert view["data"] == b"\x00\x01" and "data_base64" not in view


def test_missing_content_type_reads_as_json_or_octet_stream() -> None:
    base = {"id": "1", "source": "s", "type": "t", "specversion": "1.0"}
    assert parse_cloud_event(json.dumps({**base, "data": {"a": 1}})).data_content_type == (
        "application/json"
    )
    binary = parse_cloud_event(json.dumps({**base, "data_base64": "AAE="}))
    assert (binary.data_content_type, binary.data_bytes) == ("application/octet-stream", b"\0\1")
    empty = parse_cloud_event(json.dumps(base))
    assert (empty.data, empty.data_bytes, empty.topic) == (None, b"", "")


def test_json_string_data_is_delivered_as_json_text() -> None:
    base = {"id": "1", "source": "s", "type": "t", "specversion": "1.0"}
    event = parse_cloud_event(json.dumps({**base, "data": "hi", "datacontenttype": "text/plain"}))
    assert event.data_bytes == b"hi"
    as_json = parse_cloud_event(json.dumps({**base, "data": "hi"}))
    assert as_json.data_bytes == b'"hi"'


@pytest.mark.parametrize(
    ("envelope", "attribute"),
    [
        (b"[]", "envelope"),
        (b"{", "envelope"),
        (b"\xff", "envelope"),
        (b'{"source": "s", "type": "t", "specversion": "1.0"}', "id"),
        (b'{"id": "", "source": "s", "type": "t", "specversion": "1.0"}', "id"),
        (b'{"id": "1", "type": "t", "specversion": "1.0"}', "source"),
        (b'{"id": "1", "source": "s", "type": 3, "specversion": "1.0"}', "type"),
        (b'{"id": "1", "source": "s", "type": "t", "specversion": "0.3"}', "specversion"),
        (b'{"id": "1", "source": "s", "type": "t", "specversion": "1.0", "topic": 1}', "topic"),
        (
            b'{"id": "1", "source": "s", "type": "t", "specversion": "1.0", "data": 1,'
            b' "data_base64": "AA=="}',
            "data_base64",
        ),
        (
            b'{"id": "1", "source": "s", "type": "t", "specversion": "1.0", "data_base64": "@@"}',
            "data_base64",
        ),
        (
            b'{"id": "1", "source": "s", "type": "t", "specversion": "1.0", "data_base64": 5}',
            "data_base64",
        ),
    ],
)
def test_malformed_envelopes_name_the_attribute(envelope: bytes, attribute: str) -> None:
    with pytest.raises(CloudEventError) as caught:
        parse_cloud_event(envelope)
    assert caught.value.attribute == attribute
    assert repr(attribute) in str(caught.value)
    assert isinstance(caught.value, ValueError)


def test_an_extension_no_double_can_hold_is_named() -> None:
    stored = json.dumps(
        {"id": "1", "source": "s", "type": "t", "specversion": "1.0", "huge": 10**400}
    )
    event = parse_cloud_event(stored)
    assert event.extensions == {"huge": 10**400}
    with pytest.raises(CloudEventError, match="'huge'"):
        event.to_topic_event_request()


@pytest.mark.parametrize(
    ("payload", "content_type"),
    [
        (b'{"n": 12345678901234567890123, "x": 1.10, "s": "\xc3\xa9", "l": [1, -0.0, null]}', None),
        (b"plain text", "text/plain"),
        (b"\x00\xff", "application/octet-stream"),
        (b'{"id": "own", "source": "s", "type": "t", "specversion": "1.0", "data": [1]}',
         "application/cloudevents+json"),
    ],
)  # fmt: skip
def test_an_envelope_published_here_parses_as_its_bytes_do(
    payload: bytes, content_type: str | None
) -> None:
    """Envelopes this process just wrote are parsed from the dict they were written from (once);
    the event is the same as decoding the bytes gives, and shares no objects with another
    parse of them."""
    raw = envelope_for_publish(
        payload, source="app", topic="orders", pubsub_name="pubsub", data_content_type=content_type
    )
    first = parse_cloud_event(raw, topic="dead", pubsub_name="other")
    again = parse_cloud_event(raw, topic="dead", pubsub_name="other")
    decoded = parse_cloud_event(raw.decode("utf-8"), topic="dead", pubsub_name="other")
    assert first == again == decoded
    assert dict(first.attributes) == json.loads(raw)
    assert (first.topic, first.pubsub_name) == ("dead", "other")
    assert first.attributes["topic"] == "orders"
    assert first.attributes is not again.attributes
    if isinstance(first.data, list | dict):
        assert first.data is not again.data
    assert first.to_topic_event_request("/p") == decoded.to_topic_event_request("/p")


@pytest.mark.parametrize(
    "payload",
    [
        b'{"k": "\xc3\xa9\\u2028\\"", "big": 12345678901234567890123, "f": [1.10, -0.0, 1e300]}',
        b'"just a string"',
        b"[true, false, null, {}, []]",
        b"-7",
    ],
)
def test_envelope_bytes_and_delivered_data_are_compact_json(payload: bytes) -> None:
    # The envelope and the delivered data are exactly what json.dumps writes (compact, UTF-8,
    # shortest float repr, exact ints), whichever encoder produces them.
    raw = envelope_for_publish(
        payload, source="a", topic="t", pubsub_name="p", data_content_type="application/json"
    )
    document = json.loads(raw)
    assert raw == json.dumps(document, separators=(",", ":"), ensure_ascii=False).encode()
    expected_data = json.dumps(json.loads(payload), separators=(",", ":"), ensure_ascii=False)
    for stored in (raw, bytes(raw)):  # the one this process remembers, then a fresh decode
        assert parse_cloud_event(stored).data_bytes == expected_data.encode()


def test_extensions_go_into_the_request_and_a_bad_one_among_good_ones_is_named() -> None:
    good = {"id": "1", "source": "s", "type": "t", "specversion": "1.0", "a": "x", "b": [1, 2]}
    request = parse_cloud_event(json.dumps(good)).to_topic_event_request("/p")
    assert json_format.MessageToDict(request.extensions) == {"a": "x", "b": [1, 2]}
    assert request.path == "/p"
    bare = {"id": "1", "source": "s", "type": "t", "specversion": "1.0"}
    # No extensions: the field is still set (an empty Struct), as it always was.
    assert parse_cloud_event(json.dumps(bare)).to_topic_event_request().HasField("extensions")
    with pytest.raises(CloudEventError, match="'huge'"):
        parse_cloud_event(json.dumps({**good, "huge": 10**400})).to_topic_event_request()
