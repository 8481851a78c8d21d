"""The command-line options that name what to call, with ghz's flags and meanings, shared by
``grpc-channel bench`` and ``grpc-channel call``.

Method (``--call``, also ``--method``), request data (``-d/--data``, ``-D/--data-file``), metadata
(``-m/--metadata``, ``-M/--metadata-file``), where the message types come from (``--proto`` with
``-I/--import-path``, ``--descriptor-set``/``--protoset``, else gRPC server reflection), timeouts
(``-t/--timeout``, ``--connect-timeout``) and TLS (``--insecure``, ``--tls``, ``--cacert``,
``--cert``, ``--key``, ``--authority``). Every error is a :class:`UsageError` naming the flag.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from pathlib import Path
from typing import Any

from .target import (
    Target,
    TargetError,
    TlsSpec,
    check_address,
    compile_protos,
    json_target,
    normalize_method,
    reflect_descriptor_set,
)
from .template import MetadataTemplate, TemplateError

__all__ = [
    "CONNECT_TIMEOUT_S",
    "TIMEOUT_S",
    "UsageError",
    "add_target_options",
    "build_typed_target",
    "check_type_sources",
    "connection_target",
    "parse_duration",
    "read_data",
    "read_metadata",
    "tls_from_args",
]

TIMEOUT_S = 20.0
"""Default per-call timeout against a server of your own (ghz's default: 20 s)."""
CONNECT_TIMEOUT_S = 10.0
"""Default time to wait for the connection before giving up (ghz's default: 10 s)."""

_UNITS = {"ns": 1e-9, "us": 1e-6, "µs": 1e-6, "ms": 1e-3, "s": 1.0, "m": 60.0, "h": 3600.0}
_DURATION = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ns|us|µs|ms|s|m|h)")
_KEY = re.compile(r"[0-9a-z_.-]+")


class UsageError(ValueError):
    """A command line that cannot be run as given; the message names the flag."""


def parse_duration(text: str, flag: str = "duration") -> float:
    """Seconds from a plain number (``1.5``) or a Go duration as ghz takes (``10s``, ``500ms``,
    ``1m30s``). Negative values and other text raise UsageError naming ``flag``."""
    value = text.strip()
    try:
        seconds = float(value)
    except ValueError:
        at, seconds = 0, 0.0
        for match in _DURATION.finditer(value):
            if match.start() != at:
                break
            seconds += float(match.group(1)) * _UNITS[match.group(2)]
            at = match.end()
        if at != len(value) or not value:
            raise UsageError(
                f"{flag} takes seconds or a duration like 10s, 500ms, 1m30s; got {text!r}"
            ) from None
    if seconds < 0 or seconds != seconds or seconds == float("inf"):
        raise UsageError(f"{flag} must be a finite duration >= 0, got {text!r}")
    return seconds


def _duration_type(flag: str) -> Any:
    def convert(text: str) -> float:
        try:
            return parse_duration(text, flag)
        except UsageError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    return convert


