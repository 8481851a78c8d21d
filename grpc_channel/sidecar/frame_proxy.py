"""The sidecar's data path: a gRPC proxy that relays HTTP/2 frames instead of ending each call.

Callers connect to a :class:`FrameProxy`; every stream they open is one call. Its request headers
go to a *planner* (the :class:`~grpc_channel.sidecar.proxy.Sidecar`'s routing rules), which
checks the caller, picks the upstream address and returns the header block to send there, or
refuses the call (:class:`~grpc_channel.sidecar._routing.RouteRefused`, answered as a
trailers-only response with that status). Then the call's frames are relayed both ways: DATA
payloads as they are, header blocks decoded and re-encoded (HPACK state is per connection), the
response headers and trailers unchanged, the stream id remapped. The wire does not tell call
shapes apart and neither does the relay: unary, server-, client- and bidi-streaming calls take
the same path, with no descriptors and no declarations.

What the relay guarantees:

- **Backpressure end to end.** Each side is granted more send window only once the other side's
  window took the bytes (WINDOW_UPDATE follows forwarding, not receipt), so a slow reader slows
  its writer and the proxy holds at most :data:`STREAM_WINDOW` bytes per stream direction and
  :data:`CONNECTION_WINDOW` per connection.
- **Cancellation and deadlines.** A caller's RST_STREAM resets the upstream stream (and frees
  the call's slot); ``grpc-timeout`` travels unchanged, and is the limit of the waits the proxy
  itself does (an app concurrency slot, a connection). An upstream reset reaches the caller with
  its error code.
- **Failures as statuses.** An upstream that cannot be reached, goes away or drops its
  connection ends the caller's call with UNAVAILABLE naming it, after the messages that did
  arrive; a message larger than ``max_message_bytes`` (read from the 5-byte gRPC message prefix,
  either direction) ends it with RESOURCE_EXHAUSTED and resets the upstream stream.
- **A call ends once**, when its caller has its final status (trailers or reset): then the
  planner's admission is ended with that status and the concurrency slot is handed back.

Upstream connections are pooled per address (a new one when the peer's
``SETTINGS_MAX_CONCURRENT_STREAMS`` is reached or a connection goes away), at most
``max_addresses`` addresses (the least recently used pool beyond that closes once idle).
:meth:`FrameProxy.stop` sends GOAWAY, refuses new streams with REFUSED_STREAM (safe for the
caller to retry elsewhere), waits for the calls in flight and resets what is left at the end of
the grace period.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import OrderedDict, deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import grpc
from hpack import Decoder, Encoder, HPACKError

from grpc_channel.interceptors import ConcurrencyLimit, LocalRpcError

from . import _h2 as h2
from ._routing import RouteRefused

__all__ = [
    "CONNECTION_WINDOW",
    "STREAM_WINDOW",
    "CallPlan",
    "FrameProxy",
    "Headers",
    "Planner",
]

_log = logging.getLogger(__name__)

Headers = tuple[tuple[bytes, bytes], ...]

#: Bytes a peer may send on one stream before the proxy forwards them (its receive window).
STREAM_WINDOW = 1 << 20
#: Bytes a peer may send on one connection before the proxy forwards them.
CONNECTION_WINDOW = 16 << 20
_STREAM_UPDATE_AT = STREAM_WINDOW // 4
_CONNECTION_UPDATE_AT = CONNECTION_WINDOW // 4
_MAX_HEADER_LIST = 64 << 10
_HPACK_CACHE = 64  # blocks remembered per connection and direction
_CONNECT_TIMEOUT = 20.0
_IDLE_POOL_GRACE = 30.0

_OUR_SETTINGS = {
    h2.SETTINGS_INITIAL_WINDOW_SIZE: STREAM_WINDOW,
    h2.SETTINGS_MAX_HEADER_LIST_SIZE: _MAX_HEADER_LIST,
}
_CALLER_HELLO = h2.settings_frame(_OUR_SETTINGS) + h2.window_update(
    0, CONNECTION_WINDOW - h2.DEFAULT_WINDOW
)
_UPSTREAM_HELLO = (
    h2.PREFACE
    + h2.settings_frame({h2.SETTINGS_ENABLE_PUSH: 0, **_OUR_SETTINGS})
    + h2.window_update(0, CONNECTION_WINDOW - h2.DEFAULT_WINDOW)
)
_SETTINGS_ACK = h2.frame(h2.SETTINGS, h2.ACK, 0)

# Queue items of a stream's outgoing side: (kind, payload, end_stream).
_DATA = 0
_BLOCK = 1
_Item = tuple[int, "bytes | Headers", bool]


class Admission(Protocol):
    """What a planner admitted: ended once with the status the caller got."""

    def end(self, code: grpc.StatusCode) -> None: ...


@dataclass(slots=True)
class CallPlan:
    """Where a call goes and with what: ``address`` (``host:port``), the full request header
    ``block`` for the upstream (pseudo-headers first), ``what`` names the upstream in errors
    (``"app 'orders'"``), ``admission`` (None: not counted), the app ``limit`` to hold a slot of
    (None: none), the caller's ``deadline`` (``time.monotonic()``; None: none)."""

    address: str
    block: Headers
    what: str
    admission: Admission | None = None
    limit: ConcurrencyLimit | None = None
    deadline: float | None = None


