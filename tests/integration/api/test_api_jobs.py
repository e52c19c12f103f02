"""``/jobs``: create, read, list with filters and pages, change and delete."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import httpx
import pytest

from jobsched.config.settings import Settings
from jobsched.core.models import JobStatus
from jobsched.storage.database import SQLStorage
from tests.integration.api.api_assertions import assert_problem


def _time(text: str) -> datetime:
    assert text.endswith("Z") or text.endswith("+00:00"), f"{text} is not RFC 3339 UTC"
    return datetime.fromisoformat(text)


async def test_create_recurring_job_returns_it_with_defaults_and_location(
    api: httpx.AsyncClient, storage: SQLStorage
) -> None:
    before = await storage.now()
    response = await api.post(
        "/jobs", json={"name": "nightly-report", "type": "noop", "schedule": "@every 1h30m"}
    )
    after = await storage.now()

    assert response.status_code == 201, response.text
    job = response.json()
    assert response.headers["location"] == f"/jobs/{job['id']}"
    uuid.UUID(job["id"])
    defaults = Settings().jobs
    assert job["name"] == "nightly-report"
    assert job["schedule"] == "@every 1h30m"
    assert job["timezone"] == "UTC"
    assert job["run_at"] is None
    assert job["payload"] == {}
    assert job["queue"] == defaults.queue
    assert job["priority"] == 0
    assert job["timeout_seconds"] == defaults.timeout_seconds
    assert job["retry"] == defaults.retry.policy().to_json()
    assert job["status"] == "active"
    assert job["last_fired_at"] is None
    next_run_at = _time(job["next_run_at"])
    assert before + timedelta(minutes=90) <= next_run_at <= after + timedelta(minutes=90)
    assert before <= _time(job["created_at"]) <= after
    assert (await api.get(f"/jobs/{job['id']}")).json() == job


async def test_create_stores_every_given_field(api: httpx.AsyncClient, storage: SQLStorage) -> None:
    body: dict[str, Any] = {
        "type": "http",
        "schedule": "30 9 * * 1-5",
        "timezone": "Europe/Berlin",
        "payload": {"url": "http://hooks.example.com:9/hook", "body": {"list": [1, 2]}},
        "queue": "reports",
        "priority": -7,
        "timeout_seconds": 12.5,
        "retry": {"max_attempts": 5, "backoff": "fixed", "jitter": False},
    }
    response = await api.post("/jobs", json=body)

    assert response.status_code == 201, response.text
    job = response.json()
    for field in ("type", "schedule", "timezone", "payload", "queue", "priority"):
        assert job[field] == body[field]
    assert job["timeout_seconds"] == 12.5
    retry_defaults = Settings().jobs.retry
    assert job["retry"] == {
        "max_attempts": 5,
        "backoff": "fixed",
        "initial_delay_seconds": retry_defaults.initial_delay_seconds,
        "max_delay_seconds": retry_defaults.max_delay_seconds,
        "jitter": False,
    }
    stored = await storage.get_job(uuid.UUID(job["id"]))
    assert stored.payload == body["payload"]
    assert stored.retry.max_attempts == 5
    # 09:30 on a weekday in Berlin is 07:30 or 08:30 UTC, depending on DST.
    next_run_at = _time(job["next_run_at"])
    assert (next_run_at.hour, next_run_at.minute) in {(7, 30), (8, 30)}
    assert next_run_at.astimezone(ZoneInfo("Europe/Berlin")).weekday() < 5


async def test_policies_are_set_by_their_json_names_on_create_and_patch(
    api: httpx.AsyncClient, storage: SQLStorage
) -> None:
    response = await api.post(
        "/jobs",
        json={
            "type": "noop",
            "schedule": "@hourly",
            "misfire_policy": "skip",
            "misfire_grace_seconds": 30,
            "concurrency_policy": "forbid",
        },
    )
    assert response.status_code == 201, response.text
    created = response.json()
    assert (created["misfire_policy"], created["concurrency_policy"]) == ("skip", "forbid")

    patched = await api.patch(
        f"/jobs/{created['id']}",
        json={"misfire_policy": "all", "concurrency_policy": "replace"},
    )
    assert patched.status_code == 200, patched.text
    stored = await storage.get_job(uuid.UUID(created["id"]))
    assert (stored.misfire_policy.value, stored.concurrency_policy.value) == ("all", "replace")


@pytest.mark.parametrize(
    ("field", "value"),
    [("misfire_policy", "sometimes"), ("concurrency_policy", 1), ("concurrency_policy", None)],
)
async def test_an_unknown_policy_is_refused_naming_its_field(
    api: httpx.AsyncClient, field: str, value: object
) -> None:
    response = await api.post("/jobs", json={"type": "noop", "schedule": "@hourly", field: value})

    assert_problem(response, 422, field)
    assert (await api.get("/jobs")).json()["items"] == []


async def test_null_timeout_means_no_timeout(api: httpx.AsyncClient) -> None:
    response = await api.post("/jobs", json={"type": "noop", "timeout_seconds": None})

    assert response.status_code == 201, response.text
    assert response.json()["timeout_seconds"] is None


async def test_one_time_job_fires_at_run_at_or_at_once(
    api: httpx.AsyncClient, storage: SQLStorage
) -> None:
    at = await api.post("/jobs", json={"type": "noop", "run_at": "2031-05-06T07:08:09+02:00"})
    before = await storage.now()
    now = await api.post("/jobs", json={"type": "noop"})
    after = await storage.now()

    assert at.status_code == 201, at.text
    assert _time(at.json()["run_at"]) == datetime(2031, 5, 6, 5, 8, 9, tzinfo=UTC)
    assert _time(at.json()["next_run_at"]) == datetime(2031, 5, 6, 5, 8, 9, tzinfo=UTC)
    assert at.json()["schedule"] is None
    assert now.status_code == 201, now.text
    assert now.json()["run_at"] is None
    assert before <= _time(now.json()["next_run_at"]) <= after


async def test_macro_is_stored_normalised(api: httpx.AsyncClient) -> None:
    response = await api.post("/jobs", json={"type": "noop", "schedule": "  @Hourly "})

    assert response.status_code == 201, response.text
    assert response.json()["schedule"] == "@hourly"
    next_run_at = _time(response.json()["next_run_at"])
    assert (next_run_at.minute, next_run_at.second, next_run_at.microsecond) == (0, 0, 0)


async def test_taken_name_is_a_conflict_and_writes_nothing(
    api: httpx.AsyncClient, storage: SQLStorage
) -> None:
    first = await api.post("/jobs", json={"name": "unique", "type": "noop"})
    second = await api.post("/jobs", json={"name": "unique", "type": "other"})

    assert first.status_code == 201
    assert_problem(second, 409, "name")
    page = await api.get("/jobs")
    assert [job["id"] for job in page.json()["items"]] == [first.json()["id"]]


async def test_list_filters_by_type_status_and_queue(api: httpx.AsyncClient) -> None:
    ids = {}
    for key, body in {
        "a": {"type": "alpha", "schedule": "@daily"},
        "b": {"type": "beta", "schedule": "@daily", "queue": "slow"},
        "c": {"type": "alpha", "schedule": "@daily", "queue": "slow"},
    }.items():
        ids[key] = (await api.post("/jobs", json=body)).json()["id"]
    assert (await api.post(f"/jobs/{ids['c']}/pause")).status_code == 200

    async def listed(query: str) -> list[str]:
        response = await api.get(f"/jobs?{query}")
        assert response.status_code == 200, response.text
        return [job["id"] for job in response.json()["items"]]

    assert await listed("") == [ids["a"], ids["b"], ids["c"]]
    assert await listed("type=alpha") == [ids["a"], ids["c"]]
    assert await listed("queue=slow") == [ids["b"], ids["c"]]
    assert await listed("status=paused") == [ids["c"]]
    assert await listed("status=active&type=alpha") == [ids["a"]]
    assert await listed("type=gamma") == []


async def test_list_pages_through_every_job_once(api: httpx.AsyncClient) -> None:
    created = [(await api.post("/jobs", json={"type": "noop"})).json()["id"] for _ in range(5)]

    seen: list[str] = []
    cursor: str | None = None
    pages = 0
    while True:
        params: dict[str, str | int] = {"limit": 2}
        if cursor is not None:
            params["cursor"] = cursor
        response = await api.get("/jobs", params=params)
        assert response.status_code == 200, response.text
        page = response.json()
        assert len(page["items"]) <= 2
        seen += [job["id"] for job in page["items"]]
        pages += 1
        cursor = page["next_cursor"]
        if cursor is None:
            break

    assert seen == created
    assert pages == 3


async def test_delete_removes_the_job_and_its_runs(
    api: httpx.AsyncClient, storage: SQLStorage
) -> None:
    job_id = (await api.post("/jobs", json={"type": "noop", "schedule": "@daily"})).json()["id"]
    assert (await api.post(f"/jobs/{job_id}/trigger")).status_code == 201

    deleted = await api.delete(f"/jobs/{job_id}")

    assert deleted.status_code == 204
    assert deleted.content == b""
    assert_problem(await api.get(f"/jobs/{job_id}"), 404, "id")
    assert_problem(await api.delete(f"/jobs/{job_id}"), 404, "id")
    runs = await storage.list_runs(job_id=None, status=None, limit=10, cursor=None)
    assert runs.items == []


async def test_patch_changes_only_the_given_fields(
    api: httpx.AsyncClient, storage: SQLStorage
) -> None:
    created = (
        await api.post(
            "/jobs",
            json={"name": "n", "type": "noop", "schedule": "@daily", "payload": {"a": 1}},
        )
    ).json()
    stored_before = await storage.get_job(uuid.UUID(created["id"]))

    response = await api.patch(
        f"/jobs/{created['id']}",
        json={
            "type": "email",
            "payload": {"b": 2},
            "priority": 9,
            "queue": "other",
            "name": None,
            "retry": {"max_attempts": 7},
        },
    )

    assert response.status_code == 200, response.text
    job = response.json()
    assert job["type"] == "email"
    assert job["payload"] == {"b": 2}
    assert job["priority"] == 9
    assert job["queue"] == "other"
    assert job["name"] is None
    assert job["retry"] == {**created["retry"], "max_attempts": 7}
    # Timing untouched: same fire time, same anchor.
    assert job["next_run_at"] == created["next_run_at"]
    assert job["schedule"] == "@daily"
    stored_after = await storage.get_job(uuid.UUID(created["id"]))
    assert stored_after.schedule_anchor_at == stored_before.schedule_anchor_at
    assert stored_after.updated_at > stored_before.updated_at
    assert (await api.get(f"/jobs/{created['id']}")).json() == job


async def test_patching_the_schedule_recomputes_next_run_at_and_anchor(
    api: httpx.AsyncClient, storage: SQLStorage
) -> None:
    created = (await api.post("/jobs", json={"type": "noop", "schedule": "@every 1h"})).json()

    before = await storage.now()
    response = await api.patch(f"/jobs/{created['id']}", json={"schedule": "@every 10m"})
    after = await storage.now()

    assert response.status_code == 200, response.text
    job = response.json()
    assert job["schedule"] == "@every 10m"
    next_run_at = _time(job["next_run_at"])
    assert before + timedelta(minutes=10) <= next_run_at <= after + timedelta(minutes=10)
    assert next_run_at < _time(created["next_run_at"])
    stored = await storage.get_job(uuid.UUID(job["id"]))
    assert before <= stored.schedule_anchor_at <= after
    assert stored.next_run_at == next_run_at


async def test_patching_the_timezone_moves_the_fire_time(api: httpx.AsyncClient) -> None:
    created = (await api.post("/jobs", json={"type": "noop", "schedule": "0 9 * * *"})).json()
    assert _time(created["next_run_at"]).hour == 9

    response = await api.patch(f"/jobs/{created['id']}", json={"timezone": "America/New_York"})

    assert response.status_code == 200, response.text
    assert response.json()["timezone"] == "America/New_York"
    # 09:00 in New York is 13:00 (EDT) or 14:00 (EST) UTC.
    assert _time(response.json()["next_run_at"]).hour in {13, 14}


async def test_schedule_null_makes_a_one_time_job(api: httpx.AsyncClient) -> None:
    created = (await api.post("/jobs", json={"type": "noop", "schedule": "@daily"})).json()

    response = await api.patch(
        f"/jobs/{created['id']}", json={"schedule": None, "run_at": "2032-01-02T03:04:05Z"}
    )

    assert response.status_code == 200, response.text
    job = response.json()
    assert job["schedule"] is None
    assert _time(job["run_at"]) == datetime(2032, 1, 2, 3, 4, 5, tzinfo=UTC)
    assert job["next_run_at"] == job["run_at"]


async def test_giving_a_one_time_job_a_schedule_drops_its_run_at(api: httpx.AsyncClient) -> None:
    created = await api.post("/jobs", json={"type": "noop", "run_at": "2032-01-02T03:04:05Z"})
    job_id = created.json()["id"]

    response = await api.patch(f"/jobs/{job_id}", json={"schedule": "@hourly"})

    assert response.status_code == 200, response.text
    assert response.json()["schedule"] == "@hourly"
    assert response.json()["run_at"] is None
    assert _time(response.json()["next_run_at"]).minute == 0


async def test_patching_a_paused_job_keeps_it_paused_with_a_new_fire_time(
    api: httpx.AsyncClient,
) -> None:
    job_id = (await api.post("/jobs", json={"type": "noop", "schedule": "0 0 1 1 *"})).json()["id"]
    assert (await api.post(f"/jobs/{job_id}/pause")).status_code == 200

    response = await api.patch(f"/jobs/{job_id}", json={"schedule": "0 0 1 7 *"})

    assert response.status_code == 200, response.text
    assert response.json()["status"] == JobStatus.PAUSED
    next_run_at = _time(response.json()["next_run_at"])
    assert (next_run_at.month, next_run_at.day, next_run_at.hour) == (7, 1, 0)
