"""Deliveries pause while the app is down and resume by themselves when it is back.

The app (ours, on the sync and the asyncio server) is stopped and started again on the same port
under a running runtime; events published meanwhile, on a topic whose retry policy would give up
after three quick attempts and dead-letter, must neither be retried to exhaustion nor
dead-lettered, and must all be delivered once the app answers again.
"""

from __future__ import annotations

import asyncio
import logging

import pytest
from support_harness import async_wait_until, free_port
from support_runtime import PUBSUB, TOKEN, Seen, collecting, outcome_app, serving_on

from grpc_channel._async_channel import AsyncChannel
from grpc_channel.dial_options import with_app_token
from grpc_channel.pubsub.brokers import MemoryBroker
from grpc_channel.pubsub.runtime import PubSubRuntime

APP_ID = "app-down-tests"
AIO = pytest.mark.parametrize("aio", [False, True], ids=["sync", "aio"])


class _Said(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.INFO)
        self.messages: list[str] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.messages.append(record.getMessage())

    def said(self, text: str) -> bool:
        return any(text in message for message in list(self.messages))


@AIO
def test_no_delivery_attempt_while_the_app_is_down(aio: bool) -> None:
    port = free_port()
    seen = Seen()
    said = _Said()
    logger = logging.getLogger("grpc_channel.pubsub.runtime")
    logger.addHandler(said)
    previous = logger.level
    logger.setLevel(logging.INFO)

    async def scenario() -> None:
        broker = MemoryBroker(default_nack_delay=0.05)
        async with (
            AsyncChannel.local(port, with_app_token(TOKEN)) as channel,
            collecting(broker, "orders-dead") as dead,
        ):
            rt = PubSubRuntime(
                channel, {PUBSUB: broker}, app_id=APP_ID, fetch_backoff=0.1, health_interval=0.1
            )
            try:
                with serving_on(outcome_app(seen), aio, port):
                    await rt.start()
                    await rt.publish(PUBSUB, "orders", "before")
                    assert await async_wait_until(lambda: rt.stats.delivered == 1)

                # Published right after the app went away, before a probe noticed: the first
                # attempt meets UNAVAILABLE, a probe confirms the app is down, and it waits.
                ids = [await rt.publish(PUBSUB, "orders", f"down-{i}") for i in range(3)]
                assert await async_wait_until(lambda: said.said("does not answer health probes"))
                # Three quick attempts (10 ms apart) would have dead-lettered long before this.
                await asyncio.sleep(1.0)
                assert dead == []
                assert rt.stats.failed_deliveries == 0
                assert rt.stats.dead_lettered == 0
                assert rt.stats.nacked == 0
                assert rt.stats.delivered == 1

                with serving_on(outcome_app(seen), aio, port):
                    assert await async_wait_until(lambda: rt.stats.delivered == 4, timeout=20)
                    assert said.said("the app answers again")
                    # Subscriptions were listed again and delivery goes on as usual.
                    await rt.publish(PUBSUB, "orders", "after")
                    assert await async_wait_until(lambda: rt.stats.delivered == 5)
                delivered = {event.id for event in seen.of("orders")}
                assert set(ids) <= delivered
                assert dead == []
                assert rt.stats.failed_deliveries == 0
            finally:
                await asyncio.wait_for(rt.stop(drain_timeout=5.0), 15)

    try:
        asyncio.run(asyncio.wait_for(scenario(), 60))
    finally:
        logger.removeHandler(said)
        logger.setLevel(previous)


@AIO
def test_stop_while_the_app_is_down_gives_messages_back(aio: bool) -> None:
    port = free_port()
    seen = Seen()

    async def scenario() -> None:
        broker = MemoryBroker(default_nack_delay=0.05)
        async with (
            AsyncChannel.local(port, with_app_token(TOKEN)) as channel,
            collecting(broker, "orders-dead") as dead,
        ):
            rt = PubSubRuntime(
                channel, {PUBSUB: broker}, app_id=APP_ID, fetch_backoff=0.1, health_interval=0.1
            )
            with serving_on(outcome_app(seen), aio, port):
                await rt.start()
            await rt.publish(PUBSUB, "orders", "held")
            assert await async_wait_until(lambda: broker.pending("orders", APP_ID) == 0)
            await asyncio.wait_for(rt.stop(drain_timeout=5.0), 15)
            assert rt.stats.dead_lettered == 0
            assert rt.stats.nacked == 1  # handed back, not lost
            assert broker.pending("orders", APP_ID) == 1
            assert dead == []

    asyncio.run(asyncio.wait_for(scenario(), 60))
