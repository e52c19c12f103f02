"""The audit log: one row per change, in the change's transaction; none for a refusal."""

from __future__ import annotations

import inspect
import uuid
from collections.abc import AsyncIterator

import httpx
import pytest
import sqlalchemy as sa

from jobsched.api import create_app
from jobsched.config.settings import Settings
from jobsched.core.access import hash_token
from jobsched.queue.database import DatabaseQueue
from jobsched.storage.base import Storage
from jobsched.storage.database import SQLStorage
from jobsched.storage.schema import audit_events
from tests.integration.api.conftest import BASE_URL

ADMIN = "admin-token-" + uuid.uuid4().hex
READER = "reader-token-" + uuid.uuid4().hex


@pytest.fixture
async def admin(storage: SQLStorage) -> AsyncIterator[httpx.AsyncClient]:
    settings = Settings.model_validate(
        {
            "api": {
                "auth": {
                    "enabled": True,
                    "tokens": [
                        {"name": "ops", "role": "admin", "token_hash": hash_token(ADMIN)},
                        {"name": "viewer", "role": "read", "token_hash": hash_token(READER)},
                    ],
                }
            }
        }
    )
    app = create_app(storage, DatabaseQueue(storage), settings)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app),
        base_url=BASE_URL,
        headers={"Authorization": f"Bearer {ADMIN}", "X-Request-Id": "req-audit-1"},
    ) as client:
        yield client


def _audit_rows(sql: sa.Engine) -> list[sa.RowMapping]:
    with sql.connect() as connection:
        query = sa.select(audit_events).order_by(audit_events.c.id)
        return list(connection.execute(query).mappings())


def _job_body() -> dict[str, object]:
    return {
        "name": f"audited-{uuid.uuid4().hex[:8]}",
        "type": "http",
        "schedule": "@every 1h",
        "payload": {"url": "https://hooks.example.com/a", "headers": {"Authorization": "s3cret"}},
    }


async def _one_row_for(
    sql: sa.Engine, before: int, response: httpx.Response, action: str
) -> sa.RowMapping:
    assert response.status_code < 300, response.text
    rows = _audit_rows(sql)
    assert len(rows) == before + 1, [row["action"] for row in rows[before:]]
    row = rows[-1]
    assert row["action"] == action
    assert row["token_name"] == "ops"  # a token's name, not a secret
    assert row["request_id"] == "req-audit-1"
    assert row["client_address"] == "127.0.0.1"
    return row


async def test_every_change_writes_exactly_one_audit_row(
    admin: httpx.AsyncClient, sql: sa.Engine
) -> None:
    created = await admin.post("/jobs", json=_job_body())
    row = await _one_row_for(sql, 0, created, "job.created")
    job_id = created.json()["id"]
    assert (row["target_kind"], row["target_id"]) == ("job", job_id)
    assert {"payload", "schedule"} <= set(row["fields"])

    steps = [
        ("PATCH", f"/jobs/{job_id}", {"priority": 7}, "job.updated"),
        ("POST", f"/jobs/{job_id}/pause", None, "job.paused"),
        ("POST", f"/jobs/{job_id}/resume", None, "job.resumed"),
        ("POST", f"/jobs/{job_id}/trigger", None, "job.triggered"),
    ]
    for method, path, body, action in steps:
        before = len(_audit_rows(sql))
        row = await _one_row_for(sql, before, await admin.request(method, path, json=body), action)
        assert (row["target_kind"], row["target_id"]) == ("job", job_id)
    assert _audit_rows(sql)[1]["fields"] == ["priority"]

    run_id = (await admin.get(f"/jobs/{job_id}/runs")).json()["items"][0]["id"]
    before = len(_audit_rows(sql))
    row = await _one_row_for(
        sql, before, await admin.post(f"/runs/{run_id}/cancel"), "run.cancelled"
    )
    assert (row["target_kind"], row["target_id"]) == ("run", run_id)
    before = len(_audit_rows(sql))
    await _one_row_for(sql, before, await admin.post(f"/runs/{run_id}/retry"), "run.retried")

    before = len(_audit_rows(sql))
    token = await admin.post("/tokens", json={"name": "ci", "role": "write"})
    row = await _one_row_for(sql, before, token, "token.created")
    assert row["target_id"] == token.json()["id"]
    before = len(_audit_rows(sql))
    await _one_row_for(sql, before, await admin.delete("/tokens/ci"), "token.revoked")

    before = len(_audit_rows(sql))
    await _one_row_for(sql, before, await admin.delete(f"/jobs/{job_id}"), "job.deleted")


