"""Subscriptions: the value type, its ``TopicSubscription`` wire form, and declarative files.

A :class:`Subscription` says which events of ``pubsub_name``/``topic`` an app receives and on which
path (``routes``), with its metadata, dead-letter topic, bulk delivery settings and retry policy.
Programmatic subscriptions come from the app (``ListTopicSubscriptions``, see :meth:`from_proto`);
declarative ones from files in Dapr's ``Subscription`` shape (:func:`load_subscriptions`)::

    apiVersion: dapr.io/v2alpha1          # or dapr.io/v1alpha1 with spec.route: /path
    kind: Subscription
    metadata: {name: orders}
    spec:
      pubsubname: pubsub
      topic: orders
      routes:
        rules: [{match: 'event.data.price > 100', path: /big}]
        default: /orders
      metadata: {retryMaxAttempts: "3"}
      deadLetterTopic: orders-dead
      bulkSubscribe: {enabled: true, maxMessagesCount: 100, maxAwaitDurationMs: 40}
    scopes: [checkout]                    # app ids that get it; absent or empty = every app

One file may hold several documents (YAML ``---`` separators; a JSON file may hold one object or a
list of them); documents of another ``kind`` (Components in the same folder) are ignored. A
directory loads every ``*.yaml``, ``*.yml`` and ``*.json`` file in it, in name order.

Validation is per subscription: one that is malformed, or whose rule does not compile, is refused
alone with a :class:`SubscriptionError` naming it (``metadata.name``, else ``file#index``), and the
others are kept; loaders return ``(accepted, refused)``. Two declarative subscriptions for the same
(pubsub, topic): the later one is refused. :func:`merge_subscriptions` lets a programmatic
subscription replace a declarative one for the same (pubsub, topic).

The retry policy is read from the metadata (keys in :mod:`grpc_channel.pubsub.retry`), so the wire
form carries it; :meth:`Subscription.with_retry` writes a policy into the metadata.
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, Final, Literal, NamedTuple

import yaml

from grpc_channel.pubsub.retry import RetryPolicy, RetryPolicyError
from grpc_channel.pubsub.routing import RouteError, Router, Rule
from grpc_channel.v1 import appcallback_pb2

__all__ = [
    "API_VERSION_V1ALPHA1",
    "API_VERSION_V2ALPHA1",
    "SUBSCRIPTION_FILE_SUFFIXES",
    "BulkSubscribe",
    "LoadResult",
    "Routes",
    "Subscription",
    "SubscriptionError",
    "SubscriptionSource",
    "load_subscriptions",
    "merge_subscriptions",
    "parse_subscription_documents",
    "validate_subscriptions",
]

API_VERSION_V1ALPHA1: Final = "dapr.io/v1alpha1"
API_VERSION_V2ALPHA1: Final = "dapr.io/v2alpha1"
SUBSCRIPTION_FILE_SUFFIXES: Final = (".yaml", ".yml", ".json")
"""File name endings a directory load reads."""

_INT32_MAX: Final = 2**31 - 1

SubscriptionSource = Literal["programmatic", "declarative"]


class SubscriptionError(ValueError):
    """A subscription is invalid; ``name`` identifies it (its name, or ``pubsub/topic``)."""

    def __init__(self, name: str, problem: str) -> None:
        super().__init__(f"subscription {name!r}: {problem}")
        self.name = name
        self.problem = problem


@dataclass(frozen=True)
class Routes:
    """Routing rules in order, then the ``default`` path (``""`` = none)."""

    rules: tuple[Rule, ...] = ()
    default: str = ""


@dataclass(frozen=True)
class BulkSubscribe:
    """Bulk delivery settings; a count or duration of 0 leaves the choice to the runtime."""

    enabled: bool = False
    max_messages_count: int = 0
    max_await_duration_ms: int = 0


def _check_bulk(name: str, bulk: BulkSubscribe) -> None:
    if not isinstance(bulk.enabled, bool):
        problem = f"bulk_subscribe.enabled must be a bool, got {bulk.enabled!r}"
        raise SubscriptionError(name, problem)
    for attribute in ("max_messages_count", "max_await_duration_ms"):
        value = getattr(bulk, attribute)
        if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= _INT32_MAX:
            raise SubscriptionError(
                name,
                f"bulk_subscribe.{attribute} must be an integer from 0 to {_INT32_MAX}"
                f", got {value!r}",
            )


@dataclass(frozen=True)
class Subscription:
    """One subscription (see the module docstring).

    ``name`` defaults to ``"pubsub_name/topic"``. ``retry`` is not set directly: it is derived from
    ``metadata`` (use :meth:`with_retry`), which keeps the wire form lossless. Construction checks
    the fields (names non-empty, metadata string to string, a route present, bulk counts in int32,
    retry metadata valid) and raises :class:`SubscriptionError`; rule expressions are compiled by
    :func:`validate_subscriptions` / :class:`~grpc_channel.pubsub.routing.Router`.
    """

    pubsub_name: str
    topic: str
    routes: Routes
    metadata: Mapping[str, str] = field(default_factory=dict)
    dead_letter_topic: str = ""
    bulk_subscribe: BulkSubscribe | None = None
    source: SubscriptionSource = "programmatic"
    name: str = ""
    scopes: tuple[str, ...] = ()
    retry: RetryPolicy = field(init=False, compare=False)

    def __post_init__(self) -> None:
        label = self.name or f"{self.pubsub_name}/{self.topic}"
        for attribute in ("pubsub_name", "topic"):
            value = getattr(self, attribute)
            if not isinstance(value, str) or not value:
                raise SubscriptionError(label, f"{attribute} must be a non-empty string")
        if not self.name:
            object.__setattr__(self, "name", label)
        if not all(isinstance(k, str) and isinstance(v, str) for k, v in self.metadata.items()):
            raise SubscriptionError(label, "metadata must map strings to strings")
        object.__setattr__(self, "metadata", dict(self.metadata))
        if not self.routes.rules and not self.routes.default:
            raise SubscriptionError(label, "has no route (neither rules nor a default path)")
        if self.source not in ("programmatic", "declarative"):
            raise SubscriptionError(
                label, f"source must be 'programmatic' or 'declarative', got {self.source!r}"
            )
        if self.bulk_subscribe is not None:
            _check_bulk(label, self.bulk_subscribe)
        try:
            object.__setattr__(self, "retry", RetryPolicy.from_metadata(self.metadata))
        except RetryPolicyError as exc:
            raise SubscriptionError(label, str(exc)) from None

    @property
    def key(self) -> tuple[str, str]:
        """(pubsub_name, topic): what identifies a subscription when merging."""
        return (self.pubsub_name, self.topic)

    def applies_to(self, app_id: str) -> bool:
        """True when ``app_id`` is in ``scopes``, or ``scopes`` is empty."""
        return not self.scopes or app_id in self.scopes

    def with_retry(self, policy: RetryPolicy) -> Subscription:
        """A copy whose metadata sets ``policy``."""
        return replace(self, metadata={**self.metadata, **policy.to_metadata()})

    def router(self) -> Router:
        """The compiled routes; raises :class:`RouteError` for a rule that fails to compile."""
        return Router(self.pubsub_name, self.topic, self.routes.rules, self.routes.default)

    def to_proto(self) -> appcallback_pb2.TopicSubscription:
        """The ``TopicSubscription`` wire form (``name``, ``scopes``, ``source`` do not travel)."""
        message = appcallback_pb2.TopicSubscription(
            pubsub_name=self.pubsub_name,
            topic=self.topic,
            metadata=self.metadata,
            routes=appcallback_pb2.TopicRoutes(
                rules=[
                    appcallback_pb2.TopicRule(match=r.match, path=r.path) for r in self.routes.rules
                ],
                default=self.routes.default,
            ),
            dead_letter_topic=self.dead_letter_topic,
        )
        if self.bulk_subscribe is not None:
            message.bulk_subscribe.CopyFrom(
                appcallback_pb2.BulkSubscribeConfig(
                    enabled=self.bulk_subscribe.enabled,
                    max_messages_count=self.bulk_subscribe.max_messages_count,
                    max_await_duration_ms=self.bulk_subscribe.max_await_duration_ms,
                )
            )
        return message

    @classmethod
    def from_proto(
        cls,
        message: appcallback_pb2.TopicSubscription,
        source: SubscriptionSource = "programmatic",
    ) -> Subscription:
        """Read a ``TopicSubscription``; raises :class:`SubscriptionError` when it is invalid."""
        bulk = None
        if message.HasField("bulk_subscribe"):
            bulk = BulkSubscribe(
                enabled=message.bulk_subscribe.enabled,
                max_messages_count=message.bulk_subscribe.max_messages_count,
                max_await_duration_ms=message.bulk_subscribe.max_await_duration_ms,
            )
        return cls(
            pubsub_name=message.pubsub_name,
            topic=message.topic,
            routes=Routes(
                rules=tuple(Rule(r.match, r.path) for r in message.routes.rules),
                default=message.routes.default,
            ),
            metadata=dict(message.metadata),
            dead_letter_topic=message.dead_letter_topic,
            bulk_subscribe=bulk,
            source=source,
        )


class LoadResult(NamedTuple):
    """Subscriptions kept, and those refused as ``(name, error)``."""

    accepted: list[Subscription]
    refused: list[tuple[str, SubscriptionError]]


def _expect(label: str, where: str, value: Any, kind: type | tuple[type, ...]) -> Any:
    if not isinstance(value, kind) or (isinstance(value, bool) and kind is int):
        names = kind.__name__ if isinstance(kind, type) else " or ".join(k.__name__ for k in kind)
        raise SubscriptionError(label, f"{where} must be {names}, got {value!r}")
    return value


def _document_name(document: Mapping[str, Any], fallback: str) -> str:
    meta = document.get("metadata")
    name = meta.get("name") if isinstance(meta, Mapping) else None
    return name if isinstance(name, str) and name else fallback


def _string_map(label: str, where: str, value: Any) -> dict[str, str]:
    if value is None:
        return {}
    mapping = _expect(label, where, value, dict)
    result: dict[str, str] = {}
    for key, item in mapping.items():
        if not isinstance(key, str) or not isinstance(item, str):
            raise SubscriptionError(
                label,
                f"{where} must map strings to strings; {key!r}: {item!r} is not"
                " (quote numbers and booleans in YAML)",
            )
        result[key] = item
    return result


def _routes_of(label: str, api_version: str, spec: Mapping[str, Any]) -> Routes:
    if api_version == API_VERSION_V1ALPHA1:
        route = spec.get("route", "")
        return Routes(default=_expect(label, "spec.route", route, str))
    raw = _expect(label, "spec.routes", spec.get("routes", {}), dict)
    rules = []
    for index, item in enumerate(_expect(label, "spec.routes.rules", raw.get("rules", []), list)):
        where = f"spec.routes.rules[{index}]"
        entry = _expect(label, where, item, dict)
        match = _expect(label, f"{where}.match", entry.get("match", ""), str)
        path = _expect(label, f"{where}.path", entry.get("path", ""), str)
        if not path:
            raise SubscriptionError(label, f"{where}.path is required")
        rules.append(Rule(match, path))
    default = _expect(label, "spec.routes.default", raw.get("default", ""), str)
    return Routes(tuple(rules), default)


def _bulk_of(label: str, raw: Any) -> BulkSubscribe | None:
    if raw is None:
        return None
    bulk = _expect(label, "spec.bulkSubscribe", raw, dict)
    return BulkSubscribe(
        enabled=_expect(label, "spec.bulkSubscribe.enabled", bulk.get("enabled", False), bool),
        max_messages_count=_expect(
            label, "spec.bulkSubscribe.maxMessagesCount", bulk.get("maxMessagesCount", 0), int
        ),
        max_await_duration_ms=_expect(
            label, "spec.bulkSubscribe.maxAwaitDurationMs", bulk.get("maxAwaitDurationMs", 0), int
        ),
    )


def _from_document(document: Mapping[str, Any], label: str) -> Subscription:
    api_version = document.get("apiVersion")
    if api_version not in (API_VERSION_V1ALPHA1, API_VERSION_V2ALPHA1):
        raise SubscriptionError(
            label,
            f"apiVersion must be {API_VERSION_V1ALPHA1!r} or {API_VERSION_V2ALPHA1!r}"
            f", got {api_version!r}",
        )
    spec = _expect(label, "spec", document.get("spec"), dict)
    scopes = _expect(label, "scopes", document.get("scopes") or [], list)
    return Subscription(
        pubsub_name=_expect(label, "spec.pubsubname", spec.get("pubsubname", ""), str),
        topic=_expect(label, "spec.topic", spec.get("topic", ""), str),
        routes=_routes_of(label, api_version, spec),
        metadata=_string_map(label, "spec.metadata", spec.get("metadata")),
        dead_letter_topic=_expect(
            label, "spec.deadLetterTopic", spec.get("deadLetterTopic", ""), str
        ),
        bulk_subscribe=_bulk_of(label, spec.get("bulkSubscribe")),
        source="declarative",
        name=label,
        scopes=tuple(_expect(label, f"scopes[{i}]", s, str) for i, s in enumerate(scopes)),
    )


def validate_subscriptions(subscriptions: Iterable[Subscription]) -> LoadResult:
    """Compile every subscription's rules; refuse, alone, those that fail or repeat a key."""
    accepted: list[Subscription] = []
    refused: list[tuple[str, SubscriptionError]] = []
    seen: dict[tuple[str, str], str] = {}
    for subscription in subscriptions:
        try:
            subscription.router()
        except RouteError as exc:
            refused.append((subscription.name, SubscriptionError(subscription.name, str(exc))))
            continue
        if subscription.key in seen:
            error = SubscriptionError(
                subscription.name,
                f"{'/'.join(subscription.key)} is already subscribed by {seen[subscription.key]!r}",
            )
            refused.append((subscription.name, error))
            continue
        seen[subscription.key] = subscription.name
        accepted.append(subscription)
    return LoadResult(accepted, refused)


