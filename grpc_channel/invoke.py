"""The service-invocation request and response, modelled on Dapr's ``invokev1`` types.

:class:`InvokeMethodRequest` is what a caller builds: a method name, data (raw bytes or a packed
protobuf message), Dapr internal metadata, an optional HTTP extension and an API version. It becomes
the ``InvokeRequest`` an application's ``AppCallback/OnInvoke`` receives
(:meth:`InvokeMethodRequest.to_invoke_request`), or the ``InternalInvokeRequest`` envelope.

:class:`InvokeMethodResponse` is what comes back: a status (a gRPC code, or an HTTP status >= 100),
response headers and trailers as :class:`~grpc_channel.metadata.Metadata`, and the data. A gRPC
error becomes a response (:meth:`InvokeMethodResponse.from_rpc_error`, with the
``google.rpc.Status`` details the server attached) rather than an exception;
:meth:`InvokeMethodResponse.raise_for_status` turns it back into one when wanted.

Data travels as ``google.protobuf.Any``: a message is packed (``type.googleapis.com/<full name>``);
raw bytes go in ``Any.value`` with an empty ``type_url``, as Dapr does.

Builders (``with_*``) change the object and return it, as Dapr's do, so calls chain; use ``copy()``
to branch. Bad input raises :class:`InvokeError` (a ``ValueError``) naming what was wrong and what
is allowed.

Example::

    req = (
        InvokeMethodRequest("orders/create")
        .with_data(b'{"id": 1}', "application/json")
        .with_http_extension("post", "dry_run=1")
        .with_metadata({"x-user": ["ann"]})
    )
    try:
        reply, call = on_invoke.with_call(req.to_invoke_request(), metadata=...)
        rsp = InvokeMethodResponse.from_invoke_response(
            reply, call.initial_metadata(), call.trailing_metadata()
        )
    except grpc.RpcError as err:
        rsp = InvokeMethodResponse.from_rpc_error(err)   # status, details, headers, trailers
    rsp.raise_for_status()
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Mapping, Sequence
from typing import Final, TypeAlias, TypeVar, cast

import grpc
from google.protobuf import any_pb2
from google.protobuf.message import DecodeError, Message
from grpc_status import rpc_status

from grpc_channel.interceptors import MetadataPairs
from grpc_channel.metadata import (
    Metadata,
    MetadataValue,
    grpc_to_internal,
    internal_to_grpc,
)
from grpc_channel.v1 import common_pb2, internals_pb2

__all__ = [
    "PROTOBUF_CONTENT_TYPE",
    "APIVersion",
    "HTTPVerb",
    "HeadersInput",
    "InvokeError",
    "InvokeMethodRequest",
    "InvokeMethodResponse",
    "InvokeStatus",
    "InvokeStatusError",
    "check_method_path",
]

PROTOBUF_CONTENT_TYPE: Final = "application/x-protobuf"
"""The content type a response reports when its data is a packed protobuf message (Dapr's rule)."""

_INT32_MIN: Final = -(2**31)
_INT32_MAX: Final = 2**31 - 1

_M = TypeVar("_M", bound=Message)

HeadersInput: TypeAlias = (
    "Metadata | Mapping[str, object] | Iterable[tuple[str, MetadataValue]] | None"
)
"""Headers or trailers given to a response: a Metadata (copied), grpcio's received pairs (read
with :meth:`Metadata.from_grpc`, so reserved keys the peer sent are kept), a mapping (validated like
``Metadata(mapping)``), or None (empty)."""


class InvokeError(ValueError):
    """Invalid input to an invoke request or response: names the argument and what is allowed."""


class APIVersion(enum.IntEnum):
    """The invocation API version (``grpc_channel.v1.APIVersion``). Only V1 is served."""

    UNSPECIFIED = 0
    V1 = 1


class HTTPVerb(enum.IntEnum):
    """The HTTP verb of an invocation (``HTTPExtension.Verb``)."""

    NONE = 0
    GET = 1
    HEAD = 2
    POST = 3
    PUT = 4
    DELETE = 5
    CONNECT = 6
    OPTIONS = 7
    TRACE = 8
    PATCH = 9

    @classmethod
    def parse(cls, verb: str | int) -> HTTPVerb:
        """Dapr's rule: the name is upper-cased and looked up (``"none"`` is NONE); an unknown name,
        the empty string included, is POST. An ``HTTPVerb`` or an int 0-9 is taken as is; any other
        int or type raises InvokeError."""
        if isinstance(verb, str):
            return cls.__members__.get(verb.upper(), cls.POST)
        if isinstance(verb, int) and not isinstance(verb, bool):
            try:
                return cls(verb)
            except ValueError:
                pass
        raise InvokeError(
            f"HTTP verb must be a verb name (str) or an HTTPVerb 0-{max(cls)}, got {verb!r}"
        )


def _check_str(name: str, value: object) -> str:
    """A str protobuf can carry: protobuf strings are UTF-8, so lone surrogates are refused."""
    if not isinstance(value, str):
        raise InvokeError(f"{name} must be str, got {type(value).__name__}")
    at = _lone_surrogate(value)
    if at is not None:
        raise InvokeError(
            f"{name} must be valid Unicode text (protobuf strings are UTF-8); the character"
            f" at position {at} is a lone surrogate"
        )
    return value


def _lone_surrogate(text: str) -> int | None:
    """Where ``text`` holds a lone surrogate (which UTF-8 cannot encode), or ``None``."""
    if text.isascii():
        return None
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        return exc.start
    return None


def check_method_path(method: object) -> str:
    """A full method path ``"/pkg.Service/Method"`` that grpcio can send, else ``ValueError``
    naming it. grpcio sends the path as UTF-8, so a lone surrogate (which would raise
    UnicodeEncodeError inside the call) is refused here."""
    if (
        not isinstance(method, str)
        or not method.startswith("/")
        or method.count("/") != 2
        or method.endswith("/")
        or "//" in method
    ):
        raise ValueError(
            f"method must be a full method path like '/pkg.Service/Method', got {method!r}"
        )
    at = _lone_surrogate(method)
    if at is not None:
        raise ValueError(
            f"method must be valid Unicode (grpcio sends the path as UTF-8), got {method!r}:"
            f" the character at position {at} is a lone surrogate"
        )
    return method


def _check_bytes(name: str, value: object) -> bytes:
    """Plain ``bytes`` (a copy of a bytearray, memoryview or bytes subclass: requests hold exactly
    ``bytes``, which their fast paths test with ``type(...) is bytes``)."""
    if type(value) is bytes:
        return value
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value)
    hint = " (encode text first, e.g. data.encode())" if isinstance(value, str) else ""
    raise InvokeError(f"{name} must be bytes, got {type(value).__name__}{hint}")


