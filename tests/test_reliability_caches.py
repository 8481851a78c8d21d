"""Per-method caches stay bounded (issue 16, item 4).

Every cache keyed by a method path a caller chooses is a ``BoundedCache``: the app channel's raw
routes, the engine's codec routes, a wrapped channel's multicallables, a server interceptor's
wrapped handlers and ``Tracing``'s method records (client and server). Each test drives more
distinct paths than the bound through the public API against a real server on 127.0.0.1 (a
catch-all handler answers any path), checks the size after every call, and checks that calls
still work after their cache entry was evicted. The bound is made small for these tests
(``BoundedCache.default_capacity``) so they stay quick; one test checks the real default.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import gc
import threading
import time
import tracemalloc
from collections.abc import AsyncIterator, Iterator
from types import SimpleNamespace
from typing import Any

import grpc
import grpc.aio
import pytest
from google.protobuf import wrappers_pb2
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.trace import SpanProcessor
from support_harness import AioHandler, Recorder, SyncHandler, aio_server, sync_server, wait_until
from support_tracing import Telemetry

from grpc_channel import (
    Channel,
    dial,
    timeout,
    with_insecure,
    with_max_concurrency,
    with_tracing,
)
from grpc_channel._async_channel import AsyncChannel
from grpc_channel._async_channel import dial as aio_dial
from grpc_channel.interceptors import BoundedCache, Tracing, TracingSpec, compose
from grpc_channel.interceptors._bounded import DEFAULT_CACHE_CAPACITY
from grpc_channel.interceptors._policy import CallShape, ClientCall, ServerCall
from grpc_channel.interceptors._wrapped_channel import KEYS_PER_METHOD

SMALL = 8  # the bound these tests set; EXTRA paths past it force evictions
EXTRA = 3 * SMALL


def paths(n: int, prefix: str = "p") -> list[str]:
    return [f"/{prefix}{i}.Svc/Call" for i in range(n)]


@pytest.fixture
def small_caches(monkeypatch: pytest.MonkeyPatch) -> Iterator[int]:
    """Caches made during the test hold SMALL entries (wrapped channels 4 x SMALL)."""
    monkeypatch.setattr(BoundedCache, "default_capacity", SMALL)
    yield SMALL


# --- a server that answers any path ---------------------------------------------------------------
# The harness's scripted servicer, replying with each request unchanged ("plain"): a request
# "sleep=<s>" sleeps first.


@contextlib.contextmanager
def any_path_server(interceptors: tuple[Any, ...] = ()) -> Iterator[str]:
    rec = Recorder()
    with sync_server(rec, interceptors, handler=SyncHandler(rec, b"plain")) as port:
        yield f"127.0.0.1:{port}"


@contextlib.asynccontextmanager
async def any_path_aio_server(interceptors: tuple[Any, ...] = ()) -> AsyncIterator[str]:
    rec = Recorder()
    async with aio_server(rec, interceptors, handler=AioHandler(rec, b"plain")) as port:
        yield f"127.0.0.1:{port}"


def _tracing_of(channel: Any) -> Tracing:
    """The ``Tracing`` policy a dialled channel runs (the outermost of its chain)."""
    policies = channel._grpc.chain.policies
    found = [p for p in policies if isinstance(p, Tracing)]
    assert len(found) == 1
    return found[0]


def _lean_spec(**kw: Any) -> TracingSpec:
    # Spans go to a processor that drops them: only the policy's own records are under test.
    return TracingSpec(span_processor=SpanProcessor(), **kw)


# --- BoundedCache itself --------------------------------------------------------------------------


def test_bounded_cache_keeps_capacity_and_drops_the_oldest_insertion() -> None:
    cache: BoundedCache[str, int] = BoundedCache(3)
    for i, key in enumerate("abcde"):
        cache[key] = i
        assert len(cache) <= 3
    assert list(cache.data) == ["c", "d", "e"]
    assert "a" not in cache and cache.get("a") is None
    # A hit after eviction is a miss that re-inserts: the entry comes back, the oldest goes.
    cache["a"] = 10
    assert list(cache.data.items()) == [("d", 3), ("e", 4), ("a", 10)]
    # Replacing a present key evicts nothing and keeps its place.
    cache["d"] = 30
    assert list(cache.data.items()) == [("d", 30), ("e", 4), ("a", 10)]
    assert cache.setdefault("e", 99) == 4
    assert cache.setdefault("f", 5) == 5
    assert list(cache.data) == ["e", "a", "f"]
    assert repr(cache) == "BoundedCache(capacity=3, size=3)"


def test_bounded_cache_default_capacity_and_bad_capacities(monkeypatch: pytest.MonkeyPatch) -> None:
    assert DEFAULT_CACHE_CAPACITY == 1024
    assert BoundedCache().capacity == BoundedCache.default_capacity == 1024
    monkeypatch.setattr(BoundedCache, "default_capacity", 5000)
    assert BoundedCache().capacity == 5000
    assert BoundedCache(7).capacity == 7
    for bad in (0, -1, 1.5, True, "8"):
        with pytest.raises(ValueError, match="capacity must be an int >= 1"):
            BoundedCache(bad)  # type: ignore[arg-type]


def test_bounded_cache_on_evict_sees_the_entry_before_it_goes() -> None:
    seen: list[tuple[str, int, bool]] = []

    def on_evict(key: str, value: int) -> None:
        seen.append((key, value, key in cache.data))

    cache: BoundedCache[str, int] = BoundedCache(2, on_evict)
    for i, key in enumerate("abcd"):
        cache[key] = i
    assert seen == [("a", 0, True), ("b", 1, True)]


def test_bounded_cache_survives_threads_hammering_it() -> None:
    """Racing misses, hits, setdefaults and evictions from many threads: no exception and never
    past the bound."""
    cache: BoundedCache[int, object] = BoundedCache(64)
    errors: list[BaseException] = []
    over: list[int] = []
    start = threading.Barrier(8)

    def hammer(seed: int) -> None:
        try:
            start.wait()
            for i in range(20_000):
                key = (i * 7919 + seed) % 5000
                if cache.data.get(key) is None:
                    if i % 2:
                        cache[key] = object()
                    else:
                        cache.setdefault(key, object())
                if len(cache.data) > 64:
                    over.append(len(cache.data))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=hammer, args=(s,)) for s in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert not over
    assert len(cache) == 64


def test_bounded_cache_setdefault_races_agree_on_one_value() -> None:
    """Threads racing setdefault on the same missing keys all get the one value that went in."""
    cache: BoundedCache[int, object] = BoundedCache(10_000)
    start = threading.Barrier(6)
    got: list[list[object]] = [[] for _ in range(6)]

    def racer(n: int) -> None:
        start.wait()
        for key in range(5_000):
            got[n].append(cache.setdefault(key, object()))

    threads = [threading.Thread(target=racer, args=(n,)) for n in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    for key in range(5_000):
        assert all(got[n][key] is cache.data[key] for n in range(6))


# --- the app channel: raw routes and engine routes, sync and aio ----------------------------------


def test_default_bounds_of_every_cache() -> None:
    """Without a setting, every per-method cache holds DEFAULT_CACHE_CAPACITY method paths."""
    spec = _lean_spec(metrics=False)
    channel = dial("127.0.0.1:1", with_insecure(), with_tracing(spec))
    try:
        assert channel._raw_routes.capacity == DEFAULT_CACHE_CAPACITY
        assert channel._engine._routes.capacity == DEFAULT_CACHE_CAPACITY
        wrapped: Any = channel._grpc
        assert wrapped._bounded.capacity == KEYS_PER_METHOD * DEFAULT_CACHE_CAPACITY
        tracing = _tracing_of(channel)
        assert tracing._client.cache.capacity == DEFAULT_CACHE_CAPACITY
        assert tracing._server.cache.capacity == DEFAULT_CACHE_CAPACITY
    finally:
        channel.close()
    server_icpt = compose(Tracing(spec)).server_interceptors()[0]
    assert server_icpt._cache.capacity == DEFAULT_CACHE_CAPACITY


def _check_channel_caches(channel: Channel | AsyncChannel, bound: int) -> None:
    assert len(channel._raw_routes) <= bound
    assert len(channel._engine._routes) <= bound
    wrapped: Any = channel._grpc
    assert len(wrapped._bounded) <= KEYS_PER_METHOD * bound
    tracing = _tracing_of(channel)
    assert len(tracing._client.methods) <= bound
    assert len(tracing._client.orphans) == 0  # no call was in flight at an eviction


def test_sync_channel_invoke_caches_stay_bounded(small_caches: int) -> None:
    many = paths(SMALL + EXTRA)
    with any_path_server() as target:
        channel = dial(target, with_insecure(), with_max_concurrency(4), with_tracing(_lean_spec()))
        try:
            channel.wait_until_ready(10)
            for path in many:
                assert channel.invoke(path, path.encode(), timeout(5)) == path.encode()
                msg = wrappers_pb2.StringValue(value=path)
                got = channel.invoke(path, msg, response_type=wrappers_pb2.StringValue)
                assert got == msg
                _check_channel_caches(channel, small_caches)
            # The first paths were evicted long ago; calling them again works and re-caches them.
            assert many[0] not in channel._raw_routes
            assert channel.invoke(many[0], b"again") == b"again"
            assert many[0] in channel._raw_routes
            assert (many[0], CallShape.UNARY_UNARY) not in channel._engine._routes
            again = wrappers_pb2.StringValue(value="again")
            assert channel.invoke(many[0], again, response_type=wrappers_pb2.StringValue) == again
            _check_channel_caches(channel, small_caches)
        finally:
            channel.close()


def test_aio_channel_invoke_caches_stay_bounded(small_caches: int) -> None:
    many = paths(SMALL + EXTRA)

    async def go() -> None:
        async with (
            any_path_aio_server() as target,
            aio_dial(
                target, with_insecure(), with_max_concurrency(4), with_tracing(_lean_spec())
            ) as channel,
        ):
            await channel.wait_until_ready(10)
            for path in many:
                assert await channel.invoke(path, path.encode()) == path.encode()
                msg = wrappers_pb2.StringValue(value=path)
                got = await channel.invoke(path, msg, response_type=wrappers_pb2.StringValue)
                assert got == msg
                _check_channel_caches(channel, small_caches)
            assert many[0] not in channel._raw_routes
            assert await channel.invoke(many[0], b"again") == b"again"
            assert many[0] in channel._raw_routes
            _check_channel_caches(channel, small_caches)

    asyncio.run(go())


# --- wrapped channels and Tracing client records --------------------------------------------------


def test_wrapped_channel_and_client_tracing_records_stay_bounded(small_caches: int) -> None:
    many = paths(KEYS_PER_METHOD * SMALL + EXTRA)
    tracing = Tracing(_lean_spec(meter_provider=MeterProvider()))
    with any_path_server() as target, grpc.insecure_channel(target) as raw:
        channel: Any = compose(tracing).wrap(raw)
        for path in many:
            assert channel.unary_unary(path)(b"x", timeout=5) == b"x"
            assert len(channel._bounded) <= KEYS_PER_METHOD * small_caches
            assert len(tracing._client.methods) <= small_caches
            assert len(tracing._client.pending) <= tracing._client.pending_sets
        assert (("unary_unary", many[0], None, None)) not in channel._cache
        assert channel.unary_unary(many[0])(b"again", timeout=5) == b"again"
        assert many[0] in tracing._client.methods


def test_aio_wrapped_channel_and_client_tracing_records_stay_bounded(small_caches: int) -> None:
    many = paths(KEYS_PER_METHOD * SMALL + EXTRA)
    tracing = Tracing(_lean_spec())

    async def go() -> None:
        async with any_path_aio_server() as target:
            raw = grpc.aio.insecure_channel(target)
            try:
                channel: Any = compose(tracing).wrap_aio(raw)
                for path in many:
                    assert await channel.unary_unary(path)(b"x", timeout=5) == b"x"
                    assert len(channel._bounded) <= KEYS_PER_METHOD * small_caches
                    assert len(tracing._client.methods) <= small_caches
                assert await channel.unary_unary(many[0])(b"again", timeout=5) == b"again"
            finally:
                await raw.close(None)

    asyncio.run(go())


# --- servers: wrapped handlers and Tracing server records -----------------------------------------


def test_sync_server_interceptor_and_server_tracing_records_stay_bounded(small_caches: int) -> None:
    many = paths(SMALL + EXTRA)
    tracing = Tracing(_lean_spec())
    interceptor = compose(tracing).server_interceptors()[0]
    with any_path_server((interceptor,)) as target, grpc.insecure_channel(target) as raw:
        for path in many:
            assert raw.unary_unary(path, None, None)(b"x", timeout=5) == b"x"
            # The server finishes its side after the client has its answer: wait for it.
            assert wait_until(lambda: all(i.active == 0 for i in tracing._server.methods.values()))
            assert len(interceptor._cache) <= small_caches
            assert len(tracing._server.methods) <= small_caches
        assert many[0] not in interceptor._cache
        assert raw.unary_unary(many[0], None, None)(b"again", timeout=5) == b"again"
        assert many[0] in interceptor._cache


def test_aio_server_interceptor_and_server_tracing_records_stay_bounded(small_caches: int) -> None:
    many = paths(SMALL + EXTRA)
    tracing = Tracing(_lean_spec())
    interceptor = compose(tracing).aio_server_interceptors()[0]

    async def go() -> None:
        async with (
            any_path_aio_server((interceptor,)) as target,
            grpc.aio.insecure_channel(target) as raw,
        ):
            for path in many:
                assert await raw.unary_unary(path, None, None)(b"x", timeout=5) == b"x"
                assert len(interceptor._cache) <= small_caches
                assert len(tracing._server.methods) <= small_caches
            assert many[0] not in interceptor._cache
            assert await raw.unary_unary(many[0], None, None)(b"again", timeout=5) == b"again"
            assert many[0] in interceptor._cache

    asyncio.run(go())


# --- Tracing's in-flight counts survive the eviction of a record in use ---------------------------


def test_in_flight_count_stays_exact_when_a_record_is_evicted_mid_call(small_caches: int) -> None:
    """A call whose method record is evicted while it runs still counts as in flight, and counts
    no more once it ends, although its finish lands on a newer record of the same method."""
    telemetry = Telemetry()
    try:
        tracing = Tracing(_lean_spec(meter_provider=telemetry.meter_provider))
        slow = "/slow.Svc/Call"
        with any_path_server() as target, grpc.insecure_channel(target) as raw:
            channel: Any = compose(tracing).wrap(raw)
            future = channel.unary_unary(slow).future(b"sleep=1.0", timeout=10)
            assert wait_until(lambda: telemetry.sum_value("rpc.client.active_calls") == 1)
            for path in paths(SMALL + EXTRA):
                assert channel.unary_unary(path)(b"x", timeout=5) == b"x"
            assert slow not in tracing._client.methods  # evicted while in flight
            assert telemetry.sum_value("rpc.client.active_calls") == 1
            # A second call of the same method starts on a fresh record while the first runs.
            assert channel.unary_unary(slow)(b"x", timeout=5) == b"x"
            assert telemetry.sum_value("rpc.client.active_calls") == 1
            assert future.result() == b"sleep=1.0"
            assert telemetry.sum_value("rpc.client.active_calls") == 0
            # Evict the newer record (whose count went to -1 with the first call's finish):
            # the orphaned +1 and its -1 cancel out, leaving nothing behind.
            for path in paths(SMALL, prefix="q"):
                assert channel.unary_unary(path)(b"x", timeout=5) == b"x"
            assert telemetry.sum_value("rpc.client.active_calls") == 0
            assert tracing._client.orphans == {}
    finally:
        telemetry.shutdown()


# --- memory: 100k distinct paths ------------------------------------------------------------------


def _channel_paths(spec: TracingSpec) -> tuple[Any, Any]:
    """What ``invoke`` runs on a miss: the raw route and the codec route, each made through the
    channel's wrapped grpcio channel (its multicallable cache too)."""
    channel = dial("127.0.0.1:1", with_insecure(), with_tracing(spec))

    def one(path: str) -> None:
        channel._generic(path, b"", (), None)
        channel._generic(path, wrappers_pb2.StringValue(), (), wrappers_pb2.StringValue)

    return one, channel.close


