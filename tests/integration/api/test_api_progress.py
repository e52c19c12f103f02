"""``GET /runs/{id}``: the progress of each attempt, and of the run's current attempt."""

from __future__ import annotations

from typing import Any

import httpx

from jobsched.core.models import AttemptStatus, RunStatus
from jobsched.storage.base import AttemptOutcome
from jobsched.storage.database import SQLStorage


async def _run(api: httpx.AsyncClient, run_id: str) -> dict[str, Any]:
    response = await api.get(f"/runs/{run_id}")
    assert response.status_code == 200, response.text
    run: dict[str, Any] = response.json()
    return run


async def test_run_shows_its_current_attempts_progress_and_each_attempts_own(
    api: httpx.AsyncClient, storage: SQLStorage
) -> None:
    job = await api.post("/jobs", json={"type": "noop", "schedule": "@daily"})
    assert job.status_code == 201, job.text
    triggered = await api.post(f"/jobs/{job.json()['id']}/trigger")
    assert triggered.status_code == 201, triggered.text
    run_id = triggered.json()["id"]
    assert (await _run(api, run_id))["progress"] is None

    (first,) = await storage.claim_ready_runs(["default"], 1, "worker-a", 30.0)
    await storage.renew_leases(
        "worker-a", [(first.id, 1)], 30.0, progress={(first.id, 1): {"rows": 120}}
    )
    running = await _run(api, run_id)
    assert (running["status"], running["progress"]) == ("running", {"rows": 120})
    assert [(a["status"], a["progress"]) for a in running["attempts"]] == [
        ("running", {"rows": 120})
    ]

    retry = AttemptOutcome(
        first.id,
        1,
        "worker-a",
        AttemptStatus.FAILED,
        RunStatus.RETRYING,
        error="boom",
        retry_at=await storage.now(),
    )
    assert await storage.finish_attempts([retry]) == [True]
    await storage.claim_ready_runs(["default"], 1, "worker-b", 30.0)
    second_attempt = await _run(api, run_id)
    assert second_attempt["progress"] is None
    assert [(a["status"], a["progress"]) for a in second_attempt["attempts"]] == [
        ("failed", {"rows": 120}),
        ("running", None),
    ]