def add_target_options(group: Any, *, bench: bool, tls_group: Any = None) -> None:
    """Add the options to ``group`` (a parser or argument group), the TLS ones to ``tls_group``
    (default: ``group``). ``bench`` words the defaults for ``grpc-channel bench`` (where no method
    means the demo app's OnInvoke)."""
    group.add_argument(
        "--call",
        "--method",
        dest="method",
        metavar="METHOD",
        help="method to call: pkg.Service/Method, /pkg.Service/Method or pkg.Service.Method"
        + (" (default: the demo app's OnInvoke)" if bench else ""),
    )
    group.add_argument(
        "-d",
        "--data",
        metavar="JSON",
        help="request as JSON (protobuf JSON mapping); @FILE reads a file, @ or - reads stdin; "
        "may hold ghz template actions such as {{.RequestNumber}}, {{newUUID}}, "
        "{{.TimestampUnix}}, rendered per call (default: {} when a method is given)",
    )
    group.add_argument(
        "-D", "--data-file", metavar="PATH", help="request JSON read from this file (default: none)"
    )
    group.add_argument(
        "-m",
        "--metadata",
        action="append",
        default=[],
        metavar="JSON|KEY=VALUE",
        help='request metadata: a JSON object ({"key": "value"}) or KEY=VALUE; repeatable; '
        "values may hold the same template actions as -d, rendered per call (default: none)",
    )
    group.add_argument(
        "-M",
        "--metadata-file",
        metavar="PATH",
        help="request metadata from a file: a JSON object, or 'key: value' lines (default: none)",
    )
    group.add_argument(
        "--proto",
        metavar="FILE",
        help="the .proto declaring the method, compiled at run time with grpcio-tools "
        "(default: none; without --proto or --descriptor-set the types come from server "
        "reflection)",
    )
    group.add_argument(
        "-I",
        "-i",
        "--import-path",
        "--import-paths",
        dest="import_paths",
        action="append",
        default=[],
        metavar="DIR",
        help="where --proto's imports are found; repeatable or comma-separated (default: the "
        "proto's own directory and the well-known types)",
    )
    group.add_argument(
        "--descriptor-set",
        "--protoset",
        dest="descriptor_set",
        metavar="FILE",
        help="a FileDescriptorSet (protoc --include_imports --descriptor_set_out) giving the "
        "types (default: none)",
    )
    group.add_argument(
        "--reflect",
        action="store_true",
        help="get the types by gRPC server reflection (the default when neither --proto nor "
        "--descriptor-set is given)",
    )
    group.add_argument(
        "--request-type",
        help="request message full name, when the types lack the service "
        "(default: from the method)",
    )
    group.add_argument(
        "--response-type",
        help="response message full name, when the types lack the service "
        "(default: from the method)",
    )
    group.add_argument(
        "-t",
        "--timeout",
        type=_duration_type("-t/--timeout"),
        metavar="DURATION",
        help="timeout of each call, seconds or 10s/500ms; 0 means none "
        + (
            "(default: 20s with --target, as ghz; none against the demo app)"
            if bench
            else "(default: 20s)"
        ),
    )
    group.add_argument(
        "--connect-timeout",
        type=_duration_type("--connect-timeout"),
        metavar="DURATION",
        help="how long to wait for the connection before giving up with exit 1 (default: 10s)",
    )
    tls = group if tls_group is None else tls_group
    tls.add_argument(
        "--insecure",
        action="store_true",
        help="plaintext; this is the default here (unlike ghz, which defaults to TLS), because "
        "the tool is mostly pointed at local servers and the demo app; accepted so ghz "
        "commands work unchanged",
    )
    tls.add_argument(
        "--tls",
        action="store_true",
        help="TLS with the system's roots (implied by --cacert, --cert and --key; default: off)",
    )
    tls.add_argument("--cacert", metavar="PEM", help="TLS: the roots to trust (default: system)")
    tls.add_argument("--cert", metavar="PEM", help="TLS: client certificate (default: none)")
    tls.add_argument("--key", metavar="PEM", help="TLS: client certificate's key (default: none)")
    tls.add_argument(
        "--authority",
        help=":authority to send and, with TLS, the name the server certificate must match "
        "(default: the target's host:port)",
    )


