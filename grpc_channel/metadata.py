"""gRPC metadata in grpc-go's ``MD`` style, carried in ``contextvars``, and Dapr's conversion rules.

:class:`Metadata` maps lower-cased keys to lists of values. Keys ending in ``-bin`` hold ``bytes``;
every other key holds ``str``. Every key and value is checked when it is inserted, against what the
gRPC transport accepts, so that reading and :meth:`Metadata.to_grpc` never need to check again:

- keys: non-empty, ASCII; upper-case ``A-Z`` is lower-cased, then only ``0-9 a-z - _ .`` may
  remain;
- values of other keys: ``str`` of printable ASCII, 0x20-0x7E (empty and surrounding spaces are
  allowed); ``bytes`` of printable ASCII are accepted and stored as ``str``;
- values of ``-bin`` keys: ``bytes`` (``bytearray``/``memoryview`` are copied to ``bytes``); a
  ``str`` is **encoded as UTF-8** (grpc-go's ``MD`` holds strings for binary keys too, so text is a
  natural input; the value read back is the encoded ``bytes``);
- reserved keys (:data:`RESERVED_KEYS` and every ``:``-prefixed pseudo-header) belong to the
  transport. Inserting one raises :class:`MetadataError`: grpc core either refuses them (``:path``
  fails the call) or swallows them silently (``grpc-timeout``, ``content-type``, ``user-agent``,
  ``te``, ``grpc-encoding``, ``lb-cost-bin``, ``x-envoy-peer-metadata`` ... never reach the peer,
  and ``grpc-status`` from a client breaks the call);
- ``grpc-retry-pushback-ms`` takes a plain decimal integer that fits in int64, negative meaning
  "do not retry" (gRFC A6); grpc core parses the value and sends anything else as
  ``-9223372036854775808``.

grpc core also keeps only the last value of some keys it knows (``host``, ``traceparent``,
``x-forwarded-for``, ``x-forwarded-host``, ``lb-token``, ``grpc-trace-bin``, ``grpc-tags-bin``):
send one value of those.

Received metadata is different: :meth:`Metadata.from_grpc` keeps what the peer sent, reserved keys
(a server sees ``user-agent``) and odd values included, so nothing received is lost or raises.
Such a ``Metadata`` remembers it holds keys or values that cannot be sent, and
:meth:`Metadata.to_grpc` drops exactly those, so forwarding received metadata never crashes a call.

Everything invalid raises the one error type :class:`MetadataError`, a ``ValueError`` whose message
names the key and the rule (never the value: metadata may carry tokens). ``repr`` hides the values
of keys that carry credentials (:func:`is_secret_key`); :func:`redacted_pairs` applies the same
rule to grpcio-style pairs, for any other record that shows metadata.

Example::

    md = Metadata.pairs("x-user", "ann", "trace-bin", b"\x00\x01")
    md.append("X-User", "bob")                     # keys are lower-cased: x-user = [ann, bob]
    reply, call = stub.Get.with_call(request, metadata=md.to_grpc())
    headers = Metadata.from_grpc(call.initial_metadata())

    with outgoing_metadata(md):                    # read by the call engine (outgoing_pairs())
        append_to_outgoing("x-request-id", "42")   # until the block ends
"""

from __future__ import annotations

import base64
import binascii
import contextvars
import re
from collections.abc import Iterable, Iterator, KeysView, Mapping, Sequence
from types import TracebackType
from typing import Final, Literal, TypeAlias

# The one name for grpcio-style pairs, defined with the interceptors (which stand alone).
from grpc_channel.interceptors import MetadataPairs

__all__ = [
    "HTTP_PERMANENT_HEADERS",
    "RESERVED_KEYS",
    "Metadata",
    "MetadataError",
    "MetadataInput",
    "MetadataPairs",
    "MetadataScope",
    "MetadataValue",
    "append_to_outgoing",
    "from_incoming",
    "from_outgoing",
    "grpc_to_internal",
    "incoming_metadata",
    "internal_to_grpc",
    "outgoing_metadata",
    "outgoing_pairs",
]

MetadataValue: TypeAlias = str | bytes
"""A metadata value: ``str`` for ordinary keys, ``bytes`` for keys ending in ``-bin``."""

_ValueIn: TypeAlias = str | bytes | bytearray | memoryview
# What writers accept: bytearray and memoryview are copied to bytes.

