"""The API tells an in-process scheduler when a job's timing changed (standalone on SQLite)."""

from __future__ import annotations

import httpx

from jobsched.api import create_app
from jobsched.config.settings import Settings
from jobsched.queue.database import DatabaseQueue
from jobsched.storage.database import SQLStorage
from tests.integration.api.conftest import BASE_URL


async def test_creating_rescheduling_and_resuming_wake_the_scheduler(storage: SQLStorage) -> None:
    wake_ups: list[None] = []
    app = create_app(
        storage,
        DatabaseQueue(storage),
        Settings(),
        on_jobs_changed=lambda: wake_ups.append(None),
    )
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE_URL) as api:
        created = await api.post("/jobs", json={"type": "noop", "schedule": "@every 1h"})
        assert created.status_code == 201
        job_id = created.json()["id"]
        assert len(wake_ups) == 1
        assert (
            await api.patch(f"/jobs/{job_id}", json={"schedule": "@every 2h"})
        ).status_code == 200
        assert len(wake_ups) == 2
        assert (await api.post(f"/jobs/{job_id}/pause")).status_code == 200
        assert (await api.post(f"/jobs/{job_id}/resume")).status_code == 200
        assert len(wake_ups) == 3
        refused = await api.post("/jobs", json={"type": "noop", "schedule": "not cron"})
        assert refused.status_code == 422
        assert len(wake_ups) == 3
