"""The broker component interface: messages, handler outcomes, the ``Broker`` contract, errors.

A broker moves opaque ``bytes`` between publishers and subscribers of a *topic*. Subscribers join a
*group* (the app id in Dapr): subscribers in one group compete, each message going to one of them;
every group gets every message. Delivery is at-least-once: a message leaves the broker only when a
handler of its group returns :data:`ACK` or :data:`TERM`.

A handler is ``async (BrokerMessage) -> Outcome``:

- :data:`ACK`: done;
- :func:`nack` ``(delay)``: redeliver after ``delay`` seconds (``None``: the broker's default);
- :data:`TERM`: never redeliver (the message is dropped);
- raising an exception counts as ``nack()`` with the broker's default delay, and so does returning
  anything that is not an :class:`Outcome` (logged, since it is a bug in the handler).

Names: a topic is 1-200 characters of ``A-Z a-z 0-9 . _ -``, starting with a letter or digit and
neither ending with nor doubling a ``.`` (it must be a valid NATS subject and Redis key alike); a
group is 1-100 characters of ``A-Z a-z 0-9 _ -``. Metadata keys and values are strings; a
``message_id`` is 1-200 printable characters. Bad input raises :class:`BrokerArgumentError`
naming the broker, the argument and what is allowed.
"""

from __future__ import annotations

import abc
import enum
import logging
import math
import re
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType, TracebackType
from typing import Self

__all__ = [
    "ACK",
    "TERM",
    "Broker",
    "BrokerArgumentError",
    "BrokerClosedError",
    "BrokerError",
    "BrokerMessage",
    "Handler",
    "Outcome",
    "OutcomeKind",
    "SubscriptionHandle",
    "nack",
    "run_handler",
    "validate_concurrency",
    "validate_data",
    "validate_group",
    "validate_handler",
    "validate_message_id",
    "validate_metadata",
    "validate_topic",
]

_log = logging.getLogger(__name__)

_TOPIC = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,199}")
_GROUP = re.compile(r"[A-Za-z0-9_-]{1,100}")
_MESSAGE_ID = re.compile(r"[\x21-\x7e]{1,200}")


class BrokerError(Exception):
    """A broker operation failed. ``broker`` names the broker kind (``memory``, ``redis``,
    ``jetstream``); the message says what failed."""

    def __init__(self, broker: str, message: str) -> None:
        super().__init__(f"{broker} broker: {message}")
        self.broker = broker
        self.detail = message


class BrokerArgumentError(BrokerError, ValueError):
    """An argument or setting is invalid; the message names it and lists what is allowed."""


class BrokerClosedError(BrokerError):
    """The broker was closed; it takes no more publishes or subscriptions."""


class OutcomeKind(enum.Enum):
    ACK = "ack"
    NACK = "nack"
    TERM = "term"


@dataclass(frozen=True)
class Outcome:
    """What a handler decided. ``delay`` (seconds) only matters for NACK; ``None`` means the
    broker's default redelivery delay."""

    kind: OutcomeKind
    delay: float | None = None

    def __post_init__(self) -> None:
        if self.delay is not None and (
            not isinstance(self.delay, int | float) or not math.isfinite(self.delay)
        ):
            raise ValueError(
                f"Outcome delay must be a finite number of seconds, got {self.delay!r}"
            )
        if self.delay is not None and self.delay < 0:
            raise ValueError(f"Outcome delay must be >= 0 seconds, got {self.delay!r}")
        if self.delay is not None and self.kind is not OutcomeKind.NACK:
            raise ValueError(f"only NACK takes a delay, not {self.kind.name}")


ACK = Outcome(OutcomeKind.ACK)
TERM = Outcome(OutcomeKind.TERM)


def nack(delay: float | None = None) -> Outcome:
    """Redeliver after ``delay`` seconds (``None``: the broker's default; ``0``: at once)."""
    return Outcome(OutcomeKind.NACK, delay)


@dataclass(frozen=True)
class BrokerMessage:
    """One delivery. ``id`` is the ``message_id`` given to ``publish`` (the event id), or one the
    broker made up when none was given; it stays the same across redeliveries.
    ``delivery_count`` is 1 on the first delivery and grows with each redelivery."""

    topic: str
    data: bytes
    metadata: Mapping[str, str] = field(default_factory=lambda: MappingProxyType({}))
    id: str = ""
    delivery_count: int = 1


Handler = Callable[[BrokerMessage], Awaitable[Outcome]]