def _read(flag: str, path: str, *, binary: bool = False) -> Any:
    try:
        file = Path(path)
        return file.read_bytes() if binary else file.read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UsageError(f"{flag}: no such file: {path}") from None
    except IsADirectoryError:
        raise UsageError(f"{flag}: is a directory, not a file: {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"{flag}: cannot read {path}: {exc}") from None


def read_data(args: argparse.Namespace) -> str | None:
    """The request JSON text from ``-d``/``-D`` (None when neither is given)."""
    if args.data is not None and args.data_file is not None:
        raise UsageError("give one of -d/--data and -D/--data-file")
    if args.data_file is not None:
        return str(_read("-D/--data-file", args.data_file))
    value: str | None = args.data
    if value is None:
        return None
    if value in ("@", "-"):
        return sys.stdin.read()
    if value.startswith("@"):
        return str(_read("-d/--data", value[1:]))
    return value


def _pairs_from_json(flag: str, text: str) -> list[tuple[str, str]]:
    try:
        parsed = json.loads(text)
    except json.JSONDecodeError as exc:
        raise UsageError(f"{flag}: not valid JSON: {exc}") from None
    if not isinstance(parsed, dict):
        raise UsageError(f"{flag}: JSON metadata must be an object of strings")
    pairs: list[tuple[str, str]] = []
    for key, value in parsed.items():
        for item in value if isinstance(value, list) else [value]:
            if not isinstance(item, str):
                raise UsageError(f"{flag}: the value of {key!r} must be a string or strings")
            pairs.append((key, item))
    return pairs


def read_metadata(args: argparse.Namespace) -> tuple[tuple[str, str], ...]:
    """Metadata pairs from every ``-m`` (JSON object or KEY=VALUE) and ``-M`` file (JSON object or
    ``key: value`` lines; blank lines and lines starting with # skipped), in order. Keys are
    lower-cased and must match [0-9a-z_.-]; binary (-bin) keys are refused. Values may hold ghz
    template actions (as ``-d``), rendered per call; an unknown action is refused here."""
    pairs: list[tuple[str, str]] = []
    for value in args.metadata:
        if value.lstrip().startswith("{"):
            pairs.extend(_pairs_from_json("-m/--metadata", value))
            continue
        key, sep, item = value.partition("=")
        if not sep or not key.strip():
            raise UsageError(f"-m/--metadata takes a JSON object or KEY=VALUE, got {value!r}")
        pairs.append((key, item))
    if args.metadata_file is not None:
        flag = "-M/--metadata-file"
        text = str(_read(flag, args.metadata_file))
        if text.lstrip().startswith("{"):
            pairs.extend(_pairs_from_json(flag, text))
        else:
            for number, line in enumerate(text.splitlines(), 1):
                if not line.strip() or line.lstrip().startswith("#"):
                    continue
                key, sep, item = line.partition(":")
                if not sep or not key.strip():
                    raise UsageError(
                        f"{flag}: line {number} is not 'key: value' (or use a JSON object)"
                    )
                pairs.append((key, item.strip()))
    result = []
    for key, value in pairs:
        name = key.strip().lower()
        if not _KEY.fullmatch(name):
            raise UsageError(f"metadata key {key!r} must use only 0-9 a-z _ . -")
        if name.endswith("-bin"):
            raise UsageError(f"metadata key {key!r}: binary (-bin) values are not supported here")
        result.append((name, value))
    try:
        # Checked here, before anything connects; rendered per call by the plain variants (the
        # method only changes what some actions render, never whether they parse).
        MetadataTemplate.parse(tuple(result), "/check.Service/Method")
    except TemplateError as exc:
        raise UsageError(str(exc)) from None
    return tuple(result)


def tls_from_args(args: argparse.Namespace) -> TlsSpec | None:
    """The TLS settings (None: plaintext). ``--insecure`` with any TLS option is refused."""
    wanted = [
        flag
        for flag, given in (
            ("--tls", args.tls),
            ("--cacert", args.cacert is not None),
            ("--cert", args.cert is not None),
            ("--key", args.key is not None),
        )
        if given
    ]
    if not wanted:
        return None
    if args.insecure:
        raise UsageError(f"--insecure (plaintext) contradicts {', '.join(wanted)} (TLS)")
    if (args.cert is None) != (args.key is None):
        raise UsageError("--cert and --key go together (a client certificate and its key)")
    return TlsSpec(
        root_certificates=None
        if args.cacert is None
        else _read("--cacert", args.cacert, binary=True),
        certificate_chain=None if args.cert is None else _read("--cert", args.cert, binary=True),
        private_key=None if args.key is None else _read("--key", args.key, binary=True),
    )


def _import_paths(args: argparse.Namespace) -> list[str]:
    return [p for value in args.import_paths for p in value.split(",") if p]


def check_type_sources(args: argparse.Namespace) -> None:
    """Refuse contradictory sources of message types."""
    if args.proto is not None and args.descriptor_set is not None:
        raise UsageError("give one of --proto and --descriptor-set")
    if args.reflect and (args.proto is not None or args.descriptor_set is not None):
        raise UsageError("--reflect asks the server for the types; drop --proto/--descriptor-set")
    if args.import_paths and args.proto is None:
        raise UsageError("-I/--import-path applies to --proto only")
    if (args.request_type is None) != (args.response_type is None):
        raise UsageError("give both --request-type and --response-type, or neither")


def connection_target(args: argparse.Namespace, address: str, flag: str = "--target") -> Target:
    """A target carrying only what the connection needs (address, TLS, authority): for the
    connect check made before anything else (reflection included) talks to the server."""
    try:
        check_address(address, flag)
    except TargetError as exc:
        raise UsageError(str(exc)) from None
    return Target(
        address=address,
        method="/grpc.health.v1.Health/Check",
        payload=b"",
        tls=tls_from_args(args),
        authority=args.authority,
    )


def build_typed_target(
    args: argparse.Namespace,
    address: str,
    data: str,
    *,
    timeout: float | None,
    connect_timeout: float,
) -> Target:
    """A target for ``args.method`` with ``data`` (JSON) encoded with types from ``--proto``,
    ``--descriptor-set`` or server reflection, and the metadata, TLS and authority options."""
    check_type_sources(args)
    if args.method is None:
        raise UsageError("-d/--data needs --call METHOD (the method the data is for)")
    try:
        method = normalize_method(args.method)
    except TargetError as exc:
        raise UsageError(f"--call: {exc}") from None
    metadata = read_metadata(args)
    tls = tls_from_args(args)
    if args.proto is not None:
        descriptors = compile_protos([args.proto], _import_paths(args))
    elif args.descriptor_set is not None:
        descriptors = _read("--descriptor-set", args.descriptor_set, binary=True)
    else:
        descriptors = reflect_descriptor_set(
            address, method, timeout=connect_timeout, tls=tls, authority=args.authority
        )
    return json_target(
        address,
        method,
        data,
        descriptors,
        request_type=args.request_type,
        response_type=args.response_type,
        metadata=metadata,
        timeout=timeout,
        tls=tls,
        authority=args.authority,
    )
