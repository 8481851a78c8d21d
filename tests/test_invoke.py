"""grpc_channel.invoke: request/response building, wire objects, conversions, real RPC errors."""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import grpc
import pytest
from dapr.proto.common.v1 import common_pb2 as dapr_common_pb2
from google.protobuf import any_pb2, wrappers_pb2
from google.rpc import error_details_pb2, status_pb2
from support_harness import FAIL, FAIL_MESSAGE, PLAIN, bad_request_detail, free_port

from grpc_channel.interceptors._errors import LocalRpcError
from grpc_channel.invoke import (
    PROTOBUF_CONTENT_TYPE,
    APIVersion,
    HTTPVerb,
    InvokeError,
    InvokeMethodRequest,
    InvokeMethodResponse,
    InvokeStatus,
    InvokeStatusError,
)
from grpc_channel.metadata import Metadata, MetadataError
from grpc_channel.v1 import common_pb2, internals_pb2

# --- request ----------------------------------------------------------------------------------


def test_request_defaults() -> None:
    req = InvokeMethodRequest("say")
    assert req.method == "say"
    assert req.api_version is APIVersion.V1
    assert req.metadata == {} and req.data == b"" and req.data_any is None
    assert req.content_type == "" and req.http_verb is HTTPVerb.NONE and req.querystring == ""
    assert not req.has_http_extension
    pb = req.to_invoke_request()
    assert pb.method == "say"
    assert not pb.HasField("data") and not pb.HasField("http_extension")


@pytest.mark.parametrize("method", ["", None, 3, b"m"])
def test_request_method_must_be_a_non_empty_str(method: object) -> None:
    with pytest.raises(InvokeError, match=r"method must be a non-empty str"):
        InvokeMethodRequest(method)  # type: ignore[arg-type]


def test_builders_return_the_same_object() -> None:
    req = InvokeMethodRequest("m")
    assert req.with_data(b"x", "text/plain") is req
    assert req.with_message(wrappers_pb2.Int32Value(value=1)) is req
    assert req.with_content_type("a/b") is req
    assert req.with_http_extension("get") is req
    assert req.with_api_version(APIVersion.V1) is req
    assert req.with_metadata({}) is req


def test_raw_data_travels_as_any_with_empty_type_url() -> None:
    req = InvokeMethodRequest("m").with_data(bytearray(b"\x00raw"), "application/octet-stream")
    pb = req.to_invoke_request()
    assert pb.data.type_url == "" and pb.data.value == b"\x00raw"
    assert pb.content_type == "application/octet-stream"
    assert req.data == b"\x00raw"
    empty = InvokeMethodRequest("m").with_data(b"").to_invoke_request()
    assert empty.HasField("data") and empty.data.value == b""

    class Raw(bytes):
        pass

    sub = InvokeMethodRequest("m").with_data(Raw(b"sub"))
    assert sub.data == b"sub" and type(sub.data) is bytes
    assert sub.to_invoke_request().data.value == b"sub" and sub.data_any is not None


def test_raw_data_equals_the_same_bytes_received_as_an_any() -> None:
    sent = InvokeMethodRequest("m").with_data(b"payload", "text/plain")
    received = InvokeMethodRequest.from_invoke_request(sent.to_invoke_request())
    assert received == sent and sent == received
    assert received != InvokeMethodRequest("m").with_data(b"other", "text/plain")
    packed = InvokeMethodRequest("m").with_message(wrappers_pb2.BytesValue(value=b"payload"))
    assert packed.with_content_type("text/plain") != sent  # a type_url makes it other data
    first = sent.data_any
    assert first is not None and (first.type_url, first.value) == ("", b"payload")
    first.value = b"changed"  # a copy: the request keeps its data
    assert sent.data == b"payload" and sent.to_invoke_request().data.value == b"payload"
    assert "data=7 bytes" in repr(sent)
    assert InvokeMethodRequest("m").data_any is None


