"""HTTP/2 and gRPC-over-HTTP/2 wire facts for the sidecar's frame proxy. Pure: no I/O.

Frame layout, types, flags, settings and error codes are RFC 9113's; the status mapping of
``RST_STREAM`` codes, ``grpc-timeout`` and ``grpc-message`` encoding are the gRPC HTTP/2
protocol's. :mod:`grpc_channel.sidecar.frame_proxy` does the I/O around them.
"""

from __future__ import annotations

import struct
from collections.abc import Sequence
from typing import Final

import grpc

PREFACE: Final = b"PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n"

DATA: Final = 0x0
HEADERS: Final = 0x1
PRIORITY: Final = 0x2
RST_STREAM: Final = 0x3
SETTINGS: Final = 0x4
PUSH_PROMISE: Final = 0x5
PING: Final = 0x6
GOAWAY: Final = 0x7
WINDOW_UPDATE: Final = 0x8
CONTINUATION: Final = 0x9

END_STREAM: Final = 0x1
ACK: Final = 0x1
END_HEADERS: Final = 0x4
PADDED: Final = 0x8
PRIORITY_FLAG: Final = 0x20

SETTINGS_HEADER_TABLE_SIZE: Final = 0x1
SETTINGS_ENABLE_PUSH: Final = 0x2
SETTINGS_MAX_CONCURRENT_STREAMS: Final = 0x3
SETTINGS_INITIAL_WINDOW_SIZE: Final = 0x4
SETTINGS_MAX_FRAME_SIZE: Final = 0x5
SETTINGS_MAX_HEADER_LIST_SIZE: Final = 0x6

NO_ERROR: Final = 0x0
PROTOCOL_ERROR: Final = 0x1
INTERNAL_ERROR: Final = 0x2
FLOW_CONTROL_ERROR: Final = 0x3
FRAME_SIZE_ERROR: Final = 0x6
REFUSED_STREAM: Final = 0x7
CANCEL: Final = 0x8
COMPRESSION_ERROR: Final = 0x9
ENHANCE_YOUR_CALM: Final = 0xB
INADEQUATE_SECURITY: Final = 0xC

DEFAULT_WINDOW: Final = 65_535
DEFAULT_MAX_FRAME: Final = 16_384
MAX_WINDOW: Final = 2**31 - 1
MAX_STREAM_ID: Final = 2**31 - 1

#: length (24 bits) and type (8) as one unsigned 32-bit int, flags, stream id (31 bits).
FRAME_HEADER: Final = struct.Struct(">IBI")
_SETTING: Final = struct.Struct(">HI")
_U32: Final = struct.Struct(">I")