MetadataInput: TypeAlias = "Metadata | Mapping[str, object] | Iterable[tuple[str, _ValueIn]]"
"""What :class:`Metadata` accepts: another Metadata, a mapping of key to one value or an iterable of
values, or an iterable of ``(key, value)`` pairs. Mapping values are typed ``object`` because a
mapping that mixes text values and lists of bytes has no narrower common type; they are checked at
run time like every value."""

RESERVED_KEYS: Final[frozenset[str]] = frozenset(
    {
        # grpc-go's reserved headers (transport/http_util.go isReservedHeader) ...
        "content-type",
        "user-agent",
        "te",
        "grpc-message-type",
        "grpc-encoding",
        "grpc-message",
        "grpc-status",
        "grpc-timeout",
        # ... and what grpc core (grpcio) consumes itself: sent as metadata, they never reach the
        # peer's application (grpc core's metadata traits that are not published to the app;
        # checked against a grpcio 1.85 server).
        "grpc-accept-encoding",
        "grpc-internal-encoding-request",
        "grpc-previous-rpc-attempts",
        "endpoint-load-metrics-bin",
        "grpc-server-stats-bin",
        "grpclb_client_stats",
        "lb-cost-bin",
        "x-envoy-peer-metadata",
    }
)
"""Keys owned by the gRPC transport, besides every ``:``-prefixed pseudo-header.

Not reserved, although grpc core handles them specially: ``grpc-status-details-bin`` (rich error
details, which a server sends in its trailers), ``grpc-retry-pushback-ms`` (a server's retry hint;
its value must be a plain int64 integer), ``grpc-trace-bin`` and ``grpc-tags-bin`` (census trace
context that grpc-go and grpc-java peers read; a grpcio server consumes them)."""

# What to use instead of a reserved key; part of the error message.
_RESERVED_HINTS: Final[dict[str, str]] = {
    "grpc-timeout": "use a call timeout instead",
    "user-agent": "set the user agent as a dial option instead",
    "grpc-encoding": "choose a compressor instead",
    "grpc-accept-encoding": "choose a compressor instead",
    "grpc-internal-encoding-request": "choose a compressor instead",
    "content-type": "it is always application/grpc on the wire",
    "endpoint-load-metrics-bin": "grpc core consumes it (ORCA load report); it never reaches the"
    " peer's application",
    "grpc-server-stats-bin": "grpc core consumes it (census server stats); it never reaches the"
    " peer's application",
    "grpclb_client_stats": "grpc core consumes it (grpclb internal); it is never sent",
    "lb-cost-bin": "grpc core consumes it (load-balancing cost) and rewrites its value; it never"
    " reaches the peer's application",
    "x-envoy-peer-metadata": "grpc core consumes it (service-mesh peer metadata); it never reaches"
    " the peer's application",
}

HTTP_PERMANENT_HEADERS: Final[frozenset[str]] = frozenset(
    h.lower()
    for h in (
        "Accept",
        "Accept-Charset",
        "Accept-Language",
        "Accept-Ranges",
        "Connection",
        "Keep-Alive",
        "Proxy-Connection",
        "Transfer-Encoding",
        "Upgrade",
        "Cache-Control",
        "Content-Type",
        "Content-Length",
        "Cookie",
        "Date",
        "Expect",
        "From",
        "Host",
        "If-Match",
        "If-Modified-Since",
        "If-None-Match",
        "If-Schedule-Tag-Match",
        "If-Unmodified-Since",
        "Max-Forwards",
        "Origin",
        "Pragma",
        "Referer",
        "Via",
        "Warning",
    )
)
"""The permanent HTTP headers Dapr renames to ``dapr-<name>`` on the way to gRPC (lower-cased here:
we match them case-insensitively)."""

_DAPR_PREFIX: Final = "dapr-"
_BIN_SUFFIX: Final = "-bin"
# Trace context travels through the tracing layer, never as plain copied keys; the destination
# app id only routes the call.
_NOT_COPIED: Final[frozenset[str]] = frozenset(
    {"traceparent", "tracestate", "grpc-trace-bin", "destination-app-id"}
)
# The redaction rule: values of keys containing one of these parts are hidden in repr() and error
# messages, as they carry credentials: authorization, proxy-authorization, dapr-api-token, cookie,
# set-cookie, and token headers of any name (AppToken(header="x-app-token"), x-api-key ...).
_SECRET_PARTS: Final = (
    "auth",
    "token",
    "secret",
    "passw",
    "cookie",
    "credential",
    "api-key",
    "apikey",
)

REDACTED: Final = "<redacted>"
"""What a secret value is shown as."""

