"""The built-in ``http`` handler, run by a real worker against a real local HTTP server."""

from __future__ import annotations

import asyncio
import json
import re
import socket
import uuid
from collections.abc import AsyncIterator
from dataclasses import replace
from typing import Any

import pytest

from jobsched.core.models import AttemptStatus, JobSpec, RunStatus
from jobsched.storage.database import SQLStorage
from jobsched.worker.registry import HandlerRegistry
from tests.helpers import create_due_run, wait_until
from tests.integration.worker.conftest import FAST_RETRY, StartWorker, final_run, job_spec
from tests.integration.worker.local_http_server import (
    LocalHttpServer,
    ReceivedRequest,
    read_request,
)


@pytest.fixture
async def http_server() -> AsyncIterator[LocalHttpServer]:
    server = LocalHttpServer()
    await server.start()
    yield server
    await server.close()


# The local server listens on loopback, which workers refuse unless told otherwise.
LOOPBACK_ALLOWED = {"allowed_networks": ["127.0.0.0/8"]}


def http_job(payload: dict[str, Any], **fields: Any) -> JobSpec:
    return job_spec("http", payload=payload, **fields)


async def test_2xx_succeeds_and_every_request_names_its_run(
    storage: SQLStorage, start_worker: StartWorker, http_server: LocalHttpServer
) -> None:
    http_server.respond = lambda request: (200, b"hello")
    payload = {"url": http_server.url("/hook?token=abc"), "headers": {"X-Custom": "yes"}}
    run = await create_due_run(storage, http_job(payload))
    await start_worker(HandlerRegistry(), http=LOOPBACK_ALLOWED)

    done = await wait_until(lambda: final_run(storage, run.id))
    assert done.status is RunStatus.SUCCEEDED
    assert done.result == {"status_code": 200, "body": "hello"}
    (request,) = http_server.requests
    assert (request.method, request.target) == ("GET", "/hook?token=abc")
    assert request.headers["x-custom"] == "yes"
    assert request.headers["jobsched-run-id"] == str(run.id)
    assert request.headers["jobsched-attempt"] == "1"
    scheduled_for = request.headers["jobsched-scheduled-for"]
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", scheduled_for)
    assert scheduled_for == run.scheduled_for.strftime("%Y-%m-%dT%H:%M:%SZ")


async def test_json_body_is_sent_as_application_json(
    storage: SQLStorage, start_worker: StartWorker, http_server: LocalHttpServer
) -> None:
    body = {"user": 42, "tags": ["a", "b"], "note": "café"}
    run = await create_due_run(
        storage, http_job({"url": http_server.url("/users"), "method": "post", "body": body})
    )
    await start_worker(HandlerRegistry(), http=LOOPBACK_ALLOWED)

    done = await wait_until(lambda: final_run(storage, run.id))
    assert done.status is RunStatus.SUCCEEDED
    (request,) = http_server.requests
    assert request.method == "POST"
    assert request.headers["content-type"] == "application/json"
    assert json.loads(request.body) == body


async def test_string_body_is_sent_as_given(
    storage: SQLStorage, start_worker: StartWorker, http_server: LocalHttpServer
) -> None:
    payload = {
        "url": http_server.url("/text"),
        "method": "PUT",
        "headers": {"Content-Type": "text/plain"},
        "body": "plain words",
    }
    run = await create_due_run(storage, http_job(payload))
    await start_worker(HandlerRegistry(), http=LOOPBACK_ALLOWED)

    await wait_until(lambda: final_run(storage, run.id))
    (request,) = http_server.requests
    assert (request.method, request.body) == ("PUT", b"plain words")
    assert request.headers["content-type"] == "text/plain"


async def test_recorded_response_body_is_bounded(
    storage: SQLStorage, start_worker: StartWorker, http_server: LocalHttpServer
) -> None:
    http_server.respond = lambda request: (200, b"0123456789abcdefXYZ" * 1000)
    run = await create_due_run(storage, http_job({"url": http_server.url()}))
    await start_worker(HandlerRegistry(), http=LOOPBACK_ALLOWED, http_response_bytes_max=16)

    done = await wait_until(lambda: final_run(storage, run.id))
    assert done.result == {"status_code": 200, "body": "0123456789abcdef"}


async def test_server_error_fails_the_attempt_and_is_retried(
    storage: SQLStorage, start_worker: StartWorker, http_server: LocalHttpServer
) -> None:
    def first_fails(request: ReceivedRequest) -> tuple[int, bytes]:
        if request.headers["jobsched-attempt"] == "1":
            return 500, b"database exploded"
        return 201, b"created"

    http_server.respond = first_fails
    run = await create_due_run(storage, http_job({"url": http_server.url("/hook?token=secret")}))
    await start_worker(HandlerRegistry(), http=LOOPBACK_ALLOWED)

    done = await wait_until(lambda: final_run(storage, run.id))
    assert (done.status, done.attempt) == (RunStatus.SUCCEEDED, 2)
    assert done.result == {"status_code": 201, "body": "created"}
    first, second = await storage.list_attempts(run.id)
    assert first.status is AttemptStatus.FAILED
    assert first.error is not None
    assert "HTTP 500" in first.error
    assert "database exploded" in first.error
    assert "secret" not in first.error  # query strings often carry credentials
    assert second.status is AttemptStatus.SUCCEEDED
    assert [r.headers["jobsched-attempt"] for r in http_server.requests] == ["1", "2"]
    assert {r.headers["jobsched-run-id"] for r in http_server.requests} == {str(run.id)}


