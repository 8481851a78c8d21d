"""An app's pub/sub subscriptions: what ``@app.subscribe`` registers, what
``ListTopicSubscriptions`` reports, and which handler an ``OnTopicEvent`` goes to.

Registrations for the same ``(pubsub, topic)`` build one ``TopicSubscription``:

- a handler with ``match`` (a CEL expression, evaluated by Dapr) and ``route`` adds the rule
  ``TopicRule{match, path=route}``. Rules are listed by ``priority`` (lower first, default 0), then
  in declaration order; Dapr tries them in that order and delivers with ``path`` set to the first
  that matches. ``match`` without ``route`` is refused (the route is how the event comes back);
  ``priority`` without ``match`` too (only rules are ordered);
- a handler without ``match`` is the topic's default handler; its ``route``, if any, becomes
  ``routes.default``. At most one per topic.
- ``metadata`` and ``dead_letter_topic`` may be given on any of the registrations; giving
  different values on two of them is refused rather than silently picking one.

Dispatch (:meth:`Subscriptions.handler_for`): an empty ``path`` or the default route goes to the
default handler, a rule's path to that rule's handler; anything else is unknown (``None``).
A second handler for the same ``(pubsub, topic, route)`` raises :class:`DuplicateRouteError`.
"""

from __future__ import annotations

import dataclasses
import itertools
from collections.abc import Callable, Mapping
from typing import Any, TypeAlias

from grpc_channel.app.errors import DuplicateRouteError, RegistrationError
from grpc_channel.app.event import TopicEvent
from grpc_channel.pubsub.routing import RouteError, Router, Rule
from grpc_channel.v1 import appcallback_pb2

__all__ = ["Subscriptions", "TopicHandler"]

TopicHandler: TypeAlias = Callable[[TopicEvent], Any]
"""A topic handler: takes the :class:`TopicEvent`, returns a status or ``None`` (or an awaitable
of one, for ``async def`` handlers)."""


@dataclasses.dataclass
class _Rule:
    priority: int
    order: int
    match: str
    path: str
    handler: TopicHandler


@dataclasses.dataclass
class _Topic:
    pubsub: str
    topic: str
    metadata: dict[str, str] | None = None
    dead_letter_topic: str | None = None
    default_route: str = ""
    default_handler: TopicHandler | None = None
    rules: list[_Rule] = dataclasses.field(default_factory=list)

    def routes(self) -> set[str]:
        taken = {rule.path for rule in self.rules}
        if self.default_handler is not None and self.default_route:
            taken.add(self.default_route)
        return taken


def _name(what: str, value: object) -> str:
    if not isinstance(value, str) or not value:
        raise RegistrationError(f"{what} must be a non-empty str, got {value!r}")
    return value


def _metadata(value: object) -> dict[str, str] | None:
    if value is None:
        return None
    if not isinstance(value, Mapping) or not all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    ):
        raise RegistrationError(
            f"subscription metadata must be a mapping of str to str, got {value!r}"
        )
    return dict(value)


class Subscriptions:
    """The registered subscriptions, in registration order of their ``(pubsub, topic)``."""

    def __init__(self) -> None:
        self._topics: dict[tuple[str, str], _Topic] = {}
        self._order = itertools.count()

    def add(
        self,
        pubsub: str,
        topic: str,
        handler: TopicHandler,
        *,
        metadata: Mapping[str, str] | None = None,
        dead_letter_topic: str | None = None,
        match: str | None = None,
        route: str | None = None,
        priority: int | None = None,
    ) -> None:
        """Register ``handler`` (see the module docstring). Raises :class:`RegistrationError`
        naming the bad argument, :class:`DuplicateRouteError` for a taken route."""
        pubsub = _name("pubsub", pubsub)
        topic = _name("topic", topic)
        if not callable(handler):
            raise RegistrationError(f"a topic handler must be callable, got {handler!r}")
        wanted_metadata = _metadata(metadata)
        if dead_letter_topic is not None:
            _name("dead_letter_topic", dead_letter_topic)
        if route is not None:
            _name("route", route)
        if match is not None:
            _name("match", match)
            if route is None:
                raise RegistrationError(
                    f"pubsub {pubsub!r} topic {topic!r}: match {match!r} needs a route, the path"
                    " Dapr delivers the matching events with"
                )
            try:  # refused here, where the author sees it, not by the runtime at delivery
                Router(pubsub, topic, [Rule(match, route)])
            except RouteError as exc:
                raise RegistrationError(str(exc)) from None
        if priority is not None:
            if match is None:
                raise RegistrationError(
                    f"pubsub {pubsub!r} topic {topic!r}: priority orders rules and needs a match"
                )
            if not isinstance(priority, int) or isinstance(priority, bool):
                raise RegistrationError(f"priority must be an int, got {priority!r}")

        entry = self._topics.get((pubsub, topic)) or _Topic(pubsub, topic)
        # Check everything before changing anything, so a refused registration leaves no trace.
        if route is not None and route in entry.routes():
            raise DuplicateRouteError(pubsub, topic, route)
        if match is None and entry.default_handler is not None:
            raise DuplicateRouteError(pubsub, topic, "")
        for what, old, new in (
            ("metadata", entry.metadata, wanted_metadata),
            ("dead_letter_topic", entry.dead_letter_topic, dead_letter_topic),
        ):
            if old is not None and new is not None and old != new:
                raise RegistrationError(
                    f"pubsub {pubsub!r} topic {topic!r}: {what} {new!r} differs from {old!r}"
                    " given by an earlier handler of the same topic; give it once"
                )

        if wanted_metadata is not None:
            entry.metadata = wanted_metadata
        if dead_letter_topic is not None:
            entry.dead_letter_topic = dead_letter_topic
        if match is None:
            entry.default_handler = handler
            entry.default_route = route or ""
        else:
            assert route is not None
            entry.rules.append(_Rule(priority or 0, next(self._order), match, route, handler))
            entry.rules.sort(key=lambda rule: (rule.priority, rule.order))
        self._topics[(pubsub, topic)] = entry

    def handler_for(self, pubsub: str, topic: str, path: str) -> TopicHandler | None:
        """The handler for an event delivered on ``path``, or ``None`` when there is none."""
        entry = self._topics.get((pubsub, topic))
        if entry is None:
            return None
        if not path or path == entry.default_route:
            return entry.default_handler
        for rule in entry.rules:
            if rule.path == path:
                return rule.handler
        return None

    def to_response(self) -> appcallback_pb2.ListTopicSubscriptionsResponse:
        """The ``ListTopicSubscriptionsResponse`` listing every subscription."""
        response = appcallback_pb2.ListTopicSubscriptionsResponse()
        for entry in self._topics.values():
            sub = response.subscriptions.add(pubsub_name=entry.pubsub, topic=entry.topic)
            sub.metadata.update(entry.metadata or {})
            if entry.dead_letter_topic:
                sub.dead_letter_topic = entry.dead_letter_topic
            sub.routes.default = entry.default_route
            for rule in entry.rules:
                sub.routes.rules.add(match=rule.match, path=rule.path)
        return response

    def __len__(self) -> int:
        return len(self._topics)