_PUSHBACK_KEY: Final = "grpc-retry-pushback-ms"
# grpc core parses this key's value as an int64 and sends INT64_MIN for anything it cannot parse;
# a plain decimal is what arrives unchanged (grpc core also drops leading zeros, signs and spaces).
# gRFC A6: a negative value asks the client not to retry, so a minus sign is allowed (not "-0").
_PUSHBACK_RE: Final = re.compile(r"0|-?[1-9][0-9]{0,18}")
_INT64_MAX: Final = 2**63 - 1

_ASCII_LOWER: Final = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")
_KEY_RE: Final = re.compile(r"[0-9a-z_.\-]+")
_KEY_BAD_CHAR: Final = re.compile(r"[^0-9a-z_.\-]")
_ALLOWED_KEY_CHARS: Final = "0-9 a-z - _ ."

# Raw key -> (normalised key, is binary, is reserved). Keys repeat across calls, so a dict lookup
# replaces the per-call check; only valid keys are cached, and the cache stops growing at its bound.
_KeyInfo: TypeAlias = tuple[str, bool, bool]
_KEY_CACHE: dict[str, _KeyInfo] = {}
_KEY_CACHE_MAX: Final = 4096


class MetadataError(ValueError):
    """Invalid metadata: the message names the key and the rule it broke (never the value)."""


def is_secret_key(key: str) -> bool:
    """True when values of ``key`` (lower-case) are hidden from reprs and messages: keys that
    contain ``auth``, ``token``, ``secret``, ``passw``, ``cookie``, ``credential``, ``api-key`` or
    ``apikey`` (``authorization``, ``dapr-api-token``, ``set-cookie``, ``x-api-key`` ...). The
    one redaction rule of the package."""
    return any(part in key for part in _SECRET_PARTS)


def redacted_pairs(
    pairs: Iterable[tuple[str, MetadataValue]],
) -> MetadataPairs:
    """``pairs`` with the value of every secret key (:func:`is_secret_key`) replaced by
    :data:`REDACTED`: what a repr may show of grpcio-style metadata."""
    return tuple((k, REDACTED if is_secret_key(k) else v) for k, v in pairs)


def _pushback_ok(value: str) -> bool:
    return _PUSHBACK_RE.fullmatch(value) is not None and -_INT64_MAX - 1 <= int(value) <= _INT64_MAX


def _pushback_error() -> MetadataError:
    return MetadataError(
        f"invalid value for metadata key {_PUSHBACK_KEY!r}: it must be an integer of milliseconds"
        f" in int64 range (negative: do not retry), written as plain digits with an optional"
        " minus sign (no plus sign, spaces or leading zeros); grpc core sends anything else as"
        " -9223372036854775808"
    )


def _key_info(key: object) -> _KeyInfo:
    """Normalise and check a key; raise MetadataError naming it and the rule."""
    if type(key) is str:
        info = _KEY_CACHE.get(key)
        if info is not None:
            return info
    if not isinstance(key, str):
        raise MetadataError(f"metadata key must be str, got {type(key).__name__}: {key!r}")
    if not key:
        raise MetadataError("metadata key must not be empty")
    # Only ASCII letters are lower-cased: str.lower() maps some non-ASCII letters to ASCII ones
    # (the Kelvin sign to "k"), which would accept keys the caller never wrote.
    low = key.translate(_ASCII_LOWER)
    # A ':' pseudo-header is a well-formed key, but reserved (flagged below).
    pseudo = low[0] == ":"
    body = low[1:] if pseudo else low
    if _KEY_RE.fullmatch(body) is None:
        bad = _KEY_BAD_CHAR.search(body)
        if bad is None:  # only ":" is left
            raise MetadataError(f"invalid metadata key {key!r}: no name after ':'")
        pos = bad.start() + pseudo
        raise MetadataError(
            f"invalid metadata key {key!a}: character {key[pos]!a} at position {pos} is"
            f" not allowed; keys may only contain {_ALLOWED_KEY_CHARS} (A-Z is lower-cased first)"
        )
    info = (low, low.endswith(_BIN_SUFFIX), pseudo or low in RESERVED_KEYS)
    if len(_KEY_CACHE) < _KEY_CACHE_MAX:
        _KEY_CACHE[key] = info
    return info


def _is_reserved(key: str) -> bool:
    return key in RESERVED_KEYS or key.startswith(":")


def _reserved_error(key: str) -> MetadataError:
    hint = _RESERVED_HINTS.get(key, "the transport sets it")
    return MetadataError(
        f"metadata key {key!r} is reserved for the gRPC transport and cannot be sent; {hint}"
    )


