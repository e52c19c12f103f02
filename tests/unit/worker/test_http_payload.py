"""Validation of ``http`` payloads and the Jobsched-* request headers (no network)."""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from jobsched.worker.context import RunContext
from jobsched.worker.errors import InvalidPayloadError, NonRetryableError
from jobsched.worker.handlers.http import (
    format_rfc3339_utc,
    jobsched_headers,
    parse_http_payload,
)


def parse(payload: dict[str, Any]) -> Any:
    return parse_http_payload(payload, default_timeout_seconds=30)


def test_minimal_payload_gets_the_defaults() -> None:
    request = parse_http_payload({"url": "https://example.com/hook"}, default_timeout_seconds=12)
    assert (request.url, request.method, request.headers) == ("https://example.com/hook", "GET", {})
    assert (request.content, request.timeout_seconds) == (None, 12.0)


def test_full_payload() -> None:
    request = parse(
        {
            "url": "http://example.com/x?a=1",
            "method": "patch",
            "headers": {"Authorization": "Bearer t"},
            "body": "raw",
            "timeout_seconds": 2.5,
        }
    )
    assert (request.method, request.content, request.timeout_seconds) == ("PATCH", b"raw", 2.5)
    assert request.headers == {"Authorization": "Bearer t"}


@pytest.mark.parametrize("body", [{"a": [1, None]}, [1, 2], 3, True])
def test_json_bodies_are_encoded_with_their_content_type(body: object) -> None:
    request = parse({"url": "http://example.com", "method": "POST", "body": body})
    assert request.content is not None
    assert json.loads(request.content) == body
    assert request.headers["Content-Type"] == "application/json"


def test_a_chosen_content_type_is_kept() -> None:
    request = parse(
        {"url": "http://e.com", "headers": {"content-type": "application/vnd+json"}, "body": {}}
    )
    assert request.headers == {"content-type": "application/vnd+json"}


def test_null_body_sends_nothing() -> None:
    assert parse({"url": "http://e.com", "body": None}).content is None


@pytest.mark.parametrize(
    ("payload", "field", "message"),
    [
        ({}, "url", "is required"),
        ({"url": ""}, "url", "non-empty"),
        ({"url": 42}, "url", "non-empty string"),
        ({"url": "ftp://example.com"}, "url", "http or https"),
        ({"url": "example.com/path"}, "url", "http or https"),
        ({"url": "http://"}, "url", "has no host"),
        ({"url": "http://[::1"}, "url", "not a valid URL"),
        ({"url": "http://exa mple.com"}, "url", "spaces"),
        ({"url": "http://e.com:99999/"}, "url", "port out of range"),
        ({"url": "http://e.com", "method": "BREW"}, "method", "must be one of"),
        ({"url": "http://e.com", "method": 1}, "method", "must be one of"),
        ({"url": "http://e.com", "headers": []}, "headers", "object"),
        ({"url": "http://e.com", "headers": {"X": 1}}, "headers.X", "string"),
        ({"url": "http://e.com", "headers": {"Bad Name": "v"}}, "headers.Bad Name", "name"),
        ({"url": "http://e.com", "headers": {"X": "a\r\nInjected: 1"}}, "headers.X", "line"),
        ({"url": "http://e.com", "headers": {"X": "café"}}, "headers.X", "ASCII"),
        ({"url": "http://e.com", "timeout_seconds": 0}, "timeout_seconds", "greater than 0"),
        ({"url": "http://e.com", "timeout_seconds": True}, "timeout_seconds", "number"),
        ({"url": "http://e.com", "timeout_seconds": "5"}, "timeout_seconds", "number"),
        ({"url": "http://e.com", "json": {}}, "json", "unknown key"),
    ],
)
def test_bad_payloads_name_the_key_at_fault(
    payload: dict[str, Any], field: str, message: str
) -> None:
    with pytest.raises(InvalidPayloadError, match=message) as raised:
        parse(payload)
    assert raised.value.field == field
    assert str(raised.value).startswith(f"payload.{field}: ")
    assert isinstance(raised.value, NonRetryableError)  # so the run is not retried


@pytest.mark.parametrize(
    ("moment", "expected"),
    [
        (datetime(2026, 11, 27, 3, 0, tzinfo=UTC), "2026-11-27T03:00:00Z"),
        (datetime(2026, 11, 27, 4, 0, tzinfo=timezone(timedelta(hours=1))), "2026-11-27T03:00:00Z"),
        (datetime(2026, 11, 27, 3, 0, 0, 250000, tzinfo=UTC), "2026-11-27T03:00:00.250000Z"),
    ],
)
def test_rfc3339_utc(moment: datetime, expected: str) -> None:
    assert format_rfc3339_utc(moment) == expected


