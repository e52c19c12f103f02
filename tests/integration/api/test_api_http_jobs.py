"""``http`` jobs over the API: URLs workers would refuse are refused, secrets never shown."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from jobsched.api import create_app
from jobsched.config.settings import Settings
from jobsched.queue.database import DatabaseQueue
from jobsched.storage.database import SQLStorage
from tests.integration.api.api_assertions import assert_no_jobs, assert_problem
from tests.integration.api.conftest import BASE_URL


def http_body(url: str, **payload: Any) -> dict[str, Any]:
    return {"type": "http", "payload": {"url": url, **payload}}


REFUSED_URLS = [
    ("ftp://files.example.com/report.csv", "http or https"),
    ("file:///etc/passwd", "http or https"),
    ("gopher://example.com:70/", "http or https"),
    ("example.com/hook", "http or https"),
    ("https://user:secret@example.com/hook", "credentials"),
    ("https://token@example.com/hook", "credentials"),
    ("http://127.0.0.1:8080/jobs", "loopback"),
    ("http://localhost:5432/", "loopback"),
    ("http://LocalHost./", "loopback"),
    ("http://2130706433/", "loopback"),
    ("http://0x7f.1/", "loopback"),
    ("http://[::1]/", "loopback"),
    ("http://[::ffff:127.0.0.1]/", "loopback"),
    ("http://0.0.0.0:8080/", "unspecified"),
    ("http://169.254.169.254/latest/meta-data/", "link-local"),
    ("http://[fe80::1]/", "link-local"),
    ("http://10.0.0.8/", "private"),
    ("http://192.168.1.1/", "private"),
    ("http://[fd00::1]/", "private"),
    ("http://100.64.1.1/", "shared"),
    ("http://192.0.2.1/", "documentation"),
    ("http://224.0.0.1/", "multicast"),
]


@pytest.mark.parametrize(("url", "reason"), REFUSED_URLS)
async def test_create_refuses_what_workers_would_refuse(
    api: httpx.AsyncClient, storage: SQLStorage, url: str, reason: str
) -> None:
    problem = assert_problem(await api.post("/jobs", json=http_body(url)), 422, "payload.url")
    assert reason in problem["errors"][0]["message"]
    await assert_no_jobs(storage)


async def test_a_refused_address_names_the_setting_that_admits_it(api: httpx.AsyncClient) -> None:
    response = await api.post("/jobs", json=http_body("http://2130706433:5432/"))
    problem = assert_problem(response, 422, "payload.url")
    assert problem["errors"][0]["message"] == (
        "points at 127.0.0.1 (2130706433), a loopback address that workers refuse to call "
        "unless worker.http.allowed_networks admits it"
    )
    assert "userinfo" not in problem["detail"]


async def test_credentials_in_a_refused_url_are_not_echoed(api: httpx.AsyncClient) -> None:
    response = await api.post("/jobs", json=http_body("https://ci:hunter2@example.com/"))
    problem = assert_problem(response, 422, "payload.url")
    assert "hunter2" not in response.text
    assert "from_env" in problem["errors"][0]["message"]


async def test_batch_names_the_job_at_fault_and_creates_none(
    api: httpx.AsyncClient, storage: SQLStorage
) -> None:
    jobs = [http_body("https://example.com/fine"), http_body("http://169.254.169.254/")]
    response = await api.post("/jobs/batch", json={"jobs": jobs})
    assert_problem(response, 422, "jobs.1.payload.url")
    await assert_no_jobs(storage)


async def test_patch_refuses_a_new_url_or_type_and_changes_nothing(
    api: httpx.AsyncClient, storage: SQLStorage
) -> None:
    created = (await api.post("/jobs", json=http_body("https://example.com/hook"))).json()
    other = (
        await api.post("/jobs", json={"type": "custom", "payload": {"url": "http://127.0.0.1/"}})
    ).json()

    response = await api.patch(
        f"/jobs/{created['id']}", json={"payload": {"url": "http://[::ffff:10.0.0.1]/"}}
    )
    assert_problem(response, 422, "payload.url")
    response = await api.patch(f"/jobs/{other['id']}", json={"type": "http"})
    assert_problem(response, 422, "payload.url")

    assert (await storage.get_job(uuid.UUID(created["id"]))).payload == {
        "url": "https://example.com/hook"
    }
    assert (await storage.get_job(uuid.UUID(other["id"]))).type == "custom"


@pytest.mark.parametrize(
    "url",
    [
        "https://example.com/hook",
        "http://hooks.internal.example:8080/x",  # a name: judged by the worker, on connect
        "http://8.8.8.8/",
        "http://[2606:4700::1111]/",
    ],
)
async def test_public_and_unresolved_targets_are_accepted(api: httpx.AsyncClient, url: str) -> None:
    response = await api.post("/jobs", json=http_body(url))
    assert response.status_code == 201, response.text


async def test_other_job_types_are_not_judged(api: httpx.AsyncClient) -> None:
    response = await api.post("/jobs", json={"type": "custom", "payload": {"url": "ftp://[::1]/"}})
    assert response.status_code == 201, response.text


@pytest.fixture
async def configured_api(
    storage: SQLStorage, request: pytest.FixtureRequest
) -> AsyncIterator[httpx.AsyncClient]:
    """An API whose own worker.http settings are ``request.param``."""
    settings = Settings(worker={"http": request.param})
    app = create_app(storage, DatabaseQueue(storage), settings)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url=BASE_URL
    ) as client:
        yield client


@pytest.mark.parametrize(
    "configured_api",
    [{"allowed_networks": ["10.0.0.0/8", "127.0.0.0/8", "::1/128"]}],
    indirect=True,
)
async def test_the_api_admits_what_its_allowed_networks_admit(
    configured_api: httpx.AsyncClient,
) -> None:
    for url in ("http://10.1.2.3/", "http://localhost:9000/hook", "http://[::ffff:127.0.0.1]/"):
        response = await configured_api.post("/jobs", json=http_body(url))
        assert response.status_code == 201, (url, response.text)
    refused = await configured_api.post("/jobs", json=http_body("http://169.254.169.254/"))
    assert_problem(refused, 422, "payload.url")


SECRET_HEADERS = {
    "Authorization": "Bearer live-token",
    "proxy-authorization": "Basic cHJveHk=",
    "Cookie": "session=abc",
    "X-Api-Key": "key-123",
    "X-Signing-Secret": "shh",  # matched by the default pattern
    "X-Team": "billing",  # not a secret
    "X-Billing-Token": {"from_env": "BILLING_API_TOKEN"},  # a reference, not a secret
}
SHOWN_HEADERS = {
    "Authorization": "***",
    "proxy-authorization": "***",
    "Cookie": "***",
    "X-Api-Key": "***",
    "X-Signing-Secret": "***",
    "X-Team": "billing",
    "X-Billing-Token": {"from_env": "BILLING_API_TOKEN"},
}


async def test_secret_header_values_are_never_shown_back(
    api: httpx.AsyncClient, storage: SQLStorage
) -> None:
    body = http_body("https://example.com/hook", headers=SECRET_HEADERS)
    created = await api.post("/jobs", json=body)
    assert created.status_code == 201, created.text
    job_id = created.json()["id"]
    batch = await api.post("/jobs/batch", json={"jobs": [body]})

    answers = [
        created.json(),
        batch.json()["items"][0],
        (await api.get(f"/jobs/{job_id}")).json(),
        (await api.get(f"/jobs/{job_id}")).json(),  # from the cache, where there is one
        (await api.get("/jobs")).json()["items"][0],
        (await api.post(f"/jobs/{job_id}/pause")).json(),
        (await api.post(f"/jobs/{job_id}/resume")).json(),
        (await api.patch(f"/jobs/{job_id}", json={"priority": 3})).json(),
    ]
    for answer in answers:
        assert answer["payload"]["headers"] == SHOWN_HEADERS
    for secret in ("live-token", "cHJveHk=", "abc", "key-123", "shh"):
        assert all(secret not in str(answer) for answer in answers)
    stored = await storage.get_job(uuid.UUID(job_id))
    assert stored.payload["headers"] == SECRET_HEADERS  # the worker still sends them


async def test_a_payload_sent_back_with_stars_keeps_its_secrets(
    api: httpx.AsyncClient, storage: SQLStorage
) -> None:
    created = (
        await api.post(
            "/jobs", json=http_body("https://example.com/a", headers={"Authorization": "Bearer t"})
        )
    ).json()
    shown = created["payload"]
    edited = {
        **shown,
        "url": "https://example.com/b",
        "headers": {**shown["headers"], "X-New": "1"},
    }

    response = await api.patch(f"/jobs/{created['id']}", json={"payload": edited})
    assert response.status_code == 200, response.text
    stored = await storage.get_job(uuid.UUID(created["id"]))
    assert stored.payload == {
        "url": "https://example.com/b",
        "headers": {"Authorization": "Bearer t", "X-New": "1"},
    }

    replaced = {**edited, "headers": {"Authorization": "Bearer new"}}
    await api.patch(f"/jobs/{created['id']}", json={"payload": replaced})
    assert (await storage.get_job(uuid.UUID(created["id"]))).payload["headers"] == {
        "Authorization": "Bearer new"
    }


@pytest.mark.parametrize("configured_api", [{"redact_header_pattern": "x-team"}], indirect=True)
async def test_the_redaction_pattern_is_configurable(configured_api: httpx.AsyncClient) -> None:
    headers = {"X-Team": "billing", "X-Other": "shown", "Authorization": "always hidden"}
    response = await configured_api.post(
        "/jobs", json=http_body("https://example.com/", headers=headers)
    )
    assert response.json()["payload"]["headers"] == {
        "X-Team": "***",
        "X-Other": "shown",
        "Authorization": "***",
    }