def _send_key(key: object) -> tuple[str, bool]:
    """Key check for metadata the caller inserts: reserved keys are refused."""
    low, is_bin, reserved = _key_info(key)
    if reserved:
        raise _reserved_error(low)
    return low, is_bin


def _bad_text_position(value: str) -> int:
    for i, ch in enumerate(value):
        if not " " <= ch <= "~":
            return i
    return -1


def _text_error(key: str, value: str) -> MetadataError:
    pos = _bad_text_position(value)
    where = f"character U+{ord(value[pos]):04X} at position {pos}"
    if is_secret_key(key):
        where = f"the character at position {pos}"
    return MetadataError(
        f"invalid value for metadata key {key!r}: {where} is not printable ASCII; values of keys"
        " not ending in '-bin' may only contain characters 0x20-0x7E (use a '-bin' key for binary"
        " data)"
    )


def _send_value(key: str, is_bin: bool, value: object) -> MetadataValue:
    """Value check for metadata the caller inserts."""
    if is_bin:
        if type(value) is bytes:
            return value
        if isinstance(value, str):
            try:
                return value.encode("utf-8")
            except UnicodeEncodeError as exc:
                raise MetadataError(
                    f"invalid value for binary metadata key {key!r}: str values are encoded as"
                    f" UTF-8 and this one cannot be (position {exc.start}); pass bytes instead"
                ) from None
        if isinstance(value, bytes | bytearray | memoryview):
            return bytes(value)
        raise MetadataError(
            f"invalid value for binary metadata key {key!r}: expected bytes (or str, encoded as"
            f" UTF-8), got {type(value).__name__}"
        )
    if type(value) is str:
        if value.isascii() and value.isprintable():
            if key == _PUSHBACK_KEY and not _pushback_ok(value):
                raise _pushback_error()
            return value
        raise _text_error(key, value)
    if isinstance(value, bytes | bytearray | memoryview):
        raw = bytes(value)
        text = raw.decode("latin-1")
        if text.isascii() and text.isprintable():
            return _send_value(key, is_bin, text)
        raise _text_error(key, text)
    if isinstance(value, str):  # a str subclass
        return _send_value(key, is_bin, str(value))
    raise MetadataError(
        f"invalid value for metadata key {key!r}: expected str, got {type(value).__name__}"
        " (only keys ending in '-bin' hold bytes)"
    )


def _sendable_text(key: str, value: str) -> bool:
    """Whether a received text value may be sent on as it is."""
    return value.isascii() and value.isprintable() and (key != _PUSHBACK_KEY or _pushback_ok(value))


def _iter_values(value: object) -> Iterable[object]:
    """One value, or the values of an iterable (str and bytes count as one value)."""
    if isinstance(value, str | bytes | bytearray | memoryview):
        return (value,)
    if isinstance(value, Iterable):
        return value
    return (value,)


