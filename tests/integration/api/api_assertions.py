"""Checks shared by the API tests: problem documents and "nothing was written"."""

from __future__ import annotations

from typing import Any

import httpx

from jobsched.storage.base import JobFilter
from jobsched.storage.database import SQLStorage

PROBLEM_CONTENT_TYPE = "application/problem+json"


def assert_problem(response: httpx.Response, status: int, field: str | None) -> dict[str, Any]:
    """``response`` is an RFC 9457 problem of ``status`` whose first error names ``field``."""
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM_CONTENT_TYPE
    problem: dict[str, Any] = response.json()
    assert problem["status"] == status
    assert problem["type"].startswith("https://jobsched.dev/problems/")
    assert problem["title"]
    assert problem["detail"]
    assert problem["instance"] == response.request.url.path
    if field is not None:
        assert problem["errors"], problem
        assert problem["errors"][0]["field"] == field, problem
        assert problem["errors"][0]["message"]
    return problem


async def assert_no_jobs(storage: SQLStorage) -> None:
    page = await storage.list_jobs(JobFilter(), limit=10, cursor=None)
    assert page.items == []


async def assert_no_runs(storage: SQLStorage) -> None:
    page = await storage.list_runs(job_id=None, status=None, limit=10, cursor=None)
    assert page.items == []
