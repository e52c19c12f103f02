"""Pausing, resuming and triggering jobs; completed one-time jobs brought back."""

from __future__ import annotations

import dataclasses
import uuid
from datetime import datetime, timedelta

import httpx

from jobsched.core.models import JobStatus, RunStatus, RunTrigger
from jobsched.core.planning import plan_due_job
from jobsched.queue.database import DatabaseQueue
from jobsched.storage.database import SQLStorage
from tests.integration.api.api_assertions import assert_problem


def _time(text: str) -> datetime:
    return datetime.fromisoformat(text)


async def _completed_one_time_job(api: httpx.AsyncClient, storage: SQLStorage) -> str:
    """A one-time job that the scheduler has fired (as ``fire_due_jobs`` does it)."""
    response = await api.post("/jobs", json={"type": "noop", "run_at": "2020-01-01T00:00:00Z"})
    assert response.status_code == 201, response.text
    now = await storage.now()
    fired = await storage.fire_due_jobs(now, 10, lambda job: plan_due_job(job, now), published=True)
    assert len(fired) == 1
    job_id: str = response.json()["id"]
    assert (await api.get(f"/jobs/{job_id}")).json()["status"] == JobStatus.COMPLETED
    return job_id


async def test_pause_and_resume_a_one_time_job_keeps_its_time(api: httpx.AsyncClient) -> None:
    created = await api.post("/jobs", json={"type": "noop", "run_at": "2033-03-03T03:03:03Z"})
    job_id = created.json()["id"]

    paused = await api.post(f"/jobs/{job_id}/pause")
    paused_again = await api.post(f"/jobs/{job_id}/pause")
    resumed = await api.post(f"/jobs/{job_id}/resume")

    assert paused.status_code == 200, paused.text
    assert paused.json()["status"] == "paused"
    assert paused_again.json()["status"] == "paused"
    assert paused.json()["next_run_at"] == created.json()["next_run_at"]
    assert resumed.status_code == 200, resumed.text
    assert resumed.json()["status"] == "active"
    assert resumed.json()["next_run_at"] == created.json()["next_run_at"]


async def test_resume_skips_fire_times_missed_while_paused_and_keeps_the_phase(
    api: httpx.AsyncClient, storage: SQLStorage
) -> None:
    job_id = (await api.post("/jobs", json={"type": "noop", "schedule": "@every 1h"})).json()["id"]
    assert (await api.post(f"/jobs/{job_id}/pause")).status_code == 200
    # As if paused for a day: the stored fire time and anchor lie far in the past.
    day_ago = await storage.now() - timedelta(days=1, minutes=20)
    await storage.update_job(
        uuid.UUID(job_id),
        lambda job: dataclasses.replace(job, schedule_anchor_at=day_ago, next_run_at=day_ago),
    )

    before = await storage.now()
    response = await api.post(f"/jobs/{job_id}/resume")

    assert response.status_code == 200, response.text
    assert response.json()["status"] == "active"
    next_run_at = _time(response.json()["next_run_at"])
    assert before < next_run_at <= before + timedelta(hours=1)
    assert (next_run_at - day_ago) % timedelta(hours=1) == timedelta(0)


async def test_resume_of_an_active_job_changes_nothing(api: httpx.AsyncClient) -> None:
    created = (await api.post("/jobs", json={"type": "noop", "schedule": "@daily"})).json()

    response = await api.post(f"/jobs/{created['id']}/resume")

    assert response.status_code == 200, response.text
    assert response.json() == created


async def test_completed_jobs_cannot_be_paused_or_resumed(
    api: httpx.AsyncClient, storage: SQLStorage
) -> None:
    job_id = await _completed_one_time_job(api, storage)
    before = await storage.get_job(uuid.UUID(job_id))

    assert_problem(await api.post(f"/jobs/{job_id}/pause"), 409, "status")
    assert_problem(await api.post(f"/jobs/{job_id}/resume"), 409, "status")
    assert await storage.get_job(uuid.UUID(job_id)) == before


async def test_a_completed_one_time_job_given_a_new_run_at_is_active_again(
    api: httpx.AsyncClient, storage: SQLStorage
) -> None:
    job_id = await _completed_one_time_job(api, storage)

    unchanged = await api.patch(f"/jobs/{job_id}", json={"payload": {"again": False}})
    rearmed = await api.patch(f"/jobs/{job_id}", json={"run_at": "2034-04-04T04:04:04+00:00"})

    assert unchanged.json()["status"] == "completed"
    assert rearmed.status_code == 200, rearmed.text
    assert rearmed.json()["status"] == "active"
    assert rearmed.json()["next_run_at"] == rearmed.json()["run_at"]
    assert _time(rearmed.json()["next_run_at"]).year == 2034


async def test_trigger_creates_a_manual_run_a_worker_can_claim(
    api: httpx.AsyncClient, storage: SQLStorage, queue: DatabaseQueue
) -> None:
    job = (
        await api.post(
            "/jobs",
            json={
                "type": "noop",
                "schedule": "@daily",
                "queue": "q1",
                "priority": 3,
                "retry": {"max_attempts": 4},
            },
        )
    ).json()
    assert (await api.post(f"/jobs/{job['id']}/pause")).status_code == 200

    before = await storage.now()
    response = await api.post(f"/jobs/{job['id']}/trigger")
    after = await storage.now()

    assert response.status_code == 201, response.text
    run = response.json()
    assert response.headers["location"] == f"/runs/{run['id']}"
    assert run["job_id"] == job["id"]
    assert run["type"] == "noop"
    assert run["queue"] == "q1"
    assert run["priority"] == 3
    assert run["trigger"] == RunTrigger.MANUAL
    assert run["status"] == RunStatus.QUEUED
    assert run["attempt"] == 0
    assert run["max_attempts"] == 4
    assert before <= _time(run["scheduled_for"]) <= after
    assert run["lease_owner"] is None
    # Triggering neither fires nor resumes the schedule.
    assert (await api.get(f"/jobs/{job['id']}")).json()["next_run_at"] == job["next_run_at"]
    stored = await storage.get_run(uuid.UUID(run["id"]))
    assert stored.published_at is not None
    claimed = await queue.claim("worker-1", ["q1"], 10, 30.0, 0)
    assert [str(claimed_run.id) for claimed_run in claimed] == [run["id"]]