async def test_unreachable_server_fails_retryably(
    storage: SQLStorage, start_worker: StartWorker
) -> None:
    with socket.socket() as probe:  # a port that was free a moment ago: nothing listens
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    run = await create_due_run(
        storage,
        http_job({"url": f"http://127.0.0.1:{port}/"}, retry=replace(FAST_RETRY, max_attempts=2)),
    )
    await start_worker(HandlerRegistry(), http=LOOPBACK_ALLOWED)

    done = await wait_until(lambda: final_run(storage, run.id))
    assert (done.status, done.attempt) == (RunStatus.DEAD, 2)
    assert done.last_error is not None
    assert done.last_error.startswith(f"HttpRequestError: GET http://127.0.0.1:{port}/: Connect")


@pytest.mark.parametrize(
    ("payload", "expected_error"),
    [
        ({}, "InvalidPayloadError: payload.url: is required"),
        ({"url": "ftp://127.0.0.1/file"}, "payload.url: must be an http or https URL"),
        ({"url": "http://127.0.0.1:1/", "method": "BREW"}, "payload.method: must be one of"),
        (
            {"url": "http://127.0.0.1:1/", "headers": {"X": 1}},
            "payload.headers.X: must be a string",
        ),
    ],
)
async def test_invalid_payload_ends_dead_without_retry(
    storage: SQLStorage,
    start_worker: StartWorker,
    payload: dict[str, Any],
    expected_error: str,
) -> None:
    run = await create_due_run(storage, http_job(payload))
    await start_worker(HandlerRegistry(), http=LOOPBACK_ALLOWED)

    done = await wait_until(lambda: final_run(storage, run.id))
    assert (done.status, done.attempt) == (RunStatus.DEAD, 1)
    assert done.last_error is not None
    assert expected_error in done.last_error
    assert [a.status for a in await storage.list_attempts(run.id)] == [AttemptStatus.FAILED]


@pytest.mark.parametrize(
    "case",
    [
        ({}, 404, 1),  # a client error: asking again changes nothing
        ({}, 400, 1),
        ({}, 429, 2),  # Too Many Requests, and Request Timeout: worth another try
        ({}, 408, 2),
        ({}, 503, 2),
        ({"retry_on_status": [404]}, 404, 2),  # the payload's list replaces the default
        ({"retry_on_status": [404]}, 503, 1),
    ],
)
async def test_which_statuses_are_retried(
    storage: SQLStorage,
    start_worker: StartWorker,
    http_server: LocalHttpServer,
    case: tuple[dict[str, Any], int, int],
) -> None:
    """``case``: extra payload keys, the first answer's status, the attempts it takes."""
    payload_extra, status, expected_attempts = case

    def first_fails(request: ReceivedRequest) -> tuple[int, bytes]:
        return (status, b"no") if request.headers["jobsched-attempt"] == "1" else (200, b"ok")

    http_server.respond = first_fails
    payload = {"url": http_server.url("/hook"), **payload_extra}
    run = await create_due_run(storage, http_job(payload))
    await start_worker(HandlerRegistry(), http=LOOPBACK_ALLOWED)

    done = await wait_until(lambda: final_run(storage, run.id))
    assert done.attempt == expected_attempts
    first = (await storage.list_attempts(run.id))[0]
    assert first.error is not None
    assert f"HTTP {status}" in first.error
    if expected_attempts == 1:
        assert done.status is RunStatus.DEAD
        assert "(not retried: status not in retry_on_status)" in first.error
    else:
        assert done.status is RunStatus.SUCCEEDED


async def test_a_run_handed_back_at_shutdown_is_sent_again_under_a_new_attempt_id(
    storage: SQLStorage, start_worker: StartWorker
) -> None:
    """Same run, same attempt number, another execution: only the attempt id tells them apart."""
    received: list[ReceivedRequest] = []
    first_arrived = asyncio.Event()

    async def serve(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        request = await read_request(reader)
        if request is not None:
            received.append(request)
            if len(received) == 1:
                first_arrived.set()
                await reader.read()  # no answer: the worker gives up when it stops
            else:
                writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
                await writer.drain()
        writer.close()

    server = await asyncio.start_server(serve, "127.0.0.1", 0)
    port = server.sockets[0].getsockname()[1]
    try:
        run = await create_due_run(storage, http_job({"url": f"http://127.0.0.1:{port}/charge"}))
        first = await start_worker(
            HandlerRegistry(), http=LOOPBACK_ALLOWED, shutdown_grace_seconds=0.2
        )
        await asyncio.wait_for(first_arrived.wait(), timeout=10)
        await asyncio.wait_for(first.stop(), timeout=10)
        await start_worker(HandlerRegistry(), http=LOOPBACK_ALLOWED)
        done = await wait_until(lambda: final_run(storage, run.id))
    finally:
        server.close()
    assert (done.status, done.attempt) == (RunStatus.SUCCEEDED, 1)
    handed_back, executed = received
    assert handed_back.headers["jobsched-attempt"] == executed.headers["jobsched-attempt"] == "1"
    assert handed_back.headers["jobsched-run-id"] == executed.headers["jobsched-run-id"]
    assert handed_back.headers["jobsched-attempt-id"] != executed.headers["jobsched-attempt-id"]
    for request in received:
        uuid.UUID(request.headers["jobsched-attempt-id"])
        assert request.headers["user-agent"].startswith("jobsched/")
