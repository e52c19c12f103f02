"""Guarantee 6: bad input is refused as a problem naming the field at fault, and writes nothing."""

from __future__ import annotations

import uuid
from typing import Any

import httpx
import pytest

from jobsched.storage.database import SQLStorage
from tests.integration.api.api_assertions import assert_no_jobs, assert_no_runs, assert_problem

VALID_JOB = {"type": "noop"}

# (case id, body overrides, field at fault)
BAD_JOB_FIELDS: list[tuple[str, dict[str, Any], str]] = [
    ("malformed cron", {"schedule": "61 * * * *"}, "schedule"),
    ("not a schedule", {"schedule": "every day at noon"}, "schedule"),
    ("never-firing cron", {"schedule": "0 0 31 2 *"}, "schedule"),
    ("unknown macro", {"schedule": "@fortnightly"}, "schedule"),
    ("bad every", {"schedule": "@every 0s"}, "schedule"),
    ("empty schedule", {"schedule": ""}, "schedule"),
    ("unknown timezone", {"timezone": "Mars/Olympus_Mons"}, "timezone"),
    ("host timezone", {"schedule": "@daily", "timezone": "localtime"}, "timezone"),
    ("run_at not a time", {"run_at": "next tuesday"}, "run_at"),
    ("run_at without offset", {"run_at": "2030-01-01T00:00:00"}, "run_at"),
    ("run_at not a string", {"run_at": 1_900_000_000}, "run_at"),
    ("run_at with schedule", {"schedule": "@daily", "run_at": "2030-01-01T00:00:00Z"}, "run_at"),
    ("negative max_attempts", {"retry": {"max_attempts": -1}}, "retry.max_attempts"),
    ("zero max_attempts", {"retry": {"max_attempts": 0}}, "retry.max_attempts"),
    ("unknown backoff", {"retry": {"backoff": "linear"}}, "retry.backoff"),
    ("negative delay", {"retry": {"initial_delay_seconds": -1}}, "retry.initial_delay_seconds"),
    ("unknown retry field", {"retry": {"tries": 3}}, "retry.tries"),
    ("payload list", {"payload": [1, 2]}, "payload"),
    ("payload string", {"payload": "hello"}, "payload"),
    ("payload number", {"payload": 3}, "payload"),
    ("payload null", {"payload": None}, "payload"),
    ("unknown field", {"colour": "blue"}, "colour"),
    ("type missing", {"type": None}, "type"),
    ("type with spaces", {"type": "send email"}, "type"),
    ("type too long", {"type": "x" * 201}, "type"),
    ("empty name", {"name": ""}, "name"),
    ("priority as text", {"priority": "5"}, "priority"),
    ("priority too high", {"priority": 101}, "priority"),
    ("zero timeout", {"timeout_seconds": 0}, "timeout_seconds"),
    ("queue with slash", {"queue": "a/b"}, "queue"),
    ("jitter as number", {"retry": {"jitter": 1}}, "retry.jitter"),
]


def _job_body(overrides: dict[str, Any]) -> dict[str, Any]:
    body = {**VALID_JOB, **overrides}
    return {key: value for key, value in body.items() if not (key == "type" and value is None)}


@pytest.mark.parametrize(
    ("overrides", "field"),
    [pytest.param(overrides, field, id=case) for case, overrides, field in BAD_JOB_FIELDS],
)
async def test_create_refuses_bad_fields(
    api: httpx.AsyncClient, storage: SQLStorage, overrides: dict[str, Any], field: str
) -> None:
    response = await api.post("/jobs", json=_job_body(overrides))

    assert_problem(response, 422, field)
    await assert_no_jobs(storage)


@pytest.mark.parametrize(
    ("content", "status", "kind"),
    [
        pytest.param(b'{"type": "noop",', 400, "malformed-body", id="truncated JSON"),
        pytest.param(b"type=noop", 400, "malformed-body", id="not JSON"),
        pytest.param(b'{"type": "n\xffoop"}', 400, "malformed-body", id="invalid UTF-8"),
        pytest.param(b"[]", 422, "validation-error", id="a list"),
        pytest.param(b'"noop"', 422, "validation-error", id="a string"),
        pytest.param(b"42", 422, "validation-error", id="a number"),
        pytest.param(b"null", 422, "validation-error", id="null"),
        pytest.param(b"", 422, "validation-error", id="empty"),
    ],
)
async def test_create_refuses_a_body_that_is_not_a_json_object(
    api: httpx.AsyncClient, storage: SQLStorage, content: bytes, status: int, kind: str
) -> None:
    response = await api.post(
        "/jobs", content=content, headers={"content-type": "application/json"}
    )

    problem = assert_problem(response, status, "body")
    assert problem["type"] == f"https://jobsched.dev/problems/{kind}"
    await assert_no_jobs(storage)


async def test_problem_lists_every_field_at_fault(api: httpx.AsyncClient) -> None:
    response = await api.post(
        "/jobs", json={"type": "noop", "priority": "high", "payload": [], "extra": 1}
    )

    problem = assert_problem(response, 422, None)
    assert {error["field"] for error in problem["errors"]} == {"priority", "payload", "extra"}
    assert problem["type"] == "https://jobsched.dev/problems/validation-error"


