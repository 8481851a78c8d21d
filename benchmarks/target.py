"""What a benchmark calls: an address, a unary method path and the request payload.

A ``Target`` is plain data (it crosses to worker processes): the payload is already serialised, and
message types travel by full name, resolved in the worker from a descriptor set or from the default
descriptor pool after importing ``proto_modules``. Three ways to build one:

- ``invoke_target``: ``/dapr.proto.runtime.v1.AppCallback/OnInvoke`` with an ``InvokeRequest`` (what
  the demo app and any Dapr app serve); only such targets enable the ``Channel.invoke_method``
  variants.
- ``bytes_target``: any unary method, the request given as raw bytes (no message types: only the raw
  variants apply).
- ``json_target``: any unary method, the request written as JSON and encoded with the message types
  of a ``FileDescriptorSet`` (``protoc --include_imports --descriptor_set_out=...``); the method is
  looked up in the set by its path, or the types are named explicitly.

The descriptor set can also come from the server itself: ``reflect_descriptor_set`` asks it by gRPC
server reflection (with the client of ``grpcio-reflection``, a dependency of this project) for the
file that declares the method's service and every file that one imports (``--reflect`` on the
command line). The server must run the reflection service; a descriptor set file needs none.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from google.protobuf import any_pb2, descriptor_pb2, descriptor_pool, json_format, message_factory
from google.protobuf.message import DecodeError, Message

__all__ = [
    "InvokeSpec",
    "MessageTypes",
    "Target",
    "TargetError",
    "bytes_target",
    "invoke_target",
    "json_target",
    "load_descriptor_set",
    "reflect_descriptor_set",
    "resolve_message_types",
    "split_method_path",
]

INVOKE_MODULE = "grpc_channel.v1.common_pb2"
INVOKE_REQUEST = "grpc_channel.v1.InvokeRequest"
INVOKE_RESPONSE = "grpc_channel.v1.InvokeResponse"


class TargetError(ValueError):
    """A target that cannot be built: bad address, method path, payload, JSON or descriptor set."""


@dataclass(frozen=True)
class InvokeSpec:
    """The ``InvokeRequest`` of an OnInvoke target, for variants that build their own request."""

    method: str = "echo"
    data: bytes = b""
    content_type: str = "application/octet-stream"


MessageTypes = tuple[type[Message], type[Message]]


@dataclass(frozen=True)
class Target:
    """One unary method to call. ``payload`` is the serialised request.

    ``request_type``/``response_type`` (full protobuf names) let stub variants (de)serialise
    messages; they are resolved in ``descriptor_set`` (a serialised FileDescriptorSet) when given,
    else in the default pool after importing ``proto_modules``. ``metadata`` is sent by every
    variant; ``timeout`` (seconds, None for none) bounds every call. ``invoke`` is set for OnInvoke
    targets.
    """

    address: str
    method: str
    payload: bytes
    request_type: str | None = None
    response_type: str | None = None
    descriptor_set: bytes | None = None
    proto_modules: tuple[str, ...] = ()
    metadata: tuple[tuple[str, str], ...] = ()
    timeout: float | None = None
    invoke: InvokeSpec | None = None
    label: str = field(default="", compare=False)

    def __post_init__(self) -> None:
        if not self.address or any(c.isspace() for c in self.address):
            raise TargetError(f"address must be host:port (no spaces), got {self.address!r}")
        split_method_path(self.method)
        if (self.request_type is None) != (self.response_type is None):
            raise TargetError("give both request_type and response_type, or neither")
        if self.timeout is not None and not self.timeout > 0:
            raise TargetError(f"timeout must be > 0 seconds or None, got {self.timeout}")
        for key, value in self.metadata:
            if not key or key != key.lower() or key.startswith(":"):
                raise TargetError(f"metadata keys must be non-empty lower-case names, got {key!r}")
            if not isinstance(value, str):
                raise TargetError(f"metadata value for {key!r} must be str")

    def describe(self) -> dict[str, Any]:
        """A JSON-able summary for reports (payload size, not its bytes)."""
        return {
            "label": self.label,
            "address": self.address,
            "method": self.method,
            "payload_bytes": len(self.payload),
            "request_type": self.request_type,
            "response_type": self.response_type,
            "metadata_keys": [key for key, _ in self.metadata],
            "timeout_s": self.timeout,
            "invoke": None
            if self.invoke is None
            else {
                "method": self.invoke.method,
                "data_bytes": len(self.invoke.data),
                "content_type": self.invoke.content_type,
            },
        }


def split_method_path(path: str) -> tuple[str, str]:
    """``"/pkg.Service/Method"`` -> ``("pkg.Service", "Method")``; anything else raises
    TargetError."""
    parts = path.split("/")
    if len(parts) != 3 or parts[0] or not parts[1] or not parts[2]:
        raise TargetError(f"method must be a path like /package.Service/Method, got {path!r}")
    return parts[1], parts[2]


def invoke_target(
    address: str,
    *,
    method: str = "echo",
    data: bytes = b"",
    content_type: str = "application/octet-stream",
    metadata: tuple[tuple[str, str], ...] = (),
    timeout: float | None = None,
    label: str = "",
) -> Target:
    """An OnInvoke target whose ``InvokeRequest`` carries ``method``, ``data`` and ``content_type``.

    ``data`` travels as ``google.protobuf.Any`` with an empty type URL and ``data`` as its value
    (what Dapr does for raw bytes).
    """
    from grpc_channel.appcallback import ON_INVOKE
    from grpc_channel.v1 import common_pb2

    request = common_pb2.InvokeRequest(method=method, content_type=content_type)
    request.data.CopyFrom(any_pb2.Any(value=data))
    return Target(
        address=address,
        method=ON_INVOKE,
        payload=request.SerializeToString(),
        request_type=INVOKE_REQUEST,
        response_type=INVOKE_RESPONSE,
        proto_modules=(INVOKE_MODULE,),
        metadata=metadata,
        timeout=timeout,
        invoke=InvokeSpec(method=method, data=data, content_type=content_type),
        label=label,
    )


def bytes_target(
    address: str,
    method: str,
    payload: bytes,
    *,
    metadata: tuple[tuple[str, str], ...] = (),
    timeout: float | None = None,
    label: str = "",
) -> Target:
    """Any unary method with a raw-bytes request."""
    return Target(
        address=address,
        method=method,
        payload=bytes(payload),
        metadata=metadata,
        timeout=timeout,
        label=label,
    )


def load_descriptor_set(data: bytes) -> descriptor_pool.DescriptorPool:
    """A fresh pool holding every file of a serialised FileDescriptorSet (any file order)."""
    try:
        fds = descriptor_pb2.FileDescriptorSet.FromString(data)
    except DecodeError as exc:
        raise TargetError(f"not a serialised FileDescriptorSet: {exc}") from exc
    if not fds.file:
        raise TargetError("the descriptor set holds no files")
    by_name = {f.name: f for f in fds.file}
    pool = descriptor_pool.DescriptorPool()
    added: set[str] = set()

    def add(name: str, chain: tuple[str, ...]) -> None:
        if name in added:
            return
        if name in chain:
            raise TargetError(f"import cycle in descriptor set: {' -> '.join((*chain, name))}")
        proto = by_name.get(name)
        if proto is None:
            raise TargetError(
                f"descriptor set lacks {name!r} (imported by {chain[-1]!r}); "
                "build it with protoc --include_imports"
            )
        for dep in proto.dependency:
            add(dep, (*chain, name))
        try:
            pool.Add(proto)
        except (TypeError, ValueError) as exc:
            raise TargetError(f"descriptor set file {name!r} is invalid: {exc}") from exc
        added.add(name)

    for name in by_name:
        add(name, ())
    return pool


def _message_class(pool: descriptor_pool.DescriptorPool, name: str) -> type[Message]:
    try:
        descriptor = pool.FindMessageTypeByName(name)
    except KeyError as exc:
        raise TargetError(f"message type {name!r} not found") from exc
    return message_factory.GetMessageClass(descriptor)


def json_target(
    address: str,
    method: str,
    json_text: str,
    descriptor_set: bytes,
    *,
    request_type: str | None = None,
    response_type: str | None = None,
    metadata: tuple[tuple[str, str], ...] = (),
    timeout: float | None = None,
    label: str = "",
) -> Target:
    """A unary method whose request is written as JSON (protobuf JSON mapping).

    The types come from the method's entry in ``descriptor_set`` (found by its path), or from
    ``request_type`` and ``response_type`` when given (needed when the set declares the messages but
    not the service). Unknown JSON fields are an error.
    """
    service_name, method_name = split_method_path(method)
    pool = load_descriptor_set(descriptor_set)
    if request_type is None and response_type is None:
        try:
            service = pool.FindServiceByName(service_name)
        except KeyError as exc:
            raise TargetError(
                f"service {service_name!r} is not in the descriptor set; "
                "name the request and response types instead"
            ) from exc
        found = service.methods_by_name.get(method_name)
        if found is None:
            raise TargetError(f"service {service_name!r} has no method {method_name!r}")
        if found.client_streaming or found.server_streaming:
            raise TargetError(f"{method} is a streaming method; only unary methods are supported")
        request_type = found.input_type.full_name
        response_type = found.output_type.full_name
    elif request_type is None or response_type is None:
        raise TargetError("give both request_type and response_type, or neither")
    request_cls = _message_class(pool, request_type)
    _message_class(pool, response_type)
    try:
        request = json_format.Parse(json_text, request_cls())
    except (json_format.ParseError, json.JSONDecodeError) as exc:
        raise TargetError(f"request JSON does not match {request_type}: {exc}") from exc
    return Target(
        address=address,
        method=method,
        payload=request.SerializeToString(),
        request_type=request_type,
        response_type=response_type,
        descriptor_set=bytes(descriptor_set),
        metadata=metadata,
        timeout=timeout,
        label=label,
    )


def reflect_descriptor_set(address: str, method: str, *, timeout: float = 10.0) -> bytes:
    """Ask the server at ``address`` (gRPC server reflection) for the file that declares the
    service of ``method``, with every file it depends on; return them as a serialized
    ``FileDescriptorSet``, dependencies first, ready for :func:`json_target`.

    Raises:
        TargetError: the server does not answer within ``timeout`` seconds, has no reflection
            service, or does not know the service.
    """
    import grpc
    from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
        ProtoReflectionDescriptorDatabase,
    )

    service_name, _ = split_method_path(method)
    channel = grpc.insecure_channel(address)
    try:
        try:
            grpc.channel_ready_future(channel).result(timeout=timeout)
        except grpc.FutureTimeoutError as exc:
            raise TargetError(f"{address} did not answer within {timeout:g} s") from exc
        database = ProtoReflectionDescriptorDatabase(channel)
        try:
            root = database.FindFileContainingSymbol(service_name)
        except KeyError as exc:
            raise TargetError(
                f"{address} does not know service {service_name!r} by reflection"
            ) from exc
        except grpc.RpcError as exc:
            raise TargetError(
                f"server reflection on {address} failed: {exc.code().name} {exc.details()}"
            ) from exc
        ordered: list[descriptor_pb2.FileDescriptorProto] = []
        seen: set[str] = set()

        def add(file_proto: descriptor_pb2.FileDescriptorProto) -> None:
            # Dependencies before dependants: a descriptor pool needs them in that order.
            if file_proto.name in seen:
                return
            seen.add(file_proto.name)
            for dependency in file_proto.dependency:
                add(database.FindFileByName(dependency))
            ordered.append(file_proto)

        add(root)
    finally:
        channel.close()
    return descriptor_pb2.FileDescriptorSet(file=ordered).SerializeToString()


def resolve_message_types(target: Target) -> MessageTypes | None:
    """The target's request and response classes, or None for a raw-bytes target."""
    if target.request_type is None or target.response_type is None:
        return None
    if target.descriptor_set is not None:
        pool = load_descriptor_set(target.descriptor_set)
    else:
        import importlib

        for module in target.proto_modules:
            importlib.import_module(module)
        pool = descriptor_pool.Default()
    return _message_class(pool, target.request_type), _message_class(pool, target.response_type)