class Metadata:
    """gRPC metadata: lower-cased keys mapped to lists of values (grpc-go's ``MD``).

    ``Metadata(source=None)`` accepts another Metadata (copied), a mapping of key to one value or
    an iterable of values, or an iterable of ``(key, value)`` pairs; values are appended in order.
    A key never maps to an empty list: ``set``/``append`` with no values change nothing (as in
    grpc-go), and a mapping entry with no values adds no key.

    Reads (``get``, ``md[key]``, ``in``, ``delete``) lower-case the key and never raise for an
    invalid one (it simply is not there). ``get`` and ``md[key]`` return copies: the lists inside
    are never shared (``copy()`` and ``join`` share none either). Not thread-safe for concurrent
    writers; contexts hand out copies (:func:`from_outgoing`).
    """

    __slots__ = ("_d", "_unsendable", "_wire")

    _d: dict[str, list[MetadataValue]]
    # True when from_grpc() stored keys or values that cannot be sent; to_grpc() then filters.
    _unsendable: bool
    # The cached to_grpc() result; every mutation clears it.
    _wire: MetadataPairs | None

    def __init__(self, source: MetadataInput | None = None) -> None:
        self._d = {}
        self._unsendable = False
        self._wire = None
        if source is None:
            return
        if isinstance(source, Metadata):
            self._d = {k: list(v) for k, v in source._d.items()}
            self._unsendable = source._unsendable
            self._wire = source._wire
        elif isinstance(source, Mapping):
            for key, value in source.items():
                self._add(key, _iter_values(value))
        elif isinstance(source, str | bytes | bytearray | memoryview):
            raise MetadataError(
                f"Metadata() takes a mapping or an iterable of (key, value) pairs, got"
                f" {type(source).__name__}"
            )
        else:
            try:
                items = iter(source)
            except TypeError:
                raise MetadataError(
                    f"Metadata() takes a mapping or an iterable of (key, value) pairs, got"
                    f" {type(source).__name__}"
                ) from None
            d = self._d
            for index, item in enumerate(items):
                if (type(item) is not tuple or len(item) != 2) and (
                    isinstance(item, str | bytes)
                    or not isinstance(item, Sequence)
                    or len(item) != 2
                ):
                    raise MetadataError(
                        f"metadata pair #{index} must be a (key, value) pair, got"
                        f" {type(item).__name__}"
                    )
                low, is_bin = _send_key(item[0])
                value = _send_value(low, is_bin, item[1])
                values = d.get(low)
                if values is None:
                    d[low] = [value]
                else:
                    values.append(value)

    def _add(self, key: object, values: Iterable[object]) -> None:
        low, is_bin = _send_key(key)
        checked = [_send_value(low, is_bin, v) for v in values]
        if not checked:
            return
        self._wire = None
        existing = self._d.get(low)
        if existing is None:
            self._d[low] = checked
        else:
            existing.extend(checked)

    # construction ---------------------------------------------------------------------------

    @classmethod
    def pairs(cls, *kv: _ValueIn) -> Metadata:
        """``Metadata.pairs("k1", "v1", "k2", "v2", ...)``; a key may repeat (values append).

        Raises MetadataError when given an odd number of arguments (the count is in the message).
        """
        if len(kv) % 2:
            raise MetadataError(
                f"Metadata.pairs needs an even number of arguments (key, value, ...), got {len(kv)}"
            )
        md = cls()
        for i in range(0, len(kv), 2):
            md._add(kv[i], (kv[i + 1],))
        return md

    @classmethod
    def join(cls, *mds: MetadataInput) -> Metadata:
        """A new Metadata with the values of all ``mds``, in order (values of a key append)."""
        out = cls()
        for md in mds:
            src = md if isinstance(md, Metadata) else cls(md)
            for key, values in src._d.items():
                existing = out._d.get(key)
                if existing is None:
                    out._d[key] = list(values)
                else:
                    existing.extend(values)
            out._unsendable = out._unsendable or src._unsendable
        return out

    @classmethod
    def from_grpc(cls, pairs: Iterable[tuple[str, MetadataValue]] | None) -> Metadata:
        """Metadata received from grpcio (``invocation_metadata()``, ``initial_metadata()``,
        ``trailing_metadata()``); ``None`` gives an empty Metadata.

        Keeps what the peer sent: reserved keys (a server sees ``user-agent``) and values that could
        not be sent are stored, and :meth:`to_grpc` drops exactly those. Keys are lower-cased and
        must be valid keys; ``-bin`` values must be bytes (a str is encoded as UTF-8), other values
        str (bytes are decoded as Latin-1). Raises MetadataError only for malformed input (not a
        pair, invalid key, wrong type), which grpcio never produces.
        """
        md = cls.__new__(cls)
        d: dict[str, list[MetadataValue]] = {}
        unsendable = False
        if (
            type(pairs) is not tuple
            and pairs is not None
            and (isinstance(pairs, Mapping | str | bytes) or not isinstance(pairs, Iterable))
        ):
            raise MetadataError(
                f"from_grpc takes (key, value) pairs, got {type(pairs).__name__}"
                " (use Metadata(mapping) for a mapping)"
            )
        if pairs:
            for item in pairs:
                # grpcio's _Metadatum is a tuple subclass; a 2-character str must not unpack.
                if not isinstance(item, tuple) and (
                    isinstance(item, str | bytes | bytearray) or not isinstance(item, Sequence)
                ):
                    raise MetadataError(
                        f"received metadata must be (key, value) pairs, got {type(item).__name__}"
                    )
                try:
                    key, value = item
                except (TypeError, ValueError):
                    raise MetadataError(
                        f"received metadata must be (key, value) pairs, got {type(item).__name__}"
                    ) from None
                info = _KEY_CACHE.get(key) if type(key) is str else None
                if info is None:
                    info = _key_info(key)
                low, is_bin, reserved = info
                if reserved:
                    unsendable = True
                if is_bin:
                    if type(value) is not bytes:
                        value = _send_value(low, True, value)
                elif type(value) is str:
                    # _sendable_text, inlined: this runs for every received value.
                    if not (value.isascii() and value.isprintable()) or (
                        low == _PUSHBACK_KEY and not _pushback_ok(value)
                    ):
                        unsendable = True
                elif isinstance(value, bytes | bytearray | memoryview):
                    value = bytes(value).decode("latin-1")
                    unsendable = unsendable or not _sendable_text(low, value)
                else:
                    raise MetadataError(
                        f"invalid value for metadata key {low!r}: expected str, got"
                        f" {type(value).__name__}"
                    )
                values = d.get(low)
                if values is None:
                    d[low] = [value]
                else:
                    values.append(value)
        md._d = d
        md._unsendable = unsendable
        md._wire = None
        return md

    # conversion -----------------------------------------------------------------------------

    def to_grpc(self) -> MetadataPairs:
        """The ``(key, value)`` pairs grpcio's ``metadata=`` argument takes, keys in insertion
        order, values in order. Cached until the next change. Reserved keys and unsendable values
        that came in through :meth:`from_grpc` are left out."""
        wire = self._wire
        if wire is None:
            if self._unsendable:
                wire = tuple(
                    (k, v)
                    for k, vs in self._d.items()
                    if not _is_reserved(k)
                    for v in vs
                    if isinstance(v, bytes) or _sendable_text(k, v)
                )
            else:
                out: list[tuple[str, MetadataValue]] = []
                for k, vs in self._d.items():
                    for v in vs:
                        out.append((k, v))
                wire = tuple(out)
            self._wire = wire
        return wire

    # reading --------------------------------------------------------------------------------

    def get(self, key: str) -> list[MetadataValue]:
        """A copy of the values of ``key`` (lower-cased), ``[]`` when absent."""
        if type(key) is not str:
            return []
        values = self._d.get(key) or self._d.get(key.translate(_ASCII_LOWER))
        return list(values) if values else []

    def __getitem__(self, key: str) -> list[MetadataValue]:
        """A copy of the values of ``key`` (lower-cased); KeyError when absent."""
        values = self.get(key)
        if not values:
            raise KeyError(key)
        return values

    def __contains__(self, key: object) -> bool:
        return isinstance(key, str) and (key in self._d or key.translate(_ASCII_LOWER) in self._d)

    def keys(self) -> KeysView[str]:
        """The keys, in insertion order (a read-only live view)."""
        return self._d.keys()

    def items(self) -> Iterator[tuple[str, list[MetadataValue]]]:
        """``(key, copy of its values)`` for every key, in insertion order."""
        for key, values in self._d.items():
            yield key, list(values)

    def values(self) -> Iterator[list[MetadataValue]]:
        """A copy of the value list of every key, in insertion order."""
        for values in self._d.values():
            yield list(values)

    def __iter__(self) -> Iterator[str]:
        return iter(self._d)

    def __len__(self) -> int:
        """The number of keys (not of values)."""
        return len(self._d)

    def __eq__(self, other: object) -> bool:
        """Equal to another Metadata, or to a mapping of key to list of values, with the same
        keys and the same values in the same order (key order does not matter)."""
        if isinstance(other, Metadata):
            return self._d == other._d
        if isinstance(other, Mapping):
            return self._d == {k: list(v) for k, v in other.items()}
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]  # mutable

    def __repr__(self) -> str:
        shown = {k: ([REDACTED] * len(v) if is_secret_key(k) else v) for k, v in self._d.items()}
        return f"Metadata({shown!r})"

    # writing --------------------------------------------------------------------------------

    def set(self, key: str, *values: _ValueIn) -> None:
        """Replace the values of ``key`` (lower-cased). With no values nothing changes (grpc-go's
        rule; use :meth:`delete` to remove a key). Raises MetadataError for an invalid or reserved
        key or an invalid value, leaving the Metadata unchanged."""
        low, is_bin = _send_key(key)
        checked = [_send_value(low, is_bin, v) for v in values]
        if checked:
            self._wire = None
            self._d[low] = checked

    def append(self, key: str, *values: _ValueIn) -> None:
        """Add values to ``key`` (lower-cased) after the existing ones. With no values nothing
        changes. Raises MetadataError like :meth:`set`, leaving the Metadata unchanged."""
        self._add(key, values)

    def delete(self, key: str) -> None:
        """Remove ``key`` (lower-cased) and its values; absent keys are ignored."""
        if type(key) is not str:
            return
        if (
            self._d.pop(key, None) is not None
            or self._d.pop(key.translate(_ASCII_LOWER), None) is not None
        ):
            self._wire = None

    def clear(self) -> None:
        """Remove every key."""
        self._d = {}
        self._unsendable = False
        self._wire = None

    def replace_from_grpc(self, pairs: Iterable[tuple[str, MetadataValue]] | None) -> None:
        """Replace the whole content, in place, with received pairs, exactly as
        :meth:`from_grpc` reads them. This is how a ``header(md)``/``trailer(md)`` call option fills
        the caller's Metadata. On MetadataError the content is unchanged."""
        received = Metadata.from_grpc(pairs)
        self._d = received._d
        self._unsendable = received._unsendable
        self._wire = None

    def copy(self) -> Metadata:
        """A copy sharing no lists with this one."""
        return Metadata(self)


