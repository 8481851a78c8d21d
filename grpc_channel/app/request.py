"""A service invocation as a method handler receives it, and the full response it may return.

:class:`MethodRequest` is the ``InvokeRequest`` made plain: the method name, the data as bytes
(``Any.value``; ``data_type_url`` is the ``Any``'s type URL, empty for raw bytes, as Dapr sends
them), the content type, the gRPC invocation metadata as a ``dict`` (a repeated key's values joined
by ``", "``, ``-bin`` values base64, the ``dapr-api-token`` left out) and, when the call came
through Dapr's HTTP API, the HTTP verb name (``"GET"`` ...) and query string; ``http_verb`` is
``None`` without an HTTP extension.

A method handler may return:

- ``bytes`` (also ``bytearray``/``memoryview``): sent as is, content type
  ``application/octet-stream``;
- ``str``: UTF-8, content type ``text/plain; charset=UTF-8``;
- a ``dict`` or ``list``: compact JSON, content type ``application/json``;
- a protobuf message: packed into the ``Any``, content type ``application/x-protobuf``;
- ``None``: an empty response (no data, no content type);
- a :class:`MethodResponse`, to choose the content type and send headers (gRPC initial metadata)
  and trailers as well.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any

from grpc_channel.app._payload import Payload, safe_keys
from grpc_channel.invoke import HTTPVerb
from grpc_channel.v1 import common_pb2

__all__ = ["MethodRequest", "MethodResponse"]


@dataclasses.dataclass(frozen=True)
class MethodRequest(Payload):
    """One invocation of a method. ``text()`` and ``json()`` read ``data``."""

    method: str
    data: bytes
    content_type: str
    metadata: dict[str, str] = dataclasses.field(default_factory=dict, repr=False)
    http_verb: str | None = None
    querystring: str = ""
    data_type_url: str = ""

    @classmethod
    def from_request(
        cls, request: common_pb2.InvokeRequest, invocation_metadata: dict[str, str] | None = None
    ) -> MethodRequest:
        """The request of an ``InvokeRequest``; ``invocation_metadata`` as built by the server.
        An unknown verb number (a newer Dapr) is reported as its number in text."""
        verb: str | None = None
        querystring = ""
        if request.HasField("http_extension"):
            number = int(request.http_extension.verb)
            try:
                verb = HTTPVerb(number).name
            except ValueError:
                verb = str(number)
            querystring = request.http_extension.querystring
        return cls(
            method=request.method,
            data=request.data.value,
            content_type=request.content_type,
            metadata=dict(invocation_metadata or {}),
            http_verb=verb,
            querystring=querystring,
            data_type_url=request.data.type_url,
        )

    def __repr__(self) -> str:
        fields = ", ".join(
            f"{f.name}={getattr(self, f.name)!r}" for f in dataclasses.fields(self) if f.repr
        )
        return f"MethodRequest({fields}, metadata keys={safe_keys(self.metadata)})"


@dataclasses.dataclass(frozen=True)
class MethodResponse:
    """A method handler's full answer.

    ``data`` is anything a handler may return directly except ``None`` and another
    ``MethodResponse`` (bytes, str, dict/list, a protobuf message); ``content_type``, when given,
    replaces the one that data would get. ``headers`` go out as the response's initial metadata and
    ``trailers`` as its trailing metadata: mappings of key to a value or a list of values, checked
    like :class:`~grpc_channel.metadata.Metadata` (a bad key or value makes the call fail with
    INTERNAL naming the key, never the value).
    """

    data: Any = b""
    content_type: str | None = None
    headers: Mapping[str, Any] = dataclasses.field(default_factory=dict)
    trailers: Mapping[str, Any] = dataclasses.field(default_factory=dict)
