"""A broker over Redis Streams (``redis.asyncio``; Redis >= 6.2 for XAUTOCLAIM).

Layout: one stream per topic, its key the topic name (as Dapr does). Each entry has the fields
``data`` (the bytes), ``id`` (the message id) and ``metadata`` (a JSON object of strings).
``publish`` is XADD, trimmed with ``MAXLEN ~ maxLenApprox`` when that is set.

Groups are Redis consumer groups (created at the stream's start, ``0``, so a new group also gets
what the stream still retains): replicas of one app share its group and compete, other apps have
their own. Every ``subscribe`` is its own consumer in the group (``<consumerID>-<random>``) and
reads with XREADGROUP ... BLOCK. ACK and TERM are XACK (Redis has no "dead" state; TERM just stops
redelivery). A NACKed entry stays pending; after its delay the consumer that NACKed it claims it
back (XCLAIM, only if nobody else took it meanwhile) and runs the handler again; an ordered
subscription waits the delay itself and retries before reading further.

Entries pending longer than ``processingTimeout`` (a crashed or stopped consumer's, or a NACKed
one whose consumer stopped) are reclaimed every ``redeliverInterval`` with XAUTOCLAIM by any live
consumer of the group. ``delivery_count`` is Redis's own counter (XPENDING), so it carries over
between consumers. A NACK delay longer than ``processingTimeout`` is cut short by that reclaim (as
in Dapr, the processing timeout rules). Setting either interval to ``0`` disables reclaiming; then
a stopped subscription's unacked entries stay pending for good (consumer names are not reused).

``stop`` lets a blocking read in progress finish rather than cancel it (redis-py's connection does
not always survive a cancelled blocking command), so it can take up to
``min(1 s, redeliverInterval)``; what that read returns is handled (``drain``) or left pending.

Settings (Dapr's redis pub/sub metadata names, defaults as Dapr's): ``redisHost``
(``localhost:6379``), ``redisUsername``, ``redisPassword``, ``redisDB`` (0), ``enableTLS``
(false), ``consumerID`` (prefix of this process's consumer names; Dapr uses it as the group, here
``subscribe``'s ``group`` is that), ``processingTimeout`` (60s), ``redeliverInterval`` (60s; also
the delay of a NACK without one and of a raising handler), ``maxLenApprox`` (0: no trimming),
``concurrency`` (10: handlers at once when ``subscribe`` gives none).
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Final

import redis.asyncio as aioredis
from redis.exceptions import RedisError, ResponseError

from ._runner import Runner
from ._settings import Settings
from .base import (
    Broker,
    BrokerClosedError,
    BrokerError,
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

__all__ = ["RedisStreamsBroker", "RedisStreamsSettings"]

_KIND = "redis"
METADATA_NAMES = (
    "concurrency",
    "consumerID",
    "enableTLS",
    "maxLenApprox",
    "processingTimeout",
    "redeliverInterval",
    "redisDB",
    "redisHost",
    "redisPassword",
    "redisUsername",
)
# XREADGROUP blocks at most this long (or redeliverInterval when shorter), so the reclaim pass
# runs on time; it is also how long a stop may wait for the read in progress.
_MAX_BLOCK_SECONDS = 1.0


@dataclass(frozen=True)
class RedisStreamsSettings:
    """Connection and delivery settings; see the module docstring. ``url`` carries no
    credentials (``username``/``password`` do, and are never shown in repr or errors)."""

    url: str = "redis://localhost:6379/0"
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    consumer_id: str = "consumer"
    processing_timeout: float = 60.0
    redeliver_interval: float = 60.0
    max_len_approx: int = 0
    concurrency: int = 10

    @classmethod
    def from_metadata(cls, metadata: Mapping[str, str]) -> RedisStreamsSettings:
        """From Dapr component metadata; raises SettingError naming a bad or unknown field."""
        read = Settings(_KIND, metadata, METADATA_NAMES)
        host = read.text("redisHost", "localhost:6379").strip()
        if not host or "/" in host or "@" in host:
            raise read.error("redisHost", f"{host!r} is not host:port")
        scheme = "rediss" if read.boolean("enableTLS", False) else "redis"
        db = read.integer("redisDB", 0, minimum=0)
        consumer_id = read.text("consumerID", "consumer")
        try:
            validate_group(_KIND, consumer_id)
        except BrokerError:
            raise read.error(
                "consumerID", f"{consumer_id!r}: allowed are 1-100 of A-Z a-z 0-9 _ -"
            ) from None
        return cls(
            url=f"{scheme}://{host}/{db}",
            username=read.optional_text("redisUsername"),
            password=read.optional_text("redisPassword"),
            consumer_id=consumer_id,
            processing_timeout=read.duration("processingTimeout", 60.0),
            redeliver_interval=read.duration("redeliverInterval", 60.0),
            max_len_approx=read.integer("maxLenApprox", 0, minimum=0),
            concurrency=read.integer("concurrency", 10, minimum=1),
        )


@dataclass(frozen=True)
class _Delivery:
    """A stream entry to handle. ``claim_after``: a NACKed entry to claim back first (seconds it
    must have been idle, so an entry someone else reclaimed meanwhile is left alone)."""

    entry_id: bytes
    fields: Mapping[bytes, bytes] | None = None
    delivery_count: int = 1
    claim_after: float | None = None


def _decode(topic: str, delivery: _Delivery) -> BrokerMessage | None:
    """The message in an entry; None for an entry this broker did not write."""
    fields = delivery.fields or {}
    try:
        metadata = json.loads(fields.get(b"metadata", b"{}"))
        if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
            return None
        return BrokerMessage(
            topic=topic,
            data=bytes(fields[b"data"]),
            metadata=MappingProxyType(metadata),
            id=fields.get(b"id", delivery.entry_id).decode(),
            delivery_count=delivery.delivery_count,
        )
    except (KeyError, ValueError):
        return None


class _RedisSubscription(Runner[_Delivery]):
    cancel_fetch = False  # a cancelled blocking XREADGROUP can leave redis-py's connection stuck

    def __init__(
        self,
        broker: RedisStreamsBroker,
        topic: str,
        group: str,
        handler: Handler,
        concurrency: int,
        ordered: bool,
    ) -> None:
        super().__init__(_KIND, concurrency)
        self._owner = broker
        self._client = broker.client
        self._settings = broker.settings
        self._topic = topic
        self._group = group
        self._handler = handler
        self._ordered = ordered
        self.consumer = f"{self._settings.consumer_id}-{uuid.uuid4().hex[:12]}"
        self._reclaim_cursor: bytes | str = "0-0"
        self._next_reclaim = 0.0

    @property
    def _reclaims(self) -> bool:
        return self._settings.processing_timeout > 0 and self._settings.redeliver_interval > 0

    async def fetch(self, limit: int) -> Sequence[_Delivery]:
        if self._reclaims and time.monotonic() >= self._next_reclaim:
            self._next_reclaim = time.monotonic() + self._settings.redeliver_interval
            reclaimed = await self._reclaim(limit)
            if reclaimed:
                return reclaimed
        block = _MAX_BLOCK_SECONDS
        if self._reclaims:
            block = min(block, self._settings.redeliver_interval)
        reply: Any = await self._client.xreadgroup(
            self._group, self.consumer, {self._topic: ">"}, count=limit, block=int(block * 1000)
        )
        # RESP2 answers [[stream, entries]], RESP3 {stream: entries}.
        streams = reply.items() if isinstance(reply, dict) else reply or []
        return [
            _Delivery(entry_id, fields)
            for _, entries in streams
            for entry_id, fields in entries
            if entry_id is not None
        ]

    async def _reclaim(self, limit: int) -> list[_Delivery]:
        reply = await self._client.xautoclaim(
            self._topic,
            self._group,
            self.consumer,
            min_idle_time=int(self._settings.processing_timeout * 1000),
            start_id=self._reclaim_cursor,
            count=limit,
        )
        self._reclaim_cursor = reply[0]
        return await self._with_counts(reply[1])

    async def _with_counts(self, entries: list[Any]) -> list[_Delivery]:
        """Attach Redis's delivery counters (XPENDING) to claimed entries; entries trimmed from
        the stream meanwhile are acked, since there is nothing left to deliver."""
        found: list[_Delivery] = []
        for entry_id, fields in entries:
            if entry_id is None:
                continue
            if fields is None:
                await self._client.xack(self._topic, self._group, entry_id)
                continue
            pending = await self._client.xpending_range(
                self._topic, self._group, min=entry_id, max=entry_id, count=1
            )
            count = int(pending[0]["times_delivered"]) if pending else 1
            found.append(_Delivery(entry_id, fields, count))
        return found

    async def _claim(self, entry_id: bytes, min_idle: float) -> _Delivery | None:
        claimed = await self._client.xclaim(
            self._topic, self._group, self.consumer, int(min_idle * 1000), [entry_id]
        )
        found = await self._with_counts(list(claimed))
        return found[0] if found else None

    async def process(self, item: _Delivery) -> None:
        delivery: _Delivery | None = item
        if item.claim_after is not None:
            delivery = await self._claim(item.entry_id, item.claim_after)
        while delivery is not None:
            message = _decode(self._topic, delivery)
            if message is None:
                logging.getLogger(__name__).error(
                    "stream %r entry %r is not a broker message; acking it",
                    self._topic,
                    delivery.entry_id,
                )
                await self._client.xack(self._topic, self._group, delivery.entry_id)
                return
            outcome = await run_handler(self._handler, message, self._settings.redeliver_interval)
            if outcome.kind is not OutcomeKind.NACK:
                await self._client.xack(self._topic, self._group, delivery.entry_id)
                return
            delay = outcome.delay or 0.0
            if not self._ordered:
                # Claim back only if idle at least the delay (minus clock slack): if another
                # consumer reclaimed it meanwhile, its idle time was reset and it stays theirs.
                self.schedule(delay, _Delivery(delivery.entry_id, claim_after=delay * 0.9))
                return
            try:
                await asyncio.wait_for(self.stopping.wait(), delay)
                return  # stopped: it stays pending, reclaimed after processingTimeout
            except TimeoutError:
                pass
            delivery = await self._claim(delivery.entry_id, 0)

    async def on_stopped(self) -> None:
        self._owner.forget(self)


_MAX_CONNECTIONS: Final = 128
_POOL_WAIT: Final = 30.0  # seconds a command waits for a free pooled connection


class RedisStreamsBroker(Broker):
    """The Redis Streams broker; connects lazily (the first command opens the connection)."""

    kind = _KIND

    def __init__(self, settings: RedisStreamsSettings | None = None) -> None:
        self.settings = settings or RedisStreamsSettings()
        # A blocking pool: under load (many handlers and publishers at once) a command waits for
        # a free connection instead of failing with "Too many connections".
        pool = aioredis.BlockingConnectionPool.from_url(
            self.settings.url,
            username=self.settings.username,
            password=self.settings.password,
            max_connections=_MAX_CONNECTIONS,
            timeout=_POOL_WAIT,
        )
        self.client: aioredis.Redis = aioredis.Redis(connection_pool=pool)
        self._subscriptions: set[_RedisSubscription] = set()
        self._closed = False

    def forget(self, subscription: _RedisSubscription) -> None:
        self._subscriptions.discard(subscription)

    def _check_open(self) -> None:
        if self._closed:
            raise BrokerClosedError(_KIND, "closed; no more publishes or subscriptions")

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
        fields: dict[str | bytes, str | bytes] = {
            "data": payload,
            "id": validate_message_id(_KIND, message_id) or uuid.uuid4().hex,
            "metadata": json.dumps(validate_metadata(_KIND, metadata)),
        }
        try:
            await self.client.xadd(
                topic,
                fields,  # type: ignore[arg-type]  # redis-py's FieldT/EncodableT are invariant
                maxlen=self.settings.max_len_approx or None,
                approximate=True,
            )
        except RedisError as exc:
            raise BrokerError(_KIND, f"publish to topic {topic!r} failed: {exc}") from exc

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
        if concurrency is None:
            concurrency = 1 if ordered else self.settings.concurrency
        validate_concurrency(_KIND, concurrency, ordered=ordered)
        try:
            await self.client.xgroup_create(topic, group, id="0", mkstream=True)
        except ResponseError as exc:
            if "BUSYGROUP" not in str(exc):
                raise BrokerError(
                    _KIND, f"creating group {group!r} on topic {topic!r} failed: {exc}"
                ) from exc
        except RedisError as exc:
            raise BrokerError(
                _KIND, f"creating group {group!r} on topic {topic!r} failed: {exc}"
            ) from exc
        subscription = _RedisSubscription(self, topic, group, handler, concurrency, ordered)
        self._subscriptions.add(subscription)
        subscription.start()
        return subscription

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        # Each stop waits out its blocking read; let them do so together.
        await asyncio.gather(*(s.stop(drain=False) for s in list(self._subscriptions)))
        await self.client.aclose()