async def run_handler(handler: Handler, message: BrokerMessage, default_delay: float) -> Outcome:
    """Call ``handler``; a raise or a non-:class:`Outcome` result becomes ``nack(default_delay)``,
    and a NACK without a delay gets ``default_delay``. Cancellation passes through."""
    try:
        outcome = await handler(message)
    except Exception:
        _log.exception("handler for topic %r failed on message %r", message.topic, message.id)
        return nack(default_delay)
    if not isinstance(outcome, Outcome):
        _log.error(
            "handler for topic %r returned %r, not an Outcome; treating it as NACK",
            message.topic,
            type(outcome).__name__,
        )
        return nack(default_delay)
    if outcome.kind is OutcomeKind.NACK and outcome.delay is None:
        return nack(default_delay)
    return outcome


def validate_topic(broker: str, topic: object) -> str:
    if (
        not isinstance(topic, str)
        or not _TOPIC.fullmatch(topic)
        or topic.endswith(".")
        or ".." in topic
    ):
        raise BrokerArgumentError(
            broker,
            f"invalid topic {topic!r}: allowed are 1-200 characters of A-Z a-z 0-9 . _ -, "
            "starting with a letter or digit, with no trailing or doubled '.'",
        )
    return topic


def validate_group(broker: str, group: object) -> str:
    if not isinstance(group, str) or not _GROUP.fullmatch(group):
        raise BrokerArgumentError(
            broker, f"invalid group {group!r}: allowed are 1-100 characters of A-Z a-z 0-9 _ -"
        )
    return group


def validate_concurrency(broker: str, concurrency: object, *, ordered: bool) -> int:
    if isinstance(concurrency, bool) or not isinstance(concurrency, int) or concurrency < 1:
        raise BrokerArgumentError(
            broker, f"invalid concurrency {concurrency!r}: allowed is an int >= 1"
        )
    if ordered and concurrency != 1:
        raise BrokerArgumentError(
            broker, f"ordered delivery handles one message at a time; got concurrency={concurrency}"
        )
    return concurrency


def validate_metadata(broker: str, metadata: object) -> dict[str, str]:
    if metadata is None:
        return {}
    if not isinstance(metadata, Mapping):
        raise BrokerArgumentError(
            broker, f"invalid metadata {type(metadata).__name__}: allowed is a str -> str mapping"
        )
    for key, value in metadata.items():
        if not isinstance(key, str) or not key or not isinstance(value, str):
            raise BrokerArgumentError(
                broker,
                f"invalid metadata entry {key!r}: {value!r}: keys are non-empty str, values str",
            )
    return dict(metadata)


def validate_message_id(broker: str, message_id: object) -> str | None:
    if message_id is None:
        return None
    if not isinstance(message_id, str) or not _MESSAGE_ID.fullmatch(message_id):
        raise BrokerArgumentError(
            broker,
            f"invalid message_id {message_id!r}: allowed are 1-200 printable ASCII characters "
            "without spaces",
        )
    return message_id


def validate_data(broker: str, data: object) -> bytes:
    if not isinstance(data, bytes | bytearray | memoryview):
        raise BrokerArgumentError(
            broker, f"invalid data {type(data).__name__}: allowed are bytes-like objects"
        )
    return bytes(data)


def validate_handler(broker: str, handler: object) -> Handler:
    if not callable(handler):
        raise BrokerArgumentError(
            broker, f"invalid handler {handler!r}: allowed is an async callable"
        )
    return handler


class SubscriptionHandle(abc.ABC):
    """A running subscription."""

    @abc.abstractmethod
    async def stop(self, drain: bool = True) -> None:
        """Stop fetching. With ``drain`` wait for the running handlers to finish (and settle
        their messages); without, cancel them. Messages not acked stay with the broker and are
        redelivered to the group's other (or next) subscribers. Idempotent."""


class Broker(abc.ABC):
    """A pub/sub broker. ``kind`` names it in errors. Use as ``async with``: close on exit."""

    kind: str = "broker"

    @abc.abstractmethod
    async def publish(
        self,
        topic: str,
        data: bytes,
        metadata: Mapping[str, str] | None = None,
        *,
        message_id: str | None = None,
    ) -> None:
        """Publish ``data`` to ``topic``. Returns once the broker holds the message."""

    @abc.abstractmethod
    async def subscribe(
        self,
        topic: str,
        handler: Handler,
        *,
        group: str,
        concurrency: int | None = None,
        ordered: bool = False,
    ) -> SubscriptionHandle:
        """Deliver ``topic``'s messages to ``handler`` as member ``group``. ``concurrency``:
        handlers running at once (``None``: the broker's configured default, 1 unless set);
        ``ordered``: one at a time in publish order, a NACKed message redelivered before later
        ones (needs concurrency 1)."""

    @abc.abstractmethod
    async def close(self) -> None:
        """Stop every subscription (without draining) and release connections. Idempotent."""

    async def __aenter__(self) -> Self:
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.close()
