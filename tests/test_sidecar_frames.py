"""The frame proxy's HTTP/2 work, proven on the wire: windows crossed by large messages both ways,
backpressure from a slow reader back to the app, HPACK state kept right over hundreds of calls
whose headers change and evict table entries, and a raw HTTP/2 client sending what grpcio never
sends (padding, priority, CONTINUATION, PING, RST_STREAM, a non-HTTP/2 preface).

The app is a sync grpcio server with raw-bytes handlers; the sidecars run on a loop thread
(:mod:`support_sidecar`), one hop (caller -> sidecar "app" -> app) or two (caller -> "front" ->
"app" -> app).
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
import time
from collections.abc import Iterator
from concurrent import futures
from dataclasses import dataclass, field
from typing import Any

import grpc
import hpack
import pytest
from support_harness import wait_until
from support_sidecar import APP, FRONT, LoopThread, loop_thread, start_sidecar

from grpc_channel.sidecar import PeersResolver, Sidecar
from grpc_channel.sidecar import _h2 as h2

ECHO = "/t.Frames/Echo"
BIDI = "/t.Frames/Bidi"
FLOOD = "/t.Frames/Flood"
HOLD = "/t.Frames/Hold"
MD = (("dapr-app-id", APP),)
MiB = 1 << 20


@dataclass
class AppState:
    """What the app saw: metadata per echo call, messages a flood produced, held calls."""

    metadata: list[dict[str, str]] = field(default_factory=list)
    flooded: int = 0
    held: int = 0
    released: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)


def _handlers(state: AppState) -> grpc.GenericRpcHandler:  # type: ignore[type-arg]
    def echo(request: bytes, context: grpc.ServicerContext) -> bytes:
        with state.lock:
            state.metadata.append(
                {k: v for k, v in context.invocation_metadata() if isinstance(v, str)}
            )
        return request

    def bidi(requests: Iterator[bytes], context: grpc.ServicerContext) -> Iterator[bytes]:
        yield from requests

    def flood(request: bytes, context: grpc.ServicerContext) -> Iterator[bytes]:
        count, size = (int(part) for part in request.split(b","))
        chunk = b"f" * size
        for _ in range(count):
            yield chunk
            with state.lock:
                state.flooded += 1

    def hold(request: bytes, context: grpc.ServicerContext) -> bytes:
        ended = threading.Event()
        context.add_callback(ended.set)
        with state.lock:
            state.held += 1
        ended.wait(30)
        with state.lock:
            state.released += 1
        return b""

    return grpc.method_handlers_generic_handler(
        "t.Frames",
        {
            "Echo": grpc.unary_unary_rpc_method_handler(echo),
            "Bidi": grpc.stream_stream_rpc_method_handler(bidi),
            "Flood": grpc.unary_stream_rpc_method_handler(flood),
            "Hold": grpc.unary_unary_rpc_method_handler(hold),
        },
    )


@dataclass
class Hops:
    loop: LoopThread
    state: AppState
    app_sidecar: Sidecar
    front_sidecar: Sidecar

    def port(self, hops: int) -> int:
        return self.app_sidecar.port if hops == 1 else self.front_sidecar.port

    def in_flight(self) -> int:
        return self.app_sidecar.in_flight + self.front_sidecar.in_flight


@contextlib.contextmanager
def hops_to_app(max_message_bytes: int = 8 * MiB) -> Iterator[Hops]:
    state = AppState()
    options = [
        ("grpc.max_send_message_length", max_message_bytes),
        ("grpc.max_receive_message_length", max_message_bytes),
    ]
    server = grpc.server(futures.ThreadPoolExecutor(max_workers=16), options=options)
    server.add_generic_rpc_handlers((_handlers(state),))
    app_port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        with loop_thread() as loop:
            app_sidecar = start_sidecar(
                loop,
                Sidecar(
                    APP,
                    resolver=PeersResolver(environ={}),
                    app_address=f"127.0.0.1:{app_port}",
                    max_message_bytes=max_message_bytes,
                ),
            )
            front_sidecar = start_sidecar(
                loop,
                Sidecar(
                    FRONT,
                    resolver=PeersResolver(
                        peers={APP: f"127.0.0.1:{app_sidecar.port}"}, environ={}
                    ),
                    max_message_bytes=max_message_bytes,
                ),
            )
            try:
                yield Hops(loop, state, app_sidecar, front_sidecar)
            finally:
                loop.run(front_sidecar.stop(None))
                loop.run(app_sidecar.stop(None))
    finally:
        server.stop(None).wait(10)


@contextlib.contextmanager
def caller(port: int, max_message_bytes: int = 8 * MiB) -> Iterator[grpc.Channel]:
    options = [
        ("grpc.max_send_message_length", max_message_bytes),
        ("grpc.max_receive_message_length", max_message_bytes),
    ]
    with grpc.insecure_channel(f"127.0.0.1:{port}", options=options) as channel:
        yield channel


# -- windows and backpressure -------------------------------------------------------------------


@pytest.mark.parametrize("hops", [1, 2])
def test_large_messages_cross_every_window_both_ways(hops: int) -> None:
    # 3 MiB is three times the proxy's stream window and fifty times HTTP/2's default one: it
    # only arrives whole if every hop grants window back as it forwards.
    big = bytes(range(256)) * (3 * MiB // 256)
    with hops_to_app() as mesh, caller(mesh.port(hops)) as channel:
        assert channel.unary_unary(ECHO)(big, metadata=MD, timeout=30) == big
        sent = [bytes([i]) * (512 * 1024 + i) for i in range(12)]
        got = list(channel.stream_stream(BIDI)(iter(sent), metadata=MD, timeout=30))
        assert got == sent
        assert wait_until(lambda: mesh.in_flight() == 0)


@pytest.mark.parametrize("hops", [1, 2])
def test_a_slow_reader_holds_the_app_back(hops: int) -> None:
    # 200 messages of 256 KiB (50 MiB): while the caller reads none, the app can only get as far
    # as the windows on the way allow, far short of the end; then everything arrives in order.
    with hops_to_app() as mesh, caller(mesh.port(hops)) as channel:
        replies = channel.unary_stream(FLOOD)(b"200,262144", metadata=MD, timeout=60)
        first = next(replies)
        assert len(first) == 262144
        time.sleep(1.5)
        with mesh.state.lock:
            produced = mesh.state.flooded
        assert produced < 100, f"the app ran {produced} messages ahead of a reader that read one"
        rest = list(replies)
        assert len(rest) == 199 and all(len(m) == 262144 for m in rest)
        assert mesh.state.flooded == 200
        assert wait_until(lambda: mesh.in_flight() == 0)


# -- HPACK ----------------------------------------------------------------------------------------


def test_header_state_stays_right_over_changing_and_evicting_headers() -> None:
    # Headers that repeat (cache hits), change (misses) and are large enough to evict entries
    # from the 4 KiB dynamic tables on every connection: each call must arrive with its own.
    with hops_to_app() as mesh, caller(mesh.port(2)) as channel:
        echo = channel.unary_unary(ECHO)
        sent: list[dict[str, str]] = []
        for i in range(300):
            md = {"x-round": str(i % 7), "x-call": f"c{i}"}
            if i % 5 == 0:
                md["x-big"] = chr(ord("a") + i % 26) * 1500
            sent.append(md)
            assert echo(b"%d" % i, metadata=(*MD, *md.items()), timeout=10) == b"%d" % i
        seen = mesh.state.metadata
        assert len(seen) == 300
        for want, got in zip(sent, seen, strict=True):
            assert {k: got.get(k) for k in want} == want


# -- a raw HTTP/2 client ---------------------------------------------------------------------------


class RawClient:
    """A bare HTTP/2 client on a socket: frames in, frames out, no library's habits."""

    def __init__(self, port: int) -> None:
        self.sock = socket.create_connection(("127.0.0.1", port), timeout=10)
        self.encoder = hpack.Encoder()
        self.decoder = hpack.Decoder()
        self.buf = b""
        self.ping_acks: list[bytes] = []
        self.sock.sendall(h2.PREFACE + h2.settings_frame({}))

    def close(self) -> None:
        self.sock.close()

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def frame(self) -> tuple[int, int, int, bytes] | None:
        """The next frame (kind, flags, stream, payload); None at EOF."""
        while True:
            if len(self.buf) >= 9:
                length_kind, flags, sid = h2.FRAME_HEADER.unpack_from(self.buf)
                end = 9 + (length_kind >> 8)
                if len(self.buf) >= end:
                    payload, self.buf = self.buf[9:end], self.buf[end:]
                    kind = length_kind & 0xFF
                    if kind == h2.PING and flags & h2.ACK:
                        self.ping_acks.append(payload)
                    return kind, flags, sid & h2.MAX_STREAM_ID, payload
            data = self.sock.recv(65536)
            if not data:
                return None
            self.buf += data

    def response(self, sid: int) -> tuple[list[tuple[str, str]], bytes, list[tuple[str, str]]]:
        """Read until stream ``sid`` ends: its headers, DATA bytes and trailers (decoded)."""
        blocks: list[list[tuple[str, str]]] = []
        data = b""
        while True:
            got = self.frame()
            assert got is not None, "the connection closed before the response ended"
            kind, flags, stream, payload = got
            if kind == h2.SETTINGS and not flags & h2.ACK:
                self.send(h2.frame(h2.SETTINGS, h2.ACK, 0))
            if stream != sid:
                continue
            assert kind != h2.RST_STREAM, f"reset: {payload!r}"
            if kind == h2.HEADERS:
                block = h2.header_block(payload, flags)
                blocks.append([(k, v) for k, v in self.decoder.decode(block)])
            elif kind == h2.DATA:
                data += payload
            if flags & h2.END_STREAM and kind in (h2.HEADERS, h2.DATA):
                headers = blocks[0] if len(blocks) > 1 else []
                return headers, data, blocks[-1]

    def request_block(self, path: str, **extra: str) -> bytes:
        return self.encoder.encode(
            [
                (":method", "POST"),
                (":scheme", "http"),
                (":path", path),
                (":authority", "sidecar"),
                ("te", "trailers"),
                ("content-type", "application/grpc"),
                ("dapr-app-id", APP),
                *extra.items(),
            ]
        )


