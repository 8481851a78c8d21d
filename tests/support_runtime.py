"""Helpers for the pub/sub runtime tests: an App with one subscription per delivery outcome, a
thread-safe record of what its handlers saw, serving on a chosen port, and broker collectors.

:func:`outcome_app` subscribes, on pubsub ``pubsub``:

- ``orders`` (dead letter ``orders-dead``, fast retries): default route SUCCESS; the rule
  ``event.type == "big"`` (path ``/big``) answers RETRY.
- ``drops`` (dead letter ``drops-dead``): DROP.
- ``picky``: only a rule (``event.data.kind == "x"``), no default route.
- ``slow`` (fast retries): the first call blocks until ``Seen.release`` (at most 10 s).
- ``block``: every call blocks until ``Seen.release`` (at most 30 s).
- ``fail`` (dead letter ``fail-dead``, a 60 s first backoff): RETRY.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass, field

from grpc_channel.app import App, TopicEvent, TopicEventStatus
from grpc_channel.pubsub.brokers import ACK, Broker, BrokerMessage, Outcome

__all__ = ["PUBSUB", "TOKEN", "Collected", "Seen", "collecting", "outcome_app", "serving_on"]

PUBSUB = "pubsub"
TOKEN = "runtime-test-token"
FAST_RETRY = {"retryMaxAttempts": "3", "retryBaseDelay": "10ms"}
_TIMEOUT = 10.0


@dataclass
class Seen:
    """What the handlers saw: (topic or rule name, event) in call order."""

    events: list[tuple[str, TopicEvent]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)
    entered: threading.Event = field(default_factory=threading.Event)
    release: threading.Event = field(default_factory=threading.Event)
    finished: list[str] = field(default_factory=list)

    def add(self, name: str, event: TopicEvent) -> int:
        with self.lock:
            self.events.append((name, event))
            return sum(1 for n, _ in self.events if n == name)

    def of(self, name: str) -> list[TopicEvent]:
        with self.lock:
            return [event for n, event in self.events if n == name]


def outcome_app(seen: Seen, token: str = TOKEN) -> App:
    """The App described in the module docstring, requiring ``token``."""
    app = App(app_token=token)

    @app.subscribe(PUBSUB, "orders", dead_letter_topic="orders-dead", metadata=FAST_RETRY)
    def orders(event: TopicEvent) -> None:
        seen.add("orders", event)

    @app.subscribe(PUBSUB, "orders", match='event.type == "big"', route="/big")
    def big(event: TopicEvent) -> TopicEventStatus:
        seen.add("big", event)
        return TopicEventStatus.RETRY

    @app.subscribe(PUBSUB, "drops", dead_letter_topic="drops-dead")
    def drops(event: TopicEvent) -> TopicEventStatus:
        seen.add("drops", event)
        return TopicEventStatus.DROP

    @app.subscribe(
        PUBSUB, "picky", match='has(event.data.kind) && event.data.kind == "x"', route="/x"
    )
    def picky(event: TopicEvent) -> None:
        seen.add("picky", event)

    @app.subscribe(PUBSUB, "slow", metadata=FAST_RETRY)
    def slow(event: TopicEvent) -> None:
        if seen.add("slow", event) == 1:
            seen.release.wait(_TIMEOUT)

    @app.subscribe(PUBSUB, "block")
    def block(event: TopicEvent) -> None:
        seen.add("block", event)
        seen.entered.set()
        seen.release.wait(30.0)
        with seen.lock:
            seen.finished.append(event.id)

    @app.subscribe(
        PUBSUB,
        "fail",
        dead_letter_topic="fail-dead",
        metadata={"retryMaxAttempts": "5", "retryBaseDelay": "60s", "retryMaxDelay": "60s"},
    )
    def fail(event: TopicEvent) -> TopicEventStatus:
        seen.add("fail", event)
        return TopicEventStatus.RETRY

    return app


@contextlib.contextmanager
def serving_on(app: App, aio: bool, port: int = 0) -> Iterator[int]:
    """Serve ``app`` on 127.0.0.1:``port`` (0: a free one) on the sync or the asyncio server
    (its own loop thread); yield the port; stop everything after."""
    if not aio:
        bound = app.start(port)
        try:
            yield bound
        finally:
            app.stop()
        return
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, name="runtime-test-aio-app", daemon=True)
    thread.start()
    try:
        bound = asyncio.run_coroutine_threadsafe(app.start_async(port), loop).result(_TIMEOUT)
        try:
            yield bound
        finally:
            asyncio.run_coroutine_threadsafe(app.stop_async(None), loop).result(_TIMEOUT)
    finally:
        loop.call_soon_threadsafe(loop.stop)
        thread.join(_TIMEOUT)
        loop.close()


class Collected(list[BrokerMessage]):
    """Messages a collector subscription received, in order."""


@contextlib.asynccontextmanager
async def collecting(
    broker: Broker, topic: str, group: str = "collector"
) -> AsyncIterator[Collected]:
    """Subscribe a collector (acking everything) to ``topic`` while the block runs."""
    received = Collected()

    async def handler(message: BrokerMessage) -> Outcome:
        received.append(message)
        return ACK

    handle = await broker.subscribe(topic, handler, group=group)
    try:
        yield received
    finally:
        await handle.stop(drain=False)
