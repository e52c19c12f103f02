"""Hostile input: refused as a problem naming the field at fault, on both databases, and
nothing written. Bodies are sent as raw JSON text: a client library would not encode a
lone surrogate, ``NaN`` or ``1e400`` for us.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import AsyncIterator
from typing import Any

import httpx
import pytest

from jobsched.storage.database import SQLStorage
from tests.integration.api.api_assertions import assert_no_jobs, assert_no_runs, assert_problem

JSON = {"content-type": "application/json"}
DEEP = "[" * 70 + "]" * 70

# (case id, JSON text of a payload, field at fault below "payload")
BAD_PAYLOADS: list[tuple[str, str, str]] = [
    ("NUL in a nested string", '{"a": {"b": "x\\u0000y"}}', "a.b"),
    ("surrogate in a nested string", '{"a": {"b": "\\ud800"}}', "a.b"),
    ("low surrogate in a list", '{"a": ["fine", "\\udfff"]}', "a.1"),
    ("NUL in a key", '{"a": {"k\\u0000": 1}}', "a.k\\x00"),
    ("surrogate in a key", '{"\\udbff": 1}', "\\udbff"),
    ("NaN", '{"n": NaN}', "n"),
    ("Infinity", '{"a": [1, Infinity]}', "a.1"),
    ("-Infinity", '{"a": {"b": -Infinity}}', "a.b"),
    ("1e400", '{"big": 1e400}', "big"),
    ("an integer of 5000 digits", '{"big": [' + "9" * 5000 + "]}", "big.0"),
]

# (case id, the JSON text of a job's fields after "type", field at fault)
BAD_FIELDS: list[tuple[str, str, str]] = [
    ("NUL in name", '"name": "a\\u0000b"', "name"),
    ("surrogate in name", '"name": "\\ud83d"', "name"),
    ("NUL in schedule", '"schedule": "@daily\\u0000"', "schedule"),
    ("NUL in timezone", '"schedule": "@daily", "timezone": "UTC\\u0000"', "timezone"),
    ("surrogate in queue", '"queue": "q\\udc00"', "queue"),
    ("NUL in run_at", '"run_at": "2030-01-01T00:00:00Z\\u0000"', "run_at"),
    ("1e400 timeout", '"timeout_seconds": 1e400', "timeout_seconds"),
    ("Infinity timeout", '"timeout_seconds": Infinity', "timeout_seconds"),
    ("NaN delay", '"retry": {"initial_delay_seconds": NaN}', "retry.initial_delay_seconds"),
    ("-Infinity priority", '"priority": -Infinity', "priority"),
    ("timeout past ten years", '"timeout_seconds": 1e300', "timeout_seconds"),
    ("delay past ten years", '"retry": {"max_delay_seconds": 1e308}', "retry.max_delay_seconds"),
    ("grace past ten years", '"misfire_grace_seconds": 1e12', "misfire_grace_seconds"),
    ("run_at before year 1 in UTC", '"run_at": "0001-01-01T00:00:00+01:00"', "run_at"),
    ("run_at after year 9999 in UTC", '"run_at": "9999-12-31T23:59:59-01:00"', "run_at"),
    ("surrogate in an unknown field", '"\\ud800": 1', "\\ud800"),
    ("payload nested too deep", f'"payload": {{"a": {DEEP}}}', "payload.a" + ".0" * 62),
    ("payload too large", '"payload": {"blob": "' + "x" * 300_000 + '"}', "payload"),
    *[(case, f'"payload": {text}', f"payload.{field}") for case, text, field in BAD_PAYLOADS],
]

FIELD_CASES = [pytest.param(text, field, id=case) for case, text, field in BAD_FIELDS]
PAYLOAD_CASES = [pytest.param(text, field, id=case) for case, text, field in BAD_PAYLOADS]


def _job_text(fields: str) -> str:
    return '{"type": "noop", ' + fields + "}"


@pytest.fixture
async def job_id(api: httpx.AsyncClient) -> uuid.UUID:
    created = await api.post("/jobs", json={"type": "noop", "schedule": "@daily"})
    assert created.status_code == 201, created.text
    return uuid.UUID(created.json()["id"])


@pytest.mark.parametrize(("fields", "field"), FIELD_CASES)
async def test_create_refuses_hostile_fields(
    api: httpx.AsyncClient, storage: SQLStorage, fields: str, field: str
) -> None:
    response = await api.post("/jobs", content=_job_text(fields), headers=JSON)

    assert_problem(response, 422, field)
    await assert_no_jobs(storage)


@pytest.mark.parametrize(("fields", "field"), FIELD_CASES)
async def test_patch_refuses_hostile_fields(
    api: httpx.AsyncClient, storage: SQLStorage, job_id: uuid.UUID, fields: str, field: str
) -> None:
    before = await storage.get_job(job_id)

    response = await api.patch(f"/jobs/{job_id}", content=_job_text(fields), headers=JSON)

    assert_problem(response, 422, field)
    assert await storage.get_job(job_id) == before


@pytest.mark.parametrize(("fields", "field"), FIELD_CASES)
async def test_batch_refuses_hostile_fields_naming_the_item(
    api: httpx.AsyncClient, storage: SQLStorage, fields: str, field: str
) -> None:
    body = '{"jobs": [{"type": "noop"}, ' + _job_text(fields) + "]}"

    response = await api.post("/jobs/batch", content=body, headers=JSON)

    if field == "payload.a" + ".0" * 62:  # two levels deeper in a batch: jobs, 1
        field = "jobs.1.payload.a" + ".0" * 60
    else:
        field = f"jobs.1.{field}"
    assert_problem(response, 422, field)
    await assert_no_jobs(storage)


@pytest.mark.parametrize(("payload", "field"), PAYLOAD_CASES)
async def test_trigger_refuses_a_hostile_payload(
    api: httpx.AsyncClient, storage: SQLStorage, job_id: uuid.UUID, payload: str, field: str
) -> None:
    response = await api.post(
        f"/jobs/{job_id}/trigger", content=f'{{"payload": {payload}}}', headers=JSON
    )

    assert_problem(response, 422, f"payload.{field}")
    await assert_no_runs(storage)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        pytest.param('{"name": "t", "role": "read", "queues": ["a\\u0000"]}', "queues.0", id="NUL"),
        pytest.param(
            '{"name": "t", "role": "read", "queues": ["\\ud800"]}', "queues.0", id="surrogate"
        ),
        pytest.param(
            '{"name": "t", "role": "read", "expires_in_seconds": NaN}',
            "expires_in_seconds",
            id="NaN",
        ),
    ],
)
async def test_token_creation_refuses_hostile_values(
    api: httpx.AsyncClient, body: str, field: str
) -> None:
    response = await api.post("/tokens", content=body, headers=JSON)

    assert_problem(response, 422, field)
    assert (await api.get("/tokens")).json()["items"] == []


async def test_trigger_refuses_a_payload_past_the_size_limit(
    api: httpx.AsyncClient, storage: SQLStorage, job_id: uuid.UUID
) -> None:
    response = await api.post(
        f"/jobs/{job_id}/trigger", json={"payload": {"blob": "x" * (256 * 1024)}}
    )

    assert_problem(response, 422, "payload")
    await assert_no_runs(storage)


async def test_a_payload_at_the_size_limit_is_taken(api: httpx.AsyncClient) -> None:
    blob = "x" * (256 * 1024 - len('{"blob":""}'))

    response = await api.post("/jobs", json={"type": "noop", "payload": {"blob": blob}})

    assert response.status_code == 201, response.text[:500]


@pytest.mark.parametrize(
    ("path", "field"),
    [
        pytest.param("/jobs?type=a%00b", "type", id="NUL in a filter"),
        pytest.param("/jobs?colour=blue", "colour", id="unknown parameter"),
        pytest.param("/jobs?limit=5&Limit=6", "Limit", id="parameter in another case"),
        pytest.param("/runs?job=1", "job", id="unknown parameter of runs"),
        pytest.param("/workers?verbose=1", "verbose", id="unknown parameter of workers"),
        pytest.param("/healthz?x=1", "x", id="unknown parameter of healthz"),
        pytest.param("/schedules/preview?schedule=%40daily%00", "schedule", id="NUL in schedule"),
        pytest.param(
            "/schedules/preview?schedule=%40daily&after=0001-01-01T00:00:00%2B01:00",
            "after",
            id="after before year 1 in UTC",
        ),
        pytest.param(
            "/schedules/preview?schedule=%40daily&after=9999-12-31T23:59:59-01:00",
            "after",
            id="after past year 9999 in UTC",
        ),
        pytest.param("/audit?since=0001-01-01T00:00:00%2B01:00", "since", id="since overflows"),
        pytest.param("/audit?action=job.created%00", "action", id="NUL in an audit filter"),
        pytest.param("/tokens/a%00b", "id", id="NUL in a path parameter"),
    ],
)
async def test_queries_and_paths_with_hostile_values_are_refused(
    api: httpx.AsyncClient, path: str, field: str
) -> None:
    method = "DELETE" if path.startswith("/tokens/") else "GET"

    response = await api.request(method, path)

    assert_problem(response, 422, field)


@pytest.mark.parametrize(
    ("content_type", "kind"),
    [
        pytest.param("text/plain", "unsupported-media-type", id="text"),
        pytest.param("application/x-www-form-urlencoded", "unsupported-media-type", id="form"),
        pytest.param(None, "unsupported-media-type", id="no content type"),
    ],
)
async def test_a_body_that_is_not_sent_as_json_is_refused(
    api: httpx.AsyncClient, storage: SQLStorage, content_type: str | None, kind: str
) -> None:
    headers = {"content-type": content_type} if content_type else {}
    request = api.build_request("POST", "/jobs", content=b'{"type": "noop"}', headers=headers)
    assert request.headers.get("content-type") == content_type

    response = await api.send(request)

    problem = assert_problem(response, 415, "Content-Type")
    assert problem["type"] == f"https://jobsched.dev/problems/{kind}"
    await assert_no_jobs(storage)


async def test_a_json_subtype_is_taken(api: httpx.AsyncClient) -> None:
    response = await api.post(
        "/jobs",
        content=b'{"type": "noop"}',
        headers={"content-type": "application/merge-patch+json; charset=utf-8"},
    )

    assert response.status_code == 201, response.text


async def test_nesting_past_json_depth_max_is_refused_even_past_recursion_limits(
    api: httpx.AsyncClient, storage: SQLStorage
) -> None:
    body = '{"type": "noop", "payload": {"a": ' + "[" * 100_000 + "]" * 100_000 + "}}"

    response = await api.post("/jobs", content=body, headers=JSON)

    problem = assert_problem(response, 422, None)
    assert problem["errors"][0]["field"] in {"body", "payload.a" + ".0" * 62}
    await assert_no_jobs(storage)


# (case id, type, payload, field at fault)
BAD_HANDLER_PAYLOADS: list[tuple[str, str, dict[str, Any], str]] = [
    ("http without url", "http", {"method": "POST"}, "payload.url"),
    ("http url not a string", "http", {"url": 5}, "payload.url"),
    (
        "http unknown method",
        "http",
        {"url": "https://a.example/", "method": "FETCH"},
        "payload.method",
    ),
    (
        "http method not a string",
        "http",
        {"url": "https://a.example/", "method": 1},
        "payload.method",
    ),
    (
        "http header not a string",
        "http",
        {"url": "https://a.example/", "headers": {"X-Count": 1}},
        "payload.headers.X-Count",
    ),
    (
        "http header from_env with extra keys",
        "http",
        {"url": "https://a.example/", "headers": {"X-Key": {"from_env": "K", "or": "v"}}},
        "payload.headers.X-Key",
    ),
    (
        "http headers a list",
        "http",
        {"url": "https://a.example/", "headers": []},
        "payload.headers",
    ),
    (
        "http zero timeout",
        "http",
        {"url": "https://a.example/", "timeout_seconds": 0},
        "payload.timeout_seconds",
    ),
    (
        "http negative timeout",
        "http",
        {"url": "https://a.example/", "timeout_seconds": -1},
        "payload.timeout_seconds",
    ),
    ("http unknown key", "http", {"url": "https://a.example/", "verb": "GET"}, "payload.verb"),
    ("shell without command", "shell", {}, "payload.command"),
    ("shell command a string", "shell", {"command": "rm -rf /"}, "payload.command"),
    ("shell empty command", "shell", {"command": []}, "payload.command"),
    ("shell command not strings", "shell", {"command": ["ls", 1]}, "payload.command.1"),
    ("shell command without program", "shell", {"command": [""]}, "payload.command"),
]


@pytest.mark.parametrize(
    ("job_type", "payload", "field"),
    [pytest.param(t, p, f, id=case) for case, t, p, f in BAD_HANDLER_PAYLOADS],
)
async def test_built_in_handlers_payloads_are_checked_at_creation(
    api: httpx.AsyncClient, storage: SQLStorage, job_type: str, payload: dict[str, Any], field: str
) -> None:
    response = await api.post("/jobs", json={"type": job_type, "payload": payload})

    assert_problem(response, 422, field)
    await assert_no_jobs(storage)


async def test_a_patch_to_a_built_in_type_checks_the_payload_too(
    api: httpx.AsyncClient, storage: SQLStorage, job_id: uuid.UUID
) -> None:
    before = await storage.get_job(job_id)

    response = await api.patch(f"/jobs/{job_id}", json={"type": "http"})

    assert_problem(response, 422, "payload.url")
    assert await storage.get_job(job_id) == before


async def test_a_valid_http_payload_is_taken(api: httpx.AsyncClient) -> None:
    payload = {
        "url": "https://hooks.example.com/a",
        "method": "post",
        "headers": {"X-Team": "billing", "Authorization": {"from_env": "TOKEN"}},
        "body": {"any": ["json", 1, None]},
        "timeout_seconds": 2,
        "retry_on_status": [409],
        "follow_redirects": True,
    }

    response = await api.post("/jobs", json={"type": "http", "payload": payload})

    assert response.status_code == 201, response.text


async def test_a_body_past_max_body_bytes_is_refused_with_413(
    api: httpx.AsyncClient, storage: SQLStorage
) -> None:
    body = _job_text('"payload": {"blob": "' + "x" * (1024 * 1024) + '"}')

    response = await api.post("/jobs", content=body, headers=JSON)

    problem = assert_problem(response, 413, "body")
    assert problem["type"] == "https://jobsched.dev/problems/body-too-large"
    assert "api.max_body_bytes" in problem["errors"][0]["message"]
    await assert_no_jobs(storage)


async def test_a_chunked_body_past_max_body_bytes_is_refused_with_413(
    api: httpx.AsyncClient, storage: SQLStorage
) -> None:
    async def chunks() -> AsyncIterator[bytes]:
        yield b'{"type": "noop", "payload": {"blob": "'
        for _ in range(20):
            yield b"x" * 65536
        yield b'"}}'

    response = await api.post("/jobs", content=chunks(), headers=JSON)

    assert "content-length" not in response.request.headers
    assert_problem(response, 413, "body")
    await assert_no_jobs(storage)


async def test_a_batch_has_its_own_larger_body_limit(
    api: httpx.AsyncClient, storage: SQLStorage
) -> None:
    item = {"type": "noop", "payload": {"blob": "x" * 200_000}}
    body = json.dumps({"jobs": [item] * 8})
    assert len(body) > 1024 * 1024

    response = await api.post("/jobs/batch", content=body, headers=JSON)

    assert response.status_code == 201, response.text[:300]
    assert len(response.json()["items"]) == 8
    too_large = json.dumps({"jobs": [item] * 90})
    assert_problem(await api.post("/jobs/batch", content=too_large, headers=JSON), 413, "body")


async def test_405_allows_every_method_of_the_path(
    api: httpx.AsyncClient, job_id: uuid.UUID
) -> None:
    response = await api.put(f"/jobs/{job_id}", json={"type": "noop"})

    assert_problem(response, 405, None)
    assert response.headers["allow"] == "DELETE, GET, HEAD, PATCH"
    listing = await api.delete("/jobs")
    assert_problem(listing, 405, None)
    assert listing.headers["allow"] == "GET, HEAD, POST"
    trigger = await api.get(f"/jobs/{job_id}/trigger")
    assert trigger.headers["allow"] == "POST"


async def test_head_answers_every_get_route_with_its_headers_and_no_body(
    api: httpx.AsyncClient, job_id: uuid.UUID
) -> None:
    run_id = (await api.post(f"/jobs/{job_id}/trigger")).json()["id"]
    document = (await api.get("/openapi.json")).json()
    ids = {"id": str(job_id)}
    get_paths = [path for path, operations in document["paths"].items() if "get" in operations]
    assert len(get_paths) >= 10
    for template in [*get_paths, "/openapi.json", "/docs"]:
        path = template.format(**(ids if "runs/{id}" not in template else {"id": run_id}))
        if template == "/tokens/{id}":
            continue  # DELETE only
        query = {"schedule": "@daily"} if template == "/schedules/preview" else None

        got = await api.get(path, params=query)
        head = await api.head(path, params=query)

        assert got.status_code == 200, (path, got.text)
        assert head.status_code == 200, path
        assert head.content == b"", path
        assert head.headers["content-type"] == got.headers["content-type"], path
        if template not in {"/metrics", "/workers", "/runs", "/jobs/{id}/runs"}:
            assert head.headers["content-length"] == got.headers["content-length"], path
