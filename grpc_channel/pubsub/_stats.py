"""Delivery counters of the pub/sub runtime: a frozen snapshot type and the recorder behind it.

Each count is kept twice: in plain integers (read as a :class:`RuntimeStats` snapshot) and as an
OpenTelemetry counter of the meter ``grpc_channel.pubsub`` named ``pubsub.runtime.<field>``, with
the attributes ``pubsub`` and ``topic``. Without an SDK meter provider the OpenTelemetry API hands
out no-op instruments, so recording costs a method call.
"""

from __future__ import annotations

from dataclasses import dataclass, fields
from typing import Final

from opentelemetry import metrics

__all__ = ["METER_NAME", "RuntimeStats", "StatsRecorder"]

METER_NAME: Final = "grpc_channel.pubsub"
"""The OpenTelemetry meter the runtime records its counters with."""

_DESCRIPTIONS: Final = {
    "delivered": "events the app answered SUCCESS (acked)",
    "retried": "extra delivery attempts made after a failed one",
    "dead_lettered": "messages forwarded to their subscription's dead-letter topic",
    "dropped": "events acked without delivery: the app answered DROP or UNIMPLEMENTED",
    "unrouted": "events no routing rule matched (acked without delivery)",
    "nacked": "messages handed back to the broker for redelivery",
    "failed_deliveries": "delivery attempts that failed: RETRY, an unknown status, a gRPC error",
}


@dataclass(frozen=True)
class RuntimeStats:
    """Counters since the runtime was built (all start at 0).

    - ``delivered``: events the app answered SUCCESS (or with an empty response); acked.
    - ``retried``: extra attempts, after a failed one, within the subscription's retry policy.
    - ``dead_lettered``: messages published to the dead-letter topic (after retries, a DROP, or
      no matching route).
    - ``dropped``: events acked because the app answered DROP or UNIMPLEMENTED.
    - ``unrouted``: events that matched no routing rule and had no default route; acked.
    - ``nacked``: messages given back to the broker (retries exhausted without a dead-letter
      topic, shutdown during a backoff, an internal error, a failed dead-letter publish).
    - ``failed_deliveries``: delivery attempts that failed (each one counts).
    """

    delivered: int = 0
    retried: int = 0
    dead_lettered: int = 0
    dropped: int = 0
    unrouted: int = 0
    nacked: int = 0
    failed_deliveries: int = 0


_FIELDS: Final = tuple(f.name for f in fields(RuntimeStats))


class StatsRecorder:
    """Counts into integers and OpenTelemetry counters. Used from one event loop (no locking)."""

    def __init__(self, meter_provider: metrics.MeterProvider | None = None) -> None:
        # None: the global provider (a no-op until an SDK sets one).
        meter = metrics.get_meter(METER_NAME, meter_provider=meter_provider)
        self._counts = dict.fromkeys(_FIELDS, 0)
        self._instruments = {
            name: meter.create_counter(
                f"pubsub.runtime.{name}", unit="{message}", description=_DESCRIPTIONS[name]
            )
            for name in _FIELDS
        }

    def add(self, name: str, pubsub: str, topic: str, amount: int = 1) -> None:
        """Add ``amount`` to counter ``name`` (a :class:`RuntimeStats` field)."""
        self._counts[name] += amount
        self._instruments[name].add(amount, {"pubsub": pubsub, "topic": topic})

    def snapshot(self) -> RuntimeStats:
        return RuntimeStats(**self._counts)
