"""The pub/sub runtime: what a Dapr sidecar does between a broker and the app's ``OnTopicEvent``.

:class:`PubSubRuntime` (asyncio) subscribes to brokers on the app's behalf, delivers each message
to the app through its :class:`~grpc_channel._async_channel.AsyncChannel`, acts on the answer, and
publishes events for the app::

    async with aio.dial("127.0.0.1:50001", with_insecure()) as channel:
        async with PubSubRuntime(channel, {"pubsub": MemoryBroker()}, app_id="checkout") as rt:
            await rt.publish("pubsub", "orders", {"id": 1})

Semantics are Dapr's, with its gaps closed:

Subscriptions
    Programmatic ones come from the app's ``ListTopicSubscriptions``, fetched by :meth:`start`
    once the app answers health checks: attempt *i* (0-based) waits up to
    ``fetch_backoff * 2**i`` seconds for the app to be ready, and a failed listing sleeps that long
    before the next attempt; after ``fetch_attempts`` attempts :class:`SubscriptionFetchError`.
    Unlike Dapr, which lists once per lifetime, they are listed again by :meth:`refresh` and by a
    background health loop (a probe every ``health_interval`` seconds) whenever the app answers
    again after being unreachable. Declarative ones (``declarative``, e.g. from
    :func:`~grpc_channel.pubsub.subscriptions.load_subscriptions`) are given; those whose
    ``scopes`` exclude ``app_id`` are ignored, and a programmatic subscription replaces a
    declarative one for the same (pubsub, topic). A subscription that is malformed, whose rule
    does not compile, whose pubsub has no broker, or that the broker refuses is refused alone
    (:attr:`PubSubRuntime.refused`, logged); the others start.

    A programmatic subscription without a default route gets :data:`IMPLICIT_ROUTE`: events no
    rule matches are delivered with an empty ``path``, which a gRPC app routes by (pubsub, topic)
    to its topic handler. Dapr does this only for a subscription with no routes at all and skips
    such events otherwise, so a dapr SDK App's default handler next to a rule never saw them.
    Declarative subscriptions keep "no default route": such events are unrouted.

Delivery
    One broker subscription per subscription, group ``app_id``, with ``concurrency`` handlers at
    once (``ordered``: one at a time in publish order; concurrency is then 1). A message that is
    not a CloudEvent (``rawPayload``) is wrapped as Dapr wraps raw payloads: the bytes as data,
    content type ``application/octet-stream``. The subscription's router (compiled once) picks the
    path; no path: the message is acked, counted ``unrouted``, and published to the dead-letter
    topic if there is one. The event goes to ``OnTopicEvent`` with the call timeout
    ``delivery_timeout`` and the message's metadata as gRPC metadata (keys gRPC cannot carry are
    left out); the channel adds ``dapr-api-token`` itself.

Outcomes
    SUCCESS (or an empty response): ack. RETRY, an unknown status, or any gRPC error but
    UNIMPLEMENTED (the delivery timeout's DEADLINE_EXCEEDED included): delivered again in-process
    per the subscription's :class:`~grpc_channel.pubsub.retry.RetryPolicy` (from its metadata),
    then published to the dead-letter topic (the original bytes and metadata, same pubsub, same
    message id) and acked if there is one, else nacked for the broker to redeliver. DROP: ack, and
    to the dead-letter topic if there is one. UNIMPLEMENTED: ack (dropped) with a warning. An
    error inside the runtime never loses a message: nack. A dead-letter publish that fails: nack.
    An event whose extensions a ``TopicEventRequest`` cannot carry (a number beyond a double) is
    never delivered: dead-lettered if there is a dead-letter topic, else nacked (and logged).

App down
    While the app does not answer health probes, no delivery attempt is made: a handler holds
    its message (the others wait at the broker) until a probe answers again, then delivery
    resumes by itself and the subscriptions are listed again. A delivery that fails with
    UNAVAILABLE triggers a probe at once: no answer means the app is down, and that attempt
    counts against neither the retry policy nor the stats (so nothing is retried to exhaustion
    or dead-lettered because the app is down); an answer means the app itself said UNAVAILABLE,
    an ordinary failed attempt. Between probes (``health_interval``) a down app is only noticed
    this way. Held messages go back to the broker on :meth:`stop`.

Shutdown
    :meth:`stop` stops fetching, lets deliveries in flight finish (up to ``drain_timeout``
    seconds, ``None``: no bound; then they are cancelled and their messages go back to the
    broker), and never dead-letters because of shutdown: a delivery waiting out a retry backoff
    gives up at once with a nack (redelivered later), not to the dead-letter topic. Idempotent.
    The channel and the brokers are the caller's: the runtime closes neither.

Stats
    :attr:`PubSubRuntime.stats` is a :class:`~grpc_channel.pubsub._stats.RuntimeStats` snapshot;
    the same counts go to OpenTelemetry counters (meter ``grpc_channel.pubsub``).

Logs name subscriptions, event ids, status codes and metadata keys, never event data, metadata
values or tokens.
"""