def _message(body: bytes) -> bytes:
    return b"\x00" + struct.pack(">I", len(body)) + body


@contextlib.contextmanager
def raw_client(port: int) -> Iterator[RawClient]:
    client = RawClient(port)
    try:
        yield client
    finally:
        client.close()


def test_padding_priority_and_continuation_are_read_and_the_call_answered() -> None:
    with hops_to_app() as mesh, raw_client(mesh.port(2)) as raw:
        block = raw.request_block(ECHO, **{"x-long": "v" * 300})
        first, rest = block[:20], block[20:]
        pad = 7
        headers_payload = bytes([pad]) + struct.pack(">IB", 0, 15) + first + b"\x00" * pad
        raw.send(h2.frame(h2.HEADERS, h2.PADDED | h2.PRIORITY_FLAG, 1, headers_payload))
        raw.send(h2.frame(h2.CONTINUATION, 0, 1, rest[:100]))
        raw.send(h2.frame(h2.CONTINUATION, h2.END_HEADERS, 1, rest[100:]))
        raw.send(h2.frame(h2.PING, 0, 0, b"pingpong"))
        body = _message(b"padded hello")
        raw.send(h2.frame(h2.DATA, h2.PADDED | h2.END_STREAM, 1, bytes([3]) + body + b"\0\0\0"))
        headers, data, trailers = raw.response(1)
        assert (":status", "200") in headers
        assert data == body
        assert ("grpc-status", "0") in trailers
        assert mesh.state.metadata[-1]["x-long"] == "v" * 300
        # The PING was answered with its payload.
        raw.send(h2.frame(h2.PING, 0, 0, b"again..."))
        while len(raw.ping_acks) < 2:
            assert raw.frame() is not None
        assert raw.ping_acks == [b"pingpong", b"again..."]