def test_metadata_is_a_snapshot_of_the_callers_mapping() -> None:
    values = ["1"]
    mapping: dict[str, str | list[str]] = {"x-a": values, "x-b": "2"}
    req = InvokeMethodRequest("m").with_metadata(mapping)
    values.append("changed")
    mapping["x-c"] = "3"
    assert req.metadata == {"x-a": ["1"], "x-b": ["2"]}
    assert req.grpc_pairs() == (("x-a", "1"), ("x-b", "2"))
    req.metadata["x-a"].append("not kept")  # a copy as well
    assert req.metadata == {"x-a": ["1"], "x-b": ["2"]}
    reordered = InvokeMethodRequest("m").with_metadata({"x-b": "2", "x-a": ["1"]})
    assert reordered == req  # equal content, whatever the order


@pytest.mark.parametrize(
    ("data", "pattern"),
    [("text", r"data must be bytes, got str \(encode text first"), (5, r"got int")],
)
def test_with_data_refuses_non_bytes(data: object, pattern: str) -> None:
    with pytest.raises(InvokeError, match=pattern):
        InvokeMethodRequest("m").with_data(data)  # type: ignore[arg-type]
    with pytest.raises(InvokeError, match=r"content_type must be str"):
        InvokeMethodRequest("m").with_data(b"", 5)  # type: ignore[arg-type]


def test_message_is_packed_into_any_and_unpacks() -> None:
    req = InvokeMethodRequest("m").with_message(wrappers_pb2.StringValue(value="hello"))
    pb = req.to_invoke_request()
    assert pb.data.type_url == "type.googleapis.com/google.protobuf.StringValue"
    assert req.unpack(wrappers_pb2.StringValue).value == "hello"
    assert req.data == wrappers_pb2.StringValue(value="hello").SerializeToString()
    # An Any is sent as it is, not packed twice.
    packed = any_pb2.Any()
    packed.Pack(wrappers_pb2.Int64Value(value=7))
    assert InvokeMethodRequest("m").with_message(packed).to_invoke_request().data == packed


def test_unpack_errors_name_the_problem() -> None:
    raw = InvokeMethodRequest("m").with_data(b"x")
    with pytest.raises(InvokeError, match=r"not a packed protobuf message"):
        raw.unpack(wrappers_pb2.StringValue)
    with pytest.raises(InvokeError, match=r"not a packed protobuf message"):
        InvokeMethodRequest("m").unpack(wrappers_pb2.StringValue)
    msg = InvokeMethodRequest("m").with_message(wrappers_pb2.StringValue(value="x"))
    with pytest.raises(InvokeError, match=r"holds '.*StringValue', not google.protobuf.Int32Value"):
        msg.unpack(wrappers_pb2.Int32Value)
    corrupt = any_pb2.Any(type_url="type.googleapis.com/google.protobuf.StringValue", value=b"\xff")
    with pytest.raises(InvokeError, match=r"does not parse"):
        InvokeMethodRequest("m").with_message(corrupt).unpack(wrappers_pb2.StringValue)
    with pytest.raises(InvokeError, match=r"protobuf Message, got bytes"):
        InvokeMethodRequest("m").with_message(b"x")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("verb", "expected"),
    [
        ("get", HTTPVerb.GET),
        ("GET", HTTPVerb.GET),
        ("Patch", HTTPVerb.PATCH),
        ("delete", HTTPVerb.DELETE),
        ("none", HTTPVerb.NONE),  # a known name, as in Dapr's enum map
        ("FETCH", HTTPVerb.POST),  # unknown -> POST
        ("", HTTPVerb.POST),
        ("g e t", HTTPVerb.POST),
        (HTTPVerb.PUT, HTTPVerb.PUT),
        (8, HTTPVerb.TRACE),
    ],
)
def test_http_verb_rules(verb: str | int, expected: HTTPVerb) -> None:
    req = InvokeMethodRequest("m").with_http_extension(verb, "a=1&b=2")
    pb = req.to_invoke_request()
    assert pb.http_extension.verb == expected.value
    assert common_pb2.HTTPExtension.Verb.Name(pb.http_extension.verb) == expected.name
    assert pb.http_extension.querystring == "a=1&b=2"
    assert req.http_verb is expected and req.has_http_extension


@pytest.mark.parametrize("verb", [10, -1, True, None, 1.5])
def test_bad_http_verb_types_are_refused(verb: object) -> None:
    with pytest.raises(InvokeError, match=r"HTTP verb must be"):
        InvokeMethodRequest("m").with_http_extension(verb)  # type: ignore[arg-type]
    with pytest.raises(InvokeError, match=r"querystring must be str"):
        InvokeMethodRequest("m").with_http_extension("GET", None)  # type: ignore[arg-type]


