"""The in-memory broker: the embedded default, for one process (tests, local runs).

Each (topic, group) pair has one queue, created by the group's first ``subscribe`` and kept until
``close``: subscribers of the group take from it (so they compete), and a group whose subscribers
have all stopped keeps collecting messages for the next one. A topic with no group drops what is
published to it (nobody asked for it yet).

The queues are unbounded, so ``publish`` never waits for or fails because of a slow subscriber:
publishers are request handlers that must not stall on a consumer, and a bound would need a policy
(drop, fail, block) that the real brokers' retention settings decide instead. The price is memory;
``pending(topic, group)`` shows the backlog.

NACK: a parallel subscription puts the message back at the tail after the delay (group-owned, so a
stop does not lose it); an ordered subscription waits the delay itself and retries the same
message before taking the next; if it is stopped meanwhile, the message goes back to the head.
A handler cancelled by ``stop(drain=False)`` puts its message back at the head. ``nakDelay``
(``default_nack_delay``, default 1 s) is the delay when the handler gives none or raises.
"""

from __future__ import annotations

import asyncio
import uuid
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType

from ._runner import Runner
from .base import (
    Broker,
    BrokerArgumentError,
    BrokerClosedError,
    BrokerMessage,
    Handler,
    OutcomeKind,
    SubscriptionHandle,
    run_handler,
    validate_concurrency,
    validate_data,
    validate_group,
    validate_handler,
    validate_message_id,
    validate_metadata,
    validate_topic,
)

__all__ = ["MemoryBroker"]

_KIND = "memory"


@dataclass
class _Entry:
    topic: str
    data: bytes
    metadata: Mapping[str, str]
    id: str
    deliveries: int = 0

    def deliver(self) -> BrokerMessage:
        self.deliveries += 1
        return BrokerMessage(self.topic, self.data, self.metadata, self.id, self.deliveries)


class _GroupQueue:
    def __init__(self) -> None:
        self._ready: deque[_Entry] = deque()
        self._nonempty = asyncio.Event()
        self._timers: set[asyncio.TimerHandle] = set()

    def __len__(self) -> int:
        return len(self._ready) + len(self._timers)

    def put(self, entry: _Entry) -> None:
        self._ready.append(entry)
        self._nonempty.set()

    def put_front(self, entry: _Entry) -> None:
        self._ready.appendleft(entry)
        self._nonempty.set()

    def put_later(self, entry: _Entry, delay: float) -> None:
        if delay <= 0:
            self.put(entry)
            return

        def due() -> None:
            self._timers.discard(handle)
            self.put(entry)

        handle = asyncio.get_running_loop().call_later(delay, due)
        self._timers.add(handle)

    async def take(self, limit: int) -> list[_Entry]:
        while not self._ready:
            self._nonempty.clear()
            await self._nonempty.wait()
        taken = [self._ready.popleft() for _ in range(min(limit, len(self._ready)))]
        if self._ready:
            self._nonempty.set()  # wake a competing subscriber for the rest
        return taken

    def close(self) -> None:
        for handle in self._timers:
            handle.cancel()
        self._timers.clear()
        self._ready.clear()


class _MemorySubscription(Runner[_Entry]):
    def __init__(
        self,
        queue: _GroupQueue,
        handler: Handler,
        concurrency: int,
        ordered: bool,
        default_delay: float,
        forget: Callable[[_MemorySubscription], None],
    ) -> None:
        super().__init__(_KIND, concurrency)
        self._queue = queue
        self._handler = handler
        self._ordered = ordered
        self._default_delay = default_delay
        self._forget = forget

    async def fetch(self, limit: int) -> Sequence[_Entry]:
        return await self._queue.take(limit)

    async def process(self, item: _Entry) -> None:
        try:
            while True:
                outcome = await run_handler(self._handler, item.deliver(), self._default_delay)
                if outcome.kind is not OutcomeKind.NACK:
                    return  # ACK and TERM both settle it
                delay = outcome.delay or 0.0
                if not self._ordered:
                    self._queue.put_later(item, delay)
                    return
                # Ordered: retry this one before any later message, unless stopped meanwhile.
                try:
                    await asyncio.wait_for(self.stopping.wait(), delay)
                except TimeoutError:
                    continue
                self._queue.put_front(item)
                return
        except asyncio.CancelledError:
            self._queue.put_front(item)
            raise

    def abandoned(self, item: _Entry) -> None:
        self._queue.put_front(item)

    async def on_stopped(self) -> None:
        self._forget(self)


class MemoryBroker(Broker):
    """In-process broker. ``default_nack_delay``: seconds before redelivering a message whose
    handler raised or NACKed without a delay (default 1.0). ``default_concurrency``: handlers at
    once when ``subscribe`` gives none (default 1)."""

    kind = _KIND

    def __init__(self, *, default_nack_delay: float = 1.0, default_concurrency: int = 1) -> None:
        if (
            isinstance(default_nack_delay, bool)
            or not isinstance(default_nack_delay, int | float)
            or not 0 <= default_nack_delay < float("inf")
        ):
            raise BrokerArgumentError(
                _KIND, f"invalid default_nack_delay {default_nack_delay!r}: allowed is >= 0 s"
            )
        self._default_delay = float(default_nack_delay)
        self._default_concurrency = validate_concurrency(_KIND, default_concurrency, ordered=False)
        self._groups: dict[str, dict[str, _GroupQueue]] = {}
        self._subscriptions: set[_MemorySubscription] = set()
        self._closed = False

    def _check_open(self) -> None:
        if self._closed:
            raise BrokerClosedError(_KIND, "closed; no more publishes or subscriptions")

    def pending(self, topic: str, group: str) -> int:
        """Messages of ``group`` on ``topic`` not yet handed to a handler (ready or waiting for a
        NACK delay); 0 for a group that never subscribed."""
        queue = self._groups.get(topic, {}).get(group)
        return 0 if queue is None else len(queue)

    async def publish(
        self,
        topic: str,
        data: bytes,
        metadata: Mapping[str, str] | None = None,
        *,
        message_id: str | None = None,
    ) -> None:
        self._check_open()
        validate_topic(_KIND, topic)
        payload = validate_data(_KIND, data)
        frozen = MappingProxyType(validate_metadata(_KIND, metadata))
        event_id = validate_message_id(_KIND, message_id) or uuid.uuid4().hex
        for queue in self._groups.get(topic, {}).values():
            queue.put(_Entry(topic, payload, frozen, event_id))

    async def subscribe(
        self,
        topic: str,
        handler: Handler,
        *,
        group: str,
        concurrency: int | None = None,
        ordered: bool = False,
    ) -> SubscriptionHandle:
        self._check_open()
        validate_topic(_KIND, topic)
        validate_group(_KIND, group)
        validate_handler(_KIND, handler)
        wanted = (
            concurrency
            if concurrency is not None
            else (1 if ordered else self._default_concurrency)
        )
        validate_concurrency(_KIND, wanted, ordered=ordered)
        queue = self._groups.setdefault(topic, {}).setdefault(group, _GroupQueue())
        subscription = _MemorySubscription(
            queue, handler, wanted, ordered, self._default_delay, self._subscriptions.discard
        )
        self._subscriptions.add(subscription)
        subscription.start()
        return subscription

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for subscription in list(self._subscriptions):
            await subscription.stop(drain=False)
        for groups in self._groups.values():
            for queue in groups.values():
                queue.close()
        self._groups.clear()