def _context(run_id: uuid.UUID, attempt: int) -> RunContext:
    return RunContext(
        run_id=run_id,
        job_id=uuid.uuid4(),
        attempt=attempt,
        scheduled_for=datetime(2026, 11, 27, 3, 0, tzinfo=UTC),
        type="http",
        queue="default",
        timeout_seconds=None,
    )


def test_jobsched_headers_name_the_attempt() -> None:
    run_id = uuid.uuid4()
    context = _context(run_id, 2)
    assert jobsched_headers(context) == {
        "Jobsched-Run-Id": str(run_id),
        "Jobsched-Attempt": "2",
        "Jobsched-Attempt-Id": str(context.attempt_id),
        "Jobsched-Scheduled-For": "2026-11-27T03:00:00Z",
    }


def test_each_execution_of_one_attempt_has_its_own_attempt_id() -> None:
    run_id = uuid.uuid4()
    # A run handed back at shutdown is executed again under the same attempt number.
    first, again = _context(run_id, 1), _context(run_id, 1)
    first_headers, again_headers = jobsched_headers(first), jobsched_headers(again)
    assert first_headers["Jobsched-Attempt"] == again_headers["Jobsched-Attempt"]
    assert first_headers["Jobsched-Attempt-Id"] != again_headers["Jobsched-Attempt-Id"]


def test_a_header_takes_an_allowed_variable_from_the_environment() -> None:
    request = parse_http_payload(
        {"url": "http://e.com", "headers": {"Authorization": {"from_env": "BILLING_TOKEN"}}},
        default_timeout_seconds=30,
        env_allowlist={"BILLING_TOKEN"},
        environment={"BILLING_TOKEN": "Bearer s3cret", "OTHER": "x"},
    )
    assert request.headers == {"Authorization": "Bearer s3cret"}
    assert "s3cret" not in repr(request)  # a spec that reaches a log shows no secret


@pytest.mark.parametrize(
    ("reference", "allowlist", "environment", "message"),
    [
        ({"from_env": "HOME"}, set(), {"HOME": "/r"}, "HOME is not in worker.http.env_allowlist"),
        ({"from_env": "TOKEN"}, {"TOKEN"}, {}, "TOKEN is not set in this worker's environment"),
        ({"from_env": ""}, {""}, {"": "x"}, "must name a variable"),
        ({"from_env": 5}, set(), {}, "must name a variable"),
        ({"from_env": "T", "default": "x"}, {"T"}, {"T": "x"}, "must be a string or"),
        ({"from_env": "T"}, {"T"}, {"T": "a\nB: c"}, "line breaks"),
    ],
)
def test_bad_environment_references_are_refused(
    reference: object, allowlist: set[str], environment: dict[str, str], message: str
) -> None:
    with pytest.raises(InvalidPayloadError, match=message) as raised:
        parse_http_payload(
            {"url": "http://e.com", "headers": {"X-Token": reference}},
            default_timeout_seconds=30,
            env_allowlist=allowlist,
            environment=environment,
        )
    assert raised.value.field.startswith("headers.X-Token")


def test_follow_redirects_is_off_unless_asked() -> None:
    assert parse({"url": "http://e.com"}).follow_redirects is False
    assert parse({"url": "http://e.com", "follow_redirects": True}).follow_redirects is True
    with pytest.raises(InvalidPayloadError) as raised:
        parse({"url": "http://e.com", "follow_redirects": "yes"})
    assert raised.value.field == "follow_redirects"


@pytest.mark.parametrize(
    ("status", "retried"),
    [
        (400, False),
        (401, False),
        (404, False),
        (409, False),
        (301, False),
        (408, True),
        (429, True),
        (500, True),
        (502, True),
        (503, True),
        (599, True),
    ],
)
def test_default_statuses_worth_a_retry(status: int, retried: bool) -> None:
    assert parse({"url": "http://e.com"}).retries_status(status) is retried


def test_retry_on_status_replaces_the_default() -> None:
    request = parse({"url": "http://e.com", "retry_on_status": [404, 409]})
    assert request.retry_on_status == frozenset({404, 409})
    assert request.retries_status(404)
    assert not request.retries_status(503)
    assert not parse({"url": "http://e.com", "retry_on_status": []}).retries_status(503)


@pytest.mark.parametrize("value", ["503", [503, "504"], [99], [600], [True], {"503": True}])
def test_bad_retry_on_status_is_refused(value: object) -> None:
    with pytest.raises(InvalidPayloadError) as raised:
        parse({"url": "http://e.com", "retry_on_status": value})
    assert raised.value.field == "retry_on_status"