#: Checks a call's request headers and plans it; raises RouteRefused to refuse it.
Planner = Callable[[Headers], CallPlan]


class _Stream:
    """One call's stream on one connection, and the queue of what is to be sent on it."""

    __slots__ = (
        "call",
        "closed",
        "conn",
        "credit",
        "held",
        "peer",
        "queue",
        "recv_end",
        "sent_end",
        "sid",
        "window",
    )

    def __init__(self, call: _Call, conn: _Conn | None, sid: int) -> None:
        self.call = call
        self.conn = conn
        self.sid = sid
        self.peer: _Stream = self
        self.window = 0 if conn is None else conn.peer_initial_window
        self.queue: deque[_Item] = deque()
        self.credit = 0  # forwarded bytes not yet granted back to the sender
        self.held = 0  # received bytes not yet granted back (queued or being granted)
        self.recv_end = False
        self.sent_end = False
        self.closed = False

    def push(self, item: _Item) -> None:
        self.queue.append(item)
        if self.sid:
            self.flush()

    def flush(self) -> None:
        """Send what the windows allow, in order; grant the forwarded bytes back upstream."""
        conn = self.conn
        if conn is None or self.closed:
            return
        queue = self.queue
        sid = self.sid
        while queue:
            kind, payload, end = queue[0]
            if kind == _BLOCK:
                queue.popleft()
                conn.send_block(sid, payload, end)  # type: ignore[arg-type]
                if end:
                    self._ended_sending()
                continue
            data: bytes = payload  # type: ignore[assignment]
            size = len(data)
            if size:
                allowed = min(self.window, conn.send_window, conn.peer_max_frame)
                if allowed <= 0:
                    conn.blocked[self] = None
                    return
                if size > allowed:
                    queue[0] = (_DATA, data[allowed:], end)
                    data, size, end = data[:allowed], allowed, False
                else:
                    queue.popleft()
                self.window -= size
                conn.send_window -= size
            else:
                queue.popleft()
            conn.write(h2.FRAME_HEADER.pack(size << 8, h2.END_STREAM if end else 0, sid) + data)
            if size:
                self.peer.grant(size)
            if end:
                self._ended_sending()
        conn.blocked.pop(self, None)

    def _ended_sending(self) -> None:
        self.sent_end = True
        self.call.sent_end(self)

    def grant(self, size: int) -> None:
        """``size`` received bytes were forwarded: let the sender send that much more."""
        conn = self.conn
        if conn is None:
            return
        conn.grant(size)
        self.held -= size
        if not self.recv_end and not self.closed:
            credit = self.credit + size
            if credit >= _STREAM_UPDATE_AT:
                conn.write(h2.window_update(self.sid, credit))
                credit = 0
            self.credit = credit

    def drop_queue(self) -> None:
        """Forget what is queued; the bytes it held go back to the sender's connection."""
        source = self.peer
        for kind, payload, _ in self.queue:
            if kind == _DATA and payload:
                source.grant(len(payload))
        self.queue.clear()
        if self.conn is not None:
            self.conn.blocked.pop(self, None)

    def close(self, reset: int | None = None) -> None:
        """Leave the connection; with ``reset``, send RST_STREAM with that code first."""
        if self.closed:
            return
        self.closed = True
        conn = self.conn
        if conn is None or not self.sid:
            return
        if reset is not None:
            conn.write(h2.rst_stream(self.sid, reset))
        conn.streams.pop(self.sid, None)
        conn.blocked.pop(self, None)
        conn.stream_closed()