def _client_tracing_paths(spec: TracingSpec) -> tuple[Any, Any]:
    """A client call through ``Tracing``, start to finish (record, span, metrics)."""
    tracing = Tracing(spec)
    ok = grpc.StatusCode.OK

    def one(path: str) -> None:
        call = ClientCall(path, CallShape.UNARY_UNARY, [], None, None, time.monotonic())
        tracing.client_start(call)
        call.code = ok
        tracing.client_finish(call)

    return one, lambda: None


def _server_tracing_paths(spec: TracingSpec) -> tuple[Any, Any]:
    """A server call through ``Tracing``, start to finish (record, span, metrics)."""
    tracing = Tracing(spec)
    ok = grpc.StatusCode.OK

    def serve(path: str) -> None:
        call = ServerCall(path, CallShape.UNARY_UNARY, (), None, time.monotonic())
        tracing.server_start(call)
        call.code = ok
        tracing.server_finish(call)

    def one(path: str) -> None:
        # server_start makes its span current without detaching it (the chain gives each call
        # its own context copy): do the same, or the span would stay current in this thread.
        contextvars.copy_context().run(serve, path)

    return one, lambda: None


def _server_paths(spec: TracingSpec) -> tuple[Any, Any]:
    """A server interceptor wrapping the catch-all handler for each new path."""
    interceptor = compose(Tracing(spec)).server_interceptors()[0]
    handler = SyncHandler(Recorder(), b"plain").build("/any/Call")

    def one(path: str) -> None:
        interceptor.intercept_service(lambda _: handler, SimpleNamespace(method=path))

    return one, lambda: None