_Items: TypeAlias = tuple[tuple[str, tuple[str, ...]], ...]
"""Internal metadata as a request holds it: ``(key, values)`` in the caller's order. Immutable, so
a copy shares it and it is its own conversion memo key (see :func:`_converted_pairs`)."""


def _internal_items(name: str, md: object) -> _Items:
    """Validate Dapr internal metadata (a mapping of str key to str or list of str) and take an
    immutable snapshot of it: later changes to the caller's mapping do not reach the request."""
    if type(md) is not dict:
        if isinstance(md, Metadata):
            md = grpc_to_internal(md)
        elif not isinstance(md, Mapping):
            raise InvokeError(
                f"{name} must be a Metadata or a mapping of str key to list of str,"
                f" got {type(md).__name__}"
            )
    items: list[tuple[str, tuple[str, ...]]] = []
    for key, values in cast("Mapping[object, object]", md).items():
        # Fast path: the usual str key with a list of ASCII str values passes every check below
        # (ASCII text is valid UTF-8); anything else takes the full checks.
        if type(key) is str and key.isascii() and type(values) is list:
            for v in values:
                if type(v) is not str or not v.isascii():
                    break
            else:
                items.append((key, tuple(values)))
                continue
        if not isinstance(key, str):
            raise InvokeError(f"{name} keys must be str, got {type(key).__name__}")
        _check_str(f"{name} key {key!a}", key)
        if isinstance(values, str):
            items.append((key, (_check_str(f"{name}[{key!a}]", values),)))
            continue
        if not isinstance(values, Iterable) or isinstance(values, bytes | bytearray):
            raise InvokeError(
                f"{name}[{key!r}] must be a str or a list of str, got {type(values).__name__}"
            )
        vals = tuple(values)
        for v in vals:
            if not isinstance(v, str):
                raise InvokeError(f"{name}[{key!r}] values must be str, got {type(v).__name__}")
            _check_str(f"{name}[{key!a}] value", v)
        items.append((key, vals))
    return tuple(items)


_CONVERTED: dict[tuple[bool, _Items], MetadataPairs] = {}
_CONVERTED_MAX: Final = 256


def _converted_pairs(items: _Items, http_header_conversion: bool) -> MetadataPairs:
    """``internal_to_grpc(dict(items), http_header_conversion).to_grpc()``, memoised by content.

    Applications build a fresh request per call, usually with the same few metadata sets, so the
    conversion (and its checks) runs once per distinct set rather than once per call. The result
    depends on the content alone (a pure function, and immutable pairs); a set that fails to
    convert is not remembered, so it fails again the same way. At most ``_CONVERTED_MAX`` sets
    are kept (the table is emptied when full: bounded memory, no lock needed).
    """
    if not items:
        return ()
    key = (http_header_conversion, items)
    pairs = _CONVERTED.get(key)
    if pairs is None:
        pairs = internal_to_grpc(dict(items), http_header_conversion).to_grpc()
        if len(_CONVERTED) >= _CONVERTED_MAX:
            _CONVERTED.clear()
        _CONVERTED[key] = pairs
    return pairs


def _internal_to_pb(
    items: Iterable[tuple[str, Sequence[str]]],
) -> dict[str, internals_pb2.ListStringValue]:
    return {k: internals_pb2.ListStringValue(values=v) for k, v in items}


