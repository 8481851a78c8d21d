"""Pub/sub brokers: an asyncio component interface with in-memory, Redis Streams and NATS
JetStream implementations, and loading them from Dapr Component files.

``RedisStreamsBroker`` needs ``redis`` and ``JetStreamBroker`` needs ``nats-py``; they are
imported on first access, so the in-memory broker works without either.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from ._settings import parse_duration
from .base import (
    ACK,
    TERM,
    Broker,
    BrokerArgumentError,
    BrokerClosedError,
    BrokerError,
    BrokerMessage,
    Handler,
    Outcome,
    OutcomeKind,
    SubscriptionHandle,
    nack,
)
from .component import (
    COMPONENT_TYPES,
    Component,
    ComponentError,
    load_component_file,
    load_components,
)
from .memory import MemoryBroker

if TYPE_CHECKING:
    from .jetstream import JetStreamBroker, JetStreamSettings
    from .redis_streams import RedisStreamsBroker, RedisStreamsSettings

__all__ = [
    "ACK",
    "COMPONENT_TYPES",
    "TERM",
    "Broker",
    "BrokerArgumentError",
    "BrokerClosedError",
    "BrokerError",
    "BrokerMessage",
    "Component",
    "ComponentError",
    "Handler",
    "JetStreamBroker",
    "JetStreamSettings",
    "MemoryBroker",
    "Outcome",
    "OutcomeKind",
    "RedisStreamsBroker",
    "RedisStreamsSettings",
    "SubscriptionHandle",
    "load_component_file",
    "load_components",
    "nack",
    "parse_duration",
]

_LAZY = {
    "JetStreamBroker": ".jetstream",
    "JetStreamSettings": ".jetstream",
    "RedisStreamsBroker": ".redis_streams",
    "RedisStreamsSettings": ".redis_streams",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    return getattr(importlib.import_module(module, __name__), name)
