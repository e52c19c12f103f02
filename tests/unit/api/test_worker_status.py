"""``worker_status``: when the API calls a registered worker gone."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from jobsched.api.routes.workers import worker_status
from jobsched.storage.base import WorkerInfo, WorkerRecord

NOW = datetime(2030, 1, 1, 12, 0, tzinfo=UTC)
INFO = WorkerInfo("host-a-1", "host-a", 1, ["default"], ["noop"], 4)


def _record(heartbeat_age_seconds: float, *, stopped: bool = False) -> WorkerRecord:
    heartbeat_at = NOW - timedelta(seconds=heartbeat_age_seconds)
    return WorkerRecord(
        info=INFO,
        started_at=NOW - timedelta(hours=1),
        heartbeat_at=heartbeat_at,
        stopped_at=heartbeat_at if stopped else None,
        runs_in_progress=0,
    )


@pytest.mark.parametrize(
    ("heartbeat_age_seconds", "expected"),
    [(0, "alive"), (29.9, "alive"), (30, "alive"), (30.1, "gone"), (3600, "gone"), (-2, "alive")],
)
def test_a_worker_is_gone_once_its_heartbeat_is_older_than_the_threshold(
    heartbeat_age_seconds: float, expected: str
) -> None:
    assert worker_status(_record(heartbeat_age_seconds), NOW, 30.0) == expected


def test_a_stopped_worker_is_gone_however_fresh_its_heartbeat() -> None:
    assert worker_status(_record(0, stopped=True), NOW, 30.0) == "gone"