from __future__ import annotations

import asyncio
import functools
import json
import logging
import math
import random
from collections.abc import Awaitable, Mapping, Sequence
from dataclasses import dataclass
from types import TracebackType
from typing import Final, TypeVar

import grpc

from grpc_channel.aio import AsyncChannel
from grpc_channel.call_options import CallOption, timeout
from grpc_channel.channel import AppNotReadyError
from grpc_channel.pubsub._delivery import (
    Verdict,
    event_of,
    metadata_options,
    payload_bytes,
    verdict_of_error,
    verdict_of_response,
)
from grpc_channel.pubsub._stats import RuntimeStats, StatsRecorder
from grpc_channel.pubsub.brokers.base import (
    ACK,
    Broker,
    BrokerArgumentError,
    BrokerError,
    BrokerMessage,
    Handler,
    Outcome,
    SubscriptionHandle,
    nack,
    validate_group,
)
from grpc_channel.pubsub.cloudevents import (
    CLOUDEVENTS_CONTENT_TYPE,
    CloudEventError,
    envelope_for_publish,
    is_raw_payload,
)
from grpc_channel.pubsub.routing import RouteError, Router
from grpc_channel.pubsub.subscriptions import (
    Subscription,
    SubscriptionError,
    merge_subscriptions,
    validate_subscriptions,
)
from grpc_channel.v1 import appcallback_pb2

__all__ = [
    "IMPLICIT_ROUTE",
    "PubSubRuntime",
    "PubSubRuntimeError",
    "RuntimeStats",
    "RuntimeStoppedError",
    "SubscriptionFetchError",
    "UnknownPubSubError",
    "new_event_id",
]

_log = logging.getLogger(__name__)

_PROBE_TIMEOUT: Final = 5.0
# How long stop() waits for a step it cancelled (a fetch, a probe) to unwind: a bound, so that
# a call that ignores its cancellation cannot hold stop() forever.
_UNWIND_TIMEOUT: Final = 5.0

_T = TypeVar("_T")

# Event ids need to be unique, not secret: a version-4 UUID from ``random`` (seeded from the OS
# and reseeded after fork) rather than uuid4(), whose os.urandom() call per event cost more
# than the rest of publish() on the loaded benchmark machine.
_random_bits = random.getrandbits  # the module instance: the one reseeded after fork


# The version (4) and variant (RFC 4122) bits, set as uuid.UUID(int=..., version=4) sets them.
_UUID4_CLEAR: Final = ~((0xF000 << 64) | (0xC000 << 48))
_UUID4_SET: Final = (0x4000 << 64) | (0x8000 << 48)


def new_event_id() -> str:
    """A new CloudEvent id as :meth:`PubSubRuntime.publish` makes them: a version-4 UUID in its
    usual text form, from ``random`` (ids must be unique, not secret)."""
    # Formatted here: building a uuid.UUID object and its str() cost twice as much.
    h = f"{(_random_bits(128) & _UUID4_CLEAR) | _UUID4_SET:032x}"
    return f"{h[:8]}-{h[8:12]}-{h[12:16]}-{h[16:20]}-{h[20:]}"


IMPLICIT_ROUTE: Final = "<topic>"
"""The default route given to a programmatic subscription that lists none; events routed there
are delivered with an empty ``path``, which gRPC apps (the dapr SDK's App, ours) route by pubsub
and topic alone."""