class ConnectionFault(Exception):
    """The peer broke the protocol: the connection ends with GOAWAY ``code``."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


def frame(kind: int, flags: int, stream_id: int, payload: bytes = b"") -> bytes:
    """One frame: the 9-byte header, then ``payload``."""
    return FRAME_HEADER.pack(len(payload) << 8 | kind, flags, stream_id) + payload


def settings_frame(settings: dict[int, int]) -> bytes:
    return frame(SETTINGS, 0, 0, b"".join(_SETTING.pack(k, v) for k, v in settings.items()))


def window_update(stream_id: int, increment: int) -> bytes:
    return frame(WINDOW_UPDATE, 0, stream_id, _U32.pack(increment))


def rst_stream(stream_id: int, code: int) -> bytes:
    return frame(RST_STREAM, 0, stream_id, _U32.pack(code))


def goaway(last_stream_id: int, code: int, debug: bytes = b"") -> bytes:
    return frame(GOAWAY, 0, 0, struct.pack(">II", last_stream_id, code) + debug)


def parse_settings(payload: bytes) -> list[tuple[int, int]]:
    """The ``(id, value)`` entries of a SETTINGS payload, checked as RFC 9113 section 6.5.2
    demands; :class:`ConnectionFault` otherwise."""
    if len(payload) % 6:
        raise ConnectionFault(FRAME_SIZE_ERROR, "SETTINGS payload is not a multiple of 6 bytes")
    entries = [_SETTING.unpack_from(payload, i) for i in range(0, len(payload), 6)]
    for key, value in entries:
        if key == SETTINGS_ENABLE_PUSH and value > 1:
            raise ConnectionFault(PROTOCOL_ERROR, "SETTINGS_ENABLE_PUSH must be 0 or 1")
        if key == SETTINGS_INITIAL_WINDOW_SIZE and value > MAX_WINDOW:
            raise ConnectionFault(FLOW_CONTROL_ERROR, "SETTINGS_INITIAL_WINDOW_SIZE above 2^31-1")
        if key == SETTINGS_MAX_FRAME_SIZE and not DEFAULT_MAX_FRAME <= value <= 2**24 - 1:
            raise ConnectionFault(PROTOCOL_ERROR, "SETTINGS_MAX_FRAME_SIZE out of range")
    return entries


def header_block(payload: bytes, flags: int) -> bytes:
    """A HEADERS payload without its padding and priority fields."""
    start, end = 0, len(payload)
    if flags & PADDED:
        if not payload:
            raise ConnectionFault(PROTOCOL_ERROR, "padded HEADERS without a pad length")
        start, end = 1, end - payload[0]
    if flags & PRIORITY_FLAG:
        start += 5
    if end < start:
        raise ConnectionFault(PROTOCOL_ERROR, "HEADERS padding longer than the frame")
    return payload[start:end]


def split_header_block(stream_id: int, block: bytes, end_stream: bool, max_frame: int) -> bytes:
    """HEADERS (and CONTINUATION frames when ``block`` exceeds ``max_frame``) carrying
    ``block``."""
    first_flags = END_STREAM if end_stream else 0
    if len(block) <= max_frame:
        return frame(HEADERS, first_flags | END_HEADERS, stream_id, block)
    parts = [block[i : i + max_frame] for i in range(0, len(block), max_frame)]
    frames = [frame(HEADERS, first_flags, stream_id, parts[0])]
    for part in parts[1:-1]:
        frames.append(frame(CONTINUATION, 0, stream_id, part))
    frames.append(frame(CONTINUATION, END_HEADERS, stream_id, parts[-1]))
    return b"".join(frames)


# -- gRPC on HTTP/2 ---------------------------------------------------------------------------

_CODES: Final = {code.value[0]: code for code in grpc.StatusCode}

#: What a stream reset means to a gRPC caller (the gRPC HTTP/2 protocol's table).
_RESET_CODES: Final = {
    REFUSED_STREAM: grpc.StatusCode.UNAVAILABLE,
    CANCEL: grpc.StatusCode.CANCELLED,
    ENHANCE_YOUR_CALM: grpc.StatusCode.RESOURCE_EXHAUSTED,
    INADEQUATE_SECURITY: grpc.StatusCode.PERMISSION_DENIED,
}

_TIMEOUT_UNITS: Final = {
    ord("H"): 3600.0,
    ord("M"): 60.0,
    ord("S"): 1.0,
    ord("m"): 1e-3,
    ord("u"): 1e-6,
    ord("n"): 1e-9,
}


def status_of_reset(code: int) -> grpc.StatusCode:
    """The status a caller sees for a stream reset with HTTP/2 error ``code``."""
    return _RESET_CODES.get(code, grpc.StatusCode.INTERNAL)


def status_of_trailers(headers: Sequence[tuple[bytes, bytes]]) -> grpc.StatusCode:
    """The ``grpc-status`` of a trailer block (absent or unreadable: UNKNOWN, as gRPC reads it)."""
    for name, value in headers:
        if name == b"grpc-status":
            try:
                return _CODES.get(int(value), grpc.StatusCode.UNKNOWN)
            except ValueError:
                return grpc.StatusCode.UNKNOWN
    return grpc.StatusCode.UNKNOWN


def parse_timeout(value: bytes) -> float | None:
    """Seconds of a ``grpc-timeout`` value (1-8 digits and a unit); None when malformed."""
    if not 2 <= len(value) <= 9 or not value[:-1].isdigit():
        return None
    unit = _TIMEOUT_UNITS.get(value[-1])
    return None if unit is None else int(value[:-1]) * unit


def encode_grpc_message(message: str) -> bytes:
    """``grpc-message``'s percent-encoding: UTF-8, with ``%`` and bytes outside 0x20-0x7E
    escaped."""
    out = bytearray()
    for byte in message.encode("utf-8"):
        if 0x20 <= byte <= 0x7E and byte != 0x25:
            out.append(byte)
        else:
            out += b"%%%02X" % byte
    return bytes(out)


def status_headers(
    code: grpc.StatusCode, message: str, *, with_response_headers: bool
) -> tuple[tuple[bytes, bytes], ...]:
    """The trailers that end a call with ``code`` and ``message``; ``with_response_headers``
    makes them a trailers-only response (``:status`` and ``content-type`` first)."""
    block: list[tuple[bytes, bytes]] = []
    if with_response_headers:
        block += [(b":status", b"200"), (b"content-type", b"application/grpc")]
    block.append((b"grpc-status", b"%d" % code.value[0]))
    if message:
        block.append((b"grpc-message", encode_grpc_message(message)))
    return tuple(block)


class MessageSizes:
    """Reads the 5-byte gRPC message prefixes out of one direction's DATA bytes, however the
    frames cut them, and tells the first message longer than ``limit`` bytes."""

    __slots__ = ("_head", "_left", "limit")

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self._head = b""
        self._left = 0

    def oversized(self, data: bytes) -> int | None:
        """Feed the next ``data``; the declared length of a message over the limit, else None."""
        i, n = 0, len(data)
        while i < n:
            left = self._left
            if left:
                take = left if left < n - i else n - i
                self._left = left - take
                i += take
                continue
            head = self._head + data[i : i + 5 - len(self._head)]
            i += len(head) - len(self._head)
            if len(head) < 5:
                self._head = head
                return None
            self._head = b""
            size = int.from_bytes(head[1:5], "big")
            if size > self.limit:
                return size
            self._left = size
        return None