def _pb_to_internal(md: Mapping[str, internals_pb2.ListStringValue]) -> _Items:
    return tuple([(k, tuple(v.values)) for k, v in md.items()])


def _received_metadata(name: str, md: object) -> Metadata:
    """Headers or trailers: a Metadata (copied), grpcio pairs (read like received metadata),
    or None."""
    if type(md) is tuple:  # what grpcio returns: the per-call fast path
        return Metadata.from_grpc(md)
    if md is None:
        return Metadata()
    if isinstance(md, Metadata):
        return md.copy()
    if isinstance(md, Mapping):
        return Metadata(md)
    if isinstance(md, str | bytes) or not isinstance(md, Iterable):
        raise InvokeError(
            f"{name} must be a Metadata, (key, value) pairs or None, got {type(md).__name__}"
        )
    return Metadata.from_grpc(md)


def _metadata_from_internal(md: Mapping[str, internals_pb2.ListStringValue]) -> Metadata:
    """The exact inverse of grpc_to_internal for response headers/trailers: keys lower-cased,
    ``-bin`` values base64-decoded (undecodable ones dropped), nothing renamed or filtered."""
    pairs: list[tuple[str, MetadataValue]] = []
    for key, listval in md.items():
        low = key.lower()
        if low.endswith("-bin"):
            decoded = internal_to_grpc({low: listval.values}, False, on_invalid="drop")
            pairs.extend((low, v) for v in decoded.get(low))
        else:
            pairs.extend((low, v) for v in listval.values)
    return Metadata.from_grpc(pairs)


def _unpack(data: any_pb2.Any | bytes | None, message_cls: type[_M]) -> _M:
    if not isinstance(data, any_pb2.Any) or not data.type_url:
        raise InvokeError(
            f"the data is not a packed protobuf message (empty type_url); cannot unpack"
            f" {message_cls.__name__}"
        )
    msg = message_cls()
    if data.type_url.rpartition("/")[2] != msg.DESCRIPTOR.full_name:
        raise InvokeError(
            f"the data holds {data.type_url!r}, not {msg.DESCRIPTOR.full_name}; cannot unpack"
        )
    try:
        data.Unpack(msg)
    except DecodeError as exc:
        raise InvokeError(f"the data does not parse as {msg.DESCRIPTOR.full_name}: {exc}") from None
    return msg


def _pack(message: object) -> any_pb2.Any:
    if not isinstance(message, Message):
        raise InvokeError(f"message must be a protobuf Message, got {type(message).__name__}")
    packed = any_pb2.Any()
    if isinstance(message, any_pb2.Any):
        packed.CopyFrom(message)  # already packed: sent as it is
    else:
        packed.Pack(message)
    return packed


def _clone_any(data: any_pb2.Any) -> any_pb2.Any:
    out = any_pb2.Any()
    out.CopyFrom(data)
    return out


def _copy_any(data: any_pb2.Any | None) -> any_pb2.Any | None:
    return None if data is None else _clone_any(data)


def _data_key(data: bytes | any_pb2.Any | None) -> tuple[str, bytes] | None:
    """``(type_url, value)`` of a request's data: raw bytes and an Any with an empty type_url
    holding them are the same data."""
    if data is None:
        return None
    if type(data) is bytes:
        return ("", data)
    packed = cast(any_pb2.Any, data)
    return (packed.type_url, packed.value)


# ------------------------------------------------------------------------------------------
# request


