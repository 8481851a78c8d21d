"""``grpc-channel call TARGET METHOD``: one ad-hoc unary call, printed.

Prints the response (JSON when the types are known, else its length and hex), the response
headers and trailers, and the status. Exit codes: 0 the call ended OK, 1 it failed (status code
and details printed, with the google.rpc.Status details from grpc-status-details-bin decoded when
their types are known) or the server could not be reached within --connect-timeout, 2 a usage
error. The types come from --proto (with -I), --descriptor-set, or server reflection (the
default). The same one call is the preflight of ``grpc-channel bench --target`` (see
:func:`call_once`, :func:`describe_result`).
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import grpc
from google.protobuf import json_format

from .target import Target, TargetError, open_channel, resolve_message_types
from .target_options import (
    CONNECT_TIMEOUT_S,
    TIMEOUT_S,
    UsageError,
    add_target_options,
    build_typed_target,
    check_type_sources,
    connection_target,
    read_data,
)
from .template import MetadataTemplate

__all__ = [
    "DESCRIPTION",
    "CallResult",
    "ConnectError",
    "add_arguments",
    "call_once",
    "describe_result",
    "execute",
    "wait_connected",
]

_HEX_LIMIT = 64

DESCRIPTION = """One unary call, printed: the response (JSON when the types are known, else its
length and hex), the response headers and trailers, and the status.

The message types come from --proto (with -I), --descriptor-set, or gRPC server reflection (the
default). Exit codes: 0 the call ended OK; 1 it failed (status code and details printed, the
google.rpc.Status details decoded when their types are known) or the server was not reachable
within --connect-timeout; 2 a usage error.

Example: grpc-channel call 127.0.0.1:50051 helloworld.Greeter/SayHello -d '{"name": "Joe"}'
"""


class ConnectError(RuntimeError):
    """The target did not accept a connection in time."""


@dataclass(frozen=True)
class CallResult:
    """What one call brought back. ``response`` is None when the call failed (else the first
    response; ``responses`` holds every message of a stream); ``status_details`` are the decoded
    google.rpc.Status details (one text each)."""

    code: grpc.StatusCode
    details: str
    response: bytes | None
    headers: tuple[tuple[str, str | bytes], ...]
    trailers: tuple[tuple[str, str | bytes], ...]
    status_details: tuple[str, ...]
    seconds: float
    responses: tuple[bytes, ...] = ()

    @property
    def ok(self) -> bool:
        return self.code is grpc.StatusCode.OK


def wait_connected(target: Target, timeout: float) -> None:
    """Return once a channel to ``target`` is ready; ConnectError after ``timeout`` seconds
    (an unreachable server, or a TLS handshake that fails, never becomes ready)."""
    channel = open_channel(target, local_pool=True)
    try:
        grpc.channel_ready_future(channel).result(timeout=timeout)
    except grpc.FutureTimeoutError:
        hint = " (TLS handshake failing?)" if target.tls is not None else ""
        raise ConnectError(
            f"cannot connect to {target.address} within {timeout:g} s (--connect-timeout){hint}"
        ) from None
    finally:
        channel.close()


def _pairs(metadata: Any) -> tuple[tuple[str, str | bytes], ...]:
    return tuple((str(k), v) for k, v in (metadata or ()))


def _decode_status_details(error: grpc.RpcError) -> tuple[str, ...]:
    try:
        from grpc_status import rpc_status

        status = rpc_status.from_call(error)  # type: ignore[arg-type]
    except Exception:  # a malformed grpc-status-details-bin: show the call without details
        return ()
    if status is None:
        return ()
    with contextlib.suppress(ImportError):
        # The well-known error detail types, so their Any values decode to JSON.
        from google.rpc import error_details_pb2  # noqa: F401
    texts = []
    for detail in status.details:
        try:
            texts.append(json_format.MessageToJson(detail, indent=None))
        except (TypeError, json_format.Error):
            texts.append(f"{detail.type_url} ({len(detail.value)} bytes, type unknown)")
    return tuple(texts)


def _invoke(channel: Any, target: Target, request: bytes) -> tuple[list[bytes], Any]:
    """One call in the target's shape; the responses and the call (for its metadata)."""
    template = MetadataTemplate.parse(target.metadata, target.method)
    # Templated metadata is rendered for request 0, as the data is (see json_target).
    metadata = (target.metadata or None) if template is None else template.render(0)
    timeout = target.timeout
    outgoing = iter(target.messages or (request,))
    if target.shape == "unary":
        response, call = channel.unary_unary(target.method).with_call(
            request, metadata=metadata, timeout=timeout
        )
        return [response], call
    if target.shape == "client_stream":
        response, call = channel.stream_unary(target.method).with_call(
            outgoing, metadata=metadata, timeout=timeout
        )
        return [response], call
    if target.shape == "server_stream":
        stream = channel.unary_stream(target.method)(request, metadata=metadata, timeout=timeout)
    else:
        stream = channel.stream_stream(target.method)(outgoing, metadata=metadata, timeout=timeout)
    # A failure mid-stream raises from the iteration; the stream object is that error too.
    return [bytes(item) for item in stream], stream