class _Call:
    """One relayed call: the caller's stream (``down``) and the upstream one (``up``)."""

    __slots__ = (
        "down",
        "ended",
        "final",
        "headers_end",
        "plan",
        "proxy",
        "request_sizes",
        "response_sizes",
        "response_started",
        "slot",
        "started",
        "task",
        "up",
    )

    def __init__(self, proxy: FrameProxy, conn: _CallerConn, sid: int, plan: CallPlan) -> None:
        self.proxy = proxy
        self.plan = plan
        self.down = _Stream(self, conn, sid)
        self.up = _Stream(self, None, 0)
        self.down.peer, self.up.peer = self.up, self.down
        limit = proxy.max_message_bytes
        self.request_sizes = h2.MessageSizes(limit)
        self.response_sizes = h2.MessageSizes(limit)
        self.response_started = False
        self.final: grpc.StatusCode | None = None  # set once the caller's ending is queued
        self.ended = False
        self.headers_end = False
        self.slot = False
        self.started = 0.0
        self.task: asyncio.Task[None] | None = None

    # -- opening -------------------------------------------------------------------------------

    def begin(self) -> None:
        """Take the app slot and a connection, waiting in a task only when either is not free."""
        limit = self.plan.limit
        if limit is not None:
            if not limit.try_take():
                self._spawn(self._wait_and_open())
                return
            self.slot = True
            self.started = time.monotonic()
        conn = self.proxy.pool(self.plan.address).pick()
        if conn is not None:
            self.open(conn)
        else:
            self._spawn(self._connect_and_open())

    def _spawn(self, coro: object) -> None:
        self.task = asyncio.get_running_loop().create_task(coro)  # type: ignore[arg-type]

    def _time_left(self) -> float | None:
        deadline = self.plan.deadline
        return None if deadline is None else deadline - time.monotonic()

    async def _wait_and_open(self) -> None:
        limit = self.plan.limit
        assert limit is not None
        try:
            await limit.take_async(self.plan.deadline)
        except LocalRpcError as err:
            self.fail(err.code(), f"{self.plan.what}: {err.details()}")
            self.proxy.flush()
            return
        self.slot = True
        self.started = time.monotonic()
        if self.ended:  # the caller went away as the slot came
            self._give_back_slot(grpc.StatusCode.CANCELLED)
            return
        if not self.up.closed:
            await self._connect_and_open()

    async def _connect_and_open(self) -> None:
        plan = self.plan
        try:
            conn = await self.proxy.pool(plan.address).connect(self._time_left())
        except TimeoutError:
            left = self._time_left()
            if left is not None and left <= 0:
                code, why = (
                    grpc.StatusCode.DEADLINE_EXCEEDED,
                    "the deadline passed while connecting",
                )
            else:
                code, why = grpc.StatusCode.UNAVAILABLE, f"no connection in {_CONNECT_TIMEOUT:g} s"
            self.fail(code, f"cannot reach {plan.what} at {plan.address}: {why}")
        except OSError as err:
            self.fail(
                grpc.StatusCode.UNAVAILABLE, f"cannot reach {plan.what} at {plan.address}: {err}"
            )
        else:
            if not self.up.closed:  # not failed or ended meanwhile
                self.open(conn)
        self.proxy.flush()

    def open(self, conn: _UpstreamConn) -> None:
        """Open the upstream stream on ``conn``: send the planned headers, then what queued."""
        up = self.up
        sid = conn.next_sid
        conn.next_sid = sid + 2
        up.conn, up.sid, up.window = conn, sid, conn.peer_initial_window
        conn.streams[sid] = up
        conn.send_block(sid, self.plan.block, self.headers_end)
        if self.headers_end:
            up.sent_end = True
        up.flush()

    # -- relaying ------------------------------------------------------------------------------

    def caller_data(self, data: bytes, end: bool) -> None:
        if end:
            self.down.recv_end = True
        if data and self._refused_size(self.down, self.request_sizes, data, "request"):
            return
        if self.up.closed:
            self.down.grant(len(data))
            return
        self.up.push((_DATA, data, end))

    def caller_block(self, block: Headers, end: bool) -> None:
        """Request trailers (gRPC has none, HTTP/2 allows them): forwarded in order."""
        if end:
            self.down.recv_end = True
        if not self.up.closed:
            self.up.push((_BLOCK, block, end))

    def upstream_block(self, block: Headers, end: bool) -> None:
        if self.final is not None:  # the caller's ending is decided (a failure came first)
            return
        if end:
            self.up.recv_end = True
            self.final = h2.status_of_trailers(block)
        self.response_started = True
        self.down.push((_BLOCK, block, end))

    def upstream_data(self, data: bytes, end: bool) -> None:
        if end:
            self.up.recv_end = True
        if self.final is not None:
            self.up.grant(len(data))
            return
        if data and self._refused_size(self.up, self.response_sizes, data, "response"):
            return
        if end:  # a response without trailers: the caller's gRPC reads it as it likes
            self.final = grpc.StatusCode.UNKNOWN
        self.down.push((_DATA, data, end))

    def _refused_size(
        self, source: _Stream, sizes: h2.MessageSizes, data: bytes, what: str
    ) -> bool:
        """Whether ``data`` starts a message over the limit: then the call fails with
        RESOURCE_EXHAUSTED and ``data`` is dropped (its window given back)."""
        size = sizes.oversized(data)
        if size is None:
            return False
        source.grant(len(data))
        self.fail(
            grpc.StatusCode.RESOURCE_EXHAUSTED,
            f"{what} message of {size} bytes is larger than the sidecar's "
            f"max_message_bytes={sizes.limit}",
        )
        return True

    def sent_end(self, stream: _Stream) -> None:
        """``stream`` sent END_STREAM: for the caller's, the call has its final status."""
        if stream is self.down:
            self.finish(self.final or grpc.StatusCode.UNKNOWN)
        elif self.up.recv_end:
            self.up.close()

    def reset_by_caller(self) -> None:
        """The caller reset its stream (whatever its code, the upstream gets CANCEL)."""
        self.down.recv_end = True
        self.down.drop_queue()
        self.down.close()
        self._end(grpc.StatusCode.CANCELLED, h2.CANCEL)

    def reset_by_upstream(self, code: int) -> None:
        up = self.up
        up.recv_end = True
        up.drop_queue()
        up.close()
        if self.final is not None:  # the status is on its way (a NO_ERROR reset after trailers)
            return
        self.down.drop_queue()
        self.down.close(reset=code)
        self._end(h2.status_of_reset(code), None)

    def fail(self, code: grpc.StatusCode, message: str) -> None:
        """End the call with ``code``: the upstream stream is reset, the caller gets what is
        already queued, then trailers with the status."""
        if self.ended or self.final is not None:
            return
        _log.debug("call %s failed: %s %s", self.down.sid, code.name, message)
        self.final = code
        up = self.up
        up.drop_queue()
        up.close(reset=h2.CANCEL if up.sid and not up.recv_end else None)
        block = h2.status_headers(code, message, with_response_headers=not self.response_started)
        self.down.push((_BLOCK, block, True))

    def finish(self, code: grpc.StatusCode) -> None:
        """The caller has its final status: close both streams and end the call."""
        down = self.down
        down.close(reset=None if down.recv_end else h2.NO_ERROR)
        up = self.up
        if up.sid and not up.closed:
            up.drop_queue()
            up.close(reset=None if up.recv_end and up.sent_end else h2.CANCEL)
        self._end(code, None)

    def _end(self, code: grpc.StatusCode, upstream_reset: int | None) -> None:
        if self.ended:
            return
        self.ended = True
        up = self.up
        if upstream_reset is not None and up.sid and not up.closed:
            up.drop_queue()
            up.close(reset=upstream_reset)
        task = self.task
        if task is not None and not task.done() and task is not asyncio.current_task():
            task.cancel()
        if self.slot:
            self._give_back_slot(code)
        admission = self.plan.admission
        if admission is not None:
            admission.end(code)
        self.proxy.call_ended(self)

    def _give_back_slot(self, code: grpc.StatusCode) -> None:
        limit = self.plan.limit
        if self.slot and limit is not None:
            self.slot = False
            limit.give_back(code, self.started)

    def abort(self) -> None:
        """Stop now (the proxy stops): both streams reset, the caller's with CANCEL."""
        if self.ended:
            return
        self.down.drop_queue()
        self.down.close(reset=h2.CANCEL)
        self._end(grpc.StatusCode.CANCELLED, h2.CANCEL)

    def connection_lost(self, stream: _Stream, message: str) -> None:
        stream.closed = True
        if stream is self.down:
            stream.drop_queue()
            self._end(grpc.StatusCode.CANCELLED, h2.CANCEL)
        else:
            stream.drop_queue()
            self.fail(grpc.StatusCode.UNAVAILABLE, message)


