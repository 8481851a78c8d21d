"""One contract for every pub/sub broker (in-memory, Redis Streams, NATS JetStream), run against
real servers (see ``support_brokers``), plus Dapr Component file loading.

Each test runs its scenario with ``asyncio.run`` and closes what it opened. Redelivery waits are
kept short by the settings ``Backend.make`` uses: a 50 ms default NACK delay, Redis reclaiming
entries idle for 1 s, checked every 200 ms; JetStream redelivering unacked messages after 2 s.
"""

from __future__ import annotations

import asyncio
import io
import json
import pathlib
import time
from collections.abc import Awaitable, Callable, Coroutine
from dataclasses import dataclass, field
from typing import Any

import nats
import pytest
import redis.asyncio as aioredis

from grpc_channel.pubsub.brokers import (
    ACK,
    COMPONENT_TYPES,
    TERM,
    Broker,
    BrokerArgumentError,
    BrokerClosedError,
    BrokerError,
    BrokerMessage,
    ComponentError,
    JetStreamBroker,
    JetStreamSettings,
    MemoryBroker,
    Outcome,
    RedisStreamsBroker,
    RedisStreamsSettings,
    load_component_file,
    load_components,
    nack,
    parse_duration,
)
from grpc_channel.pubsub.brokers.jetstream import stream_name_for

BACKENDS = ["memory", "redis", "jetstream"]
WAIT = 15.0  # generous upper bound for anything to arrive; never a timing assertion


def run(scenario: Coroutine[Any, Any, None], limit: float = 15.0) -> None:
    """Run ``scenario``; if it hangs, fail with every task's stack instead of waiting for the
    per-test timeout."""

    async def guarded() -> None:
        task = asyncio.ensure_future(scenario)
        done, _ = await asyncio.wait({task}, timeout=limit)
        if not done:
            stacks = io.StringIO()
            for each in asyncio.all_tasks():
                stacks.write(f"{each.get_name()}:\n")
                awaited: Any = each.get_coro()
                while awaited is not None:
                    frame = getattr(awaited, "cr_frame", None) or getattr(awaited, "gi_frame", None)
                    if frame is not None:
                        stacks.write(f"  {frame.f_code.co_filename}:{frame.f_lineno}\n")
                    awaited = getattr(awaited, "cr_await", None) or getattr(
                        awaited, "gi_yieldfrom", None
                    )
            task.cancel()
            pytest.fail(f"scenario still running after {limit} s:\n{stacks.getvalue()}")
        task.result()

    asyncio.run(guarded())


async def eventually(predicate: Callable[[], Awaitable[bool]], timeout: float = WAIT) -> bool:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        if await predicate():
            return True
        await asyncio.sleep(0.02)
    return await predicate()


@dataclass
class Backend:
    kind: str
    url: str
    prefix: str

    def topic(self, name: str = "topic") -> str:
        return f"{self.prefix}.{name}"

    def group(self, name: str = "app") -> str:
        return f"{self.prefix}-{name}"

    def make(self) -> Broker:
        if self.kind == "memory":
            return MemoryBroker(default_nack_delay=0.05)
        if self.kind == "redis":
            return RedisStreamsBroker(
                RedisStreamsSettings(url=self.url, processing_timeout=1.0, redeliver_interval=0.2)
            )
        return JetStreamBroker(JetStreamSettings(url=self.url, ack_wait=2.0, nak_delay=0.05))

    async def unsettled(self, broker: Broker, topic: str, group: str) -> int:
        """Messages of the group the broker still holds (undelivered, pending or unacked)."""
        if isinstance(broker, MemoryBroker):
            return broker.pending(topic, group)
        if isinstance(broker, RedisStreamsBroker):
            summary = await broker.client.xpending(topic, group)
            return int(summary["pending"])
        nc = await nats.connect(self.url)
        try:
            info = await nc.jetstream().consumer_info(stream_name_for(topic), group)
            return int(info.num_ack_pending or 0) + int(info.num_pending or 0)
        finally:
            await nc.close()


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest, unique_name: str) -> Backend:
    kind: str = request.param
    url = ""
    if kind == "redis":
        url = request.getfixturevalue("redis_url")
    elif kind == "jetstream":
        url = request.getfixturevalue("nats_url")
    return Backend(kind, url, unique_name)


