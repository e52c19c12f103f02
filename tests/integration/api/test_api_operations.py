"""Health, readiness, metrics, the OpenAPI document, and errors no route raises itself."""

from __future__ import annotations

import logging
from importlib import metadata

import httpx
import pytest
from fastapi import FastAPI
from prometheus_client import REGISTRY

from jobsched.api import create_app
from jobsched.config.settings import Settings
from jobsched.queue.database import DatabaseQueue
from jobsched.storage.database import SQLStorage
from tests.integration.api.api_assertions import assert_problem
from tests.integration.api.conftest import BASE_URL

# Nothing listens on port 1: connecting is refused at once.
UNREACHABLE_DATABASE_URL = "postgresql://postgres@127.0.0.1:1/jobsched"


def _client(app: FastAPI) -> httpx.AsyncClient:
    return httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url=BASE_URL)


async def test_healthz_and_readyz_answer_ok(api: httpx.AsyncClient) -> None:
    for path in ("/healthz", "/readyz"):
        response = await api.get(path)
        assert response.status_code == 200, response.text
        assert response.json() == {"status": "ok"}


async def test_readyz_runs_the_extra_checks(storage: SQLStorage) -> None:
    calls: list[str] = []

    async def broker() -> None:
        calls.append("broker")

    async def cache() -> None:
        calls.append("cache")
        raise ConnectionError("cache at 10.0.0.1 refused")

    healthy = create_app(storage, DatabaseQueue(storage), Settings(), readiness_checks=[broker])
    unhealthy = create_app(
        storage, DatabaseQueue(storage), Settings(), readiness_checks=[broker, cache]
    )
    async with _client(healthy) as good, _client(unhealthy) as bad:
        ready = await good.get("/readyz")
        not_ready = await bad.get("/readyz")
        alive = await bad.get("/healthz")

    assert ready.status_code == 200
    problem = assert_problem(not_ready, 503, "cache")
    assert "10.0.0.1" not in not_ready.text
    assert problem["type"] == "https://jobsched.dev/problems/not-ready"
    assert alive.status_code == 200
    assert calls == ["broker", "broker", "cache"]


async def test_an_unreachable_database_is_not_ready_and_503_everywhere() -> None:
    storage = SQLStorage.from_url(UNREACHABLE_DATABASE_URL)
    try:
        app = create_app(storage, DatabaseQueue(storage), Settings())
        async with _client(app) as client:
            ready = await client.get("/readyz")
            listed = await client.get("/jobs")
            created = await client.post("/jobs", json={"type": "noop"})
            refused = await client.post("/jobs", json={"type": "noop", "timezone": "Nowhere"})
            alive = await client.get("/healthz")
    finally:
        await storage.close()

    assert_problem(ready, 503, "storage")
    for response in (listed, created):
        problem = assert_problem(response, 503, None)
        assert problem["type"] == "https://jobsched.dev/problems/storage-unavailable"
        assert "127.0.0.1" not in response.text
        assert response.headers["retry-after"] == "5"
    # Bad input is refused before the database is needed.
    assert_problem(refused, 422, "timezone")
    assert alive.status_code == 200


async def test_unknown_routes_and_methods_are_problems(api: httpx.AsyncClient) -> None:
    assert_problem(await api.get("/no/such/thing"), 404, None)
    wrong_method = await api.put("/jobs")
    problem = assert_problem(wrong_method, 405, None)
    assert problem["type"] == "https://jobsched.dev/problems/method-not-allowed"
    assert "POST" in wrong_method.headers["allow"]


async def test_unexpected_errors_are_logged_but_not_leaked(
    app: FastAPI, api: httpx.AsyncClient, caplog: pytest.LogCaptureFixture
) -> None:
    async def explode() -> None:
        raise RuntimeError("secret-connection-string")

    app.add_api_route("/explode", explode)

    with caplog.at_level(logging.ERROR, logger="jobsched.api"):
        response = await api.get("/explode")

    problem = assert_problem(response, 500, None)
    assert problem["type"] == "https://jobsched.dev/problems/internal-error"
    assert "secret" not in response.text
    assert "RuntimeError" not in response.text
    logged = [record for record in caplog.records if record.exc_info]
    assert logged
    assert "secret-connection-string" in caplog.text


def _requests_counted(route: str, method: str, status: str) -> float:
    labels = {"route": route, "method": method, "status": status}
    return REGISTRY.get_sample_value("api_requests_total", labels) or 0.0


async def test_requests_are_counted_by_route_template(api: httpx.AsyncClient) -> None:
    found_before = _requests_counted("/jobs/{id}", "GET", "200")
    missing_before = _requests_counted("/jobs/{id}", "GET", "404")
    unmatched_before = _requests_counted("unmatched", "GET", "404")

    job_id = (await api.post("/jobs", json={"type": "noop"})).json()["id"]
    await api.get(f"/jobs/{job_id}")
    await api.get(f"/jobs/{job_id}")
    await api.get("/jobs/00000000-0000-7000-8000-000000000000")
    await api.get("/scanner/probe")
    metrics = await api.get("/metrics")

    assert _requests_counted("/jobs/{id}", "GET", "200") == found_before + 2
    assert _requests_counted("/jobs/{id}", "GET", "404") == missing_before + 1
    assert _requests_counted("unmatched", "GET", "404") == unmatched_before + 1
    assert metrics.status_code == 200
    assert metrics.headers["content-type"].startswith("text/plain")
    assert 'api_requests_total{method="GET",route="/jobs/{id}",status="200"}' in metrics.text
    assert job_id not in metrics.text


async def test_openapi_document_lists_every_endpoint(api: httpx.AsyncClient) -> None:
    response = await api.get("/openapi.json")

    assert response.status_code == 200
    document = response.json()
    assert document["info"]["title"] == "jobsched"
    assert document["info"]["version"] == metadata.version("jobsched")
    expected = {
        "/jobs": {"get", "post"},
        "/jobs/{id}": {"get", "patch", "delete"},
        "/jobs/{id}/trigger": {"post"},
        "/jobs/{id}/pause": {"post"},
        "/jobs/{id}/resume": {"post"},
        "/jobs/{id}/runs": {"get"},
        "/runs": {"get"},
        "/runs/{id}": {"get"},
        "/schedules/preview": {"get"},
        "/healthz": {"get"},
        "/readyz": {"get"},
        "/metrics": {"get"},
    }
    for path, methods in expected.items():
        assert path in document["paths"], path
        assert methods <= set(document["paths"][path]), path
    create = document["paths"]["/jobs"]["post"]
    assert "201" in create["responses"]
    assert "JobCreate" in document["components"]["schemas"]
    assert "Problem" in document["components"]["schemas"]