class InvokeMethodRequest:
    """A service invocation: ``InvokeMethodRequest("method")`` then ``with_*`` builders.

    Defaults: API version V1, no data (no ``data`` field on the wire), content type ``""``, no HTTP
    extension (no ``http_extension`` field), no metadata. Builders change this object and return it.
    """

    __slots__ = ("_content_type", "_data", "_http", "_metadata", "_method", "_ver")

    _method: str
    _ver: int
    _metadata: _Items
    # Raw data as bytes (sent as an Any with an empty type_url; the Any is built only when
    # needed), a packed message as an Any, or None.
    _data: bytes | any_pb2.Any | None
    _content_type: str
    _http: tuple[HTTPVerb, str] | None

    def __init__(self, method: str) -> None:
        """``method`` is the app's method name, a non-empty str (``InvokeRequest.method``)."""
        if type(method) is not str or not method or not method.isascii():
            if not isinstance(method, str) or not method:
                raise InvokeError(f"method must be a non-empty str, got {method!r}")
            _check_str("method", method)
        self._reset(method)

    def _reset(self, method: str) -> None:
        self._method = method
        self._ver = APIVersion.V1
        self._metadata = ()
        self._data = None
        self._content_type = ""
        self._http = None

    @classmethod
    def _blank(cls, method: str) -> InvokeMethodRequest:
        req = cls.__new__(cls)
        req._reset(method)
        return req

    # builders -------------------------------------------------------------------------------

    def with_metadata(
        self, metadata: Metadata | Mapping[str, str | Sequence[str]]
    ) -> InvokeMethodRequest:
        """Replace the internal metadata (Dapr's ``key -> list of str``; a single str is one value).

        A :class:`Metadata` is converted with :func:`~grpc_channel.metadata.grpc_to_internal`
        (``-bin`` values base64-encoded); a mapping is taken as internal metadata as it is (keys are
        lower-cased and checked when converted to gRPC, see
        :func:`~grpc_channel.metadata.internal_to_grpc`).
        """
        self._metadata = _internal_items("metadata", metadata)
        return self

    def with_data(
        self, data: bytes | bytearray | memoryview, content_type: str = ""
    ) -> InvokeMethodRequest:
        """Raw data (bytes-like; ``str`` is refused: encode it) with its content type; sent as an
        ``Any`` with an empty ``type_url``. Replaces earlier data or message."""
        if type(content_type) is not str or not content_type.isascii():
            _check_str("content_type", content_type)
        self._data = data if type(data) is bytes else _check_bytes("data", data)
        self._content_type = content_type
        return self

    def with_message(self, message: Message) -> InvokeMethodRequest:
        """A protobuf message, packed into ``Any`` (an ``Any`` is sent as it is). Replaces earlier
        data; the content type is left as it was (``""`` by default)."""
        self._data = _pack(message)
        return self

    def with_content_type(self, content_type: str) -> InvokeMethodRequest:
        """Set the content type alone."""
        self._content_type = _check_str("content_type", content_type)
        return self

    def with_http_extension(self, verb: str | int, querystring: str = "") -> InvokeMethodRequest:
        """Set the HTTP verb and query string. The verb is upper-cased; an unknown verb is POST
        (Dapr's rule; see :meth:`HTTPVerb.parse`)."""
        self._http = (HTTPVerb.parse(verb), _check_str("querystring", querystring))
        return self

    def with_api_version(self, version: int) -> InvokeMethodRequest:
        """Set the API version (default V1). Any int32 is stored, so that a version the channel
        does not serve can be refused by the channel with UNIMPLEMENTED, as Dapr does."""
        if not isinstance(version, int) or isinstance(version, bool):
            raise InvokeError(f"API version must be an int (APIVersion), got {version!r}")
        if not _INT32_MIN <= version <= _INT32_MAX:
            raise InvokeError(f"API version must fit in int32, got {version}")
        self._ver = version
        return self

    # reading --------------------------------------------------------------------------------

    @property
    def method(self) -> str:
        return self._method

    @property
    def api_version(self) -> int:
        """The API version: an :class:`APIVersion` when known, else the plain int."""
        ver = self._ver
        if type(ver) is APIVersion:  # the usual case; spares building the member again
            return ver
        try:
            return APIVersion(ver)
        except ValueError:
            return self._ver

    @property
    def metadata(self) -> dict[str, list[str]]:
        """A copy of the internal metadata."""
        return {k: list(v) for k, v in self._metadata}

    def grpc_metadata(self, http_header_conversion: bool = True) -> Metadata:
        """The internal metadata as gRPC metadata, by
        :func:`~grpc_channel.metadata.internal_to_grpc` (raises MetadataError for invalid keys or
        values)."""
        return internal_to_grpc(dict(self._metadata), http_header_conversion)

    def grpc_pairs(self, http_header_conversion: bool = True) -> MetadataPairs:
        """:meth:`grpc_metadata` in grpcio's ``metadata=`` form. Conversions are remembered by
        content (a few hundred distinct metadata sets): requests that carry the same metadata,
        as most calls of one caller do, convert it once. Raises MetadataError like
        :meth:`grpc_metadata` (and nothing is remembered then)."""
        return _converted_pairs(self._metadata, http_header_conversion)

    @property
    def data(self) -> bytes:
        """The data bytes: the raw data, or the serialised message; ``b""`` when none."""
        data = self._data
        if data is None:
            return b""
        return data if type(data) is bytes else cast(any_pb2.Any, data).value

    @property
    def data_any(self) -> any_pb2.Any | None:
        """A copy of the data as ``Any`` (``None`` when no data was set; raw data has an empty
        ``type_url``)."""
        data = self._data
        if type(data) is bytes:
            return any_pb2.Any(value=data)
        return _copy_any(cast("any_pb2.Any | None", data))

    @property
    def content_type(self) -> str:
        return self._content_type

    @property
    def http_verb(self) -> HTTPVerb:
        """The HTTP verb; NONE without an HTTP extension."""
        return HTTPVerb.NONE if self._http is None else self._http[0]

    @property
    def querystring(self) -> str:
        return "" if self._http is None else self._http[1]

    @property
    def has_http_extension(self) -> bool:
        return self._http is not None

    def unpack(self, message_cls: type[_M]) -> _M:
        """The data unpacked as ``message_cls``; InvokeError when it is raw data or another type."""
        return _unpack(self._data, message_cls)

    # wire -----------------------------------------------------------------------------------

    def to_invoke_request(self) -> common_pb2.InvokeRequest:
        """The ``InvokeRequest`` sent to ``AppCallback/OnInvoke`` (a new message each call)."""
        req = common_pb2.InvokeRequest(method=self._method, content_type=self._content_type)
        data = self._data
        if type(data) is bytes:
            req.data.value = data  # marks ``data`` present even when empty, as an Any would
        elif data is not None:
            req.data.CopyFrom(cast(any_pb2.Any, data))
        if self._http is not None:
            req.http_extension.verb = self._http[0].value  # type: ignore[assignment]
            req.http_extension.querystring = self._http[1]
        return req

    def to_internal(self) -> internals_pb2.InternalInvokeRequest:
        """The ``InternalInvokeRequest`` envelope: version, metadata and the InvokeRequest."""
        return internals_pb2.InternalInvokeRequest(
            ver=self._ver,  # type: ignore[arg-type]
            metadata=_internal_to_pb(self._metadata),
            message=self.to_invoke_request(),
        )

    @classmethod
    def from_invoke_request(
        cls, pb: common_pb2.InvokeRequest, *, api_version: int = APIVersion.V1
    ) -> InvokeMethodRequest:
        """Read an ``InvokeRequest`` (data, content type, HTTP extension when present)."""
        if not isinstance(pb, common_pb2.InvokeRequest):
            raise InvokeError(f"expected an InvokeRequest, got {type(pb).__name__}")
        # A peer may send an empty method: keep what was received rather than refuse it.
        req = cls._blank(pb.method)
        req.with_api_version(api_version)
        if pb.HasField("data"):
            req._data = _copy_any(pb.data)
        req._content_type = pb.content_type
        if pb.HasField("http_extension"):
            verb = pb.http_extension.verb
            req._http = (
                HTTPVerb(verb) if verb in HTTPVerb._value2member_map_ else HTTPVerb.POST,
                pb.http_extension.querystring,
            )
        return req

    @classmethod
    def from_internal(cls, pb: internals_pb2.InternalInvokeRequest) -> InvokeMethodRequest:
        """Read an ``InternalInvokeRequest``; InvokeError when it carries no message (as Dapr)."""
        if not isinstance(pb, internals_pb2.InternalInvokeRequest):
            raise InvokeError(f"expected an InternalInvokeRequest, got {type(pb).__name__}")
        if not pb.HasField("message"):
            raise InvokeError("InternalInvokeRequest has no message field")
        req = cls.from_invoke_request(pb.message, api_version=pb.ver)
        req._metadata = _pb_to_internal(pb.metadata)
        return req

    # misc -----------------------------------------------------------------------------------

    def copy(self) -> InvokeMethodRequest:
        """An independent copy."""
        out = InvokeMethodRequest._blank(self._method)
        out._ver = self._ver
        out._metadata = self._metadata  # immutable: shared
        data = self._data
        out._data = data if type(data) is bytes else _copy_any(cast("any_pb2.Any | None", data))
        out._content_type = self._content_type
        out._http = self._http
        return out

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, InvokeMethodRequest):
            return NotImplemented
        return (
            self._method == other._method
            and self._ver == other._ver
            and dict(self._metadata) == dict(other._metadata)
            and _data_key(self._data) == _data_key(other._data)
            and self._content_type == other._content_type
            and self._http == other._http
        )

    __hash__ = None  # type: ignore[assignment]  # mutable

    def __repr__(self) -> str:
        http = "" if self._http is None else f", http={self._http[0].name} {self._http[1]!r}"
        key = _data_key(self._data)
        kind = "" if key is None else f", data={len(key[1])} bytes"
        if key is not None and key[0]:
            kind += f" ({key[0]})"
        keys = sorted(k for k, _ in self._metadata)
        return (
            f"InvokeMethodRequest({self._method!r}, ver={self._ver}{kind},"
            f" content_type={self._content_type!r}{http}, metadata keys={keys})"
        )