@dataclass
class Collector:
    """Records deliveries; ``decide`` picks each outcome (ACK unless told otherwise)."""

    decide: Callable[[BrokerMessage], Outcome] = lambda _m: ACK
    seen: list[BrokerMessage] = field(default_factory=list)
    _changed: asyncio.Event = field(default_factory=asyncio.Event)

    async def __call__(self, message: BrokerMessage) -> Outcome:
        self.seen.append(message)
        self._changed.set()
        return self.decide(message)

    async def wait_for(self, count: int) -> list[BrokerMessage]:
        end = time.monotonic() + WAIT
        while len(self.seen) < count and time.monotonic() < end:
            self._changed.clear()
            try:
                await asyncio.wait_for(self._changed.wait(), end - time.monotonic())
            except TimeoutError:
                break
        assert len(self.seen) >= count, f"got {len(self.seen)} of {count} deliveries"
        return self.seen

    def ids(self) -> list[str]:
        return [m.id for m in self.seen]


# -- the contract ---------------------------------------------------------------------------------


def test_round_trip_with_metadata(backend: Backend) -> None:
    async def scenario() -> None:
        async with backend.make() as broker:
            topic, got = backend.topic(), Collector()
            sub = await broker.subscribe(topic, got, group=backend.group())
            await broker.publish(topic, b"hello\x00", {"k": "v", "ce-type": "t"}, message_id="m1")
            (message,) = await got.wait_for(1)
            assert message.topic == topic
            assert message.data == b"hello\x00"
            assert dict(message.metadata) == {"k": "v", "ce-type": "t"}
            assert message.id == "m1"
            assert message.delivery_count == 1
            await sub.stop()

    run(scenario())


def test_publish_without_id_gets_one(backend: Backend) -> None:
    async def scenario() -> None:
        async with backend.make() as broker:
            topic, got = backend.topic(), Collector()
            await broker.subscribe(topic, got, group=backend.group())
            await broker.publish(topic, b"a")
            await broker.publish(topic, b"b")
            first, second = await got.wait_for(2)
            assert first.id and second.id and first.id != second.id
            assert dict(first.metadata) == {}

    run(scenario())


def test_ack_settles_the_message(backend: Backend) -> None:
    async def scenario() -> None:
        async with backend.make() as broker:
            topic, group, got = backend.topic(), backend.group(), Collector()
            await broker.subscribe(topic, got, group=group)
            await broker.publish(topic, b"x", message_id="one")
            await got.wait_for(1)
            assert await eventually(lambda: _is_zero(backend.unsettled(broker, topic, group)))
            await broker.publish(topic, b"marker", message_id="marker")
            await got.wait_for(2)
            assert got.ids() == ["one", "marker"]

    run(scenario())


async def _is_zero(count: Awaitable[int]) -> bool:
    return await count == 0


def test_nack_with_delay_redelivers_with_growing_count(backend: Backend) -> None:
    async def scenario() -> None:
        async with backend.make() as broker:
            topic = backend.topic()
            got = Collector(lambda m: nack(0.1) if m.delivery_count < 3 else ACK)
            await broker.subscribe(topic, got, group=backend.group())
            await broker.publish(topic, b"x", message_id="again")
            seen = await got.wait_for(3)
            assert [m.delivery_count for m in seen] == [1, 2, 3]
            assert {m.id for m in seen} == {"again"}
            assert all(m.data == b"x" for m in seen)

    run(scenario())


