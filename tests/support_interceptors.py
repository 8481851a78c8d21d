"""Test helpers for the interceptors tests: a raw-bytes service for all four call shapes, served by
real sync and aio grpcio servers on 127.0.0.1:0, that records what it saw.

A request is a ``;``-separated list of commands (bytes):

- ``sleep=<seconds>``: sleep before answering (sync: time.sleep; aio: asyncio.sleep);
- ``raise``: raise ``RuntimeError`` in the handler (the client sees UNKNOWN);
- ``abort=<CODE>``: abort with that status code name;
- ``fail_first=<n>:<CODE>``: abort with CODE for the first n attempts of a call id (``id=<x>``);
- ``n=<count>``: number of response messages for response-streaming methods (default 3);
- ``id=<x>``: a call id used by ``fail_first`` and attempt counting;
- ``pushback=<ms>``: send the ``grpc-retry-pushback-ms`` trailer with that value;
- ``fail_after=<CODE>``: response-streaming methods send one message, then abort with CODE.

Responses echo the request. Every handler sends initial metadata ``x-header: h`` and trailing
metadata ``x-trailer: t``.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections import Counter
from collections.abc import AsyncIterator, Iterator, Sequence
from concurrent import futures
from typing import Any

import grpc
import grpc.aio

SERVICE = "test.Svc"
UU = f"/{SERVICE}/UU"
US = f"/{SERVICE}/US"
SU = f"/{SERVICE}/SU"
SS = f"/{SERVICE}/SS"
METHODS = {"unary_unary": UU, "unary_stream": US, "stream_unary": SU, "stream_stream": SS}
SHAPES = ("unary_unary", "unary_stream", "stream_unary", "stream_stream")


def parse(request: bytes) -> dict[str, str]:
    out: dict[str, str] = {}
    for part in request.decode().split(";"):
        if not part:
            continue
        key, _, value = part.partition("=")
        out[key] = value
    return out


class Recorder:
    """What the server saw: running/max concurrency, calls, metadata, attempts per call id."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.running = 0
        self.max_running = 0
        self.handled = 0
        self.metadata: list[dict[str, Any]] = []
        self.attempts: Counter[str] = Counter()
        self.previous_attempts: list[str | None] = []
        self.remaining: list[float | None] = []

    def enter(self, context: Any) -> None:
        md = dict(context.invocation_metadata() or ())
        left = context.time_remaining()
        with self.lock:
            self.remaining.append(None if left is None or left > 1e8 else left)
            self.running += 1
            self.handled += 1
            self.max_running = max(self.max_running, self.running)
            self.metadata.append(md)
            self.previous_attempts.append(md.get("x-previous-rpc-attempts"))

    def leave(self) -> None:
        with self.lock:
            self.running -= 1

    def attempt(self, call_id: str) -> int:
        with self.lock:
            self.attempts[call_id] += 1
            return self.attempts[call_id]


def _failure(cmd: dict[str, str], rec: Recorder) -> tuple[grpc.StatusCode, str] | None:
    if "abort" in cmd:
        return grpc.StatusCode[cmd["abort"]], "asked to abort"
    if "fail_first" in cmd:
        count, _, code = cmd["fail_first"].partition(":")
        if rec.attempt(cmd.get("id", "")) <= int(count):
            return grpc.StatusCode[code], "failing this attempt"
    elif "id" in cmd:
        rec.attempt(cmd["id"])
    return None


def _trailers(cmd: dict[str, str]) -> tuple[tuple[str, str], ...]:
    if "pushback" in cmd:
        return (("x-trailer", "t"), ("grpc-retry-pushback-ms", cmd["pushback"]))
    return (("x-trailer", "t"),)