class PubSubRuntimeError(Exception):
    """Base of the runtime's own errors."""


class SubscriptionFetchError(PubSubRuntimeError):
    """The app's subscriptions could not be listed within the allowed attempts."""


class UnknownPubSubError(PubSubRuntimeError, LookupError):
    """A publish named a pubsub the runtime has no broker for."""


class RuntimeStoppedError(PubSubRuntimeError):
    """The runtime is stopped (or was never started where that matters)."""


def _positive(name: str, value: object, *, allow_zero: bool = False) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise ValueError(f"{name} must be a finite number of seconds, got {value!r}")
    if value < 0 or (value == 0 and not allow_zero):
        bound = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name} must be {bound} seconds, got {value!r}")
    return float(value)


def _count(name: str, value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ValueError(f"{name} must be an int >= 1, got {value!r}")
    return value


@dataclass
class _Active:
    """One running subscription: its compiled router and broker handle."""

    subscription: Subscription
    router: Router
    handle: SubscriptionHandle | None = None


class PubSubRuntime:
    """Delivers broker messages to an app and publishes for it (see the module docstring).

    ``brokers`` maps pubsub names (a component's ``metadata.name``) to brokers; ``app_id`` is the
    consumer group and the ``source`` of published events. Defaults: ``delivery_timeout`` 60 s per
    ``OnTopicEvent`` call, ``fetch_attempts`` 5 with ``fetch_backoff`` 0.5 s doubling,
    ``health_interval`` 5 s, ``concurrency`` 16 deliveries at once per subscription, ``ordered``
    off. Bad arguments raise ``ValueError`` (``TypeError`` for a wrong kind of object) naming them.
    """

    def __init__(
        self,
        channel: AsyncChannel,
        brokers: Mapping[str, Broker],
        *,
        app_id: str,
        declarative: Sequence[Subscription] = (),
        delivery_timeout: float = 60.0,
        fetch_attempts: int = 5,
        fetch_backoff: float = 0.5,
        health_interval: float = 5.0,
        concurrency: int = 16,
        ordered: bool = False,
    ) -> None:
        if not isinstance(channel, AsyncChannel):
            raise TypeError(f"channel must be an AsyncChannel, got {type(channel).__name__}")
        if not isinstance(brokers, Mapping) or not all(
            isinstance(k, str) and k and isinstance(v, Broker) for k, v in brokers.items()
        ):
            raise TypeError("brokers must map non-empty pubsub names (str) to Broker instances")
        try:
            validate_group("runtime", app_id)
        except BrokerArgumentError as exc:
            raise ValueError(f"app_id: {exc.detail}") from None
        if not all(isinstance(s, Subscription) for s in declarative):
            raise TypeError("declarative must be a sequence of Subscription")
        if not isinstance(ordered, bool):
            raise TypeError(f"ordered must be a bool, got {ordered!r}")
        self._channel = channel
        self._brokers = dict(brokers)
        self._app_id = app_id
        self._declarative = tuple(s for s in declarative if s.applies_to(app_id))
        self._delivery_timeout = _positive("delivery_timeout", delivery_timeout)
        # Built once: call options are immutable records, and building one per event shows up.
        self._timeout_option = timeout(self._delivery_timeout)
        self._fetch_attempts = _count("fetch_attempts", fetch_attempts)
        self._fetch_backoff = _positive("fetch_backoff", fetch_backoff)
        self._health_interval = _positive("health_interval", health_interval)
        self._concurrency = 1 if ordered else _count("concurrency", concurrency)
        self._ordered = ordered
        self._stats = StatsRecorder()
        self._active: dict[tuple[str, str], _Active] = {}
        self._refused: tuple[tuple[str, str], ...] = ()
        self._lock = asyncio.Lock()
        self._stopping = asyncio.Event()
        self._started = False
        self._stopped = False
        self._health_task: asyncio.Task[None] | None = None
        self._applying = False
        # Set while the app answers health probes; deliveries wait for it (see "App down").
        self._app_up = asyncio.Event()
        self._app_up.set()
        self._stale = False  # the app was down: list its subscriptions again once it is back
        self._probe_now = asyncio.Event()  # a delivery saw UNAVAILABLE: probe without waiting
        self._probing: asyncio.Future[bool] | None = None
        # Handles being stopped by a refresh; stop() drains them too if it comes meanwhile.
        self._retiring: set[SubscriptionHandle] = set()

    # -- public state ------------------------------------------------------------------------------

    @property
    def subscriptions(self) -> tuple[Subscription, ...]:
        """The subscriptions being delivered now."""
        return tuple(active.subscription for active in self._active.values())

    @property
    def refused(self) -> tuple[tuple[str, str], ...]:
        """Subscriptions refused at the last start or refresh, as (name, reason)."""
        return self._refused

    @property
    def stats(self) -> RuntimeStats:
        """A snapshot of the delivery counters."""
        return self._stats.snapshot()

    # -- lifecycle ---------------------------------------------------------------------------------

    async def start(self) -> None:
        """List the app's subscriptions, merge them with the declarative ones, and subscribe.

        Returns once every accepted subscription is subscribed. Raises
        :class:`SubscriptionFetchError` when the app could not be listed (nothing is subscribed
        then), :class:`RuntimeStoppedError` after :meth:`stop` (also when :meth:`stop` is called
        while it waits for the app: the wait ends at once), and ``RuntimeError`` when already
        started.
        """
        async with self._lock:
            if self._stopped:
                raise RuntimeStoppedError("the pub/sub runtime is stopped; build a new one")
            if self._started:
                raise RuntimeError("the pub/sub runtime is already started")
            fetched = await self._fetch()
            await self._apply(fetched)
            self._started = True
            if self._stopped:
                # stop() came while subscribing: it waits for this lock and stops them.
                raise RuntimeStoppedError("the pub/sub runtime was stopped while starting")
            self._health_task = asyncio.create_task(
                self._health_loop(), name=f"pubsub-health-{self._app_id}"
            )

    async def refresh(self) -> None:
        """List the app's subscriptions again and subscribe, unsubscribe or resubscribe what
        changed (an unchanged subscription keeps delivering). Raises
        :class:`SubscriptionFetchError` (the current subscriptions stay) and
        :class:`RuntimeStoppedError` when not running."""
        async with self._lock:
            if not self._started or self._stopped:
                raise RuntimeStoppedError("refresh() needs a started, running pub/sub runtime")
            fetched = await self._fetch()
            self._applying = True
            try:
                await self._apply(fetched)
            finally:
                self._applying = False

    async def stop(self, drain_timeout: float | None = 30.0) -> None:
        """Stop delivering (see "Shutdown" in the module docstring). Idempotent.

        A :meth:`start` or :meth:`refresh` waiting for the app ends at once (it raises
        :class:`RuntimeStoppedError`); deliveries waiting for the app to come back give their
        messages back to the broker. Every wait here is bounded except the drain itself with
        ``drain_timeout=None``.
        """
        if drain_timeout is not None:
            _positive("drain_timeout", drain_timeout, allow_zero=True)
        if self._stopped:
            return
        self._stopped = True
        self._stopping.set()  # backoffs, app waits and fetches end now
        task = self._health_task
        if task is not None:
            if not self._applying:
                # Cancelling while subscriptions are being changed could lose a broker handle;
                # a change in progress sees the stop, subscribes nothing more and returns.
                task.cancel()
            await asyncio.wait({task}, timeout=None if self._applying else _UNWIND_TIMEOUT)
            if not task.done():
                _log.error("the health loop did not end after being cancelled; leaving it")
        async with self._lock:
            handles = [a.handle for a in self._active.values() if a.handle is not None]
            handles.extend(self._retiring)
            self._active.clear()
            await self._stop_handles(handles, drain_timeout)

    async def _stop_handles(
        self, handles: Sequence[SubscriptionHandle], drain_timeout: float | None
    ) -> None:
        if not handles:
            return
        drained = asyncio.gather(*(h.stop(drain=True) for h in handles), return_exceptions=True)
        try:
            await asyncio.wait_for(drained, drain_timeout)
        except TimeoutError:
            _log.warning(
                "deliveries still running after %s s of drain; cancelling them (their messages "
                "go back to the broker)",
                drain_timeout,
            )
            await asyncio.gather(*(h.stop(drain=False) for h in handles), return_exceptions=True)

    async def __aenter__(self) -> PubSubRuntime:
        await self.start()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.stop()

    # -- publishing --------------------------------------------------------------------------------

    async def publish(
        self,
        pubsub: str,
        topic: str,
        data: bytes | str | object,
        *,
        content_type: str | None = None,
        metadata: Mapping[str, str] | None = None,
    ) -> str:
        """Publish ``data`` to ``topic`` on ``pubsub``; return the event id.

        ``data``: bytes as is, ``str`` as UTF-8 (``text/plain`` unless ``content_type`` says
        otherwise), anything else as JSON (``application/json``). It is wrapped in a CloudEvent
        (source ``app_id``) unless ``metadata`` has ``rawPayload: "true"``; with content type
        ``application/cloudevents+json`` the payload is the envelope and its own ``id`` is kept.
        The broker stores it with ``metadata`` and message id = the event id. Raises
        :class:`UnknownPubSubError`, :class:`RuntimeStoppedError` after :meth:`stop`,
        ``TypeError`` for data JSON cannot encode, :class:`CloudEventError` for a malformed
        envelope, and the broker's errors.
        """
        if self._stopped:
            raise RuntimeStoppedError("the pub/sub runtime is stopped; it publishes no more")
        broker = self._broker(pubsub)
        payload, kind = payload_bytes(data, content_type)
        event_id = new_event_id()
        envelope = envelope_for_publish(
            payload,
            source=self._app_id,
            topic=topic,
            pubsub_name=pubsub,
            data_content_type=kind,
            metadata=metadata,
            event_id=event_id,
        )
        if (
            kind is not None
            and not is_raw_payload(metadata)
            and kind.split(";", 1)[0].strip().lower() == CLOUDEVENTS_CONTENT_TYPE
        ):
            # The caller's envelope may carry its own id; that one is the event id.
            given = json.loads(envelope).get("id")
            event_id = given if isinstance(given, str) and given else event_id
        await broker.publish(topic, envelope, metadata, message_id=event_id)
        return event_id

    def _broker(self, pubsub: str) -> Broker:
        broker = self._brokers.get(pubsub)
        if broker is None:
            known = ", ".join(sorted(self._brokers)) or "none"
            raise UnknownPubSubError(f"no broker for pubsub {pubsub!r} (configured: {known})")
        return broker

    # -- subscriptions -----------------------------------------------------------------------------

    async def _or_stop(self, awaitable: Awaitable[_T]) -> _T:
        """``awaitable``'s result, unless the runtime stops first: then it is cancelled (given
        at most ``_UNWIND_TIMEOUT`` s to unwind) and :class:`RuntimeStoppedError` raised."""
        step = asyncio.ensure_future(awaitable)
        stopped = asyncio.ensure_future(self._stopping.wait())
        try:
            await asyncio.wait({step, stopped}, return_when=asyncio.FIRST_COMPLETED)
        except asyncio.CancelledError:
            step.cancel()
            raise
        finally:
            stopped.cancel()
        if not step.done():
            step.cancel()
            await asyncio.wait({step}, timeout=_UNWIND_TIMEOUT)
            if step.done() and not step.cancelled():
                step.exception()  # retrieved: a late failure is not "never retrieved" noise
            raise RuntimeStoppedError("the pub/sub runtime is stopping")
        return step.result()

    async def _fetch(self) -> tuple[list[Subscription], list[tuple[str, str]]]:
        """The app's programmatic subscriptions, with bounded retries (module docstring).
        Raises :class:`RuntimeStoppedError` as soon as :meth:`stop` is called."""
        wait = self._fetch_backoff
        last = "no attempt made"
        for attempt in range(1, self._fetch_attempts + 1):
            if self._stopping.is_set():
                raise RuntimeStoppedError("the pub/sub runtime is stopping")
            try:
                await self._or_stop(self._channel.wait_until_ready(wait))
                replies = await self._or_stop(
                    self._channel.list_topic_subscriptions(timeout(max(wait, 1.0)))
                )
                return self._parse_programmatic(replies)
            except AppNotReadyError:
                last = f"the app was not ready within {wait:g} s"
            except grpc.RpcError as exc:
                last = f"ListTopicSubscriptions failed with {exc.code()}"
                if await self._stop_within(wait):
                    raise RuntimeStoppedError("the pub/sub runtime is stopping") from None
            _log.warning(
                "listing the app's subscriptions, attempt %d of %d: %s",
                attempt,
                self._fetch_attempts,
                last,
            )
            wait *= 2
        raise SubscriptionFetchError(
            f"could not list the app's subscriptions in {self._fetch_attempts} attempts: {last}"
        )

    @staticmethod
    def _parse_programmatic(
        replies: Sequence[appcallback_pb2.TopicSubscription],
    ) -> tuple[list[Subscription], list[tuple[str, str]]]:
        parsed: list[Subscription] = []
        refused: list[tuple[str, str]] = []
        for reply in replies:
            if not reply.routes.default:
                # gRPC's implicit default route (see IMPLICIT_ROUTE).
                reply = appcallback_pb2.TopicSubscription.FromString(reply.SerializeToString())
                reply.routes.default = IMPLICIT_ROUTE
            try:
                parsed.append(Subscription.from_proto(reply))
            except SubscriptionError as exc:
                refused.append((exc.name, str(exc)))
        return parsed, refused

    async def _apply(self, fetched: tuple[list[Subscription], list[tuple[str, str]]]) -> None:
        """Make the running subscriptions the fetched programmatic ones merged over the
        declarative ones; refusals replace :attr:`refused`."""
        programmatic, refused = fetched[0], list(fetched[1])
        merged = merge_subscriptions(self._declarative, programmatic)
        checked = validate_subscriptions(merged)
        refused.extend((name, str(error)) for name, error in checked.refused)
        wanted: dict[tuple[str, str], Subscription] = {}
        routers: dict[tuple[str, str], Router] = {}
        for subscription in checked.accepted:
            if subscription.pubsub_name not in self._brokers:
                reason = (
                    f"subscription {subscription.name!r}: no broker for pubsub "
                    f"{subscription.pubsub_name!r} (configured: "
                    f"{', '.join(sorted(self._brokers)) or 'none'})"
                )
                refused.append((subscription.name, reason))
                continue
            try:
                routers[subscription.key] = subscription.router()
            except RouteError as exc:  # validate_subscriptions compiled it; kept for safety
                refused.append((subscription.name, str(exc)))
                continue
            wanted[subscription.key] = subscription

        # Stop what went away or changed before subscribing its replacement.
        outgoing = [
            key for key, active in self._active.items() if wanted.get(key) != active.subscription
        ]
        handles = [h for key in outgoing if (h := self._active.pop(key).handle) is not None]
        self._retiring.update(handles)
        try:
            await self._or_stop(self._stop_handles(handles, self._delivery_timeout))
        except RuntimeStoppedError:
            return  # stop() drains the retiring handles with its own drain_timeout
        self._retiring.difference_update(handles)

        for key, subscription in wanted.items():
            if key in self._active:
                continue
            if self._stopping.is_set():
                break  # stop() is waiting to stop what is active; subscribe nothing more
            active = _Active(subscription, routers[key])
            try:
                active.handle = await self._brokers[subscription.pubsub_name].subscribe(
                    subscription.topic,
                    self._handler_for(active),
                    group=self._app_id,
                    concurrency=self._concurrency,
                    ordered=self._ordered,
                )
            except BrokerError as exc:
                refused.append((subscription.name, f"subscription {subscription.name!r}: {exc}"))
                continue
            self._active[key] = active
        for _name, reason in refused:
            _log.error("subscription refused: %s", reason)
        self._refused = tuple(refused)
        _log.info(
            "subscribed to %s",
            ", ".join(f"{p}/{t}" for p, t in self._active) or "nothing",
        )

    async def _health_loop(self) -> None:
        """Probe the app every ``health_interval`` (at once when a delivery found it
        unreachable); pause deliveries while it does not answer; when it answers again, resume
        them and list its subscriptions again."""
        while True:
            if await self._stop_within(self._health_interval, wake=self._probe_now):
                return
            self._probe_now.clear()
            try:
                up = await self._or_stop(self._probe())
            except RuntimeStoppedError:
                return
            if not up:
                self._app_down()
                continue
            if not self._app_up.is_set():
                _log.info("the app answers again; resuming deliveries")
                self._app_up.set()
            if self._stale:
                _log.info("listing the app's subscriptions again")
                try:
                    await self.refresh()
                except RuntimeStoppedError:
                    return
                except PubSubRuntimeError as exc:
                    _log.warning("refreshing subscriptions failed: %s", exc)
                    continue  # still stale: try again after the next probe
                except Exception:
                    _log.exception("refreshing subscriptions failed")
                    continue
                self._stale = False

    def _app_down(self) -> None:
        if self._app_up.is_set():
            _log.warning(
                "the app does not answer health probes; deliveries pause and its subscriptions "
                "are listed again when it does"
            )
            self._app_up.clear()
        self._stale = True

    def _probe(self) -> asyncio.Future[bool]:
        """One health probe shared by everyone asking while it runs (the loop, deliveries)."""
        if self._probing is None or self._probing.done():
            self._probing = asyncio.ensure_future(
                self._channel.health_probe(min(self._health_interval, _PROBE_TIMEOUT))
            )
        return self._probing

    async def _app_unreachable(self) -> bool:
        """After an UNAVAILABLE delivery: True when the app does not answer a health probe
        either (it is down: deliveries pause), False when it does (the app itself said
        UNAVAILABLE: an ordinary failed attempt)."""
        if not self._app_up.is_set():
            return True
        try:
            up = await self._or_stop(asyncio.shield(self._probe()))
        except RuntimeStoppedError:
            return False  # the caller's backoff sees the stop and nacks
        if up:
            return False
        self._app_down()
        self._probe_now.set()  # the loop probes until it answers, without the usual pause
        return True

    async def _until_app_up(self) -> bool:
        """Wait while the app is down; False (at once) when the runtime stops first."""
        if self._app_up.is_set():
            return not self._stopping.is_set()
        try:
            await self._or_stop(self._app_up.wait())
        except RuntimeStoppedError:
            return False
        return True

    # -- delivery ----------------------------------------------------------------------------------

    def _handler_for(self, active: _Active) -> Handler:
        # A partial, not a wrapping coroutine: one coroutine less per message.
        return functools.partial(self._handle, active.subscription, active.router)

    async def _handle(
        self, subscription: Subscription, router: Router, message: BrokerMessage
    ) -> Outcome:
        pubsub, topic = subscription.key
        if self._stopping.is_set():
            # Fetched while stopping (the broker's loop ends just after): back untouched, and
            # not counted, since no delivery began.
            return nack(0.0)
        try:
            return await self._deliver(subscription, router, message)
        except asyncio.CancelledError:
            raise  # the broker puts the message back
        except Exception:
            _log.exception(
                "internal error delivering message %r of %s/%s; nacking it",
                message.id,
                pubsub,
                topic,
            )
            self._stats.add("nacked", pubsub, topic)
            return nack()

    async def _deliver(
        self, subscription: Subscription, router: Router, message: BrokerMessage
    ) -> Outcome:
        pubsub, topic = subscription.key
        event = event_of(message, pubsub, topic)
        decision = router.decide(event)
        for failure in decision.failures:
            _log.debug(
                "rule %r of %s/%s skipped for event %r: %s",
                failure.rule.match,
                pubsub,
                topic,
                event.id,
                failure.error,
            )
        if decision.path is None:
            self._stats.add("unrouted", pubsub, topic)
            if subscription.dead_letter_topic:
                return await self._dead_letter(subscription, message)
            return ACK
        try:
            request = event.to_topic_event_request(
                "" if decision.path == IMPLICIT_ROUTE else decision.path
            )
        except CloudEventError as exc:
            _log.error("event %r of %s/%s cannot be delivered: %s", event.id, pubsub, topic, exc)
            return await self._exhausted(subscription, message)
        extra = metadata_options(message.metadata)
        # Without metadata of its own, the deadline goes as grpcio's timeout keyword: a call with
        # no call options skips building the per-call options record in the channel.
        options: tuple[CallOption, ...] = (self._timeout_option, *extra) if extra else ()
        seconds = None if extra else self._delivery_timeout
        policy = subscription.retry
        attempt = 1
        while True:
            # The app is up and the runtime running, the usual case, costs no await.
            up = self._app_up.is_set() and not self._stopping.is_set()
            if not up and not await self._until_app_up():
                # Stopping while the app is down: back to the broker, never dead-lettered.
                self._stats.add("nacked", pubsub, topic)
                return nack(0.0)
            # The call inline rather than in a helper coroutine: one coroutine less per event.
            try:
                response = await self._channel.on_topic_event(request, *options, timeout=seconds)
            except grpc.RpcError as exc:
                after_error = await self._failed_attempt(exc, subscription, event.id)
                if after_error is None:
                    continue  # the app is down: this attempt does not count; wait for it
                verdict = after_error
            else:
                verdict = verdict_of_response(response)
            if verdict is Verdict.SUCCESS:
                self._stats.add("delivered", pubsub, topic)
                return ACK
            if verdict is Verdict.DROP:
                self._stats.add("dropped", pubsub, topic)
                if subscription.dead_letter_topic:
                    return await self._dead_letter(subscription, message)
                return ACK
            if verdict is Verdict.UNIMPLEMENTED:
                _log.warning(
                    "the app has no handler for %s/%s path %r (UNIMPLEMENTED); event %r dropped",
                    pubsub,
                    topic,
                    decision.path,
                    event.id,
                )
                self._stats.add("dropped", pubsub, topic)
                return ACK
            self._stats.add("failed_deliveries", pubsub, topic)
            if not policy.should_retry(attempt):
                return await self._exhausted(subscription, message)
            if await self._stop_within(policy.delay(attempt)):
                # Shutting down: the broker redelivers it later; never dead-letter for that.
                self._stats.add("nacked", pubsub, topic)
                return nack(0.0)
            self._stats.add("retried", pubsub, topic)
            attempt += 1

    async def _failed_attempt(
        self, exc: grpc.RpcError, subscription: Subscription, event_id: str
    ) -> Verdict | None:
        """The verdict of an ``OnTopicEvent`` call that raised ``exc``; None when it failed
        because the app is down (UNAVAILABLE and no answer to a health probe either)."""
        code = exc.code()
        if code is grpc.StatusCode.UNAVAILABLE and await self._app_unreachable():
            return None
        if code is not grpc.StatusCode.UNIMPLEMENTED:
            _log.info("delivering event %r to %s failed with %s", event_id, subscription.name, code)
        return verdict_of_error(code)

    async def _stop_within(self, seconds: float, wake: asyncio.Event | None = None) -> bool:
        """Wait ``seconds`` (less if ``wake`` is set meanwhile); True (at once) when the runtime
        is stopping."""
        if self._stopping.is_set():
            return True
        if seconds <= 0 or (wake is not None and wake.is_set()):
            return False
        waiters = {asyncio.ensure_future(self._stopping.wait())}
        if wake is not None:
            waiters.add(asyncio.ensure_future(wake.wait()))
        try:
            await asyncio.wait(waiters, timeout=seconds, return_when=asyncio.FIRST_COMPLETED)
        finally:
            for waiter in waiters:
                waiter.cancel()
        return self._stopping.is_set()

    async def _exhausted(self, subscription: Subscription, message: BrokerMessage) -> Outcome:
        if subscription.dead_letter_topic:
            return await self._dead_letter(subscription, message)
        self._stats.add("nacked", *subscription.key)
        return nack()

    async def _dead_letter(self, subscription: Subscription, message: BrokerMessage) -> Outcome:
        """Publish the original message to the dead-letter topic; ack, or nack if that fails."""
        pubsub, topic = subscription.key
        try:
            await self._brokers[pubsub].publish(
                subscription.dead_letter_topic,
                message.data,
                message.metadata,
                message_id=message.id,
            )
        except BrokerError as exc:
            _log.error(
                "dead-lettering message %r of %s/%s to %r failed (%s); nacking it",
                message.id,
                pubsub,
                topic,
                subscription.dead_letter_topic,
                exc,
            )
            self._stats.add("nacked", pubsub, topic)
            return nack()
        self._stats.add("dead_lettered", pubsub, topic)
        return ACK