def test_term_drops_the_message(backend: Backend) -> None:
    async def scenario() -> None:
        async with backend.make() as broker:
            topic, group = backend.topic(), backend.group()
            got = Collector(lambda m: TERM if m.id == "poison" else ACK)
            await broker.subscribe(topic, got, group=group)
            await broker.publish(topic, b"x", message_id="poison")
            await got.wait_for(1)
            assert await eventually(lambda: _is_zero(backend.unsettled(broker, topic, group)))
            await broker.publish(topic, b"y", message_id="marker")
            await got.wait_for(2)
            assert got.ids() == ["poison", "marker"]

    run(scenario())


def test_a_raising_handler_gets_a_redelivery(backend: Backend) -> None:
    async def scenario() -> None:
        async with backend.make() as broker:
            topic, seen = backend.topic(), Collector()

            async def flaky(message: BrokerMessage) -> Outcome:
                await seen(message)
                if message.delivery_count == 1:
                    raise RuntimeError("first try fails")
                return ACK

            await broker.subscribe(topic, flaky, group=backend.group())
            await broker.publish(topic, b"x", message_id="flaky")
            deliveries = await seen.wait_for(2)
            assert [m.delivery_count for m in deliveries] == [1, 2]

    run(scenario())


def test_one_group_competes_and_each_group_gets_everything(backend: Backend) -> None:
    async def scenario() -> None:
        async with backend.make() as broker:
            topic = backend.topic()
            first, second, other = Collector(), Collector(), Collector()
            await broker.subscribe(topic, first, group=backend.group("a"))
            await broker.subscribe(topic, second, group=backend.group("a"))
            await broker.subscribe(topic, other, group=backend.group("b"))
            wanted = [f"m{i}" for i in range(10)]
            for message_id in wanted:
                await broker.publish(topic, b"x", message_id=message_id)
            await other.wait_for(10)
            assert sorted(other.ids()) == sorted(wanted)
            assert await eventually(_async(lambda: len(first.seen) + len(second.seen) >= 10))
            shared = first.ids() + second.ids()
            assert sorted(shared) == sorted(wanted)  # each exactly once across the group

    run(scenario())


def _async(predicate: Callable[[], bool]) -> Callable[[], Awaitable[bool]]:
    async def check() -> bool:
        return predicate()

    return check


def test_ordered_delivery_retries_a_nack_before_later_messages(backend: Backend) -> None:
    async def scenario() -> None:
        async with backend.make() as broker:
            topic = backend.topic()
            got = Collector(lambda m: nack(0.1) if m.id == "m2" and m.delivery_count == 1 else ACK)
            await broker.subscribe(topic, got, group=backend.group(), ordered=True)
            for i in range(6):
                await broker.publish(topic, b"x", message_id=f"m{i}")
            await got.wait_for(7)
            assert got.ids() == ["m0", "m1", "m2", "m2", "m3", "m4", "m5"]
            assert [m.delivery_count for m in got.seen[2:4]] == [1, 2]

    run(scenario())


def test_parallel_concurrency_bound_is_respected(backend: Backend) -> None:
    async def scenario() -> None:
        async with backend.make() as broker:
            topic = backend.topic()
            in_flight, most, done = 0, 0, 0
            release = asyncio.Event()

            async def slow(_message: BrokerMessage) -> Outcome:
                nonlocal in_flight, most, done
                in_flight += 1
                most = max(most, in_flight)
                await release.wait()
                in_flight -= 1
                done += 1
                return ACK

            await broker.subscribe(topic, slow, group=backend.group(), concurrency=3)
            for i in range(12):
                await broker.publish(topic, b"x", message_id=f"m{i}")
            assert await eventually(_async(lambda: in_flight == 3))
            for _ in range(20):  # room for a wrongly started fourth handler to show up
                await asyncio.sleep(0.01)
            assert in_flight == 3
            release.set()
            assert await eventually(_async(lambda: done == 12))
            assert most == 3

    run(scenario())