def call_once(target: Target, *, payload: bytes | None = None) -> CallResult:
    """Make one call of ``target`` (its payload unless ``payload`` is given) in its shape, on a
    channel of its own, and return what came back; a failed call is a result, not an exception.
    Streams are read to their end; a client or bidi stream sends ``target.messages``."""
    channel = open_channel(target)
    try:
        started = time.perf_counter()
        try:
            responses, call = _invoke(
                channel, target, target.payload if payload is None else payload
            )
        except grpc.RpcError as error:
            seconds = time.perf_counter() - started
            code = error.code() if hasattr(error, "code") else grpc.StatusCode.UNKNOWN
            return CallResult(
                code=code,
                details=str(error.details() if hasattr(error, "details") else error),
                response=None,
                headers=_pairs(error.initial_metadata())
                if hasattr(error, "initial_metadata")
                else (),
                trailers=_pairs(error.trailing_metadata())
                if hasattr(error, "trailing_metadata")
                else (),
                status_details=_decode_status_details(error),
                seconds=seconds,
            )
        seconds = time.perf_counter() - started
        return CallResult(
            code=grpc.StatusCode.OK,
            details="",
            response=bytes(responses[0]) if responses else b"",
            headers=_pairs(call.initial_metadata()),
            trailers=_pairs(call.trailing_metadata()),
            status_details=(),
            seconds=seconds,
            responses=tuple(bytes(r) for r in responses),
        )
    finally:
        channel.close()


def _show_value(value: str | bytes) -> str:
    return value.hex() if isinstance(value, bytes) else value


def _show_response(target: Target, response: bytes) -> str:
    try:
        types = resolve_message_types(target)
    except TargetError:
        types = None
    if types is not None:
        try:
            message = types[1].FromString(response)
            return json_format.MessageToJson(message, indent=None)
        except Exception:  # bytes that do not parse as the type: shown raw below
            pass
    shown = response[:_HEX_LIMIT].hex()
    more = "..." if len(response) > _HEX_LIMIT else ""
    return f"{len(response)} bytes: {shown}{more}"


def describe_result(target: Target, result: CallResult) -> list[str]:
    """The lines that show a call: method, status, response or error, headers, trailers."""
    lines = [f"call: {target.method} -> {target.address} ({result.seconds * 1e3:.2f} ms)"]
    lines.append(f"  status:   {result.code.value[0]} {result.code.name}")
    if result.response is not None and target.shape in ("server_stream", "bidi"):
        lines.append(f"  responses: {len(result.responses)} messages")
        lines.extend(
            f"  response {i}: {_show_response(target, r)}"
            for i, r in enumerate(result.responses[:10])
        )
    elif result.response is not None:
        lines.append(f"  response: {_show_response(target, result.response)}")
    else:
        lines.append(f"  details:  {result.details}")
        lines.extend(f"  error detail: {text}" for text in result.status_details)
    lines.append(f"  headers:  {[(k, _show_value(v)) for k, v in result.headers]}")
    lines.append(f"  trailers: {[(k, _show_value(v)) for k, v in result.trailers]}")
    return lines


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """The ``call`` options."""
    parser.add_argument("target", metavar="TARGET", help="host:port of the server")
    parser.add_argument(
        "call_method",
        metavar="METHOD",
        nargs="?",
        help="pkg.Service/Method, /pkg.Service/Method or pkg.Service.Method (or give --call)",
    )
    add_target_options(parser, bench=False, tls_group=parser.add_argument_group("TLS"))
    for action in parser._actions:
        if action.dest == "method":
            # Here the method is usually the positional METHOD; --call is the ghz spelling.
            action.help = "the method, when not given as METHOD (default: none)"


def _run(args: argparse.Namespace, out: Callable[[str], Any]) -> int:
    if args.call_method is not None:
        if args.method is not None:
            raise UsageError("give the method once: as METHOD or as --call")
        args.method = args.call_method
    if args.method is None:
        raise UsageError("METHOD is required (pkg.Service/Method)")
    timeout = TIMEOUT_S if args.timeout is None else args.timeout
    connect_timeout = CONNECT_TIMEOUT_S if args.connect_timeout is None else args.connect_timeout
    if not connect_timeout > 0:
        raise UsageError("--connect-timeout must be > 0")
    data = read_data(args)
    check_type_sources(args)
    # Connect first: an unreachable server is exit 1 with that said, before reflection asks it.
    wait_connected(connection_target(args, args.target, "TARGET"), connect_timeout)
    target = build_typed_target(
        args,
        args.target,
        "{}" if data is None else data,
        timeout=timeout or None,
        connect_timeout=connect_timeout,
    )
    result = call_once(target)
    for line in describe_result(target, result):
        out(line)
    return 0 if result.ok else 1


def execute(args: argparse.Namespace, out: Callable[[str], Any] = print) -> int:
    """Run ``call`` with parsed ``args``: 0 OK, 1 a failed call or connection, 2 a usage error."""
    try:
        return _run(args, out)
    except (UsageError, TargetError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    except ConnectError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1


def main(argv: Sequence[str] | None = None) -> int:
    """``grpc-channel call`` as a function: parse ``argv``, call, return the exit code."""
    parser = argparse.ArgumentParser(
        prog="grpc-channel call",
        description=DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    add_arguments(parser)
    return execute(parser.parse_args(argv))
