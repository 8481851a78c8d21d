"""Codecs and compressors, by name, as grpc-go's ``encoding`` package keeps them.

Codecs
------
A :class:`Codec` turns a message into bytes and back: ``name``, ``marshal(obj) -> bytes`` and
``unmarshal(data, type) -> obj``. The registry maps a lower-cased name to one codec; registering a
name again replaces the earlier codec (grpc-go does the same). Built-ins:

- ``"proto"``: protobuf binary (``SerializeToString`` / ``FromString``); the default everywhere.
- ``"raw"``: bytes pass through untouched (``bytes``, ``bytearray`` and ``memoryview`` are accepted
  on the way out; ``bytes`` come back, whatever type is asked for).
- ``"json"``: protobuf JSON (``google.protobuf.json_format``), UTF-8 encoded.

In grpc-go the codec name is also the content-subtype on the wire (``application/grpc+json``).
grpcio offers no way to set the content-type of a call, so here a codec only decides how messages
are turned into bytes on this side; the server must expect the same encoding.

Compressors
-----------
grpcio compresses with its own built-in algorithms only, so the names map onto ``grpc.Compression``:
``"gzip"``, ``"deflate"`` and ``"identity"`` (no compression). There is no way to register another;
an unknown name is refused with an error that lists the known ones.
"""

from __future__ import annotations

import threading
from typing import Any, Final, Protocol, runtime_checkable

import grpc
from google.protobuf import json_format
from google.protobuf.message import DecodeError, Message

__all__ = [
    "COMPRESSORS",
    "Codec",
    "EncodingError",
    "JsonCodec",
    "ProtoCodec",
    "RawCodec",
    "codec_names",
    "get_codec",
    "get_compressor",
    "register_codec",
]


class EncodingError(ValueError):
    """A codec or compressor was refused, or a message could not be (un)marshalled."""


@runtime_checkable
class Codec(Protocol):
    """Turns messages into bytes and back.

    ``name`` is the registry key (compared lower-cased). ``marshal`` must return ``bytes``;
    ``unmarshal`` gets the bytes received and the message type the caller expects (may be
    ``None`` when the caller has no type, e.g. raw bytes).
    """

    @property
    def name(self) -> str: ...

    def marshal(self, obj: Any) -> bytes: ...

    def unmarshal(self, data: bytes, type_: Any) -> Any: ...


class ProtoCodec:
    """Protobuf binary encoding. ``marshal`` refuses anything that is not a protobuf message."""

    __slots__ = ()

    @property
    def name(self) -> str:
        return "proto"

    def marshal(self, obj: Any) -> bytes:
        if not isinstance(obj, Message):
            raise EncodingError(
                f"codec 'proto': cannot marshal {type(obj).__name__}; a protobuf message is needed"
            )
        return obj.SerializeToString()

    def unmarshal(self, data: bytes, type_: Any) -> Any:
        if not (isinstance(type_, type) and issubclass(type_, Message)):
            raise EncodingError(
                f"codec 'proto': cannot unmarshal into {type_!r}; a protobuf message class is "
                "needed"
            )
        try:
            return type_.FromString(data)
        except DecodeError as exc:
            raise EncodingError(
                f"codec 'proto': {len(data)} bytes are not a valid {type_.__name__}: {exc}"
            ) from exc

    def __repr__(self) -> str:
        return "ProtoCodec()"


class RawCodec:
    """Bytes in, bytes out: the message already is its encoding. ``type_`` is ignored."""

    __slots__ = ()

    @property
    def name(self) -> str:
        return "raw"

    def marshal(self, obj: Any) -> bytes:
        if isinstance(obj, bytes):
            return obj
        if isinstance(obj, bytearray | memoryview):
            return bytes(obj)
        raise EncodingError(
            f"codec 'raw': cannot marshal {type(obj).__name__}; bytes, bytearray or memoryview "
            "is needed"
        )

    def unmarshal(self, data: bytes, type_: Any) -> Any:
        return bytes(data)

    def __repr__(self) -> str:
        return "RawCodec()"