def test_stop_drains_and_an_unacked_message_goes_to_the_next_subscriber(backend: Backend) -> None:
    async def scenario() -> None:
        async with backend.make() as broker:
            topic, group = backend.topic(), backend.group()
            started, release = asyncio.Event(), asyncio.Event()
            events: list[str] = []

            async def holding(message: BrokerMessage) -> Outcome:
                started.set()
                await release.wait()
                events.append("handler finished")
                return nack(0.1)  # not acked: must come back

            sub = await broker.subscribe(topic, holding, group=group)
            await broker.publish(topic, b"x", message_id="held")
            await asyncio.wait_for(started.wait(), WAIT)
            stopping = asyncio.create_task(sub.stop(drain=True))
            for _ in range(10):
                await asyncio.sleep(0.01)
            assert not stopping.done()  # it waits for the handler
            release.set()
            await stopping
            events.append("stop returned")
            assert events == ["handler finished", "stop returned"]

            next_one = Collector()
            await broker.subscribe(topic, next_one, group=group)
            (message,) = await next_one.wait_for(1)
            assert message.id == "held"
            assert message.delivery_count == 2

    run(scenario())


def test_stop_without_drain_cancels_and_the_message_is_redelivered(backend: Backend) -> None:
    async def scenario() -> None:
        async with backend.make() as broker:
            topic, group = backend.topic(), backend.group()
            started, cancelled = asyncio.Event(), asyncio.Event()

            async def stuck(_message: BrokerMessage) -> Outcome:
                started.set()
                try:
                    await asyncio.Event().wait()
                finally:
                    cancelled.set()
                return ACK

            sub = await broker.subscribe(topic, stuck, group=group)
            await broker.publish(topic, b"x", message_id="stuck")
            await asyncio.wait_for(started.wait(), WAIT)
            await sub.stop(drain=False)
            assert cancelled.is_set()
            await sub.stop()  # idempotent

            next_one = Collector()
            await broker.subscribe(topic, next_one, group=group)
            (message,) = await next_one.wait_for(1)
            assert (message.id, message.delivery_count) == ("stuck", 2)

    run(scenario())


def test_close_is_idempotent_and_refuses_further_use(backend: Backend) -> None:
    async def scenario() -> None:
        broker = backend.make()
        sub = await broker.subscribe(backend.topic(), Collector(), group=backend.group())
        await broker.close()
        await broker.close()
        await sub.stop()
        with pytest.raises(BrokerClosedError, match=backend.kind):
            await broker.publish(backend.topic(), b"x")
        with pytest.raises(BrokerClosedError):
            await broker.subscribe(backend.topic(), Collector(), group=backend.group())

    run(scenario())


BAD_CALLS: list[tuple[str, dict[str, Any], str]] = [
    ("publish", {"topic": "has space"}, "invalid topic"),
    ("publish", {"topic": ""}, "invalid topic"),
    ("publish", {"topic": "a..b"}, "invalid topic"),
    ("publish", {"topic": "a.*"}, "invalid topic"),
    ("publish", {"topic": 5}, "invalid topic"),
    ("publish", {"data": "text"}, "invalid data"),
    ("publish", {"metadata": {"k": 1}}, "invalid metadata"),
    ("publish", {"metadata": [("k", "v")]}, "invalid metadata"),
    ("publish", {"message_id": "has space"}, "invalid message_id"),
    ("publish", {"message_id": ""}, "invalid message_id"),
    ("subscribe", {"topic": "a>"}, "invalid topic"),
    ("subscribe", {"group": "a.b"}, "invalid group"),
    ("subscribe", {"group": ""}, "invalid group"),
    ("subscribe", {"concurrency": 0}, "invalid concurrency"),
    ("subscribe", {"concurrency": True}, "invalid concurrency"),
    ("subscribe", {"concurrency": 2, "ordered": True}, "ordered delivery"),
    ("subscribe", {"handler": "not callable"}, "invalid handler"),
]


