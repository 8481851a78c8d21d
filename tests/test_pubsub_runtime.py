"""The pub/sub runtime end to end: the in-memory broker, real apps on 127.0.0.1 (the dapr SDK's App
in a subprocess, and ours on the sync and the asyncio server), deliveries through the app channel.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from support_dapr_app import PUBSUB as DAPR_PUBSUB
from support_dapr_app import DaprApp
from support_harness import async_wait_until, free_port
from support_runtime import PUBSUB, TOKEN, Seen, collecting, outcome_app, serving_on

from grpc_channel._async_channel import AsyncChannel
from grpc_channel.dial_options import with_app_token
from grpc_channel.pubsub import Routes, Rule, Subscription, load_subscriptions
from grpc_channel.pubsub._stats import METER_NAME, RuntimeStats, StatsRecorder
from grpc_channel.pubsub.brokers import MemoryBroker
from grpc_channel.pubsub.runtime import (
    PubSubRuntime,
    RuntimeStoppedError,
    SubscriptionFetchError,
    UnknownPubSubError,
)

APP_ID = "runtime-tests"
AIO = pytest.mark.parametrize("aio", [False, True], ids=["sync", "aio"])


@contextlib.asynccontextmanager
async def runtime(
    port: int, broker: MemoryBroker, *, token: str | None = TOKEN, **options: Any
) -> AsyncIterator[PubSubRuntime]:
    """A started runtime on ``broker`` delivering to the app on ``port``; stopped after."""
    dial = (with_app_token(token),) if token else ()
    async with AsyncChannel.local(port, *dial) as channel:
        options.setdefault("fetch_backoff", 0.1)
        rt = PubSubRuntime(channel, {PUBSUB: broker}, app_id=APP_ID, **options)
        await rt.start()
        try:
            yield rt
        finally:
            await rt.stop(drain_timeout=5.0)


def cloud_event(event_type: str, data: object) -> bytes:
    """A full CloudEvent envelope, for publishing with content type cloudevents+json."""
    return json.dumps(
        {
            "id": f"ev-{event_type}",
            "source": "tests",
            "type": event_type,
            "specversion": "1.0",
            "datacontenttype": "application/json",
            "data": data,
        }
    ).encode()


# -- the dapr SDK's App ----------------------------------------------------------------------------


def test_dapr_sdk_app(dapr_app: DaprApp) -> None:
    async def scenario() -> None:
        broker = MemoryBroker(default_nack_delay=0.05)
        async with (
            collecting(broker, "orders-dead") as dead,
            collecting(broker, "orders", group="spy") as spied,
            runtime(dapr_app.port, broker, token=None) as rt,
        ):
            topics = {(s.pubsub_name, s.topic) for s in rt.subscriptions}
            assert topics == {
                (DAPR_PUBSUB, "orders"),
                (DAPR_PUBSUB, "drops"),
                (DAPR_PUBSUB, "boom"),
            }
            assert rt.refused == ()
            orders = next(s for s in rt.subscriptions if s.topic == "orders")
            assert orders.dead_letter_topic == "orders-dead"
            assert orders.metadata == {"team": "billing"}

            await rt.publish(DAPR_PUBSUB, "orders", {"id": 1})
            assert await async_wait_until(lambda: rt.stats.delivered == 1)

            big_id = await rt.publish(
                DAPR_PUBSUB,
                "orders",
                cloud_event("big", {"id": 2}),
                content_type="application/cloudevents+json",
                metadata={"x-tenant": "acme"},
            )
            assert big_id == "ev-big"
            assert await async_wait_until(lambda: len(dead) == 1)
            assert rt.stats.retried == 4  # the default policy: 5 attempts
            assert rt.stats.dead_lettered == 1
            big = next(m for m in spied if m.id == big_id)
            assert dead[0].data == big.data
            assert dict(dead[0].metadata) == {"x-tenant": "acme"}
            assert dead[0].id == big_id

            await rt.publish(DAPR_PUBSUB, "drops", "bye")
            assert await async_wait_until(lambda: rt.stats.dropped == 1)

            await rt.publish(DAPR_PUBSUB, "boom", b"\x00\x01")
            assert await async_wait_until(lambda: rt.stats.nacked >= 1)  # no dead letter topic
            assert rt.stats.failed_deliveries >= 5 + 5
            assert rt.stats.delivered == 1
        assert len(dead) == 1

    asyncio.run(scenario())


# -- our App, sync and asyncio servers -------------------------------------------------------------

DECLARATIVE = """\
apiVersion: dapr.io/v2alpha1
kind: Subscription
metadata: {name: declared-orders}
spec:
  pubsubname: pubsub
  topic: orders
  routes: {default: /declared}