# ------------------------------------------------------------------------------------------
# contextvars: outgoing and incoming metadata

_OUTGOING: Final[contextvars.ContextVar[Metadata | None]] = contextvars.ContextVar(
    "grpc_channel_outgoing_metadata", default=None
)
_INCOMING: Final[contextvars.ContextVar[Metadata | None]] = contextvars.ContextVar(
    "grpc_channel_incoming_metadata", default=None
)


class MetadataScope:
    """A change to a metadata context variable, undone when used as a context manager.

    Returned by :func:`outgoing_metadata`, :func:`incoming_metadata` and
    :func:`append_to_outgoing`. ``outgoing_metadata``/``incoming_metadata`` apply on ``__enter__``;
    ``append_to_outgoing`` applies at once. In every case ``__exit__`` restores what was there
    before. A scope is entered at most once.
    """

    __slots__ = ("_md", "_token", "_var")

    def __init__(
        self,
        var: contextvars.ContextVar[Metadata | None],
        md: Metadata,
        *,
        apply_now: bool,
    ) -> None:
        self._var = var
        self._md = md
        self._token: contextvars.Token[Metadata | None] | None = var.set(md) if apply_now else None

    def __enter__(self) -> Metadata:
        """Apply the change (unless already applied) and return a copy of the metadata now set."""
        if self._token is None:
            self._token = self._var.set(self._md)
        return self._md.copy()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        token, self._token = self._token, None
        if token is not None:
            self._var.reset(token)


