"""Content-based routing of one subscription's events: CEL rules in order, then the default path.

A :class:`Router` holds one subscription's rules (``match`` expression → ``path``) and its default
path. Each expression is compiled once, when the router is built; a rule that does not compile
raises :class:`RouteError` naming the subscription (``pubsub/topic``) and the expression. For each
event the rules are evaluated in order against ``event`` (the CloudEvent as a dict, ``event.data``
the parsed JSON value, see :meth:`CloudEvent.cel_activation`); the first one that yields ``true``
gives the path. Semantics are cel-go's, as in Dapr:

- numbers compare across types: ``event.data.price == 150`` is true for ``150.0``, and so is
  ``150.0 == 150``.
- a missing field is an evaluation *error*, not ``false``: ``event.data.x == 1`` on an event without
  ``x`` fails; write ``has(event.data.x) && event.data.x == 1`` to test presence.
- a rule whose evaluation fails (missing field, wrong types, a non-bool result) is skipped: the
  router counts it (:attr:`Router.evaluation_errors`), reports it in :meth:`Router.decide`, and
  goes on with the next rule.
- a rule with an empty ``match`` always matches (Dapr's rule for a route without a condition).
- no rule matched and no default path: the result is ``None``; the caller acks the event and
  counts it.

Only the variable ``event`` exists: an expression naming any other variable (outside a macro's own
bound variable, as ``x`` in ``event.data.items.exists(x, x > 1)``) is refused at build time.

Engine choice: the ``cel`` module of ``common-expression-language`` (Rust ``cel`` crate bindings),
not Google's ``cel-expr-python``, for its semantics:

- Google's type checker rejects ``150.0 == 150`` at compile time ("no matching overload"); it
  evaluates to true only with the checker off, and then the checker's undeclared-reference
  detection is gone too. The Rust engine evaluates it to true and lists an expression's variables
  (``Program.variables()``), which the undeclared-reference check above uses.
- Google's activation refuses the *whole* event when any integer anywhere in it is outside int64
  (JSON payloads may hold such numbers, and this package keeps them exact); the Rust bindings read
  such a number as uint or double and every rule that does not touch it evaluates normally.
- both treat a missing field as an error and ``has()`` as a presence test, as cel-go does.

Measured (timeit, 5000 runs, one event with ten list items): compile 10-21 µs per rule (Google:
19-53 µs checked, 12-27 µs unchecked); evaluate 0.2-1.6 µs per simple rule, 7 µs for an
``exists()`` over the list, once the event is in a context (Google: 1.8-3.6 µs). Converting the
event into a context costs the Rust bindings about 36 µs, once per event, against Google's 2 µs, so
Google evaluates one event faster; both stay far below the cost of one delivery.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Final

import cel

from grpc_channel.pubsub.cloudevents import CloudEvent

__all__ = ["EVENT_VARIABLE", "RouteDecision", "RouteError", "Router", "Rule", "RuleFailure"]

EVENT_VARIABLE: Final = "event"
"""The one variable routing expressions see."""

# Macros bind a variable of their own as first argument: e.g. `list.exists(x, x > 1)`.
_MACRO_BINDING: Final = re.compile(
    r"\.\s*(?:all|exists_one|exists|map|filter)\s*\(\s*([A-Za-z_][A-Za-z0-9_]*)\s*,"
)


class RouteError(ValueError):
    """A routing rule is invalid (does not compile, no path...).

    ``subscription`` is ``"pubsub/topic"``; ``expression`` the offending CEL source (``""`` when the
    problem is not the expression).
    """

    def __init__(self, subscription: str, expression: str, problem: str) -> None:
        where = f"subscription {subscription!r}"
        if expression:
            where += f", rule {expression!r}"
        super().__init__(f"{where}: {problem}")
        self.subscription = subscription
        self.expression = expression


@dataclass(frozen=True)
class Rule:
    """One routing rule: events for which ``match`` is true go to ``path``.

    An empty ``match`` matches every event.
    """

    match: str
    path: str


@dataclass(frozen=True)
class RuleFailure:
    """A rule skipped for one event because its evaluation failed."""

    rule: Rule
    error: str


@dataclass(frozen=True)
class RouteDecision:
    """Where one event goes (``path``; ``None`` = nowhere) and which rules failed on the way."""

    path: str | None
    failures: tuple[RuleFailure, ...] = ()


def _compile(subscription: str, rule: Rule) -> cel.Program | None:
    if not rule.path:
        raise RouteError(subscription, rule.match, "the rule has no path")
    if not rule.match.strip():
        return None
    try:
        program = cel.compile(rule.match)
    except Exception as exc:  # the bindings raise ValueError or RuntimeError for bad source
        raise RouteError(subscription, rule.match, f"does not compile: {exc}") from None
    bound = set(_MACRO_BINDING.findall(rule.match))
    unknown = sorted(set(program.variables()) - bound - {EVENT_VARIABLE})
    if unknown:
        raise RouteError(
            subscription,
            rule.match,
            f"undeclared reference to {', '.join(unknown)} (only {EVENT_VARIABLE!r} is declared)",
        )
    return program


class Router:
    """The compiled routing table of one subscription (see the module docstring).

    Thread-safe: evaluation keeps no state but the error counter, which is locked.
    """

    def __init__(
        self, pubsub_name: str, topic: str, rules: Iterable[Rule] = (), default: str = ""
    ) -> None:
        self.subscription = f"{pubsub_name}/{topic}"
        self.rules = tuple(rules)
        self.default = default
        self._programs = [(rule, _compile(self.subscription, rule)) for rule in self.rules]
        # Without a rule to evaluate first (none, or the first one matches everything) every
        # event gets the same decision: made once here rather than per event.
        self._fixed: RouteDecision | None = None
        if not self._programs:
            self._fixed = RouteDecision(default or None)
        elif self._programs[0][1] is None:
            self._fixed = RouteDecision(self._programs[0][0].path)
        self._lock = threading.Lock()
        self._evaluation_errors = 0

    @property
    def evaluation_errors(self) -> int:
        """How many rule evaluations have failed (and been skipped) so far."""
        with self._lock:
            return self._evaluation_errors

    def decide(self, event: CloudEvent | Mapping[str, Any]) -> RouteDecision:
        """Route one event (a parsed CloudEvent, or the dict of its attributes)."""
        if self._fixed is not None:
            return self._fixed  # no rule to evaluate: skip building the CEL activation
        view = event.cel_activation() if isinstance(event, CloudEvent) else dict(event)
        context = cel.Context()
        context.add_variable(EVENT_VARIABLE, view)
        failures: list[RuleFailure] = []
        path: str | None = None
        for rule, program in self._programs:
            if program is None:
                path = rule.path
                break
            try:
                result = program.execute(context)
            except Exception as exc:  # any evaluation error skips the rule, whatever its kind
                failures.append(RuleFailure(rule, f"{type(exc).__name__}: {exc}"))
                continue
            if not isinstance(result, bool):
                kind = type(result).__name__
                failures.append(RuleFailure(rule, f"result is {kind}, not bool"))
                continue
            if result:
                path = rule.path
                break
        else:
            path = self.default or None
        if failures:
            with self._lock:
                self._evaluation_errors += len(failures)
        return RouteDecision(path, tuple(failures))

    def route(self, event: CloudEvent | Mapping[str, Any]) -> str | None:
        """The path for one event, or ``None`` when no rule matched and there is no default."""
        return self.decide(event).path