@pytest.mark.parametrize("hops", [1, 2])
def test_a_reset_from_the_caller_cancels_the_call_at_the_app(hops: int) -> None:
    with hops_to_app() as mesh, raw_client(mesh.port(hops)) as raw:
        raw.send(h2.frame(h2.HEADERS, h2.END_HEADERS, 1, raw.request_block(HOLD)))
        raw.send(h2.frame(h2.DATA, h2.END_STREAM, 1, _message(b"")))
        assert wait_until(lambda: mesh.state.held == 1)
        assert mesh.in_flight() == hops
        raw.send(h2.rst_stream(1, h2.CANCEL))
        assert wait_until(lambda: mesh.state.released == 1)
        assert wait_until(lambda: mesh.in_flight() == 0)
        # The connection still serves calls.
        raw.send(h2.frame(h2.HEADERS, h2.END_HEADERS, 3, raw.request_block(ECHO)))
        raw.send(h2.frame(h2.DATA, h2.END_STREAM, 3, _message(b"after")))
        _, data, trailers = raw.response(3)
        assert data == _message(b"after") and ("grpc-status", "0") in trailers


def test_a_refused_call_is_a_trailers_only_response_with_its_status() -> None:
    with hops_to_app() as mesh, raw_client(mesh.port(1)) as raw:
        block = raw.encoder.encode(
            [(":method", "POST"), (":scheme", "http"), (":path", ECHO), (":authority", "x")]
        )
        raw.send(h2.frame(h2.HEADERS, h2.END_HEADERS | h2.END_STREAM, 1, block))
        headers, data, trailers = raw.response(1)
        assert headers == [] and data == b""
        assert (":status", "200") in trailers
        assert ("grpc-status", str(grpc.StatusCode.INVALID_ARGUMENT.value[0])) in trailers
        assert any(k == "grpc-message" and "dapr-app-id" in v for k, v in trailers)


