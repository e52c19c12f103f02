"""Retry decisions as values: a pure function of the policy, the attempt and a random source."""

from __future__ import annotations

import random
from dataclasses import dataclass
from datetime import timedelta

from jobsched.core.models import RetryPolicy


@dataclass(frozen=True, slots=True)
class RetryDecision:
    """``retry`` False means the run is out of attempts and ends dead."""

    retry: bool
    delay: timedelta = timedelta(0)


def backoff_delay_seconds(policy: RetryPolicy, failed_attempt: int) -> float:
    """Delay before the try after ``failed_attempt`` (1-based), before jitter, capped."""
    if policy.backoff == "fixed":
        delay = policy.initial_delay_seconds
    else:
        # 2**n grows past float range for absurd attempt counts; cap the exponent first.
        exponent = min(failed_attempt - 1, 64)
        delay = policy.initial_delay_seconds * (2.0**exponent)
    return min(delay, policy.max_delay_seconds)


def decide_retry(
    policy: RetryPolicy,
    failed_attempt: int,
    *,
    retryable: bool = True,
    rng: random.Random | None = None,
) -> RetryDecision:
    """Decide what follows a failed attempt.

    With ``jitter`` the delay is drawn uniformly from ``[0, delay]`` ("full jitter"),
    which spreads a burst of failures so retries do not stampede together.
    """
    if not retryable or failed_attempt >= policy.max_attempts:
        return RetryDecision(retry=False)
    delay = backoff_delay_seconds(policy, failed_attempt)
    if policy.jitter:
        delay = (rng or random).uniform(0.0, delay)
    return RetryDecision(retry=True, delay=timedelta(seconds=delay))
