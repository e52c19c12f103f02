"""``http``: call a URL; a 2xx answer succeeds, anything else fails the attempt.

Payload::

    {"url": "https://example.com/hook",      # required, http or https
     "method": "POST",                        # default GET
     "headers": {"Authorization": "..."},     # strings only
     "body": {"any": "JSON"},                 # a string is sent as is, other JSON as
                                              # application/json; absent or null: no body
     "timeout_seconds": 10,                   # default: the run's timeout, else 30
     "retry_on_status": [409, 503]}           # statuses worth another try; default:
                                              # 408, 429 and every 5xx

Every request carries ``Jobsched-Run-Id``, ``Jobsched-Attempt`` and
``Jobsched-Scheduled-For`` (RFC 3339, UTC), so the receiver can tell retries of one
run apart from distinct runs and deduplicate. Redirects are followed.

The result is ``{"status_code": 200, "body": "<the first N bytes, decoded>"}`` with N
the worker's ``http_response_bytes_max``. A payload the handler cannot use raises
``InvalidPayloadError`` (the run ends dead, since a retry would fail the same way).
A network error (no answer) is retried; so is a non-2xx status in
``retry_on_status``; any other non-2xx status ends the run dead at once (a 404 or a
400 will not turn into a 200 by asking again). Both raise ``HttpStatusError``, whose
``retryable`` says which.
"""

from __future__ import annotations

import codecs
import json
import math
import re
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass
from datetime import UTC, datetime

import httpx

from jobsched.core.errors import JobschedError
from jobsched.core.models import JsonObject
from jobsched.worker.context import RunContext, WorkerResources
from jobsched.worker.errors import InvalidPayloadError

HTTP_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
PAYLOAD_KEYS = frozenset({"url", "method", "headers", "body", "timeout_seconds", "retry_on_status"})
DEFAULT_TIMEOUT_SECONDS = 30.0
DEFAULT_RESPONSE_BYTES_MAX = 4096
_FORBIDDEN_HEADER_CHARACTERS = frozenset("\r\n\x00")
_PORT_MAX = 65535
_RETRIED_BY_DEFAULT = frozenset({408, 429})  # Request Timeout, Too Many Requests
_SERVER_ERRORS = 500
_HEADER_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")  # an RFC 9110 token


class HttpStatusError(JobschedError):
    """The server answered with a status outside 2xx; ``retryable`` if it is worth a retry."""

    def __init__(
        self, status_code: int, method: str, url: str, body: str, *, retryable: bool = True
    ) -> None:
        self.status_code = status_code
        self.body = body
        self.retryable = retryable
        final = "" if retryable else " (not retried: status not in retry_on_status)"
        super().__init__(f"HTTP {status_code} from {method} {url}{final}: {body}")


class HttpRequestError(JobschedError):
    """The request did not get an answer (connection refused, timeout, protocol error)."""


@dataclass(frozen=True, slots=True)
class HttpRequestSpec:
    """A validated ``http`` payload."""

    url: str
    method: str
    headers: dict[str, str]
    content: bytes | None
    timeout_seconds: float
    retry_on_status: frozenset[int] | None = None  # None: 408, 429 and 5xx

    def retries_status(self, status_code: int) -> bool:
        """Whether a run whose request got ``status_code`` (not 2xx) is tried again."""
        if self.retry_on_status is not None:
            return status_code in self.retry_on_status
        return status_code in _RETRIED_BY_DEFAULT or status_code >= _SERVER_ERRORS


def parse_http_payload(payload: JsonObject, *, default_timeout_seconds: float) -> HttpRequestSpec:
    """Validate an ``http`` payload; ``InvalidPayloadError`` names the first key at fault."""
    if not isinstance(payload, dict):
        raise InvalidPayloadError("", "must be a JSON object")
    unknown = sorted(set(payload) - PAYLOAD_KEYS)
    if unknown:
        raise InvalidPayloadError(
            unknown[0], f"unknown key; the http handler takes {', '.join(sorted(PAYLOAD_KEYS))}"
        )
    url = _parse_url(payload.get("url"))
    method = _parse_method(payload.get("method", "GET"))
    headers = _parse_headers(payload.get("headers", {}))
    content = _encode_body(payload.get("body"), headers)
    return HttpRequestSpec(
        url=url,
        method=method,
        headers=headers,
        content=content,
        timeout_seconds=_parse_timeout(payload.get("timeout_seconds", default_timeout_seconds)),
        retry_on_status=_parse_statuses(payload.get("retry_on_status")),
    )


def _parse_url(value: object) -> str:
    if value is None:
        raise InvalidPayloadError("url", "is required")
    if not isinstance(value, str) or not value:
        raise InvalidPayloadError("url", "must be a non-empty string")
    # httpx quietly percent-encodes these; a URL written with them is a mistake.
    if any(character.isspace() or not character.isprintable() for character in value):
        raise InvalidPayloadError("url", "must not contain spaces or control characters")
    try:
        url = httpx.URL(value)
    except httpx.InvalidURL as error:
        raise InvalidPayloadError("url", f"is not a valid URL: {error}") from error
    if url.scheme not in {"http", "https"}:
        raise InvalidPayloadError("url", f"must be an http or https URL, not {value!r}")
    if not url.host:
        raise InvalidPayloadError("url", f"has no host: {value!r}")
    if url.port is not None and not 0 < url.port <= _PORT_MAX:
        raise InvalidPayloadError("url", f"has a port out of range: {url.port}")
    return value