def test_api_version() -> None:
    req = InvokeMethodRequest("m").with_api_version(2)
    assert req.api_version == 2 and not isinstance(req.api_version, APIVersion)
    assert req.to_internal().ver == 2
    assert InvokeMethodRequest.from_internal(req.to_internal()).api_version == 2
    assert InvokeMethodRequest("m").with_api_version(0).api_version is APIVersion.UNSPECIFIED
    for bad in ("1", 2**31, True, None):
        with pytest.raises(InvokeError, match=r"API version must"):
            InvokeMethodRequest("m").with_api_version(bad)  # type: ignore[arg-type]


def test_metadata_internal_mapping_and_metadata_object() -> None:
    req = InvokeMethodRequest("m").with_metadata({"X-A": ["1", "2"], "Accept": "json"})
    assert req.metadata == {"X-A": ["1", "2"], "Accept": ["json"]}
    req.metadata["X-A"].append("changed")  # a copy
    assert req.metadata["X-A"] == ["1", "2"]
    assert req.grpc_metadata() == {"x-a": ["1", "2"], "dapr-accept": ["json"]}
    assert req.grpc_metadata(http_header_conversion=False) == {
        "x-a": ["1", "2"],
        "accept": ["json"],
    }
    from_md = InvokeMethodRequest("m").with_metadata(Metadata({"t-bin": b"\x00\x01", "k": "v"}))
    assert from_md.metadata == {"t-bin": ["AAE="], "k": ["v"]}  # base64 for -bin
    assert from_md.grpc_metadata() == {"t-bin": [b"\x00\x01"], "k": ["v"]}
    replaced = from_md.with_metadata({"only": "one"})
    assert replaced.metadata == {"only": ["one"]}


@pytest.mark.parametrize(
    ("md", "pattern"),
    [
        ([("a", "1")], r"metadata must be a Metadata or a mapping"),
        ({1: ["v"]}, r"metadata keys must be str, got int"),
        ({"k": 5}, r"metadata\['k'\] must be a str or a list of str, got int"),
        ({"k": b"v"}, r"metadata\['k'\] must be a str or a list of str, got bytes"),
        ({"k": ["v", 2]}, r"metadata\['k'\] values must be str, got int"),
    ],
)
def test_bad_request_metadata(md: object, pattern: str) -> None:
    with pytest.raises(InvokeError, match=pattern):
        InvokeMethodRequest("m").with_metadata(md)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("build", "pattern"),
    [
        (lambda: InvokeMethodRequest("m\ud800"), r"method must be valid Unicode.*position 1"),
        (lambda: InvokeMethodRequest("m").with_data(b"", "\udc00"), r"content_type must be valid"),
        (lambda: InvokeMethodRequest("m").with_http_extension("GET", "q=\ud800"), r"querystring"),
        (lambda: InvokeMethodRequest("m").with_metadata({"k\ud800": "v"}), r"metadata key"),
        (lambda: InvokeMethodRequest("m").with_metadata({"k": "\ud800"}), r"metadata\['k'\]"),
        (lambda: InvokeMethodRequest("m").with_metadata({"k": ["\ud800"]}), r"\['k'\] value"),
        (lambda: InvokeMethodResponse.from_status(2, "\ud800"), r"message must be valid"),
    ],
)
def test_text_protobuf_cannot_carry_is_refused(build: Callable[[], object], pattern: str) -> None:
    with pytest.raises(InvokeError, match=pattern):
        build()


def test_invalid_internal_metadata_surfaces_when_converted() -> None:
    req = InvokeMethodRequest("m").with_metadata({"bad key": "v"})
    with pytest.raises(MetadataError, match=r"'bad key'"):
        req.grpc_metadata()
    with pytest.raises(MetadataError, match=r"'bad key'"):
        req.grpc_pairs()
    assert req.with_metadata({"good": "v"}).grpc_pairs() == (("good", "v"),)