async def test_a_batch_writes_a_row_per_job_created(
    admin: httpx.AsyncClient, sql: sa.Engine
) -> None:
    response = await admin.post("/jobs/batch", json={"jobs": [_job_body(), _job_body()]})
    assert response.status_code == 201, response.text
    rows = _audit_rows(sql)
    assert [row["action"] for row in rows] == ["job.created", "job.created"]
    assert {row["target_id"] for row in rows} == {job["id"] for job in response.json()["items"]}


async def test_no_payload_value_reaches_the_audit_log(
    admin: httpx.AsyncClient, sql: sa.Engine
) -> None:
    await admin.post("/jobs", json=_job_body())
    with sql.connect() as connection:
        dumped = str(list(connection.execute(sa.select(audit_events)).mappings()))
    assert "s3cret" not in dumped
    assert "hooks.example.com" not in dumped


async def test_refused_and_failed_requests_write_no_row(
    admin: httpx.AsyncClient, sql: sa.Engine
) -> None:
    job = (await admin.post("/jobs", json=_job_body())).json()
    before = len(_audit_rows(sql))
    refusals = [
        # A read token may not change anything (403).
        await admin.post(f"/jobs/{job['id']}/pause", headers={"Authorization": f"Bearer {READER}"}),
        # No token at all (401).
        await admin.delete(f"/jobs/{job['id']}", headers={"Authorization": ""}),
        # Invalid input (422), an unknown job (404), a conflict (409).
        await admin.patch(f"/jobs/{job['id']}", json={"schedule": "every tuesday"}),
        await admin.post(f"/jobs/{uuid.uuid4()}/trigger"),
        await admin.post("/jobs", json={**_job_body(), "name": job["name"]}),
        await admin.delete("/tokens/nobody"),
    ]
    assert [response.status_code for response in refusals] == [403, 401, 422, 404, 409, 404]
    assert len(_audit_rows(sql)) == before


async def test_audit_rows_are_listed_filtered_and_paged_for_admins_only(
    admin: httpx.AsyncClient,
) -> None:
    for _ in range(3):
        await admin.post("/jobs", json=_job_body())
    job_id = (await admin.get("/jobs")).json()["items"][0]["id"]
    await admin.post(f"/jobs/{job_id}/pause")
    first = (await admin.get("/audit", params={"limit": 2})).json()
    assert [item["action"] for item in first["items"]] == ["job.paused", "job.created"]
    rest = (await admin.get("/audit", params={"cursor": first["next_cursor"]})).json()
    assert [item["action"] for item in rest["items"]] == ["job.created", "job.created"]
    paused = (await admin.get("/audit", params={"action": "job.paused"})).json()["items"]
    assert [(item["target_id"], item["token_name"]) for item in paused] == [(job_id, "ops")]
    by_target = (await admin.get("/audit", params={"target_id": job_id})).json()["items"]
    assert {item["action"] for item in by_target} == {"job.created", "job.paused"}
    naive = await admin.get("/audit", params={"since": "2026-01-01T00:00:00"})
    assert naive.status_code == 422
    assert naive.json()["errors"][0]["field"] == "since"
    refused = await admin.get("/audit", headers={"Authorization": f"Bearer {READER}"})
    assert refused.status_code == 403


async def test_no_interface_changes_an_audit_row(admin: httpx.AsyncClient) -> None:
    for method in ("PUT", "PATCH", "DELETE", "POST"):
        response = await admin.request(method, "/audit")
        assert response.status_code == 405, (method, response.text)
    # The storage interface offers no way to edit or delete one but retention.
    audit_methods = {
        name for name, _ in inspect.getmembers(Storage, inspect.isfunction) if "audit" in name
    }
    assert audit_methods == {"list_audit", "prune_audit"}
