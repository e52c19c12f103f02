"""API auth against real ``jobsched api`` processes, on PostgreSQL and on SQLite.

Tokens are made as an operator would: the first admin with ``jobsched tokens
create`` on the database, the rest with ``POST /tokens``. One API process per
database serves the module; each test makes its own jobs and tokens.
"""

from __future__ import annotations

import json
import subprocess
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

from jobsched.core.access import hash_token
from tests.e2e.processes import (
    JOBSCHED,
    JobschedProcess,
    free_port,
    migrated_database,
    wait_until,
)

pytestmark = pytest.mark.e2e

CACHE_SECONDS = 1.0
CONFIG_TOKEN = "config-token-" + uuid.uuid4().hex
CONFIG_HASHED_TOKEN = "hashed-token-" + uuid.uuid4().hex


@dataclass
class SecuredApi:
    url: str
    database_url: str
    env: dict[str, str]
    admin_token: str
    process: JobschedProcess

    def client(self, token: str | None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token}"} if token is not None else {}
        return httpx.Client(base_url=self.url, headers=headers, timeout=10)

    def token(self, role: str, queues: list[str] | None = None, **extra: object) -> str:
        return self.new_token(role, queues, **extra)[0]

    def new_token(
        self, role: str, queues: list[str] | None = None, **extra: object
    ) -> tuple[str, str]:
        """A token made with POST /tokens: (the token, its id)."""
        body: dict[str, object] = {"name": f"{role}-{uuid.uuid4().hex[:8]}", "role": role}
        if queues is not None:
            body["queues"] = queues
        body.update(extra)
        with self.client(self.admin_token) as admin:
            response = admin.post("/tokens", json=body)
        assert response.status_code == 201, response.text
        created = response.json()
        return created["token"], created["id"]


