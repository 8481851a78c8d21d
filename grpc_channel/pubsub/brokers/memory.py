"""The in-memory broker: the embedded default, for one process (tests, local runs).

Each (topic, group) pair has one queue, created by the group's first ``subscribe`` and kept until
``close``: subscribers of the group take from it (so they compete), and a group whose subscribers
have all stopped keeps collecting messages for the next one. A topic with no group drops what is
published to it (nobody asked for it yet).

The queues are unbounded, so ``publish`` never waits for or fails because of a slow subscriber:
publishers are request handlers that must not stall on a consumer, and a bound would need a policy
(drop, fail, block) that the real brokers' retention settings decide instead. The price is memory;
``pending(topic, group)`` shows the backlog.

Delivery: each subscription runs up to ``concurrency`` worker tasks that take one message at a time
and run the handler in place (no task per message, unlike the fetch-and-launch loop the network
brokers share); a message published while a worker waits is handed to it directly.

NACK: a parallel subscription puts the message back at the tail after the delay (group-owned, so a
stop does not lose it); an ordered subscription waits the delay itself and retries the same
message before taking the next; if it is stopped meanwhile, the message goes back to the head.
A handler cancelled by ``stop(drain=False)`` puts its message back at the head. ``nakDelay``
(``default_nack_delay``, default 1 s) is the delay when the handler gives none or raises.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import uuid
from collections import deque
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

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

_log = logging.getLogger(__name__)

# A worker gives the event loop a turn after this many messages taken without waiting.
_YIELD_EVERY = 16


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
    """One group's messages on one topic. A message published while a worker of the group waits
    is handed to that worker directly (no wake-up round through the loop); otherwise it waits in
    ``_ready`` and a subscription with spare concurrency is asked to start another worker."""

    def __init__(self) -> None:
        self._ready: deque[_Entry] = deque()
        # Workers waiting for a message, oldest first; only while _ready is empty.
        self._waiters: deque[asyncio.Future[_Entry]] = deque()
        self._timers: set[asyncio.TimerHandle] = set()
        self._subscriptions: list[_MemorySubscription] = []

    def __len__(self) -> int:
        return len(self._ready) + len(self._timers)

    def attach(self, subscription: _MemorySubscription) -> None:
        self._subscriptions.append(subscription)

    def detach(self, subscription: _MemorySubscription) -> None:
        if subscription in self._subscriptions:
            self._subscriptions.remove(subscription)

    def backlog(self) -> int:
        return len(self._ready)

    def _hand_over(self, entry: _Entry) -> bool:
        while self._waiters:
            waiter = self._waiters.popleft()
            if not waiter.done():
                waiter.set_result(entry)
                return True
        return False

    def put(self, entry: _Entry) -> None:
        if self._hand_over(entry):
            return
        self._ready.append(entry)
        for subscription in self._subscriptions:
            if subscription.grow():
                break

    def put_front(self, entry: _Entry) -> None:
        if self._hand_over(entry):
            return
        self._ready.appendleft(entry)
        for subscription in self._subscriptions:
            if subscription.grow():
                break

    def put_later(self, entry: _Entry, delay: float) -> None:
        if delay <= 0:
            self.put(entry)
            return

        def due() -> None:
            self._timers.discard(handle)
            self.put(entry)

        handle = asyncio.get_running_loop().call_later(delay, due)
        self._timers.add(handle)

    async def take(self) -> _Entry:
        """The next message, waiting for one if there is none."""
        if self._ready:
            return self._ready.popleft()
        waiter: asyncio.Future[_Entry] = asyncio.get_running_loop().create_future()
        self._waiters.append(waiter)
        try:
            return await waiter
        except asyncio.CancelledError:
            if waiter.done() and not waiter.cancelled():
                # Handed over just as the worker was cancelled: back to the head, not lost.
                self.put_front(waiter.result())
            else:
                waiter.cancel()
                with contextlib.suppress(ValueError):
                    self._waiters.remove(waiter)
            raise

    def close(self) -> None:
        for handle in self._timers:
            handle.cancel()
        self._timers.clear()
        self._ready.clear()
        self._subscriptions.clear()


class _MemorySubscription(SubscriptionHandle):
    """Up to ``concurrency`` worker tasks, each taking one message at a time from the group's
    queue and running the handler on it in place: no task, no slot bookkeeping per message.
    Workers start on demand (one at once, more while messages wait), so a large concurrency costs
    nothing until the backlog asks for it; they stay until the subscription stops.

    ``stop(drain=True)`` cancels the idle workers and waits for the busy ones to finish their
    message; ``stop(drain=False)`` cancels every worker, and a cancelled handler's message goes
    back to the head of the queue."""

    def __init__(
        self,
        queue: _GroupQueue,
        handler: Handler,
        concurrency: int,
        ordered: bool,
        default_delay: float,
        forget: Callable[[_MemorySubscription], None],
    ) -> None:
        self._queue = queue
        self._handler = handler
        self._concurrency = concurrency
        self._ordered = ordered
        self._default_delay = default_delay
        self._forget = forget
        self._workers: set[asyncio.Task[None]] = set()
        self._idle: set[asyncio.Task[None]] = set()
        self.stopping = asyncio.Event()
        self._stop_lock = asyncio.Lock()
        self._stopped = False

    def start(self) -> None:
        self._queue.attach(self)
        self._spawn()
        for _ in range(min(self._queue.backlog(), self._concurrency) - 1):
            self._spawn()

    def grow(self) -> bool:
        """Start one more worker for a waiting message; False when at the bound or stopping."""
        if len(self._workers) >= self._concurrency or self.stopping.is_set():
            return False
        self._spawn()
        return True

    def _spawn(self) -> None:
        task = asyncio.create_task(self._work(), name=f"{_KIND}-subscription-worker")
        self._workers.add(task)
        task.add_done_callback(self._workers.discard)

    async def _work(self) -> None:
        me = asyncio.current_task()
        assert me is not None
        streak = 0  # messages taken in a row without waiting for one
        while not self.stopping.is_set():
            if not self._queue.backlog():
                streak = 0  # take() waits: the loop runs others meanwhile
            elif streak >= _YIELD_EVERY:
                # A handler that never suspends (or a NACK at once, as while the runtime stops)
                # would otherwise keep this worker on the loop through the whole backlog.
                streak = 0
                await asyncio.sleep(0)
                continue
            streak += 1
            self._idle.add(me)
            try:
                entry = await self._queue.take()
            finally:
                self._idle.discard(me)
            try:
                await self._process(entry)
            except asyncio.CancelledError:
                raise
            except Exception:
                _log.exception("%s subscription: settling a message failed", _KIND)

    async def _process(self, item: _Entry) -> None:
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

    async def stop(self, drain: bool = True) -> None:
        self.stopping.set()
        self._queue.detach(self)
        # Idle workers have nothing to finish; without drain the busy ones are cancelled too,
        # at once, even while another stop() drains (a stop without drain never waits for it).
        for task in list(self._workers if not drain else self._idle):
            task.cancel()
        async with self._stop_lock:
            if self._stopped:
                return
            while self._workers:
                # wait(), not gather(): when the caller gives up on a drain (its stop() is
                # cancelled), the handlers keep running for the next stop() to drain or cancel.
                await asyncio.wait(list(self._workers))
            self._forget(self)
            self._stopped = True


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
