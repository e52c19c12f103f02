"""``jobsched.Client`` and ``AsyncClient`` against a real ``jobsched standalone``."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import pytest

from jobsched import ApiError, AsyncClient, Client
from jobsched.client import UnreachableError, WaitTimeoutError
from tests.clients.server import Server
from tests.e2e.processes import free_port, wait_until

pytestmark = pytest.mark.e2e

BAD_TOKEN = "not-a-token"


def _queue() -> str:
    return f"q-{uuid.uuid4().hex[:10]}"


def test_jobs_create_get_update_and_list_every_page(server: Server) -> None:
    queue = _queue()
    with server.client() as client:
        created = [
            client.jobs.create(type="noop", schedule="@every 1h", queue=queue, name=f"{queue}-{i}")
            for i in range(5)
        ]
        assert client.jobs.get(created[0].id) == created[0]
        listed = list(client.jobs.list(queue=queue, page_size=2))
        assert [job.id for job in listed] == [job.id for job in created]
        assert [job.id for job in client.jobs.list(queue=queue, limit=3)] == [
            job.id for job in created[:3]
        ]
        changed = client.jobs.update(created[1].id, {"priority": 7}, schedule="@every 2h")
        assert (changed.priority, changed.schedule) == (7, "@every 2h")
        assert changed.updated_at > created[1].updated_at


def test_pause_resume_delete(server: Server) -> None:
    with server.client() as client:
        job = client.jobs.create({"type": "noop", "schedule": "@every 1h", "queue": _queue()})
        assert client.jobs.pause(job.id).status == "paused"
        assert client.jobs.resume(job.id).status == "active"
        client.jobs.delete(job.id)
        with pytest.raises(ApiError) as caught:
            client.jobs.get(job.id)
    assert caught.value.status == 404
    assert caught.value.type.endswith("/not-found")
    assert caught.value.field == "id"


def test_trigger_and_wait_for_the_end(server: Server) -> None:
    with server.client() as client:
        job = client.jobs.create(type="noop", schedule="@every 1h")
        run = client.jobs.trigger(job.id, payload={"for": "this run"})
        assert run.trigger == "manual"
        ended = client.runs.wait(run.id, timeout=30, interval=0.1)
        assert ended.status == "succeeded"
        assert [attempt.status for attempt in ended.attempts] == ["succeeded"]
        assert [r.id for r in client.jobs.runs(job.id)] == [run.id]

        failing = client.jobs.create(type="always_fails", retry={"max_attempts": 1})
        wait_until(
            lambda: list(client.jobs.runs(failing.id)),
            timeout_seconds=30,
            message="the scheduler firing the one-time job",
        )
        (fired,) = client.jobs.runs(failing.id)
        dead = client.runs.wait(fired.id, timeout=30, interval=0.1)
    assert dead.status == "dead"
    assert dead.last_error is not None
    assert "always fails" in dead.last_error


def test_cancel_retry_and_a_wait_that_times_out(server: Server) -> None:
    with server.client() as client:
        # No worker takes this queue: the run stays queued.
        job = client.jobs.create(type="noop", schedule="@every 1h", queue=_queue())
        run = client.jobs.trigger(job.id)
        with pytest.raises(WaitTimeoutError, match="still queued"):
            client.runs.wait(run.id, timeout=0.3, interval=0.1)
        assert client.runs.cancel(run.id).status == "cancelled"
        assert client.runs.retry(run.id).status == "queued"
        assert run.id in {r.id for r in client.runs.list(status="queued")}
        with pytest.raises(ApiError) as caught:
            client.runs.retry(run.id)
    assert (caught.value.status, caught.value.field) == (409, "status")


def test_workers_schedules_tokens_and_audit(server: Server) -> None:
    with server.client() as client:
        assert any(worker.status == "alive" for worker in client.workers.list())
        preview = client.schedules.preview(
            "@every 1h", count=3, after=datetime(2030, 1, 1, tzinfo=UTC)
        )
        assert [t.hour for t in preview.fire_times] == [1, 2, 3]
        created = client.tokens.create(f"t-{uuid.uuid4().hex[:8]}", "read", queues=["a"])
        assert created.token
        assert created.name in {token.name for token in client.tokens.list()}
        assert client.tokens.revoke(created.name).revoked_at is not None
        job = client.jobs.create(type="noop", schedule="@every 1h")
        rows = list(client.audit.list(target_id=str(job.id)))
    assert [row.action for row in rows] == ["job.created"]
    assert rows[0].token_name == "root"


def test_problems_are_typed_errors(server: Server) -> None:
    with server.client() as client, pytest.raises(ApiError) as invalid:
        client.jobs.create(type="noop", schedule="every day")
    assert (invalid.value.status, invalid.value.field) == (422, "schedule")
    assert invalid.value.type.endswith("/validation-error")
    assert str(invalid.value).startswith("422 The request is not valid: schedule: ")
    assert "schedule: schedule:" not in str(invalid.value)

    with Client(server.url, token=BAD_TOKEN) as stranger, pytest.raises(ApiError) as refused:
        list(stranger.jobs.list())
    assert (refused.value.status, refused.value.field) == (401, "Authorization")

    with server.client(server.token("read")) as reader, pytest.raises(ApiError) as forbidden:
        reader.jobs.create(type="noop")
    assert forbidden.value.status == 403
    assert "write" in forbidden.value.detail


def test_an_unreachable_server_names_its_url() -> None:
    url = f"http://127.0.0.1:{free_port()}"
    with Client(url, timeout=2) as client, pytest.raises(UnreachableError) as caught:
        client.workers.list()
    assert caught.value.url == url
    assert str(caught.value).startswith(f"cannot reach the jobsched API at {url}: ")


def test_url_and_token_from_the_environment(
    server: Server, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("JOBSCHED_URL", server.url + "/")
    monkeypatch.setenv("JOBSCHED_TOKEN", server.admin_token)
    with Client() as client:
        assert client.url == server.url
        assert client.workers.list()


async def test_the_async_client(server: Server) -> None:
    queue = _queue()
    async with AsyncClient(server.url, token=server.admin_token) as client:
        jobs = [await client.jobs.create(type="noop", queue=queue, schedule="@every 1h")]
        jobs.append(await client.jobs.create(type="noop", queue=queue, schedule="@daily"))
        jobs.append(await client.jobs.update(jobs[1].id, priority=3))
        listed = [job async for job in client.jobs.list(queue=queue, page_size=1)]
        assert [job.id for job in listed] == [jobs[0].id, jobs[1].id]
        assert listed[1].priority == 3
        other = await client.jobs.create(type="noop", schedule="@every 1h")
        run = await client.jobs.trigger(other.id)
        ended = await client.runs.wait(run.id, timeout=30, interval=0.1)
        assert ended.status == "succeeded"
        assert [w async for w in client.audit.list(target_id=str(other.id))]
        with pytest.raises(ApiError) as caught:
            await client.jobs.get(uuid.uuid4())
    assert caught.value.status == 404