@pytest.mark.parametrize(("method", "change", "says"), BAD_CALLS)
def test_bad_arguments_raise_typed_errors(
    backend: Backend, method: str, change: dict[str, Any], says: str
) -> None:
    async def scenario() -> None:
        async with backend.make() as broker:
            call: Awaitable[object]
            if method == "publish":
                args: dict[str, Any] = {"topic": backend.topic(), "data": b"x"} | change
                topic, data = args.pop("topic"), args.pop("data")
                call = broker.publish(topic, data, args.pop("metadata", None), **args)
            else:
                options: dict[str, Any] = {"group": backend.group()} | change
                topic = options.pop("topic", backend.topic())
                handler = options.pop("handler", Collector())
                call = broker.subscribe(topic, handler, **options)
            with pytest.raises(BrokerArgumentError, match=says) as caught:
                await call
            assert isinstance(caught.value, ValueError)
            assert caught.value.broker == backend.kind

    run(scenario())


def test_outcomes_check_their_delay() -> None:
    assert nack(0.5).delay == 0.5
    with pytest.raises(ValueError, match=">= 0"):
        nack(-1)
    with pytest.raises(ValueError, match="finite"):
        nack(float("nan"))
    assert issubclass(BrokerArgumentError, BrokerError)


# -- memory only ----------------------------------------------------------------------------------


def test_memory_publish_never_blocks_on_a_slow_subscriber() -> None:
    async def scenario() -> None:
        async with MemoryBroker() as broker:
            release, handled = asyncio.Event(), 0

            async def slow(_message: BrokerMessage) -> Outcome:
                nonlocal handled
                await release.wait()
                handled += 1
                return ACK

            await broker.subscribe("orders", slow, group="app")
            for i in range(1000):
                await broker.publish("orders", b"x", message_id=f"m{i}")
            assert handled == 0
            assert broker.pending("orders", "app") >= 999  # all held, one maybe in the handler
            release.set()
            assert await eventually(_async(lambda: handled == 1000))
            assert broker.pending("orders", "app") == 0

    run(scenario())


def test_memory_group_keeps_messages_while_it_has_no_subscriber() -> None:
    async def scenario() -> None:
        async with MemoryBroker() as broker:
            sub = await broker.subscribe("orders", Collector(), group="app")
            await sub.stop()
            await broker.publish("orders", b"kept", message_id="kept")
            await broker.publish("nobody", b"dropped")  # no group: dropped
            assert broker.pending("orders", "app") == 1
            later = Collector()
            await broker.subscribe("orders", later, group="app")
            assert [m.id for m in await later.wait_for(1)] == ["kept"]

    run(scenario())


@pytest.mark.parametrize("yields", [0, 1, 2, 3, 5])
def test_memory_stop_without_drain_loses_nothing_wherever_it_lands(yields: int) -> None:
    """However far the subscription got (waiting, fetched, handlers not yet started, running),
    a stop without drain gives every unacked message back."""

    async def scenario() -> None:
        async with MemoryBroker() as broker:

            async def stuck(_message: BrokerMessage) -> Outcome:
                await asyncio.Event().wait()
                return ACK

            sub = await broker.subscribe("orders", stuck, group="app", concurrency=5)
            for i in range(5):
                await broker.publish("orders", b"x", message_id=f"m{i}")
            for _ in range(yields):
                await asyncio.sleep(0)
            await sub.stop(drain=False)
            assert broker.pending("orders", "app") == 5
            later = Collector()
            await broker.subscribe("orders", later, group="app", concurrency=5)
            assert sorted(m.id for m in await later.wait_for(5)) == [f"m{i}" for i in range(5)]

    run(scenario())


