"""The runtime's core behaviours over every broker: the in-memory one, Redis Streams and NATS
JetStream (real servers from ``support_brokers``; under ``CI=true`` they must run), with our App
on the sync and the asyncio server as the app.

One scenario per (broker, server) covers: routing by rule and by default route, SUCCESS, RETRY
until the policy gives up and then the dead-letter topic, DROP (acked and dead-lettered), a
handler that raises (retried, then delivered), and a stop that drains a delivery in flight.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
from support_harness import async_wait_until
from support_runtime import FAST_RETRY, PUBSUB, TOKEN, Seen, collecting, serving_on

from grpc_channel._async_channel import AsyncChannel
from grpc_channel.app import App, TopicEvent, TopicEventStatus
from grpc_channel.dial_options import with_app_token
from grpc_channel.pubsub.brokers import (
    Broker,
    JetStreamBroker,
    JetStreamSettings,
    MemoryBroker,
    RedisStreamsBroker,
    RedisStreamsSettings,
)
from grpc_channel.pubsub.runtime import PubSubRuntime

KINDS = ("memory", "redis", "nats")


def _app(seen: Seen, prefix: str) -> App:
    """Topics ``<prefix>-<name>`` (Redis and JetStream keep a topic's messages across tests, and
    a new consumer group reads a Redis stream from its start, so each test has its own topics):

    - ``orders`` (dead letter ``orders-dead``, 3 quick attempts): default SUCCESS; the rule
      ``event.type == "big"`` (``/big``) answers RETRY.
    - ``drops`` (dead letter ``drops-dead``): DROP.
    - ``picky``: only a rule (``event.data.kind == "x"``).
    - ``flaky`` (3 quick attempts): raises on an event's first call, then succeeds.
    - ``block``: blocks until ``seen.release`` (at most 30 s).
    """
    app = App(app_token=TOKEN)
    tries: dict[str, int] = {}

    @app.subscribe(PUBSUB, f"{prefix}-orders", dead_letter_topic=f"{prefix}-orders-dead",
                   metadata=FAST_RETRY)  # fmt: skip
    def orders(event: TopicEvent) -> None:
        seen.add("orders", event)

    @app.subscribe(PUBSUB, f"{prefix}-orders", match='event.type == "big"', route="/big")
    def big(event: TopicEvent) -> TopicEventStatus:
        seen.add("big", event)
        return TopicEventStatus.RETRY

    @app.subscribe(PUBSUB, f"{prefix}-drops", dead_letter_topic=f"{prefix}-drops-dead")
    def drops(event: TopicEvent) -> TopicEventStatus:
        seen.add("drops", event)
        return TopicEventStatus.DROP

    @app.subscribe(PUBSUB, f"{prefix}-picky",
                   match='has(event.data.kind) && event.data.kind == "x"', route="/x")  # fmt: skip
    def picky(event: TopicEvent) -> None:
        seen.add("picky", event)

    @app.subscribe(PUBSUB, f"{prefix}-flaky", metadata=FAST_RETRY)
    def flaky(event: TopicEvent) -> None:
        tries[event.id] = tries.get(event.id, 0) + 1
        seen.add("flaky", event)
        if tries[event.id] == 1:
            raise RuntimeError("first call fails")

    @app.subscribe(PUBSUB, f"{prefix}-block")
    def block(event: TopicEvent) -> None:
        seen.add("block", event)
        seen.entered.set()
        seen.release.wait(30.0)
        with seen.lock:
            seen.finished.append(event.id)

    return app


@contextlib.asynccontextmanager
async def broker_of(kind: str, request: pytest.FixtureRequest) -> AsyncIterator[Broker]:
    if kind == "memory":
        broker: Broker = MemoryBroker(default_nack_delay=0.05)
    elif kind == "redis":
        url = request.getfixturevalue("redis_url")
        broker = RedisStreamsBroker(
            RedisStreamsSettings(url=url, processing_timeout=1.0, redeliver_interval=0.2)
        )
    else:
        url = request.getfixturevalue("nats_url")
        broker = JetStreamBroker(JetStreamSettings(url=url, ack_wait=5.0, nak_delay=0.05))
    async with broker:
        yield broker


@pytest.mark.parametrize("aio", [False, True], ids=["sync", "aio"])
@pytest.mark.parametrize("kind", KINDS)
def test_core_behaviours(kind: str, aio: bool, request: pytest.FixtureRequest) -> None:
    seen = Seen()
    # Topics are the App's; a fresh consumer group per test keeps runs on a shared server apart.
    app_id = f"rt{uuid.uuid4().hex[:10]}"
    p = app_id  # the topic prefix
    spy = f"{app_id}-spy"

    async def scenario(port: int) -> None:
        async with (
            broker_of(kind, request) as broker,
            AsyncChannel.local(port, with_app_token(TOKEN)) as channel,
            collecting(broker, f"{p}-orders-dead", group=f"{app_id}-dead") as orders_dead,
            collecting(broker, f"{p}-drops-dead", group=f"{app_id}-dead") as drops_dead,
            collecting(broker, f"{p}-orders", group=spy) as spied,
        ):
            rt = PubSubRuntime(
                channel, {PUBSUB: broker}, app_id=app_id, fetch_backoff=0.1, concurrency=4
            )
            await rt.start()
            try:
                await _exercise(rt, p, seen, orders_dead, drops_dead, spied)
                # Drain on stop: a delivery in flight finishes and is acked.
                block_id = await rt.publish(PUBSUB, f"{p}-block", "hold on")
                assert await async_wait_until(seen.entered.is_set, timeout=15)
                stopping = asyncio.create_task(rt.stop(drain_timeout=20.0))
                await asyncio.sleep(0.2)
                assert not stopping.done()
                seen.release.set()
                await asyncio.wait_for(stopping, 25)
                assert seen.finished == [block_id]
                assert rt.stats.nacked == 0
            finally:
                seen.release.set()
                await asyncio.wait_for(rt.stop(drain_timeout=5.0), 15)

    with serving_on(_app(seen, p), aio) as port:
        try:
            asyncio.run(asyncio.wait_for(scenario(port), 60))
        finally:
            seen.release.set()


async def _exercise(
    rt: PubSubRuntime, p: str, seen: Seen, orders_dead: Any, drops_dead: Any, spied: Any
) -> None:
    # Default route: SUCCESS, metadata passed on.
    first = await rt.publish(PUBSUB, f"{p}-orders", {"n": 1}, metadata={"x-tenant": "acme"})
    assert await async_wait_until(lambda: rt.stats.delivered == 1, timeout=15)
    (event,) = seen.of("orders")
    assert event.id == first
    assert json.loads(event.data) == {"n": 1}
    assert event.metadata["x-tenant"] == "acme"

    # A rule routes to /big, which answers RETRY: 3 attempts, then the dead-letter topic.
    big = {
        "id": f"big-{uuid.uuid4().hex[:8]}",
        "source": "tests",
        "type": "big",
        "specversion": "1.0",
        "datacontenttype": "application/json",
        "data": {"n": 2},
    }
    big_id = await rt.publish(
        PUBSUB, f"{p}-orders", json.dumps(big).encode(), content_type="application/cloudevents+json"
    )
    assert await async_wait_until(lambda: len(orders_dead) == 1, timeout=15)
    assert [e.id for e in seen.of("big")] == [big_id] * 3
    assert orders_dead[0].data == next(m for m in spied if m.id == big_id).data
    assert rt.stats.retried == 2

    # DROP: acked and dead-lettered.
    await rt.publish(PUBSUB, f"{p}-drops", "bye")
    assert await async_wait_until(lambda: len(drops_dead) == 1, timeout=15)
    assert rt.stats.dropped == 1

    # Rule only: a match is delivered to the rule; the rest goes with an empty path, which
    # this App does not serve (UNIMPLEMENTED): dropped.
    await rt.publish(PUBSUB, f"{p}-picky", {"kind": "x"})
    await rt.publish(PUBSUB, f"{p}-picky", {"kind": "y"})
    assert await async_wait_until(lambda: rt.stats.dropped == 2, timeout=15)
    assert [json.loads(e.data) for e in seen.of("picky")] == [{"kind": "x"}]

    # A handler that raises is retried, then delivered.
    flaky_id = await rt.publish(PUBSUB, f"{p}-flaky", "again")
    assert await async_wait_until(lambda: rt.stats.delivered == 3, timeout=15)
    assert [e.id for e in seen.of("flaky")] == [flaky_id, flaky_id]
    assert rt.stats.dead_lettered == 2
    assert rt.stats.nacked == 0