# ------------------------------------------------------------------------------------------
# response


_GRPC_CODES: Final[dict[int, grpc.StatusCode]] = {s.value[0]: s for s in grpc.StatusCode}


# The HTTP -> gRPC status mapping Dapr uses (gRPC's http-grpc-status-mapping).
_HTTP_TO_GRPC: Final[dict[int, grpc.StatusCode]] = {
    408: grpc.StatusCode.CANCELLED,
    500: grpc.StatusCode.UNKNOWN,
    400: grpc.StatusCode.INTERNAL,
    504: grpc.StatusCode.DEADLINE_EXCEEDED,
    404: grpc.StatusCode.NOT_FOUND,
    409: grpc.StatusCode.ALREADY_EXISTS,
    403: grpc.StatusCode.PERMISSION_DENIED,
    401: grpc.StatusCode.UNAUTHENTICATED,
    429: grpc.StatusCode.RESOURCE_EXHAUSTED,
    501: grpc.StatusCode.UNIMPLEMENTED,
    503: grpc.StatusCode.UNAVAILABLE,
}


class InvokeStatus:
    """A response status: ``code`` (a gRPC code 0-16, or an HTTP status >= 100), ``message`` and
    ``details`` (``google.protobuf.Any`` values, e.g. packed ``google.rpc`` error details)."""

    __slots__ = ("code", "details", "message")

    def __init__(
        self, code: int = 0, message: str = "", details: Iterable[any_pb2.Any] = ()
    ) -> None:
        self.code = code
        self.message = message
        self.details: list[any_pb2.Any] = list(details)

    @property
    def is_http(self) -> bool:
        """True when ``code`` is an HTTP status (>= 100), not a gRPC code."""
        return self.code >= 100

    @property
    def ok(self) -> bool:
        """gRPC OK (0), or an HTTP 2xx status."""
        return 200 <= self.code < 300 if self.is_http else self.code == 0

    @property
    def grpc_code(self) -> grpc.StatusCode:
        """The gRPC status code; an HTTP status is mapped as Dapr maps it (2xx OK, 404 NOT_FOUND,
        ... anything unmapped UNKNOWN)."""
        if self.is_http:
            if 200 <= self.code < 300:
                return grpc.StatusCode.OK
            return _HTTP_TO_GRPC.get(self.code, grpc.StatusCode.UNKNOWN)
        return _GRPC_CODES.get(self.code, grpc.StatusCode.UNKNOWN)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, InvokeStatus):
            return NotImplemented
        return (self.code, self.message, self.details) == (other.code, other.message, other.details)

    __hash__ = None  # type: ignore[assignment]  # mutable

    def __repr__(self) -> str:
        return (
            f"InvokeStatus(code={self.code}, message={self.message!r}, details={len(self.details)})"
        )