def test_memory_handlers_that_never_wait_leave_the_loop_turns() -> None:
    """Workers run handlers in place; one whose handler never suspends still lets other tasks
    run while a backlog drains (and a NACK at once, as while the runtime stops, cannot spin the
    loop forever)."""

    async def scenario() -> None:
        async with MemoryBroker() as broker:
            got = Collector()
            sub = await broker.subscribe("orders", got, group="app")
            for i in range(200):
                await broker.publish("orders", b"x", message_id=f"m{i}")
            seen_by_other: list[int] = []

            async def other() -> None:
                seen_by_other.append(len(got.seen))

            await asyncio.gather(asyncio.ensure_future(other()), got.wait_for(200))
            assert seen_by_other[0] < 200  # another task ran before the backlog was done
            spinning = Collector(lambda _m: nack(0.0))
            await sub.stop()
            sub = await broker.subscribe("orders", spinning, group="app")
            await broker.publish("orders", b"x", message_id="again")
            assert await eventually(_async(lambda: len(spinning.seen) > 100))
            await sub.stop()  # ends: the worker yields between its NACKs
            assert broker.pending("orders", "app") == 1

    run(scenario())


# -- redis only -----------------------------------------------------------------------------------


def test_redis_reclaims_a_crashed_consumers_pending_entry(redis_url: str, unique_name: str) -> None:
    async def scenario() -> None:
        backend = Backend("redis", redis_url, unique_name)
        topic, group = backend.topic(), backend.group()
        async with backend.make() as broker:
            await broker.publish(topic, b"orphan", {"k": "v"}, message_id="orphan")
            raw = aioredis.Redis.from_url(redis_url)
            try:
                await raw.xgroup_create(topic, group, id="0", mkstream=True)
                # A consumer reads the entry and "crashes": it stays pending to it forever.
                read: Any = await raw.xreadgroup(group, "crashed", {topic: ">"}, count=1)
                assert len(read[0][1]) == 1
                got = Collector()
                await broker.subscribe(topic, got, group=group)
                (message,) = await got.wait_for(1)
                assert (message.id, message.data, dict(message.metadata)) == (
                    "orphan",
                    b"orphan",
                    {"k": "v"},
                )
                assert message.delivery_count == 2
                assert await eventually(lambda: _is_zero(backend.unsettled(broker, topic, group)))
            finally:
                await raw.aclose()

    run(scenario())


def test_redis_trims_the_stream_approximately(redis_url: str, unique_name: str) -> None:
    async def scenario() -> None:
        settings = RedisStreamsSettings(url=redis_url, max_len_approx=10)
        async with RedisStreamsBroker(settings) as broker:
            topic = f"{unique_name}.trim"
            for _ in range(500):
                await broker.publish(topic, b"x")
            length = await broker.client.xlen(topic)
            assert 10 <= length < 500

    run(scenario())


# -- jetstream only -------------------------------------------------------------------------------


def test_jetstream_drops_a_duplicate_message_id(nats_url: str, unique_name: str) -> None:
    async def scenario() -> None:
        backend = Backend("jetstream", nats_url, unique_name)
        topic = backend.topic()
        async with backend.make() as broker:
            got = Collector()
            await broker.subscribe(topic, got, group=backend.group())
            await broker.publish(topic, b"first", message_id="event-1")
            await broker.publish(topic, b"second", message_id="event-1")
            await broker.publish(topic, b"other", message_id="event-2")
            await got.wait_for(2)
            assert [(m.id, m.data) for m in got.seen] == [
                ("event-1", b"first"),
                ("event-2", b"other"),
            ]
            nc = await nats.connect(nats_url)
            try:
                info = await nc.jetstream().stream_info(stream_name_for(topic))
                assert info.state.messages == 2
            finally:
                await nc.close()

    run(scenario())


def test_jetstream_group_keeps_its_ordering(nats_url: str, unique_name: str) -> None:
    async def scenario() -> None:
        backend = Backend("jetstream", nats_url, unique_name)
        async with backend.make() as broker:
            await broker.subscribe(backend.topic(), Collector(), group=backend.group())
            with pytest.raises(BrokerArgumentError, match="already exists as parallel"):
                await broker.subscribe(
                    backend.topic(), Collector(), group=backend.group(), ordered=True
                )

    run(scenario())


