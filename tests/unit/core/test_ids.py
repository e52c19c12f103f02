"""``new_id``: UUIDv7 whose order is creation order."""

from __future__ import annotations

import time
import uuid
from types import SimpleNamespace

import pytest

from jobsched.core import ids
from jobsched.core.ids import new_id


def _milliseconds_of(value: uuid.UUID) -> int:
    return value.int >> 80


def _use_clock(monkeypatch: pytest.MonkeyPatch, unix_ms: list[int]) -> None:
    """Make ``new_id`` read its time from ``unix_ms[0]`` (mutable, so a test can move it).

    The clock is in the past, so the memory of the last id issued is cleared too.
    """
    monkeypatch.setattr(ids, "_last_issued", 0)
    monkeypatch.setattr(
        ids, "time", SimpleNamespace(time_ns=lambda: unix_ms[0] * 1_000_000 + 999_999)
    )


def test_version_and_variant_follow_rfc_9562() -> None:
    value = new_id()

    assert value.version == 7
    assert value.variant == uuid.RFC_4122


def test_timestamp_is_unix_milliseconds() -> None:
    before_ms = time.time_ns() // 1_000_000
    value = new_id()
    after_ms = time.time_ns() // 1_000_000

    assert before_ms <= _milliseconds_of(value) <= after_ms


def test_ids_from_later_milliseconds_sort_later(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [1_700_000_000_000]
    _use_clock(monkeypatch, clock)
    made = []
    for step_ms in (1, 1, 5, 1000, 1, 60_000):
        made.append(new_id())
        clock[0] += step_ms

    assert made == sorted(made)
    assert [_milliseconds_of(value) for value in made] == [
        1_700_000_000_000,
        1_700_000_000_001,
        1_700_000_000_002,
        1_700_000_000_007,
        1_700_000_001_007,
        1_700_000_001_008,
    ]


def test_ids_within_one_millisecond_still_increase(monkeypatch: pytest.MonkeyPatch) -> None:
    _use_clock(monkeypatch, [1_700_000_000_000])

    made = [new_id() for _ in range(1000)]

    assert made == sorted(made)
    assert len(set(made)) == 1000
    assert all(value.version == 7 and value.variant == uuid.RFC_4122 for value in made)


def test_a_clock_stepping_back_does_not_reorder_ids(monkeypatch: pytest.MonkeyPatch) -> None:
    clock = [1_700_000_000_500]
    _use_clock(monkeypatch, clock)
    first = new_id()
    clock[0] -= 400  # NTP stepped the clock back

    second = new_id()

    assert second > first


def test_ids_are_unique() -> None:
    made = {new_id() for _ in range(50_000)}

    assert len(made) == 50_000


def test_consecutive_ids_carry_fresh_randomness() -> None:
    """Ids are not guessable from their neighbours in a new millisecond."""
    first = new_id()
    deadline = time.monotonic() + 5
    second = new_id()
    while _milliseconds_of(second) == _milliseconds_of(first):
        assert time.monotonic() < deadline, "the clock did not move for 5 s"
        second = new_id()

    assert second.int & ((1 << 62) - 1) != (first.int & ((1 << 62) - 1)) + 1