def parse_subscription_documents(
    documents: Iterable[Any], origin: str = "<documents>"
) -> LoadResult:
    """Turn decoded documents (dicts) into validated declarative subscriptions.

    ``origin`` names unnamed documents (``origin#index``, 0-based). Documents whose ``kind`` is not
    ``Subscription`` are ignored; the others are accepted or refused one by one.
    """
    parsed: list[Subscription] = []
    refused: list[tuple[str, SubscriptionError]] = []
    for index, document in enumerate(documents):
        fallback = f"{origin}#{index}"
        if document is None:  # an empty YAML document, e.g. a trailing ---
            continue
        if not isinstance(document, Mapping):
            kind = type(document).__name__
            refused.append(
                (fallback, SubscriptionError(fallback, f"must be a mapping, got {kind}"))
            )
            continue
        if document.get("kind") != "Subscription":
            continue
        label = _document_name(document, fallback)
        try:
            parsed.append(_from_document(document, label))
        except SubscriptionError as exc:
            refused.append((label, exc))
    result = validate_subscriptions(parsed)
    return LoadResult(result.accepted, refused + result.refused)


def _read_documents(path: Path) -> list[Any]:
    text = path.read_text(encoding="utf-8")
    if path.suffix.lower() == ".json":
        loaded = json.loads(text)
        return loaded if isinstance(loaded, list) else [loaded]
    return list(yaml.safe_load_all(text))