def test_jetstream_stream_names_are_distinct_and_valid() -> None:
    assert stream_name_for("orders") == "orders"
    assert stream_name_for("a.b") != stream_name_for("a_b")
    assert "." not in stream_name_for("a.b.c")


def test_jetstream_unreachable_server_is_a_broker_error(unique_name: str) -> None:
    async def scenario() -> None:
        from support_harness import free_port

        settings = JetStreamSettings(url=f"nats://127.0.0.1:{free_port()}", connect_timeout=1.0)
        async with JetStreamBroker(settings) as broker:
            with pytest.raises(BrokerError, match=r"connecting to nats://127\.0\.0\.1"):
                await broker.publish(unique_name, b"x")

    run(scenario())


# -- component files ------------------------------------------------------------------------------


def _component_yaml(name: str, kind: str, metadata: dict[str, Any], version: str = "v1") -> str:
    entries = "".join(
        f"    - name: {key}\n      value: {json.dumps(value)}\n" for key, value in metadata.items()
    )
    return (
        "apiVersion: dapr.io/v1alpha1\nkind: Component\n"
        f"metadata:\n  name: {name}\nspec:\n  type: {kind}\n  version: {version}\n"
        + (f"  metadata:\n{entries}" if entries else "")
    )


def test_a_directory_of_components_loads_and_the_brokers_work(
    tmp_path: pathlib.Path, redis_url: str, nats_url: str, unique_name: str
) -> None:
    host = redis_url.removeprefix("redis://").split("/")[0]
    (tmp_path / "pubsub.yaml").write_text(
        _component_yaml("local", "pubsub.in-memory", {"nakDelay": "50ms", "concurrency": 2})
        + "---\n"
        + _component_yaml(
            "orders",
            "pubsub.redis",
            {"redisHost": host, "processingTimeout": "1s", "maxLenApprox": 1000},
        )
        + "---\napiVersion: dapr.io/v2alpha1\nkind: Subscription\nmetadata:\n  name: sub\n"
    )
    (tmp_path / "statestore.yml").write_text(
        _component_yaml("statestore", "state.redis", {"redisHost": host})
    )
    (tmp_path / "nats.json").write_text(
        json.dumps(
            {
                "apiVersion": "dapr.io/v1alpha1",
                "kind": "Component",
                "metadata": {"name": "events"},
                "spec": {
                    "type": "pubsub.jetstream",
                    "version": "v1",
                    "metadata": [
                        {"name": "natsURL", "value": nats_url},
                        {"name": "maxDeliver", "value": 5},
                        {"name": "ackWait", "value": "10s"},
                    ],
                },
            }
        )
    )
    (tmp_path / "notes.txt").write_text("not a component")
    components = load_components(tmp_path)
    assert sorted(components) == ["events", "local", "orders"]
    assert components["orders"].type == "pubsub.redis"
    assert components["orders"].source == str(tmp_path / "pubsub.yaml")
    assert dict(components["events"].metadata)["maxDeliver"] == "5"
    assert set(COMPONENT_TYPES) == {c.type for c in components.values()}

    async def scenario() -> None:
        for name, expected in [
            ("local", MemoryBroker),
            ("orders", RedisStreamsBroker),
            ("events", JetStreamBroker),
        ]:
            async with components[name].create() as broker:
                assert isinstance(broker, expected)
                topic, got = f"{unique_name}.{name}", Collector()
                await broker.subscribe(topic, got, group=unique_name)
                await broker.publish(topic, name.encode(), {"from": name})
                (message,) = await got.wait_for(1)
                assert (message.data, dict(message.metadata)) == (name.encode(), {"from": name})
        settings = components["events"].create()
        assert isinstance(settings, JetStreamBroker)
        assert (settings.settings.max_deliver, settings.settings.ack_wait) == (5, 10.0)
        await settings.close()

    run(scenario())