class _Conn(asyncio.Protocol):
    """One HTTP/2 connection, either side: framing, settings, windows, HPACK."""

    def __init__(self, proxy: FrameProxy) -> None:
        self.proxy = proxy
        self.transport: asyncio.Transport | None = None
        self.buf = b""
        self.encoder = Encoder()
        self.decoder = Decoder(max_header_list_size=_MAX_HEADER_LIST)
        self._encoded: dict[Headers, tuple[object, int, bytes]] = {}
        self._decoded: dict[bytes, tuple[object, int, Headers]] = {}
        self.send_window = h2.DEFAULT_WINDOW
        self.peer_initial_window = h2.DEFAULT_WINDOW
        self.peer_max_frame = h2.DEFAULT_MAX_FRAME
        self.peer_max_streams = 2**31
        self.credit = 0  # connection-level bytes forwarded, not yet granted back
        self.held = 0  # connection-level bytes received, not yet granted back
        self.streams: dict[int, _Stream] = {}
        self.blocked: dict[_Stream, None] = {}  # streams waiting for connection window
        self.out: list[bytes] = []
        self.continuing: tuple[int, int, list[bytes]] | None = None
        self.closed = False
        self.preface = 0  # bytes of the client preface still expected (callers' connections)

    # -- writing -------------------------------------------------------------------------------

    def write(self, data: bytes) -> None:
        if self.closed:
            return
        if not self.out:
            self.proxy.dirty(self)
        self.out.append(data)

    def send_block(self, sid: int, block: Headers, end: bool) -> None:
        self.write(h2.split_header_block(sid, self.encode(block), end, self.peer_max_frame))

    # HPACK through caches. A block that neither adds to nor resizes the dynamic table encodes
    # (decodes) the same way for as long as the table stays as it was: gRPC's repeated headers,
    # once indexed, are such blocks, so the hot path is a dict lookup instead of HPACK work.
    # The table is unchanged while its newest entry is the same object (every addition makes a
    # new one) and its length is the same (a resize that evicts shortens it).

    def encode(self, block: Headers) -> bytes:
        key = tuple(block)
        table = self.encoder.header_table
        entries = table.dynamic_entries
        newest = entries[0] if entries else None
        count = len(entries)
        hit = self._encoded.get(key)
        if hit is not None and hit[0] is newest and hit[1] == count and not table.resized:
            return hit[2]
        raw = self.encoder.encode(key)
        if count == len(entries) and (not entries or entries[0] is newest):
            if len(self._encoded) >= _HPACK_CACHE:
                self._encoded.clear()
            self._encoded[key] = (newest, count, raw)
        return raw

    def decode(self, raw: bytes) -> Headers:
        entries = self.decoder.header_table.dynamic_entries
        newest = entries[0] if entries else None
        count = len(entries)
        hit = self._decoded.get(raw)
        if hit is not None and hit[0] is newest and hit[1] == count:
            return hit[2]
        block: Headers = tuple(self.decoder.decode(raw, raw=True))
        if count == len(entries) and (not entries or entries[0] is newest):
            if len(self._decoded) >= _HPACK_CACHE:
                self._decoded.clear()
            self._decoded[raw] = (newest, count, block)
        return block

    def grant(self, size: int) -> None:
        self.held -= size
        credit = self.credit + size
        if credit >= _CONNECTION_UPDATE_AT:
            self.write(h2.window_update(0, credit))
            credit = 0
        self.credit = credit

    def stream_closed(self) -> None:
        """A stream left: hook for the upstream side (idle pools close)."""

    # -- reading -------------------------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        buf = self.buf + data if self.buf else data
        try:
            if self.preface:
                if len(buf) < len(h2.PREFACE):
                    if not h2.PREFACE.startswith(buf):
                        raise h2.ConnectionFault(h2.PROTOCOL_ERROR, "not an HTTP/2 connection")
                    self.buf = buf
                    return
                if not buf.startswith(h2.PREFACE):
                    raise h2.ConnectionFault(h2.PROTOCOL_ERROR, "not an HTTP/2 connection")
                buf = buf[len(h2.PREFACE) :]
                self.preface = 0
            off = self._frames(buf)
        except h2.ConnectionFault as fault:
            self.fault(fault.code, str(fault))
            return
        except HPACKError as err:
            self.fault(h2.COMPRESSION_ERROR, f"header block: {err}")
            return
        finally:
            self.proxy.flush()
        self.buf = buf[off:] if off < len(buf) else b""

    def _frames(self, buf: bytes) -> int:
        """Handle the whole frames in ``buf``; return where the first incomplete one starts."""
        off, n = 0, len(buf)
        unpack = h2.FRAME_HEADER.unpack_from
        while n - off >= 9 and not self.closed:
            length_kind, flags, sid = unpack(buf, off)
            length = length_kind >> 8
            if length > h2.DEFAULT_MAX_FRAME:
                raise h2.ConnectionFault(h2.FRAME_SIZE_ERROR, f"a frame of {length} bytes")
            end = off + 9 + length
            if end > n:
                break
            kind = length_kind & 0xFF
            sid &= h2.MAX_STREAM_ID
            payload = buf[off + 9 : end]
            off = end
            if self.continuing is not None and kind != h2.CONTINUATION:
                raise h2.ConnectionFault(h2.PROTOCOL_ERROR, "header block interrupted")
            if kind == h2.DATA:
                self._data(sid, flags, payload)
            elif kind == h2.HEADERS:
                block = h2.header_block(payload, flags)
                if flags & h2.END_HEADERS:
                    self._block(sid, block, bool(flags & h2.END_STREAM))
                else:
                    self.continuing = (sid, flags, [block])
            elif kind == h2.CONTINUATION:
                self._continuation(sid, flags, payload)
            elif kind == h2.WINDOW_UPDATE:
                self._window_update(sid, payload)
            elif kind == h2.RST_STREAM:
                if len(payload) != 4:
                    raise h2.ConnectionFault(h2.FRAME_SIZE_ERROR, "RST_STREAM of a wrong size")
                stream = self.streams.get(sid)
                if stream is not None:
                    self.reset(stream, int.from_bytes(payload, "big"))
            elif kind == h2.SETTINGS:
                if not flags & h2.ACK:
                    self._settings(payload)
            elif kind == h2.PING:
                if not flags & h2.ACK:
                    self.write(h2.frame(h2.PING, h2.ACK, 0, payload))
            elif kind == h2.GOAWAY:
                self.goaway(int.from_bytes(payload[:4], "big") & h2.MAX_STREAM_ID)
            elif kind == h2.PUSH_PROMISE:
                raise h2.ConnectionFault(h2.PROTOCOL_ERROR, "PUSH_PROMISE (push is disabled)")
            # PRIORITY and unknown frame types are ignored, as RFC 9113 allows.
        return off

    def _data(self, sid: int, flags: int, payload: bytes) -> None:
        length = len(payload)
        self.held += length
        if self.held > CONNECTION_WINDOW:
            raise h2.ConnectionFault(h2.FLOW_CONTROL_ERROR, "connection window exceeded")
        stream = self.streams.get(sid)
        if stream is None or stream.recv_end:
            self.grant(length)
            return
        data = payload
        if flags & h2.PADDED:
            if not length or payload[0] >= length:
                raise h2.ConnectionFault(h2.PROTOCOL_ERROR, "DATA padding longer than the frame")
            data = payload[1 : length - payload[0]]
        stream.held += length
        if stream.held > STREAM_WINDOW:
            stream.held -= length
            self.grant(length)
            self.stream_fault(stream, h2.FLOW_CONTROL_ERROR)
            return
        if len(data) < length:
            stream.grant(length - len(data))  # padding is granted back at once
        self.data(stream, data, bool(flags & h2.END_STREAM))

    def _continuation(self, sid: int, flags: int, payload: bytes) -> None:
        if self.continuing is None or self.continuing[0] != sid:
            raise h2.ConnectionFault(h2.PROTOCOL_ERROR, "CONTINUATION without its HEADERS")
        first_sid, first_flags, parts = self.continuing
        parts.append(payload)
        if sum(map(len, parts)) > 2 * _MAX_HEADER_LIST:
            raise h2.ConnectionFault(h2.ENHANCE_YOUR_CALM, "header block too large")
        if flags & h2.END_HEADERS:
            self.continuing = None
            self._block(first_sid, b"".join(parts), bool(first_flags & h2.END_STREAM))

    def _block(self, sid: int, raw: bytes, end: bool) -> None:
        if not sid:
            raise h2.ConnectionFault(h2.PROTOCOL_ERROR, "HEADERS on stream 0")
        self.headers(sid, self.decode(raw), end)

    def _window_update(self, sid: int, payload: bytes) -> None:
        if len(payload) != 4:
            raise h2.ConnectionFault(h2.FRAME_SIZE_ERROR, "WINDOW_UPDATE of a wrong size")
        increment = int.from_bytes(payload, "big") & h2.MAX_STREAM_ID
        if sid == 0:
            self.send_window += increment
            if self.send_window > h2.MAX_WINDOW:
                raise h2.ConnectionFault(h2.FLOW_CONTROL_ERROR, "connection window overflow")
            for waiting in list(self.blocked):
                waiting.flush()
                if self.send_window <= 0:
                    break
            return
        stream = self.streams.get(sid)
        if stream is not None:
            stream.window += increment
            stream.flush()

    def _settings(self, payload: bytes) -> None:
        grown = False
        for key, value in h2.parse_settings(payload):
            if key == h2.SETTINGS_INITIAL_WINDOW_SIZE:
                delta = value - self.peer_initial_window
                self.peer_initial_window = value
                for stream in self.streams.values():
                    stream.window += delta
                grown = grown or delta > 0
            elif key == h2.SETTINGS_MAX_FRAME_SIZE:
                self.peer_max_frame = value
            elif key == h2.SETTINGS_HEADER_TABLE_SIZE:
                self.encoder.header_table_size = value
            elif key == h2.SETTINGS_MAX_CONCURRENT_STREAMS:
                self.peer_max_streams = value
        self.write(_SETTINGS_ACK)
        if grown:
            for stream in list(self.streams.values()):
                stream.flush()

    # -- ending --------------------------------------------------------------------------------

    def fault(self, code: int, message: str) -> None:
        """The peer broke the protocol: GOAWAY and close."""
        _log.warning("closing an HTTP/2 connection: %s", message)
        last = max(self.streams, default=0)
        self.write(h2.goaway(last, code, message.encode("utf-8", "replace")[:256]))
        self.proxy.flush()
        self.closed = True
        if self.transport is not None:
            self.transport.close()

    def stream_fault(self, stream: _Stream, code: int) -> None:
        """A stream broke the protocol: reset it and end its call."""
        call = stream.call
        if stream is call.down:
            stream.drop_queue()
            stream.close(reset=code)
            call._end(grpc.StatusCode.INTERNAL, h2.CANCEL)
        else:
            stream.close(reset=code)
            call.fail(grpc.StatusCode.INTERNAL, "the upstream broke HTTP/2 flow control")

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self.out.clear()
        self.lost(exc)
        self.proxy.flush()

    # -- per side ------------------------------------------------------------------------------

    def data(self, stream: _Stream, data: bytes, end: bool) -> None:
        raise NotImplementedError

    def headers(self, sid: int, block: Headers, end: bool) -> None:
        raise NotImplementedError

    def reset(self, stream: _Stream, code: int) -> None:
        raise NotImplementedError

    def goaway(self, last_sid: int) -> None:
        raise NotImplementedError

    def lost(self, exc: Exception | None) -> None:
        raise NotImplementedError


