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
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from google.protobuf import any_pb2, descriptor_pb2, descriptor_pool, json_format, message_factory
from google.protobuf.message import DecodeError, Message

__all__ = [
    "InvokeSpec",
    "MessageTypes",
    "Target",
    "TargetError",
    "TlsSpec",
    "bytes_target",
    "check_address",
    "closest_methods",
    "compile_protos",
    "invoke_target",
    "json_target",
    "load_descriptor_set",
    "normalize_method",
    "open_channel",
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
class TlsSpec:
    """TLS for a target's channel: PEM bytes of the roots (None: the system's roots), and of the
    client certificate chain and its key (mutual TLS; both or neither). ``server_name`` overrides
    the name the server's certificate is checked against (None: the host of the address)."""

    root_certificates: bytes | None = None
    certificate_chain: bytes | None = None
    private_key: bytes | None = None
    server_name: str | None = None

    def __post_init__(self) -> None:
        if (self.certificate_chain is None) != (self.private_key is None):
            raise TargetError("a client certificate needs its key, and a key its certificate")


@dataclass(frozen=True)
class Target:
    """One unary method to call. ``payload`` is the serialised request.

    ``request_type``/``response_type`` (full protobuf names) let stub variants (de)serialise
    messages; they are resolved in ``descriptor_set`` (a serialised FileDescriptorSet) when given,
    else in the default pool after importing ``proto_modules``. ``metadata`` is sent by every
    variant; ``timeout`` (seconds, None for none) bounds every call. ``invoke`` is set for OnInvoke
    targets. ``tls`` (None: plaintext) and ``authority`` (None: the address) shape the channel
    :func:`open_channel` opens. ``data_template`` is the request as JSON text holding ghz-style
    template actions (see ``grpc_channel.bench.template``), rendered per call by the variants that
    support it (``plain``, ``plain-aio``); ``payload`` is then its rendering for request number 0.
    ``shape`` is ``unary``, ``server_stream``, ``client_stream`` or ``bidi`` (streams: the
    ``plain`` variants only; one stream is one call); ``messages`` are what a client or bidi
    stream sends. Metadata values may hold template actions too (rendered by the same variants).
    Request numbers count from ``number_start`` by ``number_stride`` (a worker process's share of
    the run's numbers; default 0, 1, 2, ...).
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
    tls: TlsSpec | None = None
    authority: str | None = None
    data_template: str | None = None
    shape: str = "unary"
    messages: tuple[bytes, ...] = ()
    number_start: int = field(default=0, compare=False)
    number_stride: int = field(default=1, compare=False)

    def __post_init__(self) -> None:
        if not self.address or any(c.isspace() for c in self.address):
            raise TargetError(f"address must be host:port (no spaces), got {self.address!r}")
        split_method_path(self.method)
        if (self.request_type is None) != (self.response_type is None):
            raise TargetError("give both request_type and response_type, or neither")
        if self.shape not in ("unary", "server_stream", "client_stream", "bidi"):
            raise TargetError("shape must be unary, server_stream, client_stream or bidi")
        if self.number_start < 0 or self.number_stride < 1:
            raise TargetError("request numbers need number_start >= 0 and number_stride >= 1")
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
            "tls": self.tls is not None,
            "authority": self.authority,
            "data_template": self.data_template is not None,
            "shape": self.shape,
            "messages_per_stream": len(self.messages) or None,
            "invoke": None
            if self.invoke is None
            else {
                "method": self.invoke.method,
                "data_bytes": len(self.invoke.data),
                "content_type": self.invoke.content_type,
            },
        }


def normalize_method(text: str) -> str:
    """A method as users write it, in the path form ``/pkg.Service/Method``.

    Accepts ``/pkg.Service/Method``, ``pkg.Service/Method`` (ghz, grpcurl) and
    ``pkg.Service.Method`` (ghz's dotted form: the last dot splits service and method). Anything
    else raises TargetError.
    """
    text = text.strip()
    if "/" not in text and text.count(".") >= 1:
        service, _, method = text.rpartition(".")
        text = f"{service}/{method}"
    path = text if text.startswith("/") else "/" + text
    split_method_path(path)
    return path


def check_address(address: str, flag: str = "--target") -> str:
    """``address`` if it is ``host:port`` with a port in 1..65535 (IPv6 hosts in brackets) or a
    ``unix:`` path; otherwise TargetError naming ``flag`` and what is allowed."""
    if address.startswith(("unix:", "unix-abstract:")):
        return address
    host, sep, port = address.rpartition(":")
    if (
        not sep
        or not host
        or any(c.isspace() for c in address)
        or (":" in host and "]" not in host)
    ):
        raise TargetError(
            f"{flag} must be host:port (for example 127.0.0.1:50051), got {address!r}"
        )
    if not port.isdigit() or not 0 < int(port) < 65536:
        raise TargetError(f"{flag} needs a port in 1..65535, got {address!r}")
    return address


def open_channel(target: Target, *, aio: bool = False, local_pool: bool = True) -> Any:
    """A grpcio channel (``grpc.aio`` with ``aio``) to the target: plaintext, or TLS with
    ``target.tls``; ``target.authority`` sets ``grpc.default_authority`` (and, with TLS and no
    ``server_name``, the name the certificate is checked against). ``local_pool`` gives the
    channel a connection of its own (as every benchmark variant has)."""
    import grpc
    import grpc.aio

    options: list[tuple[str, Any]] = []
    if local_pool:
        options.append(("grpc.use_local_subchannel_pool", 1))
    if target.authority is not None:
        options.append(("grpc.default_authority", target.authority))
    tls = target.tls
    if tls is None:
        if aio:
            return grpc.aio.insecure_channel(target.address, options=options)
        return grpc.insecure_channel(target.address, options=options)
    name = tls.server_name or target.authority
    if name is not None:
        options.append(("grpc.ssl_target_name_override", name))
    credentials = grpc.ssl_channel_credentials(
        tls.root_certificates, tls.private_key, tls.certificate_chain
    )
    if aio:
        return grpc.aio.secure_channel(target.address, credentials, options=options)
    return grpc.secure_channel(target.address, credentials, options=options)


def compile_protos(protos: Sequence[str], import_paths: Sequence[str] = ()) -> bytes:
    """Compile ``.proto`` files with ``grpc_tools.protoc`` (in a temporary directory) into a
    serialised FileDescriptorSet with every import included.

    The directory of each proto file, then ``import_paths``, then the well-known types shipped
    with grpcio-tools are searched for imports. Raises TargetError when grpcio-tools is not
    installed, a file is missing, or protoc reports an error (its message is included).
    """
    try:
        from grpc_tools import protoc
    except ImportError as exc:
        raise TargetError(
            "--proto needs grpcio-tools (pip install grpcio-tools); "
            "or give --descriptor-set, or use server reflection"
        ) from exc
    import contextlib
    import importlib.resources
    import io
    import os
    import tempfile

    for proto in protos:
        if not os.path.isfile(proto):
            raise TargetError(f"--proto file not found: {proto}")
    for path in import_paths:
        if not os.path.isdir(path):
            raise TargetError(f"--import-path is not a directory: {path}")
    roots = [os.path.dirname(os.path.abspath(p)) for p in protos]
    well_known = str(importlib.resources.files("grpc_tools") / "_proto")
    includes = list(dict.fromkeys([*roots, *(os.path.abspath(p) for p in import_paths)]))
    with tempfile.TemporaryDirectory(prefix="grpc-channel-proto-") as tmp:
        out = os.path.join(tmp, "set.pb")
        argv = [
            "protoc",
            *(f"-I{path}" for path in [*includes, well_known]),
            f"--descriptor_set_out={out}",
            "--include_imports",
            *(os.path.abspath(p) for p in protos),
        ]
        errors = io.StringIO()
        # protoc writes its diagnostics to the process's stderr; they are kept for the message.
        with contextlib.redirect_stderr(errors):
            code = protoc.main(argv)
        if code != 0 or not os.path.exists(out):
            detail = errors.getvalue().strip() or f"exit code {code}"
            raise TargetError(f"protoc could not compile {', '.join(protos)}: {detail}")
        with open(out, "rb") as produced:
            return produced.read()


def closest_methods(descriptor_set: bytes, wanted: str, limit: int = 10) -> list[str]:
    """Every method path the descriptor set declares, the closest to ``wanted`` first (at most
    ``limit``; difflib similarity of the full path)."""
    import difflib

    fds = descriptor_pb2.FileDescriptorSet.FromString(descriptor_set)
    paths = [
        f"/{f.package + '.' if f.package else ''}{service.name}/{method.name}"
        for f in fds.file
        for service in f.service
        for method in service.method
    ]
    ranked = sorted(
        paths, key=lambda p: -difflib.SequenceMatcher(None, wanted.lower(), p.lower()).ratio()
    )
    return ranked[:limit]


def _no_such_method(method: str, descriptor_set: bytes, why: str) -> TargetError:
    found = closest_methods(descriptor_set, method)
    listing = ", ".join(found) if found else "none"
    return TargetError(f"{why}; methods that exist (closest first): {listing}")


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
    tls: TlsSpec | None = None,
    authority: str | None = None,
) -> Target:
    """A unary method whose request is written as JSON (protobuf JSON mapping).

    The types come from the method's entry in ``descriptor_set`` (found by its path), or from
    ``request_type`` and ``response_type`` when given (needed when the set declares the messages but
    not the service). Unknown JSON fields are an error. A method the set lacks is an error listing
    the methods it has, closest first. JSON holding ghz template actions (``{{...}}``) is kept as
    ``data_template`` and rendered for request number 0 into ``payload``.
    """
    from .template import DataTemplate, TemplateError

    service_name, method_name = split_method_path(method)
    pool = load_descriptor_set(descriptor_set)
    if request_type is None and response_type is None:
        try:
            service = pool.FindServiceByName(service_name)
        except KeyError as exc:
            raise _no_such_method(
                method,
                descriptor_set,
                f"service {service_name!r} is not in the descriptor set (or name the request "
                "and response types instead)",
            ) from exc
        found = service.methods_by_name.get(method_name)
        if found is None:
            raise _no_such_method(
                method, descriptor_set, f"service {service_name!r} has no method {method_name!r}"
            )
        shape = _SHAPES[(found.client_streaming, found.server_streaming)]
        request_type = found.input_type.full_name
        response_type = found.output_type.full_name
    elif request_type is None or response_type is None:
        raise TargetError("give both request_type and response_type, or neither")
    else:
        shape = "unary"
    request_cls = _message_class(pool, request_type)
    _message_class(pool, response_type)
    if shape in ("client_stream", "bidi"):
        return _stream_target(
            address,
            method,
            json_text,
            request_cls,
            shape,
            request_type=request_type,
            response_type=response_type,
            descriptor_set=bytes(descriptor_set),
            metadata=metadata,
            timeout=timeout,
            label=label,
            tls=tls,
            authority=authority,
        )
    try:
        template = DataTemplate.parse(json_text, method)
    except TemplateError as exc:
        raise TargetError(str(exc)) from None
    text = json_text if template is None else template.render(0)
    try:
        request = json_format.Parse(text, request_cls())
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
        tls=tls,
        authority=authority,
        data_template=None if template is None else json_text,
        shape=shape,
    )


_SHAPES = {
    (False, False): "unary",
    (False, True): "server_stream",
    (True, False): "client_stream",
    (True, True): "bidi",
}


def _stream_target(
    address: str,
    method: str,
    json_text: str,
    request_cls: type[Message],
    shape: str,
    **fields: Any,
) -> Target:
    """A client-streaming or bidi target: the JSON is one message or an array of messages (ghz's
    form), all sent on each stream. Template actions are not supported here."""
    if "{{" in json_text:
        raise TargetError("templated -d data is supported for unary and server-streaming methods")
    try:
        parsed = json.loads(json_text)
    except json.JSONDecodeError as exc:
        raise TargetError(f"request JSON is not valid JSON: {exc}") from exc
    items = parsed if isinstance(parsed, list) else [parsed]
    if not items:
        raise TargetError("a client stream needs at least one message (an empty JSON array)")
    messages = []
    for index, item in enumerate(items):
        try:
            message = json_format.ParseDict(item, request_cls())
        except json_format.ParseError as exc:
            raise TargetError(
                f"request message {index} does not match {request_cls.DESCRIPTOR.full_name}: {exc}"
            ) from exc
        messages.append(message.SerializeToString())
    return Target(
        address=address,
        method=method,
        payload=messages[0],
        messages=tuple(messages),
        shape=shape,
        **fields,
    )


def reflect_descriptor_set(
    address: str,
    method: str,
    *,
    timeout: float = 10.0,
    tls: TlsSpec | None = None,
    authority: str | None = None,
) -> bytes:
    """Ask the server at ``address`` (gRPC server reflection) for the file that declares the
    service of ``method``, with every file it depends on; return them as a serialized
    ``FileDescriptorSet``, dependencies first, ready for :func:`json_target`.

    Raises:
        TargetError: the server does not answer within ``timeout`` seconds, has no reflection
            service, or does not know the service (the message lists the methods of the
            services it does know, closest first).
    """
    import grpc
    from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
        ProtoReflectionDescriptorDatabase,
    )

    service_name, _ = split_method_path(method)
    channel = open_channel(
        Target(address=address, method=method, payload=b"", tls=tls, authority=authority),
        local_pool=False,
    )
    try:
        try:
            grpc.channel_ready_future(channel).result(timeout=timeout)
        except grpc.FutureTimeoutError as exc:
            raise TargetError(f"{address} did not answer within {timeout:g} s") from exc
        database = ProtoReflectionDescriptorDatabase(channel)
        try:
            root = database.FindFileContainingSymbol(service_name)
        except KeyError as exc:
            raise _no_such_method(
                method,
                _reflected_services(database),
                f"{address} does not know service {service_name!r} by reflection",
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


def _reflected_services(database: Any) -> bytes:
    """The files declaring every service the server lists by reflection, as a descriptor set
    (empty when listing fails: the error message then lists nothing)."""
    files: list[descriptor_pb2.FileDescriptorProto] = []
    try:
        for name in database.get_services():
            files.append(database.FindFileContainingSymbol(name))
    except Exception:  # a best-effort listing for an error message; the error itself is raised
        pass
    return descriptor_pb2.FileDescriptorSet(file=files).SerializeToString()


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