BAD_COMPONENTS: list[tuple[str, list[str]]] = [
    (
        _component_yaml("p", "pubsub.kafka", {}),
        [
            "component 'p'",
            "spec.type",
            "'pubsub.kafka' is unknown",
            "pubsub.in-memory",
            "pubsub.redis",
        ],
    ),
    (
        "apiVersion: dapr.io/v1alpha1\nkind: Component\nspec:\n  type: pubsub.redis\n",
        ["metadata.name", "missing"],
    ),
    (_component_yaml("p", "pubsub.redis", {}, version="v2"), ["spec.version", "allowed are v1"]),
    (
        _component_yaml("p", "pubsub.redis", {"processingTimeout": "soon"}),
        ["component 'p'", "processingTimeout", "'soon' is not a duration", "1m30s"],
    ),
    (
        _component_yaml("p", "pubsub.redis", {"redisDB": "two"}),
        ["redisDB", "'two' is not an integer"],
    ),
    (
        _component_yaml("p", "pubsub.jetstream", {"maxDeliver": -1}),
        ["maxDeliver", "below the minimum 0"],
    ),
    (
        _component_yaml("p", "pubsub.redis", {"redisHots": "x:1"}),
        ["redisHots", "unknown", "allowed are", "redisHost"],
    ),
    (
        _component_yaml("p", "pubsub.in-memory", {"enableTLS": "true"}),
        ["enableTLS", "unknown", "allowed are concurrency, nakDelay"],
    ),
    (
        _component_yaml("p", "pubsub.jetstream", {"natsURL": "http://x"}),
        ["natsURL", "nats://"],
    ),
    (
        _component_yaml("p", "pubsub.redis", {"redisHost": "x:1"})
        + "    - name: redisPassword\n      secretKeyRef:\n        name: s\n        key: k\n",
        ["redisPassword", "secretKeyRef is not supported"],
    ),
    ("apiVersion: dapr.io/v1\nkind: Component\n", ["apiVersion", "dapr.io/v1alpha1"]),
    ("kind: Component\n  bad: [indent\n", ["(document)", "not valid YAML"]),
]


@pytest.mark.parametrize(("text", "says"), BAD_COMPONENTS)
def test_a_bad_component_names_file_component_and_field(
    tmp_path: pathlib.Path, text: str, says: list[str]
) -> None:
    path = tmp_path / "broken.yaml"
    path.write_text(text)
    with pytest.raises(ComponentError) as caught:
        load_component_file(path)
    message = str(caught.value)
    assert str(path) in message
    for fragment in says:
        assert fragment in message, f"{fragment!r} not in {message!r}"
    assert isinstance(caught.value, ValueError)


def test_a_component_name_used_twice_is_an_error(tmp_path: pathlib.Path) -> None:
    (tmp_path / "a.yaml").write_text(_component_yaml("dup", "pubsub.in-memory", {}))
    (tmp_path / "b.yaml").write_text(_component_yaml("dup", "pubsub.in-memory", {}))
    with pytest.raises(ComponentError, match=r"already defined in .*a\.yaml") as caught:
        load_components(tmp_path)
    assert caught.value.component == "dup"
    assert caught.value.source == str(tmp_path / "b.yaml")


def test_a_missing_path_is_a_component_error(tmp_path: pathlib.Path) -> None:
    with pytest.raises(ComponentError, match="no such file"):
        load_components(tmp_path / "absent")


@pytest.mark.parametrize(
    ("text", "seconds"),
    [("0", 0.0), ("250ms", 0.25), ("30s", 30.0), ("1m30s", 90.0), ("1.5h", 5400.0), ("10us", 1e-5)],
)
def test_durations_use_go_syntax(text: str, seconds: float) -> None:
    assert parse_duration(text) == pytest.approx(seconds)


@pytest.mark.parametrize("text", ["", "5", "s", "1x", "1s2", "-1s"])
def test_bad_durations_say_what_is_allowed(text: str) -> None:
    with pytest.raises(ValueError, match="Go durations"):
        parse_duration(text)