def _parse_method(value: object) -> str:
    if not isinstance(value, str) or value.upper() not in HTTP_METHODS:
        raise InvalidPayloadError(
            "method", f"must be one of {', '.join(sorted(HTTP_METHODS))}, not {value!r}"
        )
    return value.upper()


def _parse_headers(value: object) -> dict[str, str]:
    if not isinstance(value, dict):
        raise InvalidPayloadError("headers", "must be an object of header names to strings")
    headers: dict[str, str] = {}
    for name, header_value in value.items():
        # h11 would refuse these only when sending, as a retryable protocol error.
        if not isinstance(name, str) or not _HEADER_NAME.fullmatch(name):
            raise InvalidPayloadError(f"headers.{name}", "is not a valid header name")
        if not isinstance(header_value, str):
            raise InvalidPayloadError(f"headers.{name}", "must be a string")
        if not header_value.isascii() or _FORBIDDEN_HEADER_CHARACTERS & set(header_value):
            raise InvalidPayloadError(
                f"headers.{name}", "must be ASCII without line breaks or NUL characters"
            )
        headers[name] = header_value
    return headers


def _encode_body(value: object, headers: dict[str, str]) -> bytes | None:
    """The request body; JSON bodies get ``Content-Type: application/json`` unless set."""
    if value is None:
        return None
    if isinstance(value, str):
        return value.encode("utf-8")
    if not any(name.lower() == "content-type" for name in headers):
        headers["Content-Type"] = "application/json"
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False).encode("utf-8")


def _parse_timeout(value: object) -> float:
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidPayloadError("timeout_seconds", "must be a number of seconds")
    if not math.isfinite(value) or value <= 0:
        raise InvalidPayloadError("timeout_seconds", "must be greater than 0")
    return float(value)


def _parse_statuses(value: object) -> frozenset[int] | None:
    if value is None:
        return None
    if not isinstance(value, list):
        raise InvalidPayloadError("retry_on_status", "must be a list of HTTP status codes")
    for status in value:
        if isinstance(status, bool) or not isinstance(status, int) or not 100 <= status <= 599:
            raise InvalidPayloadError(
                "retry_on_status", f"must hold status codes from 100 to 599, not {status!r}"
            )
    return frozenset(value)


def format_rfc3339_utc(moment: datetime) -> str:
    """``2026-11-27T03:00:00Z``; fractional seconds only when there are some."""
    utc = moment.astimezone(UTC)
    timespec = "microseconds" if utc.microsecond else "seconds"
    return utc.replace(tzinfo=None).isoformat(timespec=timespec) + "Z"


def jobsched_headers(context: RunContext) -> dict[str, str]:
    """The headers that tell the receiver which attempt of which run is calling."""
    return {
        "Jobsched-Run-Id": str(context.run_id),
        "Jobsched-Attempt": str(context.attempt),
        "Jobsched-Scheduled-For": format_rfc3339_utc(context.scheduled_for),
    }


async def http_handler(payload: JsonObject, context: RunContext) -> JsonObject:
    """Send the request the payload describes, with the Jobsched-* headers."""
    request = parse_http_payload(
        payload, default_timeout_seconds=context.timeout_seconds or DEFAULT_TIMEOUT_SECONDS
    )
    headers = {**request.headers, **jobsched_headers(context)}
    async with _http_resources(context) as resources:
        try:
            async with resources.http_client.stream(
                request.method,
                request.url,
                headers=headers,
                content=request.content,
                timeout=request.timeout_seconds,
            ) as response:
                body = await _read_body(response, resources.http_response_bytes_max)
        except httpx.HTTPError as error:
            detail = str(error) or "no detail"
            raise HttpRequestError(
                f"{request.method} {_without_query(request.url)}: {type(error).__name__}: {detail}"
            ) from error
    if not 200 <= response.status_code < 300:
        raise HttpStatusError(
            response.status_code,
            request.method,
            _without_query(request.url),
            body,
            retryable=request.retries_status(response.status_code),
        )
    return {"status_code": response.status_code, "body": body}


@asynccontextmanager
async def _http_resources(context: RunContext) -> AsyncIterator[WorkerResources]:
    """The worker's shared client; outside a worker (a test, a script) a client of its own."""
    if context.resources is not None:
        yield context.resources
        return
    async with httpx.AsyncClient(follow_redirects=True) as client:
        yield WorkerResources(client, DEFAULT_RESPONSE_BYTES_MAX)


async def _read_body(response: httpx.Response, bytes_max: int) -> str:
    """The first ``bytes_max`` bytes of the body, decoded; the rest is never downloaded."""
    received = bytearray()
    if bytes_max > 0:
        async for chunk in response.aiter_bytes():
            received.extend(chunk)
            if len(received) >= bytes_max:
                break
    encoding = response.charset_encoding or "utf-8"
    try:
        codecs.lookup(encoding)
    except LookupError:
        encoding = "utf-8"
    text = bytes(received[:bytes_max]).decode(encoding, errors="replace")
    # PostgreSQL text and JSONB cannot hold NUL; a binary answer must still be recordable.
    return text.replace("\x00", "\ufffd")


def _without_query(url: str) -> str:
    """The URL for error messages: a query string often carries a token."""
    return str(httpx.URL(url).copy_with(query=None, fragment=None))