def test_grpc_pairs_are_cached_until_the_metadata_changes() -> None:
    req = InvokeMethodRequest("m").with_metadata({"Accept": "json", "x-bin": "AAE="})
    first = req.grpc_pairs()
    assert first == (("dapr-accept", "json"), ("x-bin", b"\x00\x01"))
    assert req.grpc_pairs() is first
    assert req.grpc_pairs(http_header_conversion=False) == (
        ("accept", "json"),
        ("x-bin", b"\x00\x01"),
    )
    req.with_metadata({"x-other": "1"})
    assert req.grpc_pairs() == (("x-other", "1"),)
    assert InvokeMethodRequest("m").grpc_pairs() == ()
    copied = InvokeMethodRequest.from_internal(req.to_internal())
    assert copied.grpc_pairs() == (("x-other", "1"),)


def _full_request() -> InvokeMethodRequest:
    return (
        InvokeMethodRequest("orders/create")
        .with_data(b'{"id": 1}', "application/json")
        .with_http_extension("put", "dry=1")
        .with_metadata({"x-user": ["ann"], "t-bin": ["AAE="]})
    )


def test_request_wire_bytes_parse_as_daprs_invoke_request() -> None:
    wire = _full_request().to_invoke_request().SerializeToString()
    theirs = dapr_common_pb2.InvokeRequest.FromString(wire)
    assert theirs.method == "orders/create"
    assert theirs.data.value == b'{"id": 1}' and theirs.data.type_url == ""
    assert theirs.content_type == "application/json"
    assert theirs.http_extension.verb == dapr_common_pb2.HTTPExtension.PUT
    assert theirs.http_extension.querystring == "dry=1"
    back = InvokeMethodRequest.from_invoke_request(
        common_pb2.InvokeRequest.FromString(theirs.SerializeToString())
    )
    assert back.to_invoke_request() == _full_request().to_invoke_request()


def test_request_internal_round_trip() -> None:
    for req in (
        _full_request(),
        InvokeMethodRequest("m"),
        InvokeMethodRequest("m").with_message(wrappers_pb2.BoolValue(value=True)),
    ):
        internal = req.to_internal()
        assert internal.ver == internals_pb2.V1
        reparsed = internals_pb2.InternalInvokeRequest.FromString(internal.SerializeToString())
        assert InvokeMethodRequest.from_internal(reparsed) == req
    internal = _full_request().to_internal()
    assert list(internal.metadata["x-user"].values) == ["ann"]
    assert internal.message.method == "orders/create"


def test_from_internal_refuses_what_dapr_refuses() -> None:
    with pytest.raises(InvokeError, match=r"has no message field"):
        InvokeMethodRequest.from_internal(internals_pb2.InternalInvokeRequest(ver=internals_pb2.V1))
    with pytest.raises(InvokeError, match=r"expected an InternalInvokeRequest, got InvokeRequest"):
        InvokeMethodRequest.from_internal(common_pb2.InvokeRequest())  # type: ignore[arg-type]
    with pytest.raises(InvokeError, match=r"expected an InvokeRequest"):
        InvokeMethodRequest.from_invoke_request(b"")  # type: ignore[arg-type]


def test_received_request_keeps_empty_method_and_unknown_verb() -> None:
    pb = common_pb2.InvokeRequest(http_extension=common_pb2.HTTPExtension(verb=42))  # type: ignore[arg-type]
    req = InvokeMethodRequest.from_invoke_request(pb)
    assert req.method == "" and req.http_verb is HTTPVerb.POST


def test_request_copy_is_independent() -> None:
    req = _full_request()
    cp = req.copy()
    assert cp == req and cp is not req
    cp.with_metadata({"other": "x"}).with_data(b"other")
    assert req == _full_request() and cp != req
    assert "orders/create" in repr(req) and "PUT" in repr(req)


# --- response ---------------------------------------------------------------------------------


def test_from_status_grpc_and_http() -> None:
    rsp = InvokeMethodResponse.from_status(grpc.StatusCode.NOT_FOUND, "gone")
    assert rsp.status.code == 5 and rsp.status.message == "gone" and rsp.status.details == []
    assert not rsp.is_http_response and rsp.status.grpc_code is grpc.StatusCode.NOT_FOUND
    assert rsp.headers == {} and rsp.trailers == {} and rsp.data == b""
    http = InvokeMethodResponse.from_status(404, "Not Found")
    assert http.is_http_response and http.status.code == 404
    assert http.status.grpc_code is grpc.StatusCode.NOT_FOUND
    assert InvokeMethodResponse.from_status(0).status.ok