def outgoing_metadata(md: MetadataInput | None = None) -> MetadataScope:
    """Context manager: inside it, the outgoing metadata is a copy of ``md`` (``None``: empty),
    replacing whatever was set outside (grpc-go's ``NewOutgoingContext``). Restored on exit."""
    return MetadataScope(_OUTGOING, Metadata(md), apply_now=False)


def append_to_outgoing(*kv: _ValueIn) -> MetadataScope:
    """Add ``key, value, ...`` pairs to the outgoing metadata of the current context, now.

    Copy-on-write: the metadata of enclosing scopes and of other tasks is never changed. The
    change lasts as long as the current context: until the enclosing :func:`outgoing_metadata`
    block (or a ``with`` around this call) exits, else for the rest of the current thread or
    asyncio task (a task's changes never leak into its parent). Use
    ``with append_to_outgoing(...):`` to bound it.
    Raises MetadataError for an odd count or invalid pairs, changing nothing.
    """
    extra = Metadata.pairs(*kv)
    current = _OUTGOING.get()
    merged = extra if current is None else Metadata.join(current, extra)
    return MetadataScope(_OUTGOING, merged, apply_now=True)


def from_outgoing() -> Metadata:
    """A copy of the current outgoing metadata (empty when none is set)."""
    current = _OUTGOING.get()
    return Metadata() if current is None else current.copy()


def outgoing_pairs() -> MetadataPairs:
    """The current outgoing metadata in grpcio's form (``()`` when none is set), without copying:
    the call engine's per-call read. The Metadata a context holds is never changed after it is set
    (scopes store copies; appends build new objects), so its cached pairs stay valid."""
    current = _OUTGOING.get()
    return () if current is None else current.to_grpc()


def incoming_metadata(md: MetadataInput | None = None) -> MetadataScope:
    """Context manager for server-side integrations: inside it, :func:`from_incoming` returns a
    copy of ``md`` (a Metadata is kept as is, received keys included; other input is validated)."""
    return MetadataScope(_INCOMING, Metadata(md), apply_now=False)


def from_incoming() -> Metadata:
    """A copy of the current incoming metadata (empty when none is set)."""
    current = _INCOMING.get()
    return Metadata() if current is None else current.copy()


# ------------------------------------------------------------------------------------------
# Dapr internal metadata <-> gRPC metadata


def _b64decode_std(value: str) -> bytes | None:
    """Decode like Go's base64.StdEncoding: standard alphabet, padding required, CR/LF ignored."""
    if "\r" in value or "\n" in value:
        value = value.replace("\r", "").replace("\n", "")
    try:
        return base64.b64decode(value, validate=True)
    except (binascii.Error, ValueError):
        return None