@pytest.mark.parametrize(
    "objects", [_channel_paths, _client_tracing_paths, _server_tracing_paths, _server_paths]
)
def test_memory_is_flat_over_100k_distinct_paths(objects: Any, small_caches: int) -> None:
    """100k new method paths through the cache-holding objects, calling what a call's miss calls
    (route building, record creation, handler wrapping) without the RPCs: past the first bounds'
    worth of paths, the traced memory stops growing (before the bounds it grew 1-1.6 KB a path,
    over 100 MB per 100k)."""
    warm = 2 * KEYS_PER_METHOD * small_caches  # past every bound, the largest included
    # Unsampled spans: spans are per call, not per method, and would only slow the loop down.
    one, close = objects(_lean_spec(meter_provider=MeterProvider(), sampling_rate=0.0))
    all_paths = paths(100_000)
    try:
        gc.collect()
        tracemalloc.start()
        for path in all_paths[:warm]:
            one(path)
        gc.collect()
        after_bound = tracemalloc.get_traced_memory()[0]
        for path in all_paths[warm:]:
            one(path)
        gc.collect()
        growth = tracemalloc.get_traced_memory()[0] - after_bound
    finally:
        tracemalloc.stop()
        close()
    assert growth < 1_000_000, f"{growth / 1e6:.2f} MB more after {len(all_paths)} paths"
