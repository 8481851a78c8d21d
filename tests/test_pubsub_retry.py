"""The per-subscription retry policy: defaults, backoff, jitter, validation, metadata keys."""

from __future__ import annotations

import random
from typing import Any

import pytest

from grpc_channel.pubsub import RETRY_METADATA_KEYS, RetryPolicy, RetryPolicyError


def test_defaults() -> None:
    policy = RetryPolicy()
    assert (policy.max_attempts, policy.base_delay, policy.multiplier, policy.max_delay) == (
        5,
        0.1,
        2.0,
        5.0,
    )
    assert policy.jitter is False


def test_delay_grows_by_the_multiplier_and_stops_at_the_cap() -> None:
    policy = RetryPolicy()
    delays = [policy.delay(n) for n in range(1, 9)]
    assert delays == pytest.approx([0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 5.0, 5.0])


def test_huge_attempt_numbers_return_the_cap() -> None:
    assert RetryPolicy(max_delay=7.0).delay(100_000) == 7.0
    assert RetryPolicy(base_delay=0.0).delay(100_000) == 0.0


def test_should_retry_until_max_attempts() -> None:
    policy = RetryPolicy(max_attempts=3)
    assert [policy.should_retry(n) for n in (1, 2, 3, 4)] == [True, True, False, False]
    assert not RetryPolicy(max_attempts=1).should_retry(1)


def test_full_jitter_stays_within_the_backoff_and_varies() -> None:
    policy = RetryPolicy(jitter=True)
    rng = random.Random(7)
    samples = [policy.delay(3, rng=rng) for _ in range(200)]
    assert all(0.0 <= s <= 0.4 for s in samples)
    assert len(set(samples)) > 100
    assert max(samples) > 0.3 and min(samples) < 0.1


@pytest.mark.parametrize("attempt", [0, -1, True, 1.5])
def test_attempt_must_be_a_positive_integer(attempt: Any) -> None:
    with pytest.raises(RetryPolicyError, match="attempt"):
        RetryPolicy().delay(attempt)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"max_attempts": 0}, "max_attempts"),
        ({"max_attempts": 1001}, "max_attempts"),
        ({"max_attempts": 2.0}, "max_attempts"),
        ({"max_attempts": True}, "max_attempts"),
        ({"base_delay": -0.1}, "base_delay"),
        ({"base_delay": float("nan")}, "base_delay"),
        ({"base_delay": "1"}, "base_delay"),
        ({"multiplier": 0.5}, "multiplier"),
        ({"multiplier": 101}, "multiplier"),
        ({"max_delay": 0.05}, "max_delay"),  # below the base delay
        ({"max_delay": 3601}, "max_delay"),
        ({"jitter": "yes"}, "jitter"),
    ],
)
def test_out_of_range_settings_name_the_field_and_range(kwargs: dict[str, Any], field: str) -> None:
    with pytest.raises(RetryPolicyError) as caught:
        RetryPolicy(**kwargs)
    assert caught.value.field == field
    assert field in str(caught.value)
    assert isinstance(caught.value, ValueError)


def test_metadata_sets_every_field() -> None:
    policy = RetryPolicy.from_metadata(
        {
            "retryMaxAttempts": "3",
            "retryBaseDelay": "250ms",
            "retryMultiplier": "1.5",
            "retryMaxDelay": "1m",
            "retryJitter": "TRUE",
            "unrelated": "kept out",
        }
    )
    assert policy == RetryPolicy(
        max_attempts=3, base_delay=0.25, multiplier=1.5, max_delay=60.0, jitter=True
    )


def test_a_base_delay_above_the_default_cap_raises_the_cap() -> None:
    policy = RetryPolicy.from_metadata({"retryBaseDelay": "10s"})
    assert (policy.base_delay, policy.max_delay) == (10.0, 10.0)
    with pytest.raises(RetryPolicyError) as caught:
        RetryPolicy.from_metadata({"retryBaseDelay": "10s", "retryMaxDelay": "2s"})
    assert caught.value.field == "retryMaxDelay"


def test_metadata_seconds_without_unit_and_absent_keys_keep_defaults() -> None:
    assert RetryPolicy.from_metadata({"retryBaseDelay": "0.5"}) == RetryPolicy(base_delay=0.5)
    assert RetryPolicy.from_metadata({}) == RetryPolicy()


@pytest.mark.parametrize(
    ("key", "value"),
    [
        ("retryMaxAttempts", "three"),
        ("retryMaxAttempts", "2.5"),
        ("retryMaxAttempts", "0"),
        ("retryBaseDelay", "1h"),
        ("retryBaseDelay", "-1s"),
        ("retryMultiplier", "fast"),
        ("retryMaxDelay", "2 weeks"),
        ("retryJitter", "yes"),
    ],
)
def test_bad_metadata_is_refused_with_a_clear_error(key: str, value: str) -> None:
    with pytest.raises(RetryPolicyError) as caught:
        RetryPolicy.from_metadata({key: value})
    assert caught.value.field == key
    assert key in str(caught.value)


def test_to_metadata_round_trips() -> None:
    policy = RetryPolicy(
        max_attempts=9, base_delay=0.3, multiplier=3.0, max_delay=30.0, jitter=True
    )
    written = policy.to_metadata()
    assert set(written) == set(RETRY_METADATA_KEYS)
    assert RetryPolicy.from_metadata(written) == policy
