"""Subscriptions: the value type, its wire form, declarative files, validation and merging."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
from dapr.proto.runtime.v1 import appcallback_pb2 as dapr_appcallback

from grpc_channel.pubsub import (
    BulkSubscribe,
    RetryPolicy,
    Routes,
    Rule,
    Subscription,
    SubscriptionError,
    load_subscriptions,
    merge_subscriptions,
    parse_subscription_documents,
    validate_subscriptions,
)
from grpc_channel.v1 import appcallback_pb2

V2 = """\
apiVersion: dapr.io/v2alpha1
kind: Subscription
metadata:
  name: orders-sub
spec:
  pubsubname: pubsub
  topic: orders
  routes:
    rules:
      - match: event.data.price > 100
        path: /big
      - match: 'event.type == "order.vip"'
        path: /vip
    default: /orders
  metadata:
    rawPayload: "false"
    retryMaxAttempts: "3"
  deadLetterTopic: orders-dead
  bulkSubscribe:
    enabled: true
    maxMessagesCount: 100
    maxAwaitDurationMs: 40
scopes:
  - checkout
"""

V1 = """\
apiVersion: dapr.io/v1alpha1
kind: Subscription
metadata:
  name: audit-sub
spec:
  pubsubname: pubsub
  topic: audit
  route: /audit
"""

COMPONENT = """\
apiVersion: dapr.io/v1alpha1
kind: Component
metadata:
  name: pubsub
spec:
  type: pubsub.redis
"""

BAD_RULE = """\
apiVersion: dapr.io/v2alpha1
kind: Subscription
metadata:
  name: broken-sub
spec:
  pubsubname: pubsub
  topic: broken
  routes:
    rules:
      - match: event.type ==
        path: /x
