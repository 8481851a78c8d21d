"""grpc_channel.encoding: the codec registry, the built-in codecs and the compressor names."""

from __future__ import annotations

from typing import Any

import grpc
import pytest
from google.protobuf import struct_pb2, wrappers_pb2

from grpc_channel import encoding
from grpc_channel.encoding import (
    COMPRESSORS,
    Codec,
    EncodingError,
    codec_names,
    get_codec,
    get_compressor,
    register_codec,
)


class _Upper:
    """A codec of our own: text upper-cased on the way out."""

    name = "Upper"

    def marshal(self, obj: Any) -> bytes:
        return str(obj).upper().encode()

    def unmarshal(self, data: bytes, type_: Any) -> Any:
        return data.decode().lower()


@pytest.fixture
def registry_snapshot() -> Any:
    saved = dict(encoding._codecs)
    yield
    encoding._codecs = saved


def test_builtins_are_registered() -> None:
    assert {"json", "proto", "raw"} <= set(codec_names())
    assert get_codec("proto").name == "proto"
    assert get_codec("RAW").name == "raw"  # names are case-insensitive
    assert isinstance(get_codec("json"), Codec)


def test_proto_codec_round_trip() -> None:
    codec = get_codec("proto")
    msg = wrappers_pb2.StringValue(value="héllo")
    data = codec.marshal(msg)
    assert data == msg.SerializeToString()
    assert codec.unmarshal(data, wrappers_pb2.StringValue) == msg


def test_proto_codec_refusals() -> None:
    codec = get_codec("proto")
    with pytest.raises(EncodingError) as info:
        codec.marshal({"not": "a message"})
    assert str(info.value) == "codec 'proto': cannot marshal dict; a protobuf message is needed"
    with pytest.raises(EncodingError) as info:
        codec.unmarshal(b"", dict)
    assert "cannot unmarshal into <class 'dict'>" in str(info.value)
    with pytest.raises(EncodingError) as info:
        codec.unmarshal(b"\xff\xff\xff", wrappers_pb2.StringValue)
    assert str(info.value).startswith("codec 'proto': 3 bytes are not a valid StringValue")


def test_raw_codec_passes_bytes_through() -> None:
    codec = get_codec("raw")
    assert codec.marshal(b"\x00\x01") == b"\x00\x01"
    assert codec.marshal(bytearray(b"ab")) == b"ab"
    assert codec.marshal(memoryview(b"cd")) == b"cd"
    assert codec.unmarshal(b"xyz", None) == b"xyz"
    with pytest.raises(EncodingError) as info:
        codec.marshal("text")
    assert str(info.value) == (
        "codec 'raw': cannot marshal str; bytes, bytearray or memoryview is needed"
    )


def test_json_codec_round_trip_and_errors() -> None:
    codec = get_codec("json")
    msg = struct_pb2.Struct()
    msg.update({"a": 1, "b": "two"})
    data = codec.marshal(msg)
    assert b'"b": "two"' in data
    assert codec.unmarshal(data, struct_pb2.Struct) == msg
    assert codec.unmarshal(b'"x"', wrappers_pb2.StringValue).value == "x"
    with pytest.raises(EncodingError) as info:
        codec.unmarshal(b'{"nope": 1}', wrappers_pb2.Int32Value)
    assert str(info.value).startswith("codec 'json': not a valid Int32Value")
    with pytest.raises(EncodingError):
        codec.marshal(b"bytes")


def test_register_lowercases_and_replaces(registry_snapshot: Any) -> None:
    register_codec(_Upper())
    assert "upper" in codec_names()
    codec = get_codec("UPPER")
    assert codec.marshal("abc") == b"ABC"

    class _Other(_Upper):
        name = "upper"

    replacement = _Other()
    register_codec(replacement)
    assert get_codec("upper") is replacement


@pytest.mark.parametrize(
    ("codec", "message"),
    [
        (None, "register_codec: codec is None; pass an object with a non-empty name"),
        (
            type("NoName", (), {"marshal": lambda s, o: b"", "unmarshal": lambda s, d, t: d})(),
            "has no name (got None); its name must be a non-empty string",
        ),
        (
            type("Blank", (), {"name": "  ", "marshal": lambda s, o: b""})(),
            "has no name (got '  '); its name must be a non-empty string",
        ),
        (
            type("Half", (), {"name": "half", "marshal": lambda s, o: b""})(),
            "register_codec: codec 'half' has no callable unmarshal()",
        ),
    ],
)
def test_register_refuses(codec: Any, message: str, registry_snapshot: Any) -> None:
    before = codec_names()
    with pytest.raises(EncodingError) as info:
        register_codec(codec)
    assert message in str(info.value)
    assert codec_names() == before


def test_get_codec_unknown_lists_known() -> None:
    with pytest.raises(EncodingError) as info:
        get_codec("yaml")
    assert str(info.value) == (
        f"no codec registered under 'yaml'; registered: {', '.join(codec_names())}"
    )


def test_compressors() -> None:
    assert get_compressor("gzip") is grpc.Compression.Gzip
    assert get_compressor("Deflate") is grpc.Compression.Deflate
    assert get_compressor("identity") is grpc.Compression.NoCompression
    assert set(COMPRESSORS) == {"gzip", "deflate", "identity"}
    with pytest.raises(EncodingError) as info:
        get_compressor("snappy")
    assert str(info.value) == (
        "unknown compressor 'snappy'; known compressors: deflate, gzip, identity"
    )
    with pytest.raises(EncodingError):
        get_compressor(None)  # type: ignore[arg-type]
