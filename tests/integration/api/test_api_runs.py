"""``/runs``, ``/runs/{id}`` and ``/jobs/{id}/runs``: runs and their attempts."""

from __future__ import annotations

import uuid

import httpx

from jobsched.core.models import AttemptStatus, RunStatus
from jobsched.storage.base import AttemptOutcome
from jobsched.storage.database import SQLStorage
from tests.integration.api.api_assertions import assert_problem


async def _job(api: httpx.AsyncClient) -> str:
    response = await api.post("/jobs", json={"type": "noop", "schedule": "@daily"})
    assert response.status_code == 201, response.text
    job_id: str = response.json()["id"]
    return job_id


async def _trigger(api: httpx.AsyncClient, job_id: str) -> str:
    response = await api.post(f"/jobs/{job_id}/trigger")
    assert response.status_code == 201, response.text
    run_id: str = response.json()["id"]
    return run_id


async def test_run_shows_every_attempt(api: httpx.AsyncClient, storage: SQLStorage) -> None:
    run_id = await _trigger(api, await _job(api))
    now = await storage.now()
    first = await storage.claim_ready_runs(["default"], 1, "worker-a", 30.0)
    assert [run.id for run in first] == [uuid.UUID(run_id)]
    failed = AttemptOutcome(
        first[0].id,
        1,
        "worker-a",
        AttemptStatus.FAILED,
        RunStatus.RETRYING,
        error="boom",
        retry_at=now,
    )
    assert await storage.finish_attempts([failed]) == [True]
    second = await storage.claim_ready_runs(["default"], 1, "worker-b", 30.0)
    succeeded = AttemptOutcome(
        second[0].id,
        2,
        "worker-b",
        AttemptStatus.SUCCEEDED,
        RunStatus.SUCCEEDED,
        result={"answer": 42},
    )
    assert await storage.finish_attempts([succeeded]) == [True]

    response = await api.get(f"/runs/{run_id}")

    assert response.status_code == 200, response.text
    run = response.json()
    assert run["status"] == "succeeded"
    assert run["attempt"] == 2
    assert run["result"] == {"answer": 42}
    assert run["finished_at"] is not None
    assert [
        (attempt["attempt"], attempt["status"], attempt["worker_id"], attempt["error"])
        for attempt in run["attempts"]
    ] == [(1, "failed", "worker-a", "boom"), (2, "succeeded", "worker-b", None)]
    assert run["attempts"][1]["result"] == {"answer": 42}
    assert all(attempt["finished_at"] is not None for attempt in run["attempts"])


async def test_runs_are_listed_newest_first_per_job_and_by_status(
    api: httpx.AsyncClient, storage: SQLStorage
) -> None:
    job_a, job_b = await _job(api), await _job(api)
    runs_a = [await _trigger(api, job_a) for _ in range(3)]
    run_b = await _trigger(api, job_b)
    claimed = await storage.claim_ready_runs(["default"], 1, "worker", 30.0)
    assert len(claimed) == 1

    async def listed(path: str) -> list[str]:
        response = await api.get(path)
        assert response.status_code == 200, response.text
        return [run["id"] for run in response.json()["items"]]

    assert await listed(f"/jobs/{job_a}/runs") == runs_a[::-1]
    assert await listed(f"/jobs/{job_b}/runs") == [run_b]
    assert await listed("/runs") == [run_b, *runs_a[::-1]]
    assert await listed("/runs?status=running") == [str(claimed[0].id)]
    assert set(await listed(f"/jobs/{job_a}/runs?status=queued")) == set(runs_a) - {
        str(claimed[0].id)
    }


async def test_runs_page_through_every_run_once(api: httpx.AsyncClient) -> None:
    job_id = await _job(api)
    created = [await _trigger(api, job_id) for _ in range(5)]

    for path in ("/runs", f"/jobs/{job_id}/runs"):
        seen: list[str] = []
        cursor = None
        while True:
            params: dict[str, str | int] = {"limit": 2, **({"cursor": cursor} if cursor else {})}
            page = (await api.get(path, params=params)).json()
            seen += [run["id"] for run in page["items"]]
            cursor = page["next_cursor"]
            if cursor is None:
                break
        assert seen == created[::-1], path


async def test_runs_of_an_unknown_job_are_not_found(api: httpx.AsyncClient) -> None:
    assert_problem(await api.get(f"/jobs/{uuid.uuid4()}/runs"), 404, "id")
    assert_problem(await api.get(f"/runs/{uuid.uuid4()}"), 404, "id")