class _CallerConn(_Conn):
    """A connection a caller opened: each new stream it starts is a call."""

    def __init__(self, proxy: FrameProxy) -> None:
        super().__init__(proxy)
        self.preface = len(h2.PREFACE)
        self.last_sid = 0

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self.proxy.callers.add(self)
        self.write(_CALLER_HELLO)
        if self.proxy.draining:
            self.write(h2.goaway(0, h2.NO_ERROR))
        self.proxy.flush()

    def data(self, stream: _Stream, data: bytes, end: bool) -> None:
        stream.call.caller_data(data, end)

    def headers(self, sid: int, block: Headers, end: bool) -> None:
        stream = self.streams.get(sid)
        if stream is not None:
            stream.call.caller_block(block, end)
            return
        if sid <= self.last_sid:  # a stream already closed here: nothing to do
            return
        if not sid % 2:
            raise h2.ConnectionFault(h2.PROTOCOL_ERROR, f"a caller opened even stream {sid}")
        self.last_sid = sid
        self.proxy.open_call(self, sid, block, end)

    def reset(self, stream: _Stream, code: int) -> None:
        stream.call.reset_by_caller()

    def goaway(self, last_sid: int) -> None:
        """The caller is leaving: its open calls run on; it closes the connection after."""

    def lost(self, exc: Exception | None) -> None:
        self.proxy.callers.discard(self)
        for stream in list(self.streams.values()):
            stream.call.connection_lost(stream, "the caller went away")
        self.streams.clear()