@pytest.mark.parametrize("code", [17, 99, -1, 1000, 2**40])
def test_from_status_refuses_codes_that_are_neither(code: int) -> None:
    with pytest.raises(InvokeError, match=rf"status code {code} is neither a gRPC status code"):
        InvokeMethodResponse.from_status(code)


def test_from_status_argument_checks() -> None:
    with pytest.raises(InvokeError, match=r"must be an int or a grpc.StatusCode, got str"):
        InvokeMethodResponse.from_status("5")  # type: ignore[arg-type]
    with pytest.raises(InvokeError, match=r"message must be str"):
        InvokeMethodResponse.from_status(5, 5)  # type: ignore[arg-type]
    with pytest.raises(InvokeError, match=r"google.protobuf.Any messages \(pack them\)"):
        InvokeMethodResponse.from_status(3, "x", [error_details_pb2.BadRequest()])
    with pytest.raises(InvokeError, match=r"details must be a list of Any"):
        InvokeMethodResponse.from_status(3, "x", bad_request_detail())  # type: ignore[arg-type]
    with pytest.raises(InvokeError, match=r"headers must be a Metadata"):
        InvokeMethodResponse.from_status(3, "x", headers="a=1")  # type: ignore[arg-type]
    with pytest.raises(MetadataError, match=r"reserved"):
        InvokeMethodResponse.from_status(3, "x", headers={"grpc-status": "1"})


def test_details_are_copied() -> None:
    detail = bad_request_detail()
    rsp = InvokeMethodResponse.from_status(3, "bad", [detail])
    detail.value = b""
    assert rsp.status.details[0] == bad_request_detail()


def test_from_invoke_response_with_grpcio_pairs_and_metadata() -> None:
    resp = common_pb2.InvokeResponse(data=any_pb2.Any(value=b"out"), content_type="text/plain")
    headers = (("x-h", "1"), ("x-h-bin", b"\x01"))
    trailers = Metadata({"x-t": "2"})
    rsp = InvokeMethodResponse.from_invoke_response(resp, headers, trailers)
    assert rsp.status.code == 0 and rsp.status.ok
    assert rsp.data == b"out" and rsp.content_type == "text/plain"
    assert rsp.headers == {"x-h": ["1"], "x-h-bin": [b"\x01"]}
    assert rsp.trailers == {"x-t": ["2"]}
    trailers.append("x-t", "later")
    assert rsp.trailers == {"x-t": ["2"]}  # copied
    with pytest.raises(InvokeError, match=r"expected an InvokeResponse"):
        InvokeMethodResponse.from_invoke_response(common_pb2.InvokeRequest())  # type: ignore[arg-type]


@pytest.mark.parametrize("aio", [False, True])
def test_from_reply_reads_what_grpcio_returns(aio: bool) -> None:
    reply = common_pb2.InvokeResponse(data=any_pb2.Any(value=b"out"), content_type="text/plain")
    headers: object = grpc.aio.Metadata(("x-h", "1")) if aio else (("x-h", "1"),)
    rsp = InvokeMethodResponse.from_reply(reply, headers, None)  # type: ignore[arg-type]
    assert rsp.status == InvokeStatus(0, "", []) and rsp.status.ok
    assert rsp.data == b"out" and rsp.content_type == "text/plain"
    assert rsp.headers == {"x-h": ["1"]} and rsp.trailers == {}
    empty = InvokeMethodResponse.from_reply(common_pb2.InvokeResponse(), (), ())
    assert empty.data == b"" and empty.data_any is None
    assert empty.to_invoke_response() == common_pb2.InvokeResponse()


def test_content_type_is_protobuf_for_packed_messages() -> None:
    resp = common_pb2.InvokeResponse(content_type="application/json")
    resp.data.Pack(wrappers_pb2.StringValue(value="v"))
    rsp = InvokeMethodResponse.from_invoke_response(resp)
    assert rsp.content_type == PROTOBUF_CONTENT_TYPE
    assert rsp.to_invoke_response().content_type == "application/json"  # the declared one
    assert rsp.unpack(wrappers_pb2.StringValue).value == "v"
    raw = InvokeMethodResponse.from_status(0).with_data(b"x", "text/plain")
    assert raw.content_type == "text/plain"
    assert raw.with_message(wrappers_pb2.Int32Value()).content_type == PROTOBUF_CONTENT_TYPE


