"""Retry decisions: backoff growth, its cap, jitter bounds, and running out of attempts."""

from __future__ import annotations

import random
from datetime import timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from jobsched.core.models import RetryPolicy
from jobsched.core.retry import RetryDecision, backoff_delay_seconds, decide_retry


def seeded(seed: int) -> random.Random:
    return random.Random(seed)  # noqa: S311  # reproducible jitter in tests, not secrets


def policy(**fields: object) -> RetryPolicy:
    defaults: dict[str, object] = {
        "max_attempts": 10,
        "backoff": "exponential",
        "initial_delay_seconds": 1.0,
        "max_delay_seconds": 300.0,
        "jitter": False,
    }
    return RetryPolicy(**{**defaults, **fields})  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("failed_attempt", "expected_seconds"),
    [(1, 1.0), (2, 2.0), (3, 4.0), (4, 8.0), (9, 256.0), (10, 300.0), (50, 300.0)],
)
def test_exponential_backoff_doubles_up_to_the_cap(
    failed_attempt: int, expected_seconds: float
) -> None:
    assert backoff_delay_seconds(policy(), failed_attempt) == expected_seconds


def test_fixed_backoff_stays_put() -> None:
    fixed = policy(backoff="fixed", initial_delay_seconds=7.5)
    assert [backoff_delay_seconds(fixed, n) for n in (1, 2, 10)] == [7.5, 7.5, 7.5]


def test_fixed_backoff_is_capped_too() -> None:
    assert backoff_delay_seconds(policy(backoff="fixed", initial_delay_seconds=900), 1) == 300


def test_absurd_attempt_numbers_do_not_overflow() -> None:
    assert backoff_delay_seconds(policy(), 10_000) == 300.0


def test_retry_without_jitter_waits_the_backoff_delay() -> None:
    decision = decide_retry(policy(initial_delay_seconds=0.5), 3)
    assert decision == RetryDecision(retry=True, delay=timedelta(seconds=2.0))


def test_out_of_attempts_means_dead() -> None:
    three = policy(max_attempts=3)
    assert decide_retry(three, 2).retry is True
    assert decide_retry(three, 3) == RetryDecision(retry=False)
    assert decide_retry(three, 4).retry is False


def test_single_attempt_policy_never_retries() -> None:
    assert decide_retry(policy(max_attempts=1), 1).retry is False


def test_non_retryable_failure_is_dead_whatever_the_attempts_left() -> None:
    assert decide_retry(policy(max_attempts=5), 1, retryable=False) == RetryDecision(retry=False)


def test_jitter_draws_from_zero_to_the_backoff_delay() -> None:
    jittered = policy(jitter=True, initial_delay_seconds=10.0)
    delays = {decide_retry(jittered, 2, rng=seeded(seed)).delay for seed in range(200)}
    assert all(timedelta(0) <= delay <= timedelta(seconds=20) for delay in delays)
    assert len(delays) > 100  # spread out, not one value
    assert min(delays) < timedelta(seconds=5) < timedelta(seconds=15) < max(delays)


def test_jitter_is_reproducible_with_a_seeded_source() -> None:
    jittered = policy(jitter=True)
    first = decide_retry(jittered, 4, rng=seeded(7))
    assert first == decide_retry(jittered, 4, rng=seeded(7))


policies = st.builds(
    RetryPolicy,
    max_attempts=st.integers(min_value=1, max_value=50),
    backoff=st.sampled_from(["fixed", "exponential"]),
    initial_delay_seconds=st.floats(min_value=0, max_value=1000, allow_nan=False),
    max_delay_seconds=st.floats(min_value=0, max_value=1000, allow_nan=False),
    jitter=st.booleans(),
)


@given(
    retry_policy=policies,
    failed_attempt=st.integers(min_value=1, max_value=60),
    seed=st.integers(min_value=0, max_value=2**32),
)
def test_decisions_respect_attempts_and_cap(
    retry_policy: RetryPolicy, failed_attempt: int, seed: int
) -> None:
    decision = decide_retry(retry_policy, failed_attempt, rng=seeded(seed))
    assert decision.retry is (failed_attempt < retry_policy.max_attempts)
    assert timedelta(0) <= decision.delay <= timedelta(seconds=retry_policy.max_delay_seconds)