def cli_token(env: dict[str, str], *arguments: str) -> str:
    done = subprocess.run(
        [JOBSCHED, "tokens", "create", *arguments],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    assert "shown only this once" in done.stderr
    return done.stdout.strip()


def start_api(env: dict[str, str], log_path: Path, *args: str) -> tuple[JobschedProcess, str]:
    port = free_port()
    process = JobschedProcess(["api", "--port", str(port), *args], env, log_path).start()
    url = f"http://127.0.0.1:{port}"
    process.wait_for_http(f"{url}/healthz")
    return process, url


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def secured_api(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[SecuredApi]:
    directory = tmp_path_factory.mktemp(f"auth-{request.param}")
    token_file = directory / "admin-token"
    token_file.write_text(CONFIG_TOKEN + "\n")
    databases = migrated_database(request.param, directory)
    database_url = next(databases)
    env = {
        "JOBSCHED_DATABASE_URL": database_url,
        "JOBSCHED_API_AUTH_ENABLED": "true",
        "JOBSCHED_API_AUTH_CACHE_SECONDS": str(CACHE_SECONDS),
        "JOBSCHED_API_AUTH_TOKENS": json.dumps(
            [
                {"name": "from-file", "role": "operate", "token_file": str(token_file)},
                {
                    "name": "from-hash",
                    "role": "read",
                    "queues": ["reports"],
                    "token_hash": hash_token(CONFIG_HASHED_TOKEN),
                },
            ]
        ),
    }
    admin_token = cli_token(env, "--name", "root", "--role", "admin")
    process, url = start_api(env, directory / "api.log")
    try:
        yield SecuredApi(url, database_url, env, admin_token, process)
    finally:
        process.stop()
        next(databases, None)


def _job(queue: str = "default", **fields: object) -> dict[str, object]:
    return {
        "name": f"job-{uuid.uuid4().hex[:10]}",
        "type": "noop",
        "schedule": "@every 1h",
        "queue": queue,
        **fields,
    }


def _create_job(api: SecuredApi, queue: str = "default") -> dict[str, object]:
    with api.client(api.admin_token) as admin:
        response = admin.post("/jobs", json=_job(queue))
    assert response.status_code == 201, response.text
    job: dict[str, object] = response.json()
    return job


def _assert_unauthenticated(response: httpx.Response, reason: str) -> None:
    assert response.status_code == 401, response.text
    assert response.headers["content-type"] == "application/problem+json"
    assert response.headers["www-authenticate"].startswith("Bearer")
    problem = response.json()
    assert problem["type"].endswith("/unauthenticated")
    assert problem["errors"][0]["field"] == "Authorization"
    assert reason in problem["detail"]


def test_requests_without_a_usable_token_are_refused(secured_api: SecuredApi) -> None:
    with secured_api.client(None) as anonymous:
        _assert_unauthenticated(anonymous.get("/jobs"), "needs an API token")
        _assert_unauthenticated(
            anonymous.get("/jobs", headers={"Authorization": "Basic cm9vdDpyb290"}), "Bearer"
        )
        _assert_unauthenticated(anonymous.post("/jobs", json=_job()), "needs an API token")
        _assert_unauthenticated(anonymous.get("/openapi.json"), "needs an API token")
        _assert_unauthenticated(anonymous.get("/docs"), "needs an API token")
        # Health stays open for probes, and metrics by default.
        assert anonymous.get("/healthz").status_code == 200
        assert anonymous.get("/readyz").status_code == 200
        assert anonymous.get("/metrics").status_code == 200
    with secured_api.client("jobsched_" + "x" * 43) as unknown:
        _assert_unauthenticated(unknown.get("/jobs"), "not known")


def test_an_expired_token_is_refused(secured_api: SecuredApi) -> None:
    token = secured_api.token("read", expires_in_seconds=1)
    with secured_api.client(token) as reader:
        assert reader.get("/jobs").status_code == 200
        deadline = time.monotonic() + 5
        while (response := reader.get("/jobs")).status_code == 200:
            assert time.monotonic() < deadline, "the token never expired"
            time.sleep(0.1)
    _assert_unauthenticated(response, "expired")


def test_a_revoked_token_is_refused_by_every_api_process_within_the_cache_bound(
    secured_api: SecuredApi, tmp_path: Path
) -> None:
    second, second_url = start_api(secured_api.env, tmp_path / "second-api.log")
    try:
        token, token_id = secured_api.new_token("read")
        with (
            secured_api.client(token) as first,
            httpx.Client(
                base_url=second_url, headers={"Authorization": f"Bearer {token}"}
            ) as other,
        ):
            # Both processes have looked the token up (and may keep it for CACHE_SECONDS).
            assert first.get("/jobs").status_code == 200
            assert other.get("/jobs").status_code == 200
            with secured_api.client(secured_api.admin_token) as admin:
                revoked_at = time.monotonic()
                assert admin.delete(f"/tokens/{token_id}").status_code == 200
            wait_until(
                lambda: (
                    other.get("/jobs").status_code == 401 and first.get("/jobs").status_code == 401
                ),
                timeout_seconds=CACHE_SECONDS + 2,
                message="the revoked token refused by both API processes",
            )
            elapsed = time.monotonic() - revoked_at
            _assert_unauthenticated(other.get("/jobs"), "revoked")
    finally:
        second.stop()
    assert elapsed <= CACHE_SECONDS + 1.0, f"revocation took {elapsed:.2f}s to take effect"


ROLE_CASES = [
    # (method, path template, body, lowest role allowed)
    ("GET", "/jobs", None, "read"),
    ("GET", "/jobs/{job}", None, "read"),
    ("GET", "/runs", None, "read"),
    ("GET", "/workers", None, "read"),
    ("GET", "/schedules/preview?schedule=@hourly", None, "read"),
    ("POST", "/jobs/{job}/pause", None, "operate"),
    ("POST", "/jobs/{job}/resume", None, "operate"),
    ("POST", "/jobs/{job}/trigger", None, "operate"),
    ("PATCH", "/jobs/{job}", {"priority": 3}, "write"),
    ("POST", "/jobs", "new-job", "write"),
    ("DELETE", "/jobs/{job}", None, "write"),
    ("GET", "/tokens", None, "admin"),
    ("GET", "/audit", None, "admin"),
]
ROLES = ["read", "operate", "write", "admin"]


def test_each_role_is_allowed_and_refused_by_kind_of_endpoint(secured_api: SecuredApi) -> None:
    tokens = {role: secured_api.token(role) for role in ROLES}
    for method, template, body, lowest in ROLE_CASES:
        for role in ROLES:
            job = _create_job(secured_api)
            path = template.format(job=job["id"])
            payload = _job() if body == "new-job" else body
            with secured_api.client(tokens[role]) as client:
                response = client.request(method, path, json=payload)
            allowed = ROLES.index(role) >= ROLES.index(lowest)
            if allowed:
                assert response.status_code < 300, (method, path, role, response.text)
            else:
                assert response.status_code == 403, (method, path, role, response.text)
                assert response.headers["content-type"] == "application/problem+json"
                assert f"needs the {lowest} role" in response.json()["detail"]


def test_shell_jobs_need_the_admin_role_and_shell_enabled(secured_api: SecuredApi) -> None:
    shell_job = _job(type="shell", payload={"command": ["true"]})
    with secured_api.client(secured_api.token("write")) as writer:
        refused = writer.post("/jobs", json=shell_job)
    assert refused.status_code == 403
    assert refused.json()["errors"][0]["field"] == "type"
    with secured_api.client(secured_api.admin_token) as admin:
        disabled = admin.post("/jobs", json=shell_job)
        assert disabled.status_code == 422
        assert disabled.json()["errors"][0]["field"] == "type"
        assert "worker.shell.enabled" in disabled.json()["detail"]
        assert admin.get("/jobs", params={"type": "shell"}).json()["items"] == []


def test_a_queue_limited_token_sees_and_acts_only_on_its_queues(secured_api: SecuredApi) -> None:
    own = _create_job(secured_api, queue="reports")
    other = _create_job(secured_api, queue="billing")
    with secured_api.client(secured_api.admin_token) as admin:
        other_run = admin.post(f"/jobs/{other['id']}/trigger").json()
        own_run = admin.post(f"/jobs/{own['id']}/trigger").json()
    token = secured_api.token("write", queues=["reports"])
    with secured_api.client(token) as scoped:
        listed = scoped.get("/jobs").json()["items"]
        assert {job["queue"] for job in listed} == {"reports"}
        assert own["id"] in {job["id"] for job in listed}
        runs = scoped.get("/runs").json()["items"]
        assert {run["queue"] for run in runs} == {"reports"}
        assert scoped.get(f"/runs/{own_run['id']}").status_code == 200
        for method, path in [
            ("GET", f"/jobs/{other['id']}"),
            ("GET", f"/jobs/{other['id']}/runs"),
            ("PATCH", f"/jobs/{other['id']}"),
            ("DELETE", f"/jobs/{other['id']}"),
            ("POST", f"/jobs/{other['id']}/trigger"),
            ("POST", f"/jobs/{other['id']}/pause"),
            ("GET", f"/runs/{other_run['id']}"),
            ("POST", f"/runs/{other_run['id']}/cancel"),
            ("POST", f"/runs/{other_run['id']}/retry"),
        ]:
            body = {"priority": 1} if method == "PATCH" else None
            response = scoped.request(method, path, json=body)
            assert response.status_code == 404, (method, path, response.text)
        moved = scoped.patch(f"/jobs/{own['id']}", json={"queue": "billing"})
        assert moved.status_code == 403
        assert moved.json()["errors"][0]["field"] == "queue"
        created = scoped.post("/jobs", json=_job("billing"))
        assert created.status_code == 403
        assert created.json()["errors"][0]["field"] == "queue"
        assert scoped.get(f"/jobs/{own['id']}").json()["queue"] == "reports"
    with secured_api.client(secured_api.admin_token) as admin:
        assert admin.get(f"/jobs/{other['id']}").json()["status"] == "active"
        assert admin.get(f"/runs/{other_run['id']}").json()["status"] == "queued"


def test_tokens_from_the_config_work_with_their_role_and_queues(secured_api: SecuredApi) -> None:
    reports = _create_job(secured_api, queue="reports")
    billing = _create_job(secured_api, queue="billing")
    with secured_api.client(CONFIG_TOKEN) as from_file:
        assert from_file.post(f"/jobs/{billing['id']}/pause").status_code == 200
        assert from_file.post("/jobs", json=_job()).status_code == 403
    with secured_api.client(CONFIG_HASHED_TOKEN) as from_hash:
        assert from_hash.get(f"/jobs/{reports['id']}").status_code == 200
        assert from_hash.get(f"/jobs/{billing['id']}").status_code == 404
        assert from_hash.post(f"/jobs/{reports['id']}/pause").status_code == 403


def test_the_openapi_document_declares_the_bearer_scheme_and_each_role(
    secured_api: SecuredApi,
) -> None:
    with secured_api.client(secured_api.token("read")) as reader:
        document = reader.get("/openapi.json").json()
        assert reader.get("/docs").status_code == 200
    schemes = document["components"]["securitySchemes"]
    assert any(scheme.get("scheme") == "bearer" for scheme in schemes.values())
    paths = document["paths"]
    assert paths["/jobs"]["get"]["x-required-role"] == "read"
    assert paths["/jobs"]["post"]["x-required-role"] == "write"
    assert paths["/jobs/{id}/trigger"]["post"]["x-required-role"] == "operate"
    assert paths["/tokens"]["post"]["x-required-role"] == "admin"
    assert paths["/healthz"]["get"]["security"] == []


def _log_line(process: JobschedProcess, text: str) -> bool:
    return text in process.log()


def test_on_a_non_loopback_address_auth_is_on_unless_turned_off_explicitly(
    sqlite_url: str, tmp_path: Path
) -> None:
    env = {"JOBSCHED_DATABASE_URL": sqlite_url}
    guarded, url = start_api(env, tmp_path / "default.log", "--host", "0.0.0.0")
    try:
        assert httpx.get(f"{url}/jobs").status_code == 401
        assert _log_line(guarded, "API auth on (0.0.0.0 is not a loopback address)")
    finally:
        guarded.stop()
    open_env = {**env, "JOBSCHED_API_AUTH_ENABLED": "false"}
    opened, url = start_api(open_env, tmp_path / "open.log", "--host", "0.0.0.0")
    try:
        assert httpx.get(f"{url}/jobs").status_code == 200
        assert _log_line(opened, "WARNING")
        assert _log_line(opened, "API auth is OFF on 0.0.0.0 (api.auth.enabled=false)")
    finally:
        opened.stop()


def test_on_loopback_auth_is_off_by_default_and_says_so(sqlite_url: str, tmp_path: Path) -> None:
    process, url = start_api({"JOBSCHED_DATABASE_URL": sqlite_url}, tmp_path / "api.log")
    try:
        assert httpx.get(f"{url}/jobs").status_code == 200
        assert _log_line(process, "API auth off: listening on 127.0.0.1 (loopback) only")
    finally:
        process.stop()