class JsonCodec:
    """Protobuf JSON (``json_format.MessageToJson`` / ``Parse``), UTF-8 encoded.

    Field names follow protobuf's JSON mapping (lowerCamelCase); unknown fields in received JSON are
    an error, as in ``json_format.Parse``.
    """

    __slots__ = ()

    @property
    def name(self) -> str:
        return "json"

    def marshal(self, obj: Any) -> bytes:
        if not isinstance(obj, Message):
            raise EncodingError(
                f"codec 'json': cannot marshal {type(obj).__name__}; a protobuf message is needed"
            )
        return json_format.MessageToJson(obj, indent=None).encode("utf-8")

    def unmarshal(self, data: bytes, type_: Any) -> Any:
        if not (isinstance(type_, type) and issubclass(type_, Message)):
            raise EncodingError(
                f"codec 'json': cannot unmarshal into {type_!r}; a protobuf message class is needed"
            )
        try:
            return json_format.Parse(bytes(data).decode("utf-8"), type_())
        except (json_format.ParseError, UnicodeDecodeError) as exc:
            raise EncodingError(f"codec 'json': not a valid {type_.__name__}: {exc}") from exc

    def __repr__(self) -> str:
        return "JsonCodec()"


_lock = threading.Lock()
# Readers never lock: a dict lookup is atomic, and registering replaces the whole dict.
_codecs: dict[str, Codec] = {"proto": ProtoCodec(), "raw": RawCodec(), "json": JsonCodec()}


def _checked_name(codec: object) -> str:
    if codec is None:
        raise EncodingError("register_codec: codec is None; pass an object with a non-empty name")
    name = getattr(codec, "name", None)
    if not isinstance(name, str) or not name.strip():
        raise EncodingError(
            f"register_codec: codec {codec!r} has no name (got {name!r}); its name must be a "
            "non-empty string"
        )
    for method in ("marshal", "unmarshal"):
        if not callable(getattr(codec, method, None)):
            raise EncodingError(f"register_codec: codec {name!r} has no callable {method}()")
    return name.strip().lower()


def register_codec(codec: Codec) -> None:
    """Register ``codec`` under its lower-cased ``name``, replacing any codec of that name.

    Raises:
        EncodingError: ``codec`` is ``None``, its name is missing or empty, or it lacks
            ``marshal``/``unmarshal``.
    """
    global _codecs
    name = _checked_name(codec)
    with _lock:
        updated = dict(_codecs)
        updated[name] = codec
        _codecs = updated


def get_codec(name: str) -> Codec:
    """The codec registered under ``name`` (case-insensitive).

    Raises:
        EncodingError: nothing is registered under that name; the message lists what is.
    """
    codec = _codecs.get(name.lower()) if isinstance(name, str) else None
    if codec is None:
        raise EncodingError(
            f"no codec registered under {name!r}; registered: {', '.join(sorted(_codecs))}"
        )
    return codec


def codec_names() -> tuple[str, ...]:
    """The registered codec names, sorted."""
    return tuple(sorted(_codecs))


COMPRESSORS: Final[dict[str, grpc.Compression]] = {
    "deflate": grpc.Compression.Deflate,
    "gzip": grpc.Compression.Gzip,
    "identity": grpc.Compression.NoCompression,
}
"""Compressor name → the grpcio algorithm that implements it."""


def get_compressor(name: str) -> grpc.Compression:
    """The ``grpc.Compression`` for a compressor name (case-insensitive).

    Raises:
        EncodingError: the name is not one of ``deflate``, ``gzip``, ``identity``.
    """
    found = COMPRESSORS.get(name.lower()) if isinstance(name, str) else None
    if found is None:
        raise EncodingError(
            f"unknown compressor {name!r}; known compressors: {', '.join(sorted(COMPRESSORS))}"
        )
    return found
