"""``Idempotency-Key`` on POST /jobs, /jobs/batch and /jobs/{id}/trigger, on real API processes."""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from jobsched.client import ApiError, AsyncClient
from tests.clients.cli import ok_json
from tests.clients.server import Server
from tests.e2e.processes import JobschedProcess, free_port

pytestmark = pytest.mark.e2e


def _key() -> str:
    return f"key-{uuid.uuid4().hex}"


def _http(server: Server) -> httpx.Client:
    headers = {"Authorization": f"Bearer {server.admin_token}"}
    return httpx.Client(base_url=server.url, headers=headers, timeout=30)


def test_a_repeat_with_the_same_key_and_body_gets_the_first_answer(server: Server) -> None:
    key = _key()
    body = {"type": "noop", "schedule": "@every 1h", "queue": f"q-{uuid.uuid4().hex[:8]}"}
    with _http(server) as http:
        first = http.post("/jobs", json=body, headers={"Idempotency-Key": key})
        again = http.post(
            "/jobs", json=dict(reversed(body.items())), headers={"Idempotency-Key": key}
        )
        listed = http.get("/jobs", params={"queue": body["queue"]}).json()["items"]
    assert first.status_code == again.status_code == 201
    assert "Idempotent-Replayed" not in first.headers
    assert again.headers["Idempotent-Replayed"] == "true"
    assert again.json() == first.json()
    assert again.headers["Location"] == first.headers["Location"] == f"/jobs/{first.json()['id']}"
    assert [job["id"] for job in listed] == [first.json()["id"]]


def test_the_same_key_with_another_body_is_a_422_naming_the_header(server: Server) -> None:
    key = _key()
    with _http(server) as http:
        assert http.post("/jobs", json={"type": "noop"}, headers={"Idempotency-Key": key})
        refused = http.post(
            "/jobs", json={"type": "noop", "priority": 1}, headers={"Idempotency-Key": key}
        )
    assert refused.status_code == 422
    problem = refused.json()
    assert problem["errors"][0]["field"] == "Idempotency-Key"
    assert "another request body" in problem["detail"]


def test_keys_are_per_caller_and_a_refused_request_frees_its_key(server: Server) -> None:
    key = _key()
    with _http(server) as admin, server.client(server.token("write")) as writer:
        bad = admin.post("/jobs", json={"type": "noop", "priority": 1000},
                         headers={"Idempotency-Key": key})  # fmt: skip
        assert bad.status_code == 422
        good = admin.post("/jobs", json={"type": "noop"}, headers={"Idempotency-Key": key})
        assert good.status_code == 201
        assert "Idempotent-Replayed" not in good.headers
        other = writer.jobs.create(type="noop", idempotency_key=key)
    assert str(other.id) != good.json()["id"]


def test_trigger_and_batch_with_a_key_through_the_client(server: Server) -> None:
    key = _key()
    with server.client() as client:
        job = client.jobs.create(type="noop", schedule="@every 1h", queue="nobody-takes-this")
        first = client.jobs.trigger(job.id, payload={"n": 1}, idempotency_key=key)
        again = client.jobs.trigger(job.id, payload={"n": 1}, idempotency_key=key)
        assert again.id == first.id
        assert [run.id for run in client.jobs.runs(job.id)] == [first.id]
        with pytest.raises(ApiError) as caught:
            client.jobs.trigger(job.id, payload={"n": 2}, idempotency_key=key)
        assert (caught.value.status, caught.value.field) == (422, "Idempotency-Key")
    batch = {"jobs": [{"type": "noop"}, {"type": "noop"}]}
    with _http(server) as http:
        answers = [
            http.post("/jobs/batch", json=batch, headers={"Idempotency-Key": key}) for _ in "ab"
        ]
    assert [answer.status_code for answer in answers] == [201, 201]
    assert answers[0].json() == answers[1].json()


@pytest.fixture
def postgres_api(postgres_url: str, tmp_path: Path) -> Iterator[str]:
    port = free_port()
    env = {"JOBSCHED_DATABASE_URL": postgres_url, "JOBSCHED_API_AUTH_ENABLED": "false"}
    process = JobschedProcess(["api", "--port", str(port)], env, tmp_path / "api.log").start()
    url = f"http://127.0.0.1:{port}"
    try:
        process.wait_for_http(f"{url}/readyz")
        yield url
    finally:
        process.stop()


async def test_twenty_concurrent_requests_with_one_key_create_one_job(postgres_api: str) -> None:
    key = _key()
    queue = f"q-{uuid.uuid4().hex[:8]}"
    async with AsyncClient(postgres_api) as client:
        created = await asyncio.gather(
            *(client.jobs.create(type="noop", queue=queue, idempotency_key=key) for _ in range(20))
        )
        listed = [job async for job in client.jobs.list(queue=queue)]
    assert len({job.id for job in created}) == 1
    assert [job.id for job in listed] == [created[0].id]


def test_the_cli_passes_the_key(server: Server) -> None:
    key = _key()
    env = server.cli_env()
    first = ok_json("jobs", "create", "--type", "noop", "--idempotency-key", key, env=env)
    again = ok_json("jobs", "create", "--type", "noop", "--idempotency-key", key, env=env)
    assert again == first
    runs = [
        ok_json("jobs", "trigger", first["id"], "--idempotency-key", key, env=env) for _ in range(2)
    ]
    assert runs[0] == runs[1]
