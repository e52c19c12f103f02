"""``POST /jobs/batch``: up to 1,000 jobs in one request, all created or none."""

from __future__ import annotations

from typing import Any

import httpx
import pytest

from jobsched.storage.base import JobFilter
from jobsched.storage.database import SQLStorage
from tests.integration.api.api_assertions import assert_no_jobs, assert_problem


async def test_a_batch_creates_every_job(api: httpx.AsyncClient, storage: SQLStorage) -> None:
    body = {
        "jobs": [
            {"type": "noop", "name": f"job-{index}", "schedule": "@every 1m"} for index in range(3)
        ]
        + [{"type": "noop", "payload": {"n": 1}}]
    }

    response = await api.post("/jobs/batch", json=body)

    assert response.status_code == 201, response.text
    items = response.json()["items"]
    assert [item["name"] for item in items] == ["job-0", "job-1", "job-2", None]
    assert [item["status"] for item in items] == ["active"] * 4
    stored = await storage.list_jobs(JobFilter(), limit=10, cursor=None)
    assert sorted(str(job.id) for job in stored.items) == sorted(item["id"] for item in items)


async def test_a_thousand_jobs_fit_in_one_batch(
    api: httpx.AsyncClient, storage: SQLStorage
) -> None:
    response = await api.post("/jobs/batch", json={"jobs": [{"type": "noop"}] * 1000})

    assert response.status_code == 201, response.text
    assert len(response.json()["items"]) == 1000


@pytest.mark.parametrize(
    ("jobs", "status", "field"),
    [
        ([], 422, "jobs"),
        ([{"type": "noop"}] * 1001, 422, "jobs"),
        ([{"type": "noop"}, {"type": "noop", "schedule": "61 * * * *"}], 422, "jobs.1.schedule"),
        ([{"type": "noop"}, {"type": "noop", "timezone": "Mars/Base"}], 422, "jobs.1.timezone"),
        ([{"type": "noop"}, {"type": "noop", "payload": [1]}], 422, "jobs.1.payload"),
        ([{"type": "noop", "retry": {"max_attempts": -1}}], 422, "jobs.0.retry.max_attempts"),
        ([{"type": "noop", "name": "a"}, {"type": "noop", "name": "a"}], 409, "jobs.1.name"),
    ],
)
async def test_one_bad_job_refuses_the_whole_batch(
    api: httpx.AsyncClient,
    storage: SQLStorage,
    jobs: list[dict[str, Any]],
    status: int,
    field: str,
) -> None:
    response = await api.post("/jobs/batch", json={"jobs": jobs})

    assert_problem(response, status, field)
    await assert_no_jobs(storage)


async def test_a_name_already_taken_refuses_the_whole_batch(
    api: httpx.AsyncClient, storage: SQLStorage
) -> None:
    taken = await api.post("/jobs", json={"type": "noop", "name": "nightly"})
    assert taken.status_code == 201

    response = await api.post(
        "/jobs/batch",
        json={"jobs": [{"type": "noop", "name": "fresh"}, {"type": "noop", "name": "nightly"}]},
    )

    assert_problem(response, 409, "jobs.1.name")
    stored = await storage.list_jobs(JobFilter(), limit=10, cursor=None)
    assert [job.name for job in stored.items] == ["nightly"]