def _files(path: Path) -> list[Path]:
    if path.is_dir():
        return sorted(
            p
            for p in path.iterdir()
            if p.is_file() and p.suffix.lower() in SUBSCRIPTION_FILE_SUFFIXES
        )
    return [path]


def load_subscriptions(path: str | Path, *, app_id: str | None = None) -> LoadResult:
    """Load declarative subscriptions from a file, or from every matching file of a directory.

    A file that cannot be read or decoded is refused as a whole (named by its path). With
    ``app_id``, subscriptions whose ``scopes`` exclude it are left out (neither kept nor refused).
    Raises ``FileNotFoundError`` when ``path`` does not exist.
    """
    root = Path(path)
    if not root.exists():
        raise FileNotFoundError(f"no subscription file or directory at {root}")
    documents: list[tuple[str, list[Any]]] = []
    refused: list[tuple[str, SubscriptionError]] = []
    for file in _files(root):
        try:
            documents.append((str(file), _read_documents(file)))
        except (OSError, UnicodeDecodeError, ValueError, yaml.YAMLError) as exc:
            refused.append((str(file), SubscriptionError(str(file), f"cannot be read: {exc}")))
    parsed: list[Subscription] = []
    for origin, items in documents:
        result = parse_subscription_documents(items, origin)
        parsed.extend(result.accepted)
        refused.extend(result.refused)
    # Per-file validation saw each file alone; duplicates across files are caught here.
    final = validate_subscriptions(parsed)
    accepted = [s for s in final.accepted if app_id is None or s.applies_to(app_id)]
    return LoadResult(accepted, refused + final.refused)


def merge_subscriptions(
    declarative: Sequence[Subscription], programmatic: Sequence[Subscription]
) -> list[Subscription]:
    """Declarative then programmatic subscriptions, a programmatic one replacing a declarative one
    for the same (pubsub, topic); the declarative order is kept, replaced entries in place."""
    by_key = {s.key: s for s in programmatic}
    merged = [by_key.pop(s.key, s) for s in declarative]
    merged.extend(s for s in programmatic if s.key in by_key)
    return merged
