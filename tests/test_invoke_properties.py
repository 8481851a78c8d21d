"""Property tests for grpc_channel.invoke (hypothesis, 500 examples each)."""

from __future__ import annotations

from dapr.proto.common.v1 import common_pb2 as dapr_common_pb2
from google.protobuf import any_pb2, wrappers_pb2
from hypothesis import given, settings
from hypothesis import strategies as st

from grpc_channel.invoke import (
    HTTPVerb,
    InvokeError,
    InvokeMethodRequest,
    InvokeMethodResponse,
    InvokeStatus,
)
from grpc_channel.metadata import Metadata, MetadataValue
from grpc_channel.v1 import internals_pb2

SETTINGS = settings(max_examples=500, deadline=None)

int32 = st.integers(min_value=-(2**31), max_value=2**31 - 1)
short_text = st.text(max_size=12)
internal_md = st.dictionaries(short_text, st.lists(short_text, max_size=3), max_size=4)
verbs = st.one_of(short_text, st.sampled_from(list(HTTPVerb)))
data = st.one_of(
    st.none(),
    st.tuples(st.binary(max_size=24), short_text),
    st.builds(wrappers_pb2.StringValue, value=short_text),
)


@SETTINGS
@given(
    st.text(min_size=1, max_size=16),
    int32,
    internal_md,
    data,
    st.one_of(st.none(), st.tuples(verbs, short_text)),
)
def test_request_internal_round_trip(
    method: str,
    version: int,
    metadata: dict[str, list[str]],
    payload: tuple[bytes, str] | wrappers_pb2.StringValue | None,
    http: tuple[str | HTTPVerb, str] | None,
) -> None:
    req = InvokeMethodRequest(method).with_api_version(version).with_metadata(metadata)
    if isinstance(payload, tuple):
        req.with_data(*payload)
    elif payload is not None:
        req.with_message(payload)
    if http is not None:
        req.with_http_extension(*http)
    wire = req.to_internal().SerializeToString()
    back = InvokeMethodRequest.from_internal(internals_pb2.InternalInvokeRequest.FromString(wire))
    assert back == req
    assert back.metadata == metadata and back.api_version == version
    # What OnInvoke receives parses as Dapr's own InvokeRequest with the same fields.
    theirs = dapr_common_pb2.InvokeRequest.FromString(req.to_invoke_request().SerializeToString())
    assert theirs.method == method and theirs.data.value == req.data
    assert theirs.http_extension.verb == req.http_verb.value


any_text = st.text(st.one_of(st.characters(), st.characters(categories=["Cs"])), max_size=8)


@SETTINGS
@given(any_text, any_text, any_text, st.dictionaries(any_text, st.lists(any_text, max_size=2)))
def test_text_fields_are_refused_with_invoke_error_or_serialise(
    method: str, content_type: str, querystring: str, metadata: dict[str, list[str]]
) -> None:
    try:
        req = (
            InvokeMethodRequest(method)
            .with_data(b"", content_type)
            .with_http_extension("GET", querystring)
            .with_metadata(metadata)
        )
    except InvokeError:
        return
    wire = req.to_internal().SerializeToString()
    assert (
        InvokeMethodRequest.from_internal(internals_pb2.InternalInvokeRequest.FromString(wire))
        == req
    )


@SETTINGS
@given(any_text)
def test_any_verb_string_is_a_known_verb_or_post(verb: str) -> None:
    got = InvokeMethodRequest("m").with_http_extension(verb).http_verb
    expected = HTTPVerb.__members__.get(verb.upper(), HTTPVerb.POST)
    assert got is expected


codes = st.one_of(st.integers(0, 16), st.integers(100, 999))
details = st.lists(
    st.builds(any_pb2.Any, type_url=short_text, value=st.binary(max_size=12)), max_size=3
)
# Received metadata: any well-formed key, any str or bytes value, as a peer may send it.
received_keys = st.text("abcdefghijklmnopqrstuvwxyz0123456789-_.", min_size=1, max_size=10).map(
    lambda k: k if len(k) % 3 else k + "-bin"
) | st.sampled_from(["user-agent", "grpc-status-details-bin", "content-type"])


def fit(pair: tuple[str, str | bytes]) -> tuple[str, MetadataValue]:
    key, value = pair
    if key.endswith("-bin"):
        return key, value.encode() if isinstance(value, str) else value
    return key, value if isinstance(value, str) else value.decode("latin-1")


received = st.lists(
    st.tuples(received_keys, st.one_of(short_text, st.binary(max_size=8))).map(fit), max_size=5
)


@SETTINGS
@given(codes, short_text, details, received, received, st.one_of(st.none(), st.binary(max_size=16)))
def test_response_internal_round_trip(
    code: int,
    message: str,
    status_details: list[any_pb2.Any],
    headers: list[tuple[str, MetadataValue]],
    trailers: list[tuple[str, MetadataValue]],
    payload: bytes | None,
) -> None:
    rsp = InvokeMethodResponse.from_status(code, message, status_details, headers, trailers)
    if payload is not None:
        rsp.with_data(payload, "application/octet-stream")
    wire = rsp.to_internal().SerializeToString()
    back = InvokeMethodResponse.from_internal(internals_pb2.InternalInvokeResponse.FromString(wire))
    assert back.status == InvokeStatus(code, message, status_details)
    assert back.headers == Metadata.from_grpc(headers)
    assert back.trailers == Metadata.from_grpc(trailers)
    assert back.data == (payload or b"")
    assert back.is_http_response == (code >= 100)