def test_a_connection_that_is_not_http2_gets_goaway_and_is_closed() -> None:
    with hops_to_app() as mesh:
        with socket.create_connection(("127.0.0.1", mesh.port(1)), timeout=10) as sock:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: sidecar\r\n\r\n")
            received = b""
            while chunk := sock.recv(65536):
                received += chunk
        kinds = []
        while len(received) >= 9:
            length_kind, _, _ = h2.FRAME_HEADER.unpack_from(received)
            payload = received[9 : 9 + (length_kind >> 8)]
            kinds.append((length_kind & 0xFF, payload))
            received = received[9 + (length_kind >> 8) :]
        goaways = [payload for kind, payload in kinds if kind == h2.GOAWAY]
        assert goaways and struct.unpack(">I", goaways[0][4:8])[0] == h2.PROTOCOL_ERROR
        # The sidecar serves on.
        with caller(mesh.port(1)) as channel:
            assert channel.unary_unary(ECHO)(b"still", metadata=MD, timeout=10) == b"still"


# -- pure wire helpers -----------------------------------------------------------------------------


def test_message_sizes_are_read_across_any_cut_of_the_frames() -> None:
    stream = _message(b"a" * 10) + _message(b"b" * 300) + _message(b"c" * 5)
    for cut in range(1, 12):
        sizes = h2.MessageSizes(300)
        pieces = [stream[i : i + cut] for i in range(0, len(stream), cut)]
        assert all(sizes.oversized(piece) is None for piece in pieces)
        small = h2.MessageSizes(299)
        found = [small.oversized(piece) for piece in pieces]
        assert 300 in found


@pytest.mark.parametrize(
    ("value", "seconds"),
    [(b"5S", 5.0), (b"250m", 0.25), (b"3M", 180.0), (b"1H", 3600.0), (b"7u", 7e-6)],
)
def test_grpc_timeout_values_are_read(value: bytes, seconds: float) -> None:
    parsed = h2.parse_timeout(value)
    assert parsed is not None and abs(parsed - seconds) < 1e-12


@pytest.mark.parametrize("value", [b"", b"S", b"5", b"5x", b"123456789S", b"-1S"])
def test_malformed_grpc_timeouts_are_none(value: bytes) -> None:
    assert h2.parse_timeout(value) is None


def test_grpc_message_is_percent_encoded() -> None:
    assert h2.encode_grpc_message("50% off: café\n") == b"50%25 off: caf%C3%A9%0A"


def test_a_large_header_block_is_split_into_continuations() -> None:
    block = bytes(range(256)) * 100
    frames = h2.split_header_block(5, block, True, 16384)
    kinds: list[Any] = []
    rebuilt = b""
    while frames:
        length_kind, flags, sid = h2.FRAME_HEADER.unpack_from(frames)
        length = length_kind >> 8
        kinds.append((length_kind & 0xFF, flags, sid))
        rebuilt += frames[9 : 9 + length]
        frames = frames[9 + length :]
    assert rebuilt == block
    assert kinds == [
        (h2.HEADERS, h2.END_STREAM, 5),
        (h2.CONTINUATION, h2.END_HEADERS, 5),
    ]