class InvokeStatusError(grpc.RpcError):
    """Raised by :meth:`InvokeMethodResponse.raise_for_status`: a ``grpc.RpcError`` with the
    ``grpc.Call`` accessors (``code()``, ``details()``, ``initial_metadata()``,
    ``trailing_metadata()``), plus ``response`` and ``status`` (with the raw int code and the
    details)."""

    def __init__(self, response: InvokeMethodResponse) -> None:
        self.response = response
        self.status = response.status
        super().__init__(
            f"invocation failed with {'HTTP status' if self.status.is_http else 'status'}"
            f" {self.status.code} ({self.status.grpc_code.name}): {self.status.message}"
        )

    def code(self) -> grpc.StatusCode:
        return self.status.grpc_code

    def details(self) -> str:
        return self.status.message

    def initial_metadata(self) -> MetadataPairs:
        return self.response.headers.to_grpc()

    # grpc-stubs types this as a tuple of _Metadatum; grpcio returns (key, value) pairs.
    def trailing_metadata(self) -> MetadataPairs:  # type: ignore[override]
        return self.response.trailers.to_grpc()


def _check_code(code: object) -> int:
    if isinstance(code, grpc.StatusCode):
        value: int = code.value[0]
        return value
    if not isinstance(code, int) or isinstance(code, bool):
        raise InvokeError(
            f"status code must be an int or a grpc.StatusCode, got {type(code).__name__}"
        )
    if 0 <= code <= 16 or 100 <= code <= 999:
        return code
    raise InvokeError(
        f"status code {code} is neither a gRPC status code (0-16) nor an HTTP status (100-999)"
    )