---
apiVersion: dapr.io/v2alpha1
kind: Subscription
metadata: {name: declared-only}
spec:
  pubsubname: pubsub
  topic: declared-only
  routes:
    rules:
    - {match: 'has(event.data.kind) && event.data.kind == "x"', path: /declared-only}
"""


@AIO
def test_outcomes(aio: bool, tmp_path: Path) -> None:
    (tmp_path / "subscriptions.yaml").write_text(DECLARATIVE)
    loaded = load_subscriptions(tmp_path, app_id=APP_ID)
    assert loaded.refused == []
    bad_rule = Subscription(PUBSUB, "bad", Routes((Rule("event.data ==", "/x"),)))
    no_broker = Subscription("elsewhere", "orders", Routes(default="/orders"))
    declarative = [*loaded.accepted, bad_rule, no_broker]
    seen = Seen()

    async def scenario(port: int) -> None:
        broker = MemoryBroker()
        async with (
            collecting(broker, "orders-dead") as orders_dead,
            collecting(broker, "drops-dead") as drops_dead,
            collecting(broker, "orders", group="spy") as spied,
            runtime(port, broker, declarative=declarative) as rt,
        ):
            by_topic = {s.topic: s for s in rt.subscriptions}
            assert set(by_topic) == {
                "orders",
                "drops",
                "picky",
                "slow",
                "block",
                "fail",
                "declared-only",
            }
            assert by_topic["orders"].source == "programmatic"  # replaced the declared one
            assert by_topic["declared-only"].source == "declarative"
            refused = dict(rt.refused)
            assert set(refused) == {"pubsub/bad", "elsewhere/orders"}
            assert "does not compile" in refused["pubsub/bad"]
            assert "no broker" in refused["elsewhere/orders"]

            # SUCCESS, with metadata, the token, and an exact 64-bit integer.
            await rt.publish(PUBSUB, "orders", {"n": 2**63 - 1}, metadata={"x-tenant": "acme"})
            assert await async_wait_until(lambda: rt.stats.delivered == 1)
            (event,) = seen.of("orders")
            assert json.loads(event.data) == {"n": 2**63 - 1}
            assert b"9223372036854775807" in event.data
            assert event.metadata["x-tenant"] == "acme"
            assert "dapr-api-token" not in event.metadata

            # RETRY until the policy gives up, then the dead letter topic.
            big_id = await rt.publish(
                PUBSUB,
                "orders",
                cloud_event("big", {"id": 2}),
                content_type="application/cloudevents+json",
                metadata={"x-tenant": "acme"},
            )
            assert await async_wait_until(lambda: len(orders_dead) == 1)
            assert len(seen.of("big")) == 3
            assert rt.stats.retried == 2
            assert rt.stats.failed_deliveries == 3
            assert orders_dead[0].data == next(m for m in spied if m.id == big_id).data
            assert dict(orders_dead[0].metadata) == {"x-tenant": "acme"}

            # DROP: acked, and dead-lettered since the topic has a dead letter topic.
            await rt.publish(PUBSUB, "drops", "bye")
            assert await async_wait_until(lambda: len(drops_dead) == 1)
            assert rt.stats.dropped == 1
            assert len(seen.of("drops")) == 1

            # A programmatic rule-only subscription: a match goes to the rule's handler; the
            # rest is delivered with an empty path (the gRPC default), which this App does not
            # handle: UNIMPLEMENTED, dropped.
            await rt.publish(PUBSUB, "picky", {"kind": "x"})
            await rt.publish(PUBSUB, "picky", {"kind": "y"})
            assert await async_wait_until(lambda: rt.stats.dropped == 2)
            assert [json.loads(e.data) for e in seen.of("picky")] == [{"kind": "x"}]

            # A declarative rule-only subscription: no match is unrouted (acked, counted); a
            # match goes to a path the app has no handler for: UNIMPLEMENTED, dropped.
            await rt.publish(PUBSUB, "declared-only", {"kind": "y"})
            assert await async_wait_until(lambda: rt.stats.unrouted == 1)
            await rt.publish(PUBSUB, "declared-only", {"kind": "x"})
            assert await async_wait_until(lambda: rt.stats.dropped == 3)
            assert broker.pending("declared-only", APP_ID) == 0
            assert rt.stats.nacked == 0

            with pytest.raises(UnknownPubSubError, match="elsewhere"):
                await rt.publish("elsewhere", "orders", "x")
        with pytest.raises(RuntimeStoppedError):
            await rt.publish(PUBSUB, "orders", "late")

    with serving_on(outcome_app(seen), aio) as port:
        asyncio.run(scenario(port))


@AIO
def test_delivery_timeout_counts_as_failure(aio: bool) -> None:
    seen = Seen()

    async def scenario(port: int) -> None:
        broker = MemoryBroker()
        async with runtime(port, broker, delivery_timeout=0.3) as rt:
            await rt.publish(PUBSUB, "slow", "take your time")
            assert await async_wait_until(lambda: rt.stats.delivered == 1)
            assert rt.stats.failed_deliveries >= 1
            assert rt.stats.retried >= 1
            assert len(seen.of("slow")) >= 2
        seen.release.set()

    with serving_on(outcome_app(seen), aio) as port:
        try:
            asyncio.run(scenario(port))
        finally:
            seen.release.set()


@AIO
def test_stop_drains_in_flight_deliveries(aio: bool) -> None:
    seen = Seen()

    async def scenario(port: int) -> None:
        broker = MemoryBroker()
        async with collecting(broker, "block-dead") as dead, runtime(port, broker) as rt:
            event_id = await rt.publish(PUBSUB, "block", "hold on")
            assert await async_wait_until(seen.entered.is_set)
            stopping = asyncio.create_task(rt.stop(drain_timeout=30.0))
            await asyncio.sleep(0.2)
            assert not stopping.done()  # waiting for the blocked delivery
            seen.release.set()
            await stopping
            assert seen.finished == [event_id]
            assert rt.stats.delivered == 1
            assert rt.stats.nacked == 0
            assert rt.stats.dead_lettered == 0
            assert broker.pending("block", APP_ID) == 0
            assert rt.subscriptions == ()
            await rt.stop()  # idempotent
        assert dead == []

    with serving_on(outcome_app(seen), aio) as port:
        try:
            asyncio.run(scenario(port))
        finally:
            seen.release.set()


@AIO
def test_stop_during_backoff_nacks_for_redelivery(aio: bool) -> None:
    seen = Seen()

    async def scenario(port: int) -> None:
        broker = MemoryBroker()
        async with collecting(broker, "fail-dead") as dead:
            async with runtime(port, broker) as first:
                event_id = await first.publish(PUBSUB, "fail", "doomed")
                assert await async_wait_until(lambda: first.stats.failed_deliveries == 1)
            assert first.stats.nacked == 1
            assert first.stats.dead_lettered == 0
            # The next runtime of the same app id gets the message again.
            async with runtime(port, broker) as second:
                assert await async_wait_until(lambda: second.stats.failed_deliveries == 1)
            assert [e.id for e in seen.of("fail")] == [event_id, event_id]
            assert second.stats.nacked == 1
        assert dead == []

    with serving_on(outcome_app(seen), aio) as port:
        asyncio.run(scenario(port))


@AIO
def test_app_down_at_start_then_refresh_after_change(aio: bool) -> None:
    port = free_port()
    seen = Seen()
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    def said(text: str) -> bool:
        return any(text in record.getMessage() for record in list(records))

    logger = logging.getLogger("grpc_channel.pubsub.runtime")
    keep = Keep(logging.WARNING)
    logger.addHandler(keep)

    async def scenario() -> None:
        broker = MemoryBroker()
        async with AsyncChannel.local(port, with_app_token(TOKEN)) as channel:
            rt = PubSubRuntime(
                channel,
                {PUBSUB: broker},
                app_id=APP_ID,
                fetch_attempts=10,
                fetch_backoff=0.1,
                health_interval=0.05,
            )
            starting = asyncio.create_task(rt.start())
            try:
                assert await async_wait_until(lambda: records, timeout=20)  # a failed attempt
                assert not starting.done()
                with serving_on(outcome_app(seen), aio, port):
                    await starting
                    assert "orders" in {s.topic for s in rt.subscriptions}
                    await rt.publish(PUBSUB, "orders", "first")
                    assert await async_wait_until(lambda: rt.stats.delivered == 1)

                # The app comes back with other subscriptions.
                changed = outcome_app(Seen())

                @changed.subscribe(PUBSUB, "extra")
                def extra(event: Any) -> None:
                    seen.add("extra", event)

                with serving_on(changed, aio, port):
                    await rt.refresh()
                    assert "extra" in {s.topic for s in rt.subscriptions}
                    await rt.publish(PUBSUB, "extra", "second")
                    assert await async_wait_until(lambda: len(seen.of("extra")) == 1)

                # Down, then back with yet other subscriptions: the health loop lists them.
                assert await async_wait_until(lambda: said("does not answer health probes"))
                later = outcome_app(Seen())

                @later.subscribe(PUBSUB, "later")
                def on_later(event: Any) -> None:
                    seen.add("later", event)

                with serving_on(later, aio, port):
                    assert await async_wait_until(
                        lambda: "later" in {s.topic for s in rt.subscriptions}
                    )
                    assert "extra" not in {s.topic for s in rt.subscriptions}
            finally:
                # Bounded: a stop that waits forever fails the test instead of hanging it.
                await asyncio.wait_for(rt.stop(), 15)
                assert starting.done()  # stop() ends a start still waiting for the app
                if not starting.cancelled():
                    starting.exception()

    try:
        asyncio.run(asyncio.wait_for(scenario(), 90))
    finally:
        logger.removeHandler(keep)


def test_start_gives_up_when_the_app_never_answers() -> None:
    async def scenario() -> None:
        async with AsyncChannel.local(free_port()) as channel:
            rt = PubSubRuntime(
                channel,
                {PUBSUB: MemoryBroker()},
                app_id=APP_ID,
                fetch_attempts=2,
                fetch_backoff=0.05,
            )
            with pytest.raises(SubscriptionFetchError, match="2 attempts"):
                await rt.start()
            assert rt.subscriptions == ()
            await rt.stop()

    asyncio.run(scenario())


def test_bad_arguments_are_refused() -> None:
    async def scenario() -> None:
        async with AsyncChannel.local(free_port()) as channel:
            with pytest.raises(ValueError, match="app_id"):
                PubSubRuntime(channel, {}, app_id="no spaces")
            with pytest.raises(ValueError, match="delivery_timeout"):
                PubSubRuntime(channel, {}, app_id=APP_ID, delivery_timeout=0)
            with pytest.raises(ValueError, match="concurrency"):
                PubSubRuntime(channel, {}, app_id=APP_ID, concurrency=0)
            with pytest.raises(TypeError, match="brokers"):
                PubSubRuntime(channel, {PUBSUB: object()}, app_id=APP_ID)  # type: ignore[dict-item]

    asyncio.run(scenario())


def test_stats_are_opentelemetry_counters() -> None:
    reader = InMemoryMetricReader()
    provider = MeterProvider(metric_readers=[reader])
    try:
        recorder = StatsRecorder(provider)
        recorder.add("delivered", PUBSUB, "orders")
        recorder.add("delivered", PUBSUB, "orders")
        recorder.add("nacked", PUBSUB, "boom")
        assert recorder.snapshot() == RuntimeStats(delivered=2, nacked=1)
        data = reader.get_metrics_data()
        assert data is not None
        points = {
            (metric.name, tuple(sorted((point.attributes or {}).items()))): point.value  # type: ignore[union-attr]
            for resource in data.resource_metrics
            for scope in resource.scope_metrics
            if scope.scope.name == METER_NAME
            for metric in scope.metrics
            for point in metric.data.data_points
        }
        assert points[("pubsub.runtime.delivered", (("pubsub", PUBSUB), ("topic", "orders")))] == 2
        assert points[("pubsub.runtime.nacked", (("pubsub", PUBSUB), ("topic", "boom")))] == 1
    finally:
        provider.shutdown()


def test_event_ids_are_version_4_uuids_written_as_uuid_writes_them() -> None:
    import random
    import uuid

    from grpc_channel.pubsub.runtime import new_event_id

    state = random.getstate()
    try:
        for seed in range(200):
            random.seed(seed)
            made = new_event_id()
            random.seed(seed)
            assert made == str(uuid.UUID(int=random.getrandbits(128), version=4))
            parsed = uuid.UUID(made)
            assert parsed.version == 4 and parsed.variant == uuid.RFC_4122
    finally:
        random.setstate(state)
    assert len({new_event_id() for _ in range(1000)}) == 1000