class _UpstreamConn(_Conn):
    """A connection to an app or a peer sidecar, carrying many calls."""

    def __init__(self, proxy: FrameProxy, pool: _Pool) -> None:
        super().__init__(proxy)
        self.pool = pool
        self.next_sid = 1
        self.going_away = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self.write(_UPSTREAM_HELLO)

    def usable(self) -> bool:
        return (
            not self.closed
            and not self.going_away
            and len(self.streams) < self.peer_max_streams
            and self.next_sid < h2.MAX_STREAM_ID
        )

    def data(self, stream: _Stream, data: bytes, end: bool) -> None:
        stream.call.upstream_data(data, end)

    def headers(self, sid: int, block: Headers, end: bool) -> None:
        stream = self.streams.get(sid)
        if stream is not None:
            stream.call.upstream_block(block, end)

    def reset(self, stream: _Stream, code: int) -> None:
        stream.call.reset_by_upstream(code)

    def goaway(self, last_sid: int) -> None:
        self.going_away = True
        for sid, stream in list(self.streams.items()):
            if sid > last_sid:  # never processed: the upstream refused it
                stream.closed = True
                self.streams.pop(sid, None)
                stream.drop_queue()
                stream.call.fail(
                    grpc.StatusCode.UNAVAILABLE,
                    f"{stream.call.plan.what} at {self.pool.address} is going away",
                )
        self.stream_closed()

    def stream_closed(self) -> None:
        spent = self.going_away or self.pool.retired or self.next_sid >= h2.MAX_STREAM_ID
        if not self.streams and spent:
            self.closed = True
            if self.transport is not None:
                self.transport.close()

    def lost(self, exc: Exception | None) -> None:
        self.pool.forget(self)
        why = f": {exc}" if exc else ""
        for stream in list(self.streams.values()):
            stream.call.connection_lost(
                stream,
                f"the connection to {stream.call.plan.what} at {self.pool.address} was lost{why}",
            )
        self.streams.clear()