def sync_handler(rec: Recorder) -> grpc.GenericRpcHandler[Any, Any]:
    def begin(request: bytes, context: grpc.ServicerContext) -> dict[str, str]:
        rec.enter(context)
        context.send_initial_metadata((("x-header", "h"),))
        cmd = parse(request)
        context.set_trailing_metadata(_trailers(cmd))
        if "sleep" in cmd:
            time.sleep(float(cmd["sleep"]))
        if "raise" in cmd:
            raise RuntimeError("handler failed on purpose")
        failure = _failure(cmd, rec)
        if failure is not None:
            context.abort(*failure)
        return cmd

    def uu(request: bytes, context: grpc.ServicerContext) -> bytes:
        try:
            begin(request, context)
            return b"echo:" + request
        finally:
            rec.leave()

    def us(request: bytes, context: grpc.ServicerContext) -> Iterator[bytes]:
        try:
            cmd = begin(request, context)
            for i in range(int(cmd.get("n", "3"))):
                yield b"%d:" % i + request
                if "fail_after" in cmd:
                    context.abort(grpc.StatusCode[cmd["fail_after"]], "failed mid-stream")
        finally:
            rec.leave()

    def su(requests: Iterator[bytes], context: grpc.ServicerContext) -> bytes:
        items = list(requests)
        try:
            begin(items[0] if items else b"", context)
            return b"|".join(items)
        finally:
            rec.leave()

    def ss(requests: Iterator[bytes], context: grpc.ServicerContext) -> Iterator[bytes]:
        items = list(requests)
        try:
            cmd = begin(items[0] if items else b"", context)
            for item in items:
                yield item
                if "fail_after" in cmd:
                    context.abort(grpc.StatusCode[cmd["fail_after"]], "failed mid-stream")
        finally:
            rec.leave()

    return grpc.method_handlers_generic_handler(
        SERVICE,
        {
            "UU": grpc.unary_unary_rpc_method_handler(uu),
            "US": grpc.unary_stream_rpc_method_handler(us),
            "SU": grpc.stream_unary_rpc_method_handler(su),
            "SS": grpc.stream_stream_rpc_method_handler(ss),
        },
    )


