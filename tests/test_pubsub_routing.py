"""CEL routing: rules in order, default last, cel-go semantics, failing rules skipped, counted."""

from __future__ import annotations

import json
import threading
from typing import Any

import cel
import pytest

from grpc_channel.pubsub import RouteError, Router, Rule, envelope_for_publish, parse_cloud_event


def order(data: dict[str, Any], event_type: str = "com.dapr.event.sent") -> dict[str, Any]:
    return {"id": "1", "source": "s", "type": event_type, "specversion": "1.0", "data": data}


RULES = (
    Rule('event.type == "order.vip"', "/vip"),
    Rule("event.data.price > 100", "/big"),
    Rule("has(event.data.coupon)", "/coupon"),
)


def test_first_matching_rule_wins_then_default() -> None:
    router = Router("pubsub", "orders", RULES, default="/orders")
    assert router.route(order({"price": 500}, "order.vip")) == "/vip"
    assert router.route(order({"price": 500, "coupon": "x"})) == "/big"
    assert router.route(order({"price": 5, "coupon": "x"})) == "/coupon"
    assert router.route(order({"price": 5})) == "/orders"


def test_no_match_and_no_default_is_none() -> None:
    router = Router("pubsub", "orders", RULES)
    assert router.route(order({"price": 5})) is None


@pytest.mark.parametrize(
    ("expression", "price"),
    [
        ("event.data.price == 150", 150.0),
        ("event.data.price == 150.0", 150),
        ("150.0 == 150", 0),
        ("event.data.price >= 100.5", 101),
    ],
)
def test_numbers_compare_across_int_and_double(expression: str, price: float) -> None:
    router = Router("pubsub", "orders", [Rule(expression, "/hit")])
    assert router.route(order({"price": price})) == "/hit"
    assert router.evaluation_errors == 0


def test_a_missing_field_is_an_error_that_skips_the_rule_and_is_counted() -> None:
    rules = [Rule("event.data.missing == 1", "/never"), Rule("event.data.price > 1", "/next")]
    router = Router("pubsub", "orders", rules, default="/d")
    decision = router.decide(order({"price": 5}))
    assert decision.path == "/next"
    assert [f.rule.path for f in decision.failures] == ["/never"]
    assert "missing" in decision.failures[0].error
    assert router.evaluation_errors == 1
    # Negating the failing rule does not make it match: an error is not false.
    negated = Router("pubsub", "orders", [Rule("!(event.data.missing == 1)", "/x")], default="/d")
    assert negated.route(order({"price": 5})) == "/d"
    assert negated.evaluation_errors == 1


def test_type_errors_and_non_bool_results_are_skipped_too() -> None:
    rules = [
        Rule("event.data.name > 1", "/type-error"),
        Rule("event.data.price", "/not-bool"),
        Rule("1 / event.data.zero == 1", "/div"),
    ]
    router = Router("pubsub", "orders", rules, default="/d")
    decision = router.decide(order({"name": "n", "price": 3, "zero": 0}))
    assert decision.path == "/d"
    assert [f.rule.path for f in decision.failures] == ["/type-error", "/not-bool", "/div"]
    assert "not bool" in decision.failures[1].error
    assert router.evaluation_errors == 3


def test_an_empty_match_always_matches() -> None:
    router = Router("pubsub", "orders", [Rule("false", "/no"), Rule("", "/always")], default="/d")
    assert router.route(order({})) == "/always"


def test_parsed_cloud_events_route_on_their_json_data() -> None:
    stored = envelope_for_publish(
        b'{"price": 150.0, "n": 18446744073709551615}',
        source="checkout",
        topic="orders",
        pubsub_name="pubsub",
    )
    rules = [Rule("event.data.n == 18446744073709551615u && event.data.price == 150", "/exact")]
    router = Router("pubsub", "orders", rules)
    assert router.route(parse_cloud_event(stored)) == "/exact"


def test_integers_beyond_64_bits_do_not_break_other_rules() -> None:
    event = parse_cloud_event(json.dumps(order({"huge": -(2**70), "price": 200})))
    router = Router("pubsub", "orders", [Rule("event.data.price > 100", "/big")])
    assert router.route(event) == "/big"


def test_macros_bind_their_own_variables() -> None:
    rule = Rule("event.data.items.exists(item, item.qty > 10)", "/bulk")
    router = Router("pubsub", "orders", [rule])
    assert router.route(order({"items": [{"qty": 1}, {"qty": 20}]})) == "/bulk"
    assert router.route(order({"items": [{"qty": 1}]})) is None


@pytest.mark.parametrize(
    ("expression", "problem"),
    [
        ("event.type ==", "does not compile"),
        ("foo(", "does not compile"),
        ('order.type == "x"', "undeclared reference to order"),
        ("event.data.items.exists(x, y > 1)", "undeclared reference to y"),
    ],
)
def test_a_rule_that_does_not_compile_names_subscription_and_expression(
    expression: str, problem: str
) -> None:
    with pytest.raises(RouteError) as caught:
        Router("pubsub", "orders", [Rule("true", "/ok"), Rule(expression, "/bad")])
    assert caught.value.subscription == "pubsub/orders"
    assert caught.value.expression == expression
    message = str(caught.value)
    assert "'pubsub/orders'" in message and repr(expression) in message and problem in message


def test_each_rule_is_compiled_once_however_many_events(monkeypatch: pytest.MonkeyPatch) -> None:
    compiled: list[str] = []
    real_compile = cel.compile

    def counting_compile(expression: str) -> cel.Program:
        compiled.append(expression)
        return real_compile(expression)

    monkeypatch.setattr(cel, "compile", counting_compile)
    router = Router("pubsub", "orders", RULES, default="/orders")
    for price in range(50):
        router.route(order({"price": price}))
    assert compiled == [rule.match for rule in RULES]


def test_a_rule_without_path_is_refused() -> None:
    with pytest.raises(RouteError, match="has no path"):
        Router("pubsub", "orders", [Rule("true", "")])


def test_one_router_serves_many_threads_and_counts_every_error() -> None:
    router = Router("pubsub", "orders", [Rule("event.data.x > 1", "/x")], default="/d")
    results: list[str | None] = []
    lock = threading.Lock()

    def work() -> None:
        for _ in range(200):
            path = router.route(order({}))
            with lock:
                results.append(path)

    threads = [threading.Thread(target=work) for _ in range(4)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert results == ["/d"] * 800
    assert router.evaluation_errors == 800