class _Pool:
    """The upstream connections to one address."""

    def __init__(self, proxy: FrameProxy, address: str) -> None:
        self.proxy = proxy
        self.address = address
        self.conns: list[_UpstreamConn] = []
        self.pending: asyncio.Future[_UpstreamConn] | None = None
        self.retired = False
        host, _, port = address.rpartition(":")
        self.host = host[1:-1] if host.startswith("[") else host
        self.port = int(port)

    def pick(self) -> _UpstreamConn | None:
        for conn in self.conns:
            if conn.usable():
                return conn
        return None

    async def connect(self, timeout: float | None) -> _UpstreamConn:
        """A usable connection, dialling one when none is (one dial at a time per address)."""
        conn = self.pick()
        if conn is not None:
            return conn
        if self.pending is None or self.pending.done():
            self.pending = asyncio.ensure_future(self._dial())
        limit = _CONNECT_TIMEOUT if timeout is None else min(max(timeout, 0.0), _CONNECT_TIMEOUT)
        return await asyncio.wait_for(asyncio.shield(self.pending), limit)

    async def _dial(self) -> _UpstreamConn:
        loop = asyncio.get_running_loop()
        _, conn = await loop.create_connection(
            lambda: _UpstreamConn(self.proxy, self), self.host, self.port
        )
        self.conns.append(conn)
        self.proxy.flush()
        return conn

    def forget(self, conn: _UpstreamConn) -> None:
        if conn in self.conns:
            self.conns.remove(conn)

    def retire(self) -> None:
        """No new calls here: close each connection once its calls are done."""
        self.retired = True
        for conn in list(self.conns):
            conn.stream_closed()

    def close(self) -> None:
        for conn in list(self.conns):
            conn.closed = True
            if conn.transport is not None:
                conn.transport.close()
        if self.pending is not None and not self.pending.done():
            self.pending.cancel()