BAD_PATCHES: list[tuple[str, dict[str, Any], str]] = [
    ("malformed cron", {"schedule": "* * *"}, "schedule"),
    ("never-firing cron", {"schedule": "0 0 30 2 *"}, "schedule"),
    ("unknown timezone", {"timezone": "Europe/Atlantis"}, "timezone"),
    ("run_at not a time", {"run_at": "soon"}, "run_at"),
    ("run_at without offset", {"run_at": "2030-01-01 10:00"}, "run_at"),
    ("run_at on a recurring job", {"run_at": "2030-01-01T00:00:00Z"}, "run_at"),
    ("run_at with schedule", {"schedule": "@hourly", "run_at": "2030-01-01T00:00:00Z"}, "run_at"),
    ("negative max_attempts", {"retry": {"max_attempts": -3}}, "retry.max_attempts"),
    ("payload list", {"payload": ["a"]}, "payload"),
    ("payload null", {"payload": None}, "payload"),
    ("type null", {"type": None}, "type"),
    ("timezone null", {"timezone": None}, "timezone"),
    ("unknown field", {"owner": "me"}, "owner"),
]


@pytest.mark.parametrize(
    ("body", "field"), [pytest.param(body, field, id=case) for case, body, field in BAD_PATCHES]
)
async def test_patch_refuses_bad_fields_and_leaves_the_job_alone(
    api: httpx.AsyncClient, storage: SQLStorage, body: dict[str, Any], field: str
) -> None:
    created = await api.post("/jobs", json={"type": "noop", "schedule": "@daily"})
    job_id = uuid.UUID(created.json()["id"])
    before = await storage.get_job(job_id)

    response = await api.patch(f"/jobs/{job_id}", json=body)

    assert_problem(response, 422, field)
    assert await storage.get_job(job_id) == before


async def test_patch_refuses_malformed_json(api: httpx.AsyncClient, storage: SQLStorage) -> None:
    created = await api.post("/jobs", json={"type": "noop", "schedule": "@daily"})
    job_id = uuid.UUID(created.json()["id"])
    before = await storage.get_job(job_id)

    for content, status in ((b"{not json", 400), (b"[1]", 422)):
        response = await api.patch(
            f"/jobs/{job_id}", content=content, headers={"content-type": "application/json"}
        )
        assert_problem(response, status, "body")
    assert await storage.get_job(job_id) == before


async def test_a_taken_name_in_a_patch_is_a_conflict(
    api: httpx.AsyncClient, storage: SQLStorage
) -> None:
    assert (await api.post("/jobs", json={"type": "noop", "name": "first"})).status_code == 201
    other = await api.post("/jobs", json={"type": "noop", "name": "second"})
    job_id = uuid.UUID(other.json()["id"])
    before = await storage.get_job(job_id)

    response = await api.patch(f"/jobs/{job_id}", json={"name": "first", "priority": 5})

    assert_problem(response, 409, "name")
    assert await storage.get_job(job_id) == before


@pytest.mark.parametrize(
    ("method", "path"),
    [
        ("GET", "/jobs/{id}"),
        ("PATCH", "/jobs/{id}"),
        ("DELETE", "/jobs/{id}"),
        ("POST", "/jobs/{id}/trigger"),
        ("POST", "/jobs/{id}/pause"),
        ("POST", "/jobs/{id}/resume"),
        ("GET", "/jobs/{id}/runs"),
        ("GET", "/runs/{id}"),
    ],
)
async def test_unknown_ids_are_not_found_and_bad_ids_are_refused(
    api: httpx.AsyncClient, storage: SQLStorage, method: str, path: str
) -> None:
    body = {"priority": 1} if method == "PATCH" else None

    unknown = await api.request(method, path.format(id=uuid.uuid4()), json=body)
    malformed = await api.request(method, path.format(id="not-a-uuid"), json=body)

    problem = assert_problem(unknown, 404, "id")
    assert problem["type"] == "https://jobsched.dev/problems/not-found"
    assert_problem(malformed, 422, "id")
    await assert_no_jobs(storage)
    await assert_no_runs(storage)


@pytest.mark.parametrize("path", ["/jobs", "/runs", "/jobs/{id}/runs"])
@pytest.mark.parametrize(
    ("query", "field"),
    [
        pytest.param("limit=0", "limit", id="limit zero"),
        pytest.param("limit=-5", "limit", id="limit negative"),
        pytest.param("limit=501", "limit", id="limit above page_size_max"),
        pytest.param("limit=ten", "limit", id="limit not a number"),
        pytest.param("cursor=%25%25not-a-cursor", "cursor", id="cursor garbage"),
        pytest.param("cursor=WyJ4Il0", "cursor", id="cursor with a bad value"),
        pytest.param("cursor=W10", "cursor", id="cursor of another shape"),
        pytest.param("status=lost", "status", id="unknown status"),
    ],
)
async def test_list_queries_are_checked(
    api: httpx.AsyncClient, storage: SQLStorage, path: str, query: str, field: str
) -> None:
    created = await api.post("/jobs", json={"type": "noop", "schedule": "@daily"})
    job_id = created.json()["id"]

    response = await api.get(f"{path.format(id=job_id)}?{query}")

    assert_problem(response, 422, field)


async def test_a_cursor_of_one_list_is_refused_by_another(api: httpx.AsyncClient) -> None:
    job_id = (await api.post("/jobs", json={"type": "noop", "schedule": "@daily"})).json()["id"]
    for _ in range(2):
        assert (await api.post(f"/jobs/{job_id}/trigger")).status_code == 201
    assert (await api.post("/jobs", json={"type": "noop"})).status_code == 201
    runs_cursor = (await api.get("/runs?limit=1")).json()["next_cursor"]
    jobs_cursor = (await api.get("/jobs?limit=1")).json()["next_cursor"]
    assert runs_cursor is not None
    assert jobs_cursor is not None

    assert_problem(await api.get("/jobs", params={"cursor": runs_cursor}), 422, "cursor")
    assert_problem(await api.get("/runs", params={"cursor": jobs_cursor}), 422, "cursor")