def internal_to_grpc(
    internal: Mapping[str, Sequence[str]],
    http_header_conversion: bool = True,
    *,
    on_invalid: Literal["raise", "drop"] = "raise",
) -> Metadata:
    """Convert Dapr internal metadata (key -> list of str) to gRPC :class:`Metadata`, with Dapr's
    rules:

    - keys are lower-cased;
    - ``traceparent``, ``tracestate``, ``grpc-trace-bin`` are not copied (trace context is carried
      by the tracing layer) and ``destination-app-id`` is dropped;
    - with ``http_header_conversion`` (default on) the permanent HTTP headers of
      :data:`HTTP_PERMANENT_HEADERS` become ``dapr-<lower(key)>``. Unlike Dapr, which compares
      case-sensitively ("Content-Type" but not "content-type"), we match case-insensitively, as HTTP
      header names are;
    - ``-bin`` keys (suffix checked after lower-casing) hold base64: values are decoded like Go's
      ``base64.StdEncoding`` (standard alphabet, padding required, CR/LF ignored); values that do
      not decode are dropped, as Dapr does;
    - reserved keys (``user-agent``, ``content-type`` with conversion off, ...) are dropped: HTTP
      callers send them routinely and the transport would discard them anyway;
    - an empty value list adds nothing; a single str instead of a list is taken as one value.

    ``on_invalid`` decides what happens to anything else the transport would refuse (an invalid
    key such as an HTTP header with ``!`` or a space, a non-printable or non-ASCII value, a non-str
    value, a ``grpc-retry-pushback-ms`` value that is not a plain int64 integer):
    ``"raise"`` (default) raises :class:`MetadataError` naming the key; ``"drop"`` leaves
    the offending key or value out.
    """
    if on_invalid not in ("raise", "drop"):
        raise ValueError(f"on_invalid must be 'raise' or 'drop', got {on_invalid!r}")
    strict = on_invalid == "raise"
    if not isinstance(internal, Mapping):
        raise MetadataError(
            "internal metadata must be a mapping of key to list of str, got"
            f" {type(internal).__name__}"
        )
    md = Metadata()
    d = md._d
    for raw_key, values in internal.items():
        try:
            low, is_bin, reserved = _key_info(raw_key)
        except MetadataError:
            if strict:
                raise
            continue
        if low in _NOT_COPIED:
            continue
        if http_header_conversion and low in HTTP_PERMANENT_HEADERS:
            low = _DAPR_PREFIX + low
        elif reserved or low.startswith(":"):
            continue
        if isinstance(values, str):
            values = (values,)
        elif isinstance(values, bytes) or not isinstance(values, Iterable):
            if strict:
                raise MetadataError(
                    f"internal metadata values of key {raw_key!r} must be a list of str, got"
                    f" {type(values).__name__}"
                )
            continue
        out: list[MetadataValue] = []
        for value in values:
            if not isinstance(value, str):
                if strict:
                    raise MetadataError(
                        f"internal metadata value of key {raw_key!r} must be str, got"
                        f" {type(value).__name__}"
                    )
                continue
            if is_bin:
                decoded = _b64decode_std(value)
                if decoded is not None:
                    out.append(decoded)
            elif _sendable_text(low, value):
                out.append(value)
            elif strict:
                raise _pushback_error() if low == _PUSHBACK_KEY else _text_error(low, value)
        if out:
            existing = d.get(low)
            if existing is None:
                d[low] = out
            else:
                existing.extend(out)
    return md


def grpc_to_internal(md: MetadataInput) -> dict[str, list[str]]:
    """Convert gRPC metadata to Dapr internal metadata: keys as they are, ``-bin`` values
    base64-encoded (standard alphabet, padded, as Dapr does), other values copied. Every key of the
    Metadata is kept (received reserved keys too: internal metadata is plain data). A non-Metadata
    argument is first converted with ``Metadata(md)``."""
    src = md if isinstance(md, Metadata) else Metadata(md)
    out: dict[str, list[str]] = {}
    for key, values in src._d.items():
        if key.endswith(_BIN_SUFFIX):
            out[key] = [
                base64.b64encode(v).decode("ascii")
                if isinstance(v, bytes)
                else base64.b64encode(v.encode("utf-8")).decode("ascii")
                for v in values
            ]
        else:
            out[key] = [v if isinstance(v, str) else v.decode("latin-1") for v in values]
    return out