def test_response_internal_round_trip() -> None:
    rsp = (
        InvokeMethodResponse.from_status(3, "bad", [bad_request_detail()])
        .with_headers((("x-h", "1"), ("x-bin", b"\x00\xff"), ("user-agent", "kept")))
        .with_trailers(Metadata({"x-t": ["a", "b"]}))
        .with_data(b"payload", "text/plain")
    )
    internal = rsp.to_internal()
    assert internal.status.code == 3 and internal.status.details[0] == bad_request_detail()
    assert list(internal.headers["x-bin"].values) == ["AP8="]
    assert internal.message.data.value == b"payload"
    back = InvokeMethodResponse.from_internal(
        internals_pb2.InternalInvokeResponse.FromString(internal.SerializeToString())
    )
    assert back.status == rsp.status
    assert back.headers == rsp.headers and back.trailers == rsp.trailers
    assert back.data == b"payload" and back.content_type == "text/plain"
    assert back.to_internal() == internal


def test_response_from_internal_reads_what_a_peer_may_send() -> None:
    internal = internals_pb2.InternalInvokeResponse(
        status=internals_pb2.Status(code=200, message="OK"),
        headers={
            "Content-Type": internals_pb2.ListStringValue(values=["text/plain"]),
            "x-bin": internals_pb2.ListStringValue(values=["AQ==", "not base64"]),
        },
    )
    rsp = InvokeMethodResponse.from_internal(internal)
    assert rsp.is_http_response and rsp.status.ok and rsp.status.grpc_code is grpc.StatusCode.OK
    assert rsp.headers == {"content-type": ["text/plain"], "x-bin": [b"\x01"]}
    assert rsp.data == b"" and rsp.to_invoke_response() == common_pb2.InvokeResponse()
    with pytest.raises(InvokeError, match=r"expected an InternalInvokeResponse"):
        InvokeMethodResponse.from_internal(b"")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("code", "raises", "grpc_code"),
    [
        (0, False, grpc.StatusCode.OK),
        (200, False, grpc.StatusCode.OK),
        (204, False, grpc.StatusCode.OK),
        (5, True, grpc.StatusCode.NOT_FOUND),
        (16, True, grpc.StatusCode.UNAUTHENTICATED),
        (302, True, grpc.StatusCode.UNKNOWN),
        (400, True, grpc.StatusCode.INTERNAL),
        (401, True, grpc.StatusCode.UNAUTHENTICATED),
        (503, True, grpc.StatusCode.UNAVAILABLE),
        (500, True, grpc.StatusCode.UNKNOWN),
    ],
)
def test_raise_for_status(code: int, raises: bool, grpc_code: grpc.StatusCode) -> None:
    rsp = InvokeMethodResponse.from_status(code, "msg", trailers=(("x-t", "1"),))
    if not raises:
        assert rsp.raise_for_status() is rsp
        return
    with pytest.raises(InvokeStatusError) as info:
        rsp.raise_for_status()
    err = info.value
    assert isinstance(err, grpc.RpcError)
    assert err.code() is grpc_code and err.details() == "msg"
    assert err.status.code == code and err.response is rsp
    assert err.trailing_metadata() == (("x-t", "1"),) and err.initial_metadata() == ()
    assert str(code) in str(err)


def test_status_equality_and_repr() -> None:
    assert InvokeStatus(3, "m", [bad_request_detail()]) == InvokeStatus(
        3, "m", [bad_request_detail()]
    )
    assert InvokeStatus(3, "m") != InvokeStatus(3, "n")
    assert "code=3" in repr(InvokeStatus(3, "m"))
    assert "InvokeStatus(code=5" in repr(InvokeMethodResponse.from_status(5))


# --- from_rpc_error against a real server ----------------------------------------------------