"""


def full_subscription() -> Subscription:
    return Subscription(
        pubsub_name="pubsub",
        topic="orders",
        routes=Routes((Rule("event.data.price > 100", "/big"), Rule("", "/all")), "/orders"),
        metadata={"rawPayload": "true"},
        dead_letter_topic="orders-dead",
        bulk_subscribe=BulkSubscribe(True, 50, 250),
    )


def test_proto_round_trip_is_lossless_and_dapr_reads_it() -> None:
    subscription = full_subscription()
    message = subscription.to_proto()
    theirs = dapr_appcallback.TopicSubscription.FromString(message.SerializeToString())
    assert (theirs.pubsub_name, theirs.topic, dict(theirs.metadata)) == (
        "pubsub",
        "orders",
        {"rawPayload": "true"},
    )
    assert [(r.match, r.path) for r in theirs.routes.rules] == [
        ("event.data.price > 100", "/big"),
        ("", "/all"),
    ]
    assert theirs.routes.default == "/orders"
    assert theirs.dead_letter_topic == "orders-dead"
    assert (
        theirs.bulk_subscribe.enabled,
        theirs.bulk_subscribe.max_messages_count,
        theirs.bulk_subscribe.max_await_duration_ms,
    ) == (True, 50, 250)
    back = Subscription.from_proto(
        appcallback_pb2.TopicSubscription.FromString(theirs.SerializeToString())
    )
    assert back == subscription
    assert back.source == "programmatic" and back.name == "pubsub/orders"


def test_without_bulk_config_the_proto_field_stays_unset() -> None:
    plain = Subscription("pubsub", "t", Routes(default="/t"))
    assert not plain.to_proto().HasField("bulk_subscribe")
    assert Subscription.from_proto(plain.to_proto()).bulk_subscribe is None


def test_retry_policy_comes_from_metadata_and_travels_on_the_wire() -> None:
    policy = RetryPolicy(max_attempts=2, base_delay=1.0, max_delay=4.0)
    subscription = Subscription("pubsub", "t", Routes(default="/t")).with_retry(policy)
    assert subscription.retry == policy
    assert Subscription.from_proto(subscription.to_proto()).retry == policy
    assert Subscription("pubsub", "t", Routes(default="/t")).retry == RetryPolicy()


@pytest.mark.parametrize(
    ("kwargs", "problem"),
    [
        ({"pubsub_name": ""}, "pubsub_name must be a non-empty string"),
        ({"topic": ""}, "topic must be a non-empty string"),
        ({"routes": Routes()}, "has no route"),
        ({"metadata": {"n": 1}}, "metadata must map strings to strings"),
        ({"bulk_subscribe": BulkSubscribe(True, -1)}, "max_messages_count"),
        ({"bulk_subscribe": BulkSubscribe(True, 1, 2**31)}, "max_await_duration_ms"),
        ({"metadata": {"retryMaxAttempts": "0"}}, "retryMaxAttempts"),
        ({"source": "magic"}, "source must be"),
    ],
)
def test_invalid_subscriptions_are_refused_by_name(kwargs: dict[str, Any], problem: str) -> None:
    fields: dict[str, Any] = {"pubsub_name": "pubsub", "topic": "t", "routes": Routes(default="/")}
    fields.update(kwargs)
    with pytest.raises(SubscriptionError) as caught:
        Subscription(**fields)
    assert problem in str(caught.value)
    assert caught.value.name in str(caught.value)


def test_v2_file_loads_every_field(tmp_path: Path) -> None:
    (tmp_path / "orders.yaml").write_text(V2)
    accepted, refused = load_subscriptions(tmp_path / "orders.yaml")
    assert refused == []
    [subscription] = accepted
    assert subscription == Subscription(
        pubsub_name="pubsub",
        topic="orders",
        routes=Routes(
            (Rule("event.data.price > 100", "/big"), Rule('event.type == "order.vip"', "/vip")),
            "/orders",
        ),
        metadata={"rawPayload": "false", "retryMaxAttempts": "3"},
        dead_letter_topic="orders-dead",
        bulk_subscribe=BulkSubscribe(True, 100, 40),
        source="declarative",
        name="orders-sub",
        scopes=("checkout",),
    )
    assert subscription.retry.max_attempts == 3


def test_a_directory_loads_yaml_yml_and_json_and_skips_other_kinds(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(V2 + "---\n" + COMPONENT + "---\n")
    (tmp_path / "b.yml").write_text(V1)
    as_json = {
        "apiVersion": "dapr.io/v1alpha1",
        "kind": "Subscription",
        "metadata": {"name": "json-sub"},
        "spec": {"pubsubname": "other", "topic": "orders", "route": "/j"},
    }
    (tmp_path / "c.json").write_text(json.dumps([as_json]))
    (tmp_path / "notes.txt").write_text("not a subscription")
    accepted, refused = load_subscriptions(tmp_path)
    assert refused == []
    assert [(s.name, s.routes.default) for s in accepted] == [
        ("orders-sub", "/orders"),
        ("audit-sub", "/audit"),
        ("json-sub", "/j"),
    ]
    assert all(s.source == "declarative" for s in accepted)


def test_a_bad_subscription_is_refused_alone(tmp_path: Path) -> None:
    (tmp_path / "subs.yaml").write_text(V1 + "---\n" + BAD_RULE + "---\n" + V2)
    accepted, refused = load_subscriptions(tmp_path)
    assert [s.name for s in accepted] == ["audit-sub", "orders-sub"]
    [(name, error)] = refused
    assert name == "broken-sub"
    assert "'pubsub/broken'" in str(error) and "'event.type =='" in str(error)
    assert "does not compile" in str(error)


@pytest.mark.parametrize(
    ("document", "problem"),
    [
        ({"apiVersion": "dapr.io/v3", "kind": "Subscription"}, "apiVersion must be"),
        ({"apiVersion": "dapr.io/v1alpha1", "kind": "Subscription"}, "spec must be dict"),
        (
            {"apiVersion": "dapr.io/v1alpha1", "kind": "Subscription", "spec": {"topic": "t"}},
            "pubsub_name must be a non-empty string",
        ),
        (
            {
                "apiVersion": "dapr.io/v1alpha1",
                "kind": "Subscription",
                "spec": {"pubsubname": "p", "topic": "t", "route": "/r", "metadata": {"n": 5}},
            },
            "quote numbers",
        ),
        (
            {
                "apiVersion": "dapr.io/v2alpha1",
                "kind": "Subscription",
                "spec": {"pubsubname": "p", "topic": "t", "routes": {"rules": [{"match": "true"}]}},
            },
            "spec.routes.rules[0].path is required",
        ),
        (
            {
                "apiVersion": "dapr.io/v2alpha1",
                "kind": "Subscription",
                "spec": {
                    "pubsubname": "p",
                    "topic": "t",
                    "routes": {"default": "/d"},
                    "bulkSubscribe": {"enabled": "yes"},
                },
            },
            "spec.bulkSubscribe.enabled must be bool",
        ),
        (
            {
                "apiVersion": "dapr.io/v1alpha1",
                "kind": "Subscription",
                "spec": {"pubsubname": "p", "topic": "t", "route": "/r"},
                "scopes": [1],
            },
            "scopes[0] must be str",
        ),
        (["not", "a", "mapping"], "must be a mapping"),
    ],
)
def test_malformed_documents_are_refused_with_the_reason(document: Any, problem: str) -> None:
    good = {
        "apiVersion": "dapr.io/v1alpha1",
        "kind": "Subscription",
        "metadata": {"name": "good"},
        "spec": {"pubsubname": "p", "topic": "good", "route": "/g"},
    }
    accepted, refused = parse_subscription_documents([document, good], "inline")
    assert [s.name for s in accepted] == ["good"]
    [(name, error)] = refused
    assert name == "inline#0"
    assert problem in str(error)


def test_an_unreadable_file_is_refused_by_path(tmp_path: Path) -> None:
    (tmp_path / "bad.yaml").write_text("spec: [unclosed\n")
    (tmp_path / "good.yaml").write_text(V1)
    accepted, refused = load_subscriptions(tmp_path)
    assert [s.name for s in accepted] == ["audit-sub"]
    [(name, error)] = refused
    assert name == str(tmp_path / "bad.yaml")
    assert "cannot be read" in str(error)


def test_a_missing_path_raises() -> None:
    with pytest.raises(FileNotFoundError, match="no subscription file or directory"):
        load_subscriptions("/nonexistent/subscriptions")


def test_duplicates_across_files_keep_the_first(tmp_path: Path) -> None:
    (tmp_path / "a.yaml").write_text(V1)
    (tmp_path / "b.yaml").write_text(V1.replace("audit-sub", "audit-again"))
    accepted, refused = load_subscriptions(tmp_path)
    assert [s.name for s in accepted] == ["audit-sub"]
    assert [name for name, _ in refused] == ["audit-again"]
    assert "already subscribed by 'audit-sub'" in str(refused[0][1])


def test_scopes_limit_which_apps_get_a_subscription(tmp_path: Path) -> None:
    (tmp_path / "subs.yaml").write_text(V2 + "---\n" + V1)
    assert [s.name for s in load_subscriptions(tmp_path, app_id="checkout").accepted] == [
        "orders-sub",
        "audit-sub",
    ]
    assert [s.name for s in load_subscriptions(tmp_path, app_id="billing").accepted] == [
        "audit-sub"
    ]


def test_programmatic_replaces_declarative_for_the_same_topic() -> None:
    declared = [
        Subscription("pubsub", "a", Routes(default="/a"), source="declarative", name="a"),
        Subscription("pubsub", "b", Routes(default="/b"), source="declarative", name="b"),
    ]
    from_app = [
        Subscription("pubsub", "b", Routes(default="/b-app")),
        Subscription("pubsub", "c", Routes(default="/c")),
    ]
    merged = merge_subscriptions(declared, from_app)
    assert [(s.topic, s.routes.default, s.source) for s in merged] == [
        ("a", "/a", "declarative"),
        ("b", "/b-app", "programmatic"),
        ("c", "/c", "programmatic"),
    ]


def test_validate_refuses_only_the_subscription_whose_rule_fails() -> None:
    good = Subscription("pubsub", "a", Routes((Rule("event.data.x > 1", "/x"),)))
    bad = Subscription("pubsub", "b", Routes((Rule("nope ==", "/x"),)))
    accepted, refused = validate_subscriptions([bad, good])
    assert accepted == [good]
    assert [name for name, _ in refused] == ["pubsub/b"]
    assert "'nope =='" in str(refused[0][1])