class InvokeMethodResponse:
    """The result of an invocation: ``status``, ``headers``, ``trailers``, ``data``,
    ``content_type``, ``is_http_response``.

    Build it with :meth:`from_status`, :meth:`from_invoke_response`, :meth:`from_rpc_error` or
    :meth:`from_internal`; ``with_*`` builders change it and return it.
    """

    __slots__ = (
        "_content_type",
        "_data",
        "_headers",
        "_raw_headers",
        "_raw_trailers",
        "_trailers",
        "status",
    )

    _headers: Metadata | None
    _trailers: Metadata | None
    # grpcio's pairs, read into Metadata on first access (see from_reply); None once read.
    _raw_headers: MetadataPairs | None
    _raw_trailers: MetadataPairs | None

    def __init__(self, status: InvokeStatus | None = None) -> None:
        self.status = InvokeStatus() if status is None else status
        self._headers = Metadata()
        self._trailers = Metadata()
        self._raw_headers = self._raw_trailers = None
        self._data: any_pb2.Any | None = None
        self._content_type = ""

    @property
    def headers(self) -> Metadata:
        """The response headers (gRPC initial metadata) as :class:`Metadata`."""
        md = self._headers
        if md is None:
            md = self._headers = Metadata.from_grpc(self._raw_headers)
            self._raw_headers = None
        return md

    @headers.setter
    def headers(self, value: Metadata) -> None:
        self._headers = value
        self._raw_headers = None

    @property
    def trailers(self) -> Metadata:
        """The response trailers (gRPC trailing metadata) as :class:`Metadata`."""
        md = self._trailers
        if md is None:
            md = self._trailers = Metadata.from_grpc(self._raw_trailers)
            self._raw_trailers = None
        return md

    @trailers.setter
    def trailers(self, value: Metadata) -> None:
        self._trailers = value
        self._raw_trailers = None

    # construction ---------------------------------------------------------------------------

    @classmethod
    def from_status(
        cls,
        code: int | grpc.StatusCode,
        message: str = "",
        details: Iterable[any_pb2.Any] = (),
        headers: HeadersInput = None,
        trailers: HeadersInput = None,
    ) -> InvokeMethodResponse:
        """A response with this status and no data. ``code``: a ``grpc.StatusCode``, a gRPC code
        0-16 or an HTTP status 100-999, else InvokeError. ``details`` must be ``Any`` messages."""
        checked = _check_code(code)
        _check_str("message", message)
        if isinstance(details, Message) or not isinstance(details, Iterable):
            raise InvokeError(f"details must be a list of Any, got {type(details).__name__}")
        detail_list = list(details)
        for d in detail_list:
            if not isinstance(d, any_pb2.Any):
                raise InvokeError(
                    f"details must be google.protobuf.Any messages (pack them), got"
                    f" {type(d).__name__}"
                )
        rsp = cls(InvokeStatus(checked, message, [_clone_any(d) for d in detail_list]))
        rsp.headers = _received_metadata("headers", headers)
        rsp.trailers = _received_metadata("trailers", trailers)
        return rsp

    @classmethod
    def from_invoke_response(
        cls,
        resp: common_pb2.InvokeResponse,
        headers: HeadersInput = None,
        trailers: HeadersInput = None,
    ) -> InvokeMethodResponse:
        """A successful (OK) response from an app's ``InvokeResponse`` and the call's headers and
        trailers (a Metadata, or grpcio's pairs as ``initial_metadata()`` returns them)."""
        if not isinstance(resp, common_pb2.InvokeResponse):
            raise InvokeError(f"expected an InvokeResponse, got {type(resp).__name__}")
        rsp = cls()
        rsp.headers = _received_metadata("headers", headers)
        rsp.trailers = _received_metadata("trailers", trailers)
        rsp.with_invoke_response(resp)
        return rsp

    @classmethod
    def from_reply(
        cls,
        reply: common_pb2.InvokeResponse,
        headers: Iterable[tuple[str, MetadataValue]] | None,
        trailers: Iterable[tuple[str, MetadataValue]] | None,
    ) -> InvokeMethodResponse:
        """The per-call fast path of :meth:`from_invoke_response`, for a reply grpcio has just
        parsed: takes ownership of ``reply`` (its data is not copied, so do not change it later),
        skips the argument checks, and reads ``headers``/``trailers`` exactly as grpcio returns
        them (pairs or ``None``) with :meth:`Metadata.from_grpc`. A tuple of pairs (what grpcio
        returns, immutable) is read on first access of ``headers``/``trailers``: most callers of
        the hot path never look at them."""
        rsp = cls.__new__(cls)
        rsp.status = status = InvokeStatus.__new__(InvokeStatus)  # OK; __init__ inlined
        status.code, status.message, status.details = 0, "", []
        if type(headers) is tuple:
            rsp._headers, rsp._raw_headers = None, headers
        else:
            rsp._headers, rsp._raw_headers = Metadata.from_grpc(headers), None
        if type(trailers) is tuple:
            rsp._trailers, rsp._raw_trailers = None, trailers
        else:
            rsp._trailers, rsp._raw_trailers = Metadata.from_grpc(trailers), None
        rsp._data = reply.data if reply.HasField("data") else None
        rsp._content_type = reply.content_type
        return rsp

    @classmethod
    def from_rpc_error(cls, err: grpc.RpcError) -> InvokeMethodResponse:
        """A response from a failed call: code, message, headers and trailers of the error, and
        the ``google.rpc.Status`` details the server attached (read with grpcio-status from the
        ``grpc-status-details-bin`` trailer). Works with sync and aio errors and with
        ``LocalRpcError``. When the attached status is unreadable or disagrees with the call's
        code or message, the details are left empty (the code and message of the call win). An
        ``RpcError`` that is not a ``grpc.Call`` becomes UNKNOWN with ``str(err)``."""
        if not isinstance(err, grpc.RpcError):
            raise InvokeError(f"expected a grpc.RpcError, got {type(err).__name__}")
        code_fn = getattr(err, "code", None)
        if not callable(code_fn):
            return cls.from_status(grpc.StatusCode.UNKNOWN, str(err))
        code = code_fn()
        details_fn = getattr(err, "details", None)
        message = details_fn() if callable(details_fn) else None
        headers_fn = getattr(err, "initial_metadata", None)
        trailers_fn = getattr(err, "trailing_metadata", None)
        headers = headers_fn() if callable(headers_fn) else None
        trailers = trailers_fn() if callable(trailers_fn) else None
        status_details: list[any_pb2.Any] = []
        try:
            # from_call only reads code(), details() and trailing_metadata(), which sync and aio
            # errors and LocalRpcError all have.
            rich = rpc_status.from_call(cast(grpc.Call, err))
        except (ValueError, DecodeError, TypeError, AttributeError):
            rich = None
        if rich is not None:
            status_details = list(rich.details)
        code_int = code.value[0] if isinstance(code, grpc.StatusCode) else 2
        rsp = cls(InvokeStatus(code_int, message or "", status_details))
        rsp.headers = _received_metadata("headers", headers)
        rsp.trailers = _received_metadata("trailers", trailers)
        return rsp

    @classmethod
    def from_internal(cls, pb: internals_pb2.InternalInvokeResponse) -> InvokeMethodResponse:
        """Read an ``InternalInvokeResponse``: the status as it is (any int32 code), headers and
        trailers with ``-bin`` values base64-decoded, the message's data and content type."""
        if not isinstance(pb, internals_pb2.InternalInvokeResponse):
            raise InvokeError(f"expected an InternalInvokeResponse, got {type(pb).__name__}")
        rsp = cls(InvokeStatus(pb.status.code, pb.status.message, list(pb.status.details)))
        rsp.headers = _metadata_from_internal(pb.headers)
        rsp.trailers = _metadata_from_internal(pb.trailers)
        if pb.HasField("message"):
            rsp.with_invoke_response(pb.message)
        return rsp

    # builders -------------------------------------------------------------------------------

    def with_invoke_response(self, resp: common_pb2.InvokeResponse) -> InvokeMethodResponse:
        """Take data and content type from an ``InvokeResponse``."""
        self._data = _copy_any(resp.data) if resp.HasField("data") else None
        self._content_type = resp.content_type
        return self

    def with_data(
        self, data: bytes | bytearray | memoryview, content_type: str = ""
    ) -> InvokeMethodResponse:
        """Raw data (bytes-like) and its content type."""
        raw = _check_bytes("data", data)
        self._content_type = _check_str("content_type", content_type)
        self._data = any_pb2.Any(value=raw)
        return self

    def with_message(self, message: Message) -> InvokeMethodResponse:
        """A protobuf message, packed into ``Any``."""
        self._data = _pack(message)
        return self

    def with_headers(self, headers: HeadersInput) -> InvokeMethodResponse:
        """Replace the headers (a copy of a Metadata, or grpcio pairs)."""
        self.headers = _received_metadata("headers", headers)
        return self

    def with_trailers(self, trailers: HeadersInput) -> InvokeMethodResponse:
        """Replace the trailers (a copy of a Metadata, or grpcio pairs)."""
        self.trailers = _received_metadata("trailers", trailers)
        return self

    # reading --------------------------------------------------------------------------------

    @property
    def data(self) -> bytes:
        """The data bytes (raw data or the serialised message); ``b""`` when none."""
        return b"" if self._data is None else self._data.value

    @property
    def data_any(self) -> any_pb2.Any | None:
        """A copy of the data as ``Any`` (``None`` when there is none)."""
        return _copy_any(self._data)

    @property
    def content_type(self) -> str:
        """The content type; ``application/x-protobuf`` whenever the data is a packed message
        (Dapr's rule), whatever the app declared."""
        if self._data is not None and self._data.type_url:
            return PROTOBUF_CONTENT_TYPE
        return self._content_type

    @property
    def is_http_response(self) -> bool:
        """True when the status code is an HTTP status (>= 100) rather than a gRPC code."""
        return self.status.code >= 100

    def unpack(self, message_cls: type[_M]) -> _M:
        """The data unpacked as ``message_cls``; InvokeError when it is raw data or another type."""
        return _unpack(self._data, message_cls)

    def raise_for_status(self) -> InvokeMethodResponse:
        """Return ``self`` when the status is OK (gRPC 0, or HTTP 2xx), else raise
        :class:`InvokeStatusError`."""
        if self.status.ok:
            return self
        raise InvokeStatusError(self)

    # wire -----------------------------------------------------------------------------------

    def to_invoke_response(self) -> common_pb2.InvokeResponse:
        """The ``InvokeResponse`` message (data and the declared content type)."""
        resp = common_pb2.InvokeResponse(content_type=self._content_type)
        if self._data is not None:
            resp.data.CopyFrom(self._data)
        return resp

    def to_internal(self) -> internals_pb2.InternalInvokeResponse:
        """The ``InternalInvokeResponse``: status, headers and trailers (``-bin`` values
        base64-encoded) and the InvokeResponse."""
        code = self.status.code
        if not _INT32_MIN <= code <= _INT32_MAX:
            raise InvokeError(f"status code {code} does not fit in int32")
        return internals_pb2.InternalInvokeResponse(
            status=internals_pb2.Status(
                code=code, message=self.status.message, details=self.status.details
            ),
            headers=_internal_to_pb(grpc_to_internal(self.headers).items()),
            trailers=_internal_to_pb(grpc_to_internal(self.trailers).items()),
            message=self.to_invoke_response(),
        )

    def __repr__(self) -> str:
        kind = "" if self._data is None else f", data={len(self._data.value)} bytes"
        return (
            f"InvokeMethodResponse({self.status!r}{kind}, content_type={self.content_type!r},"
            f" headers={sorted(self.headers.keys())}, trailers={sorted(self.trailers.keys())})"
        )