def aio_handler(rec: Recorder) -> grpc.GenericRpcHandler[Any, Any]:
    async def begin(request: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> dict[str, str]:
        rec.enter(context)
        await context.send_initial_metadata((("x-header", "h"),))
        cmd = parse(request)
        context.set_trailing_metadata(_trailers(cmd))
        if "sleep" in cmd:
            await asyncio.sleep(float(cmd["sleep"]))
        if "raise" in cmd:
            raise RuntimeError("handler failed on purpose")
        failure = _failure(cmd, rec)
        if failure is not None:
            await context.abort(*failure)
        return cmd

    async def uu(request: bytes, context: grpc.aio.ServicerContext[Any, Any]) -> bytes:
        try:
            await begin(request, context)
            return b"echo:" + request
        finally:
            rec.leave()

    async def us(
        request: bytes, context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[bytes]:
        try:
            cmd = await begin(request, context)
            for i in range(int(cmd.get("n", "3"))):
                yield b"%d:" % i + request
                if "fail_after" in cmd:
                    await context.abort(grpc.StatusCode[cmd["fail_after"]], "failed mid-stream")
        finally:
            rec.leave()

    async def su(
        requests: AsyncIterator[bytes], context: grpc.aio.ServicerContext[Any, Any]
    ) -> bytes:
        items = [r async for r in requests]
        try:
            await begin(items[0] if items else b"", context)
            return b"|".join(items)
        finally:
            rec.leave()

    async def ss(
        requests: AsyncIterator[bytes], context: grpc.aio.ServicerContext[Any, Any]
    ) -> AsyncIterator[bytes]:
        items = [r async for r in requests]
        try:
            cmd = await begin(items[0] if items else b"", context)
            for item in items:
                yield item
                if "fail_after" in cmd:
                    await context.abort(grpc.StatusCode[cmd["fail_after"]], "failed mid-stream")
        finally:
            rec.leave()

    return grpc.method_handlers_generic_handler(
        SERVICE,
        {
            "UU": grpc.unary_unary_rpc_method_handler(uu),
            "US": grpc.unary_stream_rpc_method_handler(us),
            "SU": grpc.stream_unary_rpc_method_handler(su),
            "SS": grpc.stream_stream_rpc_method_handler(ss),
        },
    )


@contextlib.contextmanager
def sync_server(
    rec: Recorder,
    interceptors: Sequence[Any] = (),
    workers: int = 16,
    handler: grpc.GenericRpcHandler[Any, Any] | None = None,
) -> Iterator[int]:
    """A sync server on 127.0.0.1:0 serving the test service (or ``handler`` instead); yields its
    port; stops it."""
    pool = futures.ThreadPoolExecutor(max_workers=workers)
    server = grpc.server(pool, interceptors=list(interceptors))
    server.add_generic_rpc_handlers((handler or sync_handler(rec),))
    port = server.add_insecure_port("127.0.0.1:0")
    server.start()
    try:
        yield port
    finally:
        server.stop(None).wait()
        pool.shutdown(wait=True)


@contextlib.asynccontextmanager
async def aio_server(rec: Recorder, interceptors: Sequence[Any] = ()) -> AsyncIterator[int]:
    """An aio server on 127.0.0.1:0 serving the test service; yields its port; stops it."""
    server = grpc.aio.server(interceptors=list(interceptors))
    server.add_generic_rpc_handlers((aio_handler(rec),))
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    try:
        yield port
    finally:
        await server.stop(None)


def call_sync(channel: Any, shape: str, request: bytes, **kw: Any) -> list[bytes]:
    """Make one call of ``shape``; return the response messages as a list."""
    method = METHODS[shape]
    if shape == "unary_unary":
        return [channel.unary_unary(method)(request, **kw)]
    if shape == "unary_stream":
        return list(channel.unary_stream(method)(request, **kw))
    if shape == "stream_unary":
        return [channel.stream_unary(method)(iter([request, b"more"]), **kw)]
    return list(channel.stream_stream(method)(iter([request, b"more"]), **kw))


async def call_aio(channel: Any, shape: str, request: bytes, **kw: Any) -> list[bytes]:
    method = METHODS[shape]
    if shape == "unary_unary":
        return [await channel.unary_unary(method)(request, **kw)]
    if shape == "unary_stream":
        return [m async for m in channel.unary_stream(method)(request, **kw)]
    if shape == "stream_unary":
        return [await channel.stream_unary(method)(iter([request, b"more"]), **kw)]
    return [m async for m in channel.stream_stream(method)(iter([request, b"more"]), **kw)]


def expected(shape: str, request: bytes) -> list[bytes]:
    cmd = parse(request)
    if shape == "unary_unary":
        return [b"echo:" + request]
    if shape == "unary_stream":
        return [b"%d:" % i + request for i in range(int(cmd.get("n", "3")))]
    if shape == "stream_unary":
        return [request + b"|more"]
    return [request, b"more"]


@contextlib.contextmanager
def sync_client(port: int, chain: Any = None, mode: str = "wrap") -> Iterator[Any]:
    """A sync channel to ``port``: raw (chain None), ``chain.wrap`` (mode "wrap") or
    ``grpc.intercept_channel`` with the chain's interceptors (mode "icpt"); closed afterwards."""
    raw = grpc.insecure_channel(f"127.0.0.1:{port}")
    try:
        if chain is None:
            yield raw
        elif mode == "wrap":
            yield chain.wrap(raw)
        else:
            yield grpc.intercept_channel(raw, *chain.client_interceptors())
    finally:
        raw.close()


@contextlib.asynccontextmanager
async def aio_client(port: int, chain: Any = None, mode: str = "wrap") -> AsyncIterator[Any]:
    """The aio counterpart of :func:`sync_client`."""
    target = f"127.0.0.1:{port}"
    if chain is not None and mode == "icpt":
        channel = grpc.aio.insecure_channel(target, interceptors=chain.aio_client_interceptors())
        try:
            yield channel
        finally:
            await channel.close(None)
        return
    raw = grpc.aio.insecure_channel(target)
    try:
        yield raw if chain is None else chain.wrap_aio(raw)
    finally:
        await raw.close(None)


def wait_until(predicate: Any, timeout: float = 10.0) -> bool:
    """Poll ``predicate`` until true (used to let servers wind down; never a timing assertion)."""
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        time.sleep(0.005)
    return bool(predicate())


async def async_wait_until(predicate: Any, timeout: float = 10.0) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if predicate():
            return True
        await asyncio.sleep(0.005)
    return bool(predicate())


def refused_code(err: Any, aio: bool, shape: str) -> grpc.StatusCode:
    """The status of a call the *server* refused before reading the request stream.

    grpc.aio clients race there: when the server's status arrives while the client is still
    sending request messages, grpc.aio may report INTERNAL ("Failed execute_batch" on a
    SendMessageOperation) instead of the server's code. Map that one case to ``None`` so tests
    can skip the code check for it (they still check that the handler never ran).
    """
    code: grpc.StatusCode = err.code()
    if (
        aio
        and shape.startswith("stream")
        and code is grpc.StatusCode.INTERNAL
        and "SendMessageOperation" in (err.debug_error_string() or "")
    ):
        return None  # type: ignore[return-value]
    return code