def _error_from(target: str, method: str, aio: bool) -> grpc.RpcError:
    if aio:

        async def call() -> grpc.RpcError:
            async with grpc.aio.insecure_channel(target) as channel:
                try:
                    await channel.unary_unary(method, None, None)(b"", timeout=10)
                except grpc.aio.AioRpcError as err:
                    return err
            raise AssertionError("the call did not fail")

        return asyncio.run(call())
    with grpc.insecure_channel(target) as channel:
        try:
            channel.unary_unary(method, None, None)(b"", timeout=10)
        except grpc.RpcError as err:
            return err
    raise AssertionError("the call did not fail")


@pytest.mark.parametrize("aio", [False, True])
def test_from_rpc_error_unpacks_bad_request_details(aio: bool, served_target: str) -> None:
    err = _error_from(served_target, FAIL, aio)
    rsp = InvokeMethodResponse.from_rpc_error(err)
    assert rsp.status.code == grpc.StatusCode.INVALID_ARGUMENT.value[0]
    assert rsp.status.message == FAIL_MESSAGE
    assert len(rsp.status.details) == 1
    bad = error_details_pb2.BadRequest()
    assert rsp.status.details[0].Unpack(bad)
    assert bad.field_violations[0].field == "name"
    assert bad.field_violations[0].description == "must not be empty"
    assert rsp.headers.get("x-hdr") == ["h"]
    assert rsp.trailers.get("x-trl") == ["t"]
    assert "grpc-status-details-bin" in rsp.trailers
    assert not rsp.is_http_response and rsp.data == b""
    with pytest.raises(InvokeStatusError) as info:
        rsp.raise_for_status()
    assert info.value.code() is grpc.StatusCode.INVALID_ARGUMENT


@pytest.mark.parametrize("aio", [False, True])
def test_from_rpc_error_without_details(aio: bool, served_target: str) -> None:
    err = _error_from(served_target, PLAIN, aio)
    rsp = InvokeMethodResponse.from_rpc_error(err)
    assert rsp.status.code == grpc.StatusCode.NOT_FOUND.value[0]
    assert rsp.status.message == "no such thing" and rsp.status.details == []


def _details_trailer(code: int, message: str) -> tuple[str, bytes]:
    status = status_pb2.Status(code=code, message=message, details=[bad_request_detail()])
    return ("grpc-status-details-bin", status.SerializeToString())


def test_from_rpc_error_with_local_errors() -> None:
    ok = LocalRpcError(
        grpc.StatusCode.INVALID_ARGUMENT,
        "bad",
        initial_metadata=(("x-h", "1"),),
        trailing_metadata=(_details_trailer(3, "bad"),),
    )
    rsp = InvokeMethodResponse.from_rpc_error(ok)
    assert rsp.status.code == 3 and len(rsp.status.details) == 1
    assert rsp.headers == {"x-h": ["1"]}
    # A status that disagrees with the call, or does not parse: the call's code and message win.
    for trailer in (_details_trailer(5, "bad"), ("grpc-status-details-bin", b"\xff\xff")):
        local = LocalRpcError(grpc.StatusCode.INVALID_ARGUMENT, "bad", trailing_metadata=(trailer,))
        rsp = InvokeMethodResponse.from_rpc_error(local)
        assert rsp.status.code == 3 and rsp.status.message == "bad" and rsp.status.details == []


def test_from_rpc_error_with_a_bare_rpc_error_and_bad_input() -> None:
    rsp = InvokeMethodResponse.from_rpc_error(grpc.RpcError("boom"))
    assert rsp.status.code == grpc.StatusCode.UNKNOWN.value[0] and rsp.status.message == "boom"
    with pytest.raises(InvokeError, match=r"expected a grpc.RpcError, got ValueError"):
        InvokeMethodResponse.from_rpc_error(ValueError("x"))  # type: ignore[arg-type]


@pytest.mark.parametrize("aio", [False, True])
def test_from_rpc_error_for_an_unreachable_app(aio: bool) -> None:
    err = _error_from(f"127.0.0.1:{free_port()}", PLAIN, aio)
    rsp = InvokeMethodResponse.from_rpc_error(err)
    assert rsp.status.code == grpc.StatusCode.UNAVAILABLE.value[0]
    assert rsp.status.message and rsp.status.details == []
    assert rsp.headers == {} and rsp.trailers == {}
