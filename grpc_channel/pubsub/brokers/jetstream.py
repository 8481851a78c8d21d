"""A broker over NATS JetStream (``nats-py``).

Layout: one stream per topic, capturing the subject of the same name. One stream per topic rather
than one stream for all: JetStream's duplicate detection (``Nats-Msg-Id``) works per stream, so the
same event id published to two topics is kept on both, and retention and limits stay per topic.
A stream's name is the topic with ``.`` made ``_`` and, for such topics, a short hash of the topic
appended (``a.b`` and ``a_b`` must not share a stream). Streams are created on first use.

Groups are durable pull consumers named after the group (``<durableName>-<group>`` when
``durableName`` is set): replicas of one app pull from the same consumer and compete; other apps
have their own and each get every message. A new consumer starts at the stream's first retained
message. ACK is ``ack``, NACK is ``nak(delay)``, TERM is ``term``; ``delivery_count`` is the
server's ``num_delivered``. A handler cut short by ``stop(drain=False)`` NAKs its message, so it is
redelivered at once; a message whose subscriber died is redelivered after ``ackWait``. An ordered
subscription uses a consumer with ``max_ack_pending=1``: the server hands out nothing else while a
message is unsettled, so a NAKed one comes back before later ones. A group's consumer keeps the
ordering of its first subscriber; subscribing the other way raises :class:`BrokerError`.

The message id travels as the ``Nats-Msg-Id`` header (the server drops a second message with the
same id within ``duplicateWindow``); the metadata as a JSON object in the ``Pubsub-Metadata``
header.

Settings (Dapr's jetstream metadata names where they exist): ``natsURL``
(``nats://localhost:4222``), ``name`` (connection name, ``grpc-channel pubsub``), ``durableName``
(consumer name prefix, none), ``maxDeliver`` (0: unlimited), ``ackWait`` (30s); and this broker's
own: ``duplicateWindow`` (2m), ``nakDelay`` (1s: the delay of a NACK without one and of a raising
handler), ``concurrency`` (1: handlers at once when ``subscribe`` gives none; Dapr's
``single``/``parallel`` is ``subscribe``'s ``ordered`` here), ``connectTimeout`` (5s: the first
connection's deadline; once connected the client reconnects without limit).
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import logging
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from types import MappingProxyType

import nats
import nats.errors
import nats.js.errors
from nats.aio.client import Client as NatsClient
from nats.aio.msg import Msg
from nats.js import JetStreamContext
from nats.js.api import AckPolicy, ConsumerConfig, DeliverPolicy, StreamConfig

from ._runner import Runner
from ._settings import Settings
from .base import (
    Broker,
    BrokerArgumentError,
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

__all__ = ["JetStreamBroker", "JetStreamSettings", "stream_name_for"]

_KIND = "jetstream"
_log = logging.getLogger(__name__)
METADATA_NAMES = (
    "ackWait",
    "concurrency",
    "connectTimeout",
    "duplicateWindow",
    "durableName",
    "maxDeliver",
    "nakDelay",
    "name",
    "natsURL",
)
MESSAGE_ID_HEADER = "Nats-Msg-Id"
METADATA_HEADER = "Pubsub-Metadata"
# A pull waits this long for messages before asking again (stop cancels it sooner).
_FETCH_TIMEOUT = 2.0


@dataclass(frozen=True)
class JetStreamSettings:
    """Connection and delivery settings; see the module docstring. Durations are seconds;
    ``max_deliver`` 0 means unlimited."""

    url: str = "nats://localhost:4222"
    connection_name: str = "grpc-channel pubsub"
    durable_prefix: str | None = None
    max_deliver: int = 0
    ack_wait: float = 30.0
    duplicate_window: float = 120.0
    nak_delay: float = 1.0
    concurrency: int = 1
    connect_timeout: float = 5.0

    @classmethod
    def from_metadata(cls, metadata: Mapping[str, str]) -> JetStreamSettings:
        """From Dapr component metadata; raises SettingError naming a bad or unknown field."""
        read = Settings(_KIND, metadata, METADATA_NAMES)
        url = read.text("natsURL", "nats://localhost:4222").strip()
        if not url.startswith(("nats://", "tls://", "ws://", "wss://")):
            raise read.error("natsURL", "allowed are nats://, tls://, ws:// or wss:// URLs")
        prefix = read.optional_text("durableName")
        if prefix is not None:
            try:
                validate_group(_KIND, prefix)
            except BrokerError:
                raise read.error(
                    "durableName", f"{prefix!r}: allowed are 1-100 of A-Z a-z 0-9 _ -"
                ) from None
        ack_wait = read.duration("ackWait", 30.0)
        if ack_wait <= 0:
            raise read.error("ackWait", "must be above 0")
        return cls(
            url=url,
            connection_name=read.text("name", "grpc-channel pubsub"),
            durable_prefix=prefix,
            max_deliver=read.integer("maxDeliver", 0, minimum=0),
            ack_wait=ack_wait,
            duplicate_window=read.duration("duplicateWindow", 120.0),
            nak_delay=read.duration("nakDelay", 1.0),
            concurrency=read.integer("concurrency", 1, minimum=1),
            connect_timeout=read.duration("connectTimeout", 5.0) or 5.0,
        )


def _without_credentials(url: str) -> str:
    """The URL without ``user:password@`` (or a token), for error messages."""
    scheme, sep, rest = url.partition("://")
    return f"{scheme}{sep}{rest.rpartition('@')[2]}"


def stream_name_for(topic: str) -> str:
    """The stream holding ``topic`` (stream names cannot contain ``.``)."""
    if "." not in topic:
        return topic
    digest = hashlib.sha256(topic.encode()).hexdigest()[:8]
    return f"{topic.replace('.', '_')}_{digest}"


def _decode(topic: str, msg: Msg) -> BrokerMessage:
    headers = msg.headers or {}
    metadata: dict[str, str] = {}
    raw = headers.get(METADATA_HEADER)
    if raw:
        with contextlib.suppress(ValueError):
            loaded = json.loads(raw)
            if isinstance(loaded, dict):
                metadata = {str(k): str(v) for k, v in loaded.items()}
    info = msg.metadata
    message_id = headers.get(MESSAGE_ID_HEADER) or f"{info.stream}:{info.sequence.stream}"
    return BrokerMessage(
        topic=topic,
        data=msg.data,
        metadata=MappingProxyType(metadata),
        id=message_id,
        delivery_count=info.num_delivered,
    )


class _JetStreamSubscription(Runner[Msg]):
    def __init__(
        self,
        broker: JetStreamBroker,
        pull: JetStreamContext.PullSubscription,
        topic: str,
        handler: Handler,
        concurrency: int,
    ) -> None:
        super().__init__(_KIND, concurrency)
        self._owner = broker
        self._pull = pull
        self._topic = topic
        self._handler = handler
        self._default_delay = broker.settings.nak_delay

    async def fetch(self, limit: int) -> Sequence[Msg]:
        try:
            return await self._pull.fetch(batch=limit, timeout=_FETCH_TIMEOUT)
        except (nats.errors.TimeoutError, TimeoutError):  # an idle fetch: nothing came
            return []

    async def process(self, item: Msg) -> None:
        try:
            outcome = await run_handler(
                self._handler, _decode(self._topic, item), self._default_delay
            )
        except asyncio.CancelledError:
            with contextlib.suppress(Exception):
                await item.nak()  # cut short: hand it back now rather than after ackWait
            raise
        if outcome.kind is OutcomeKind.ACK:
            await item.ack()
        elif outcome.kind is OutcomeKind.TERM:
            await item.term()
        else:
            await item.nak(delay=outcome.delay or None)

    async def on_stopped(self) -> None:
        self._owner.forget(self)
        with contextlib.suppress(Exception):
            await self._pull.unsubscribe()


class JetStreamBroker(Broker):
    """The JetStream broker; connects on first use."""

    kind = _KIND

    def __init__(self, settings: JetStreamSettings | None = None) -> None:
        self.settings = settings or JetStreamSettings()
        self._nc: NatsClient | None = None
        self._js: JetStreamContext | None = None
        self._connect_lock = asyncio.Lock()
        self._streams: set[str] = set()
        self._subscriptions: set[_JetStreamSubscription] = set()
        self._closed = False

    def forget(self, subscription: _JetStreamSubscription) -> None:
        self._subscriptions.discard(subscription)

    def _check_open(self) -> None:
        if self._closed:
            raise BrokerClosedError(_KIND, "closed; no more publishes or subscriptions")

    async def _jetstream(self) -> JetStreamContext:
        async with self._connect_lock:
            self._check_open()
            if self._js is None:
                last_error: list[Exception] = []

                async def on_error(exc: Exception) -> None:
                    last_error[:1] = [exc]
                    _log.warning("jetstream connection: %s", exc)

                client = NatsClient()
                where = _without_credentials(self.settings.url)
                try:
                    # Reconnect forever once connected; the first connection gets a deadline.
                    await asyncio.wait_for(
                        client.connect(
                            servers=[self.settings.url],
                            name=self.settings.connection_name,
                            connect_timeout=max(1, int(self.settings.connect_timeout)),
                            max_reconnect_attempts=-1,
                            reconnect_time_wait=1,
                            error_cb=on_error,
                        ),
                        self.settings.connect_timeout,
                    )
                except (TimeoutError, OSError, nats.errors.Error) as exc:
                    with contextlib.suppress(Exception):
                        await client.close()
                    cause = last_error[0] if last_error else exc
                    raise BrokerError(
                        _KIND,
                        f"connecting to {where} failed within {self.settings.connect_timeout} s: "
                        f"{cause}",
                    ) from exc
                self._nc = client
                self._js = self._nc.jetstream()
            return self._js

    async def _stream(self, js: JetStreamContext, topic: str) -> str:
        name = stream_name_for(topic)
        if name in self._streams:
            return name
        config = StreamConfig(
            name=name, subjects=[topic], duplicate_window=self.settings.duplicate_window
        )
        try:
            await js.add_stream(config)
        except nats.js.errors.BadRequestError:
            # It exists with another configuration (set by an operator): use it as it is.
            try:
                await js.stream_info(name)
            except nats.errors.Error as exc:
                raise BrokerError(_KIND, f"creating stream {name!r} failed: {exc}") from exc
        except nats.errors.Error as exc:
            raise BrokerError(_KIND, f"creating stream {name!r} failed: {exc}") from exc
        self._streams.add(name)
        return name

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
        headers = {
            MESSAGE_ID_HEADER: validate_message_id(_KIND, message_id) or uuid.uuid4().hex,
            METADATA_HEADER: json.dumps(validate_metadata(_KIND, metadata)),
        }
        js = await self._jetstream()
        stream = await self._stream(js, topic)
        try:
            await js.publish(topic, payload, stream=stream, headers=headers)
        except nats.errors.Error as exc:
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
        prefix = self.settings.durable_prefix
        durable = f"{prefix}-{group}" if prefix else group
        js = await self._jetstream()
        stream = await self._stream(js, topic)
        try:
            await self._ensure_consumer(js, stream, durable, topic, ordered)
            pull = await js.pull_subscribe(topic, durable=durable, stream=stream)
        except nats.errors.Error as exc:
            raise BrokerError(
                _KIND, f"subscribing group {group!r} to topic {topic!r} failed: {exc}"
            ) from exc
        subscription = _JetStreamSubscription(self, pull, topic, handler, concurrency)
        self._subscriptions.add(subscription)
        subscription.start()
        return subscription

    async def _ensure_consumer(
        self, js: JetStreamContext, stream: str, durable: str, topic: str, ordered: bool
    ) -> None:
        try:
            info = await js.consumer_info(stream, durable)
        except nats.js.errors.NotFoundError:
            config = ConsumerConfig(
                durable_name=durable,
                name=durable,
                deliver_policy=DeliverPolicy.ALL,
                ack_policy=AckPolicy.EXPLICIT,
                ack_wait=self.settings.ack_wait,
                max_deliver=self.settings.max_deliver or -1,
                max_ack_pending=1 if ordered else None,
                filter_subject=topic,
            )
            await js.add_consumer(stream, config)
            return
        existing_ordered = info.config.max_ack_pending == 1
        if existing_ordered != ordered:
            raise BrokerArgumentError(
                _KIND,
                f"group {durable!r} on topic {topic!r} already exists as "
                f"{'ordered' if existing_ordered else 'parallel'}; subscribe it the same way",
            )

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        for subscription in list(self._subscriptions):
            await subscription.stop(drain=False)
        if self._nc is not None:
            with contextlib.suppress(Exception):
                await self._nc.close()