class FrameProxy:
    """Relays gRPC calls frame by frame (see the module docs). ``planner`` decides each call;
    ``max_message_bytes`` caps each message, both ways; ``max_addresses`` upstream pools are
    kept. One proxy serves one event loop."""

    def __init__(self, planner: Planner, *, max_message_bytes: int, max_addresses: int) -> None:
        self.planner = planner
        self.max_message_bytes = max_message_bytes
        self.max_addresses = max_addresses
        self.callers: set[_CallerConn] = set()
        self.calls: set[_Call] = set()
        self.draining = False
        self._pools: OrderedDict[str, _Pool] = OrderedDict()
        self._dirty: list[_Conn] = []
        self._flush_soon = False
        self._server: asyncio.Server | None = None
        self._idle: asyncio.Event | None = None

    # -- writing -------------------------------------------------------------------------------

    def dirty(self, conn: _Conn) -> None:
        self._dirty.append(conn)
        if not self._flush_soon:
            # A safety net: every entry point flushes at its end, this catches any other.
            self._flush_soon = True
            asyncio.get_running_loop().call_soon(self.flush)

    def flush(self) -> None:
        self._flush_soon = False
        dirty, self._dirty = self._dirty, []
        for conn in dirty:
            out = conn.out
            if out and conn.transport is not None and not conn.transport.is_closing():
                conn.transport.write(out[0] if len(out) == 1 else b"".join(out))
            out.clear()

    # -- calls ---------------------------------------------------------------------------------

    def pool(self, address: str) -> _Pool:
        pool = self._pools.get(address)
        if pool is not None:
            self._pools.move_to_end(address)
            return pool
        pool = self._pools[address] = _Pool(self, address)
        if len(self._pools) > self.max_addresses:
            _, oldest = self._pools.popitem(last=False)
            oldest.retire()
            loop = asyncio.get_running_loop()
            loop.call_later(_IDLE_POOL_GRACE, oldest.close)
        return pool

    def open_call(self, conn: _CallerConn, sid: int, block: Headers, end: bool) -> None:
        if self.draining:
            conn.write(h2.rst_stream(sid, h2.REFUSED_STREAM))
            return
        try:
            plan = self.planner(block)
        except RouteRefused as refused:
            trailers = h2.status_headers(refused.code, refused.message, with_response_headers=True)
            conn.send_block(sid, trailers, True)
            if not end:  # stop its request: nothing of it will be read
                conn.write(h2.rst_stream(sid, h2.NO_ERROR))
            return
        call = _Call(self, conn, sid, plan)
        conn.streams[sid] = call.down
        self.calls.add(call)
        if end:
            call.headers_end = call.down.recv_end = True
        call.begin()

    def call_ended(self, call: _Call) -> None:
        self.calls.discard(call)
        if self._idle is not None and not self.calls:
            self._idle.set()

    # -- serving -------------------------------------------------------------------------------

    async def start(self, host: str, port: int) -> int:
        """Listen on ``host:port`` (0: ephemeral); the bound port."""
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(lambda: _CallerConn(self), host, port)
        sockets = self._server.sockets
        if not sockets:
            raise OSError(f"cannot listen on {host}:{port}")
        bound: int = sockets[0].getsockname()[1]
        return bound

    async def stop(self, grace: float | None) -> None:
        """GOAWAY to every caller, refuse new streams, wait ``grace`` seconds (None: no wait)
        for the calls in flight, reset the rest, close every connection."""
        self.draining = True
        server, self._server = self._server, None
        if server is not None:
            server.close()
        for conn in list(self.callers):
            conn.write(h2.goaway(conn.last_sid, h2.NO_ERROR))
        self.flush()
        if self.calls and grace is not None and grace > 0:
            self._idle = asyncio.Event()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._idle.wait(), grace)
        for call in list(self.calls):
            call.abort()
        self.flush()
        for conn in list(self.callers):
            conn.closed = True
            if conn.transport is not None:
                conn.transport.close()
        for pool in self._pools.values():
            pool.close()
        self._pools.clear()
        if server is not None:
            await server.wait_closed()
