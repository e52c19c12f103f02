"""``http``: call a URL; a 2xx answer succeeds, anything else fails the attempt.

Payload::

    {"url": "https://example.com/hook",      # required, http or https
     "method": "POST",                        # default GET
     "headers": {"X-Team": "billing",         # strings, or a variable of the worker's
                 "Authorization": {"from_env": "BILLING_API_TOKEN"}},  # environment
     "body": {"any": "JSON"},                 # a string is sent as is, other JSON as
                                              # application/json; absent or null: no body
     "timeout_seconds": 10,                   # default: the run's timeout, else 30
     "retry_on_status": [409, 503],           # statuses worth another try; default:
                                              # 408, 429 and every 5xx
     "follow_redirects": true}                # default false; at most 5 hops

Every request carries ``Jobsched-Run-Id``, ``Jobsched-Attempt``,
``Jobsched-Attempt-Id`` and ``Jobsched-Scheduled-For`` (RFC 3339, UTC), and
``User-Agent: jobsched/<version>`` unless the payload names its own. The attempt id is
unique to one execution: a run handed back at shutdown is executed again under the
same attempt number but a new attempt id, so a receiver deduplicates on the run id
(one run, one effect) and uses the attempt id to tell executions apart.

A header given as ``{"from_env": NAME}`` takes the worker's value of that variable,
for names in ``worker.http.env_allowlist`` only: a secret need not be stored in a job.

The request goes only where ``worker.http.allowed_networks`` lets it
(``http_network``): an address refused there ends the run dead at once
(``RequestRefusedError``) and nothing is sent. Redirects are followed only with
``follow_redirects`` (each hop checked again; credentials headers are not carried to
another origin); without it a 3xx answer fails the run like any other non-2xx.

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
import os
import re
from collections.abc import AsyncIterator, Collection, Mapping
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime

import httpx

from jobsched.core.errors import JobschedError
from jobsched.core.models import JsonObject
from jobsched.core.network_policy import NetworkPolicy, Refusal
from jobsched.worker.context import RunContext, WorkerResources
from jobsched.worker.errors import InvalidPayloadError, NonRetryableError
from jobsched.worker.handlers.http_network import AddressRefusedError, guarded_client

HTTP_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})
PAYLOAD_KEYS = frozenset(
    {"url", "method", "headers", "body", "timeout_seconds", "retry_on_status", "follow_redirects"}
)
DEFAULT_TIMEOUT_SECONDS = 30.0
DEFAULT_RESPONSE_BYTES_MAX = 4096
MAX_REDIRECTS = 5
ENV_ALLOWLIST_SETTING = "worker.http.env_allowlist"
_FORBIDDEN_HEADER_CHARACTERS = frozenset("\r\n\x00")
_PORT_MAX = 65535
_RETRIED_BY_DEFAULT = frozenset({408, 429})  # Request Timeout, Too Many Requests
_SERVER_ERRORS = 500
_HEADER_NAME = re.compile(r"[!#$%&'*+\-.^_`|~0-9A-Za-z]+")  # an RFC 9110 token


class HttpStatusError(JobschedError):
    """The server answered with a status outside 2xx; ``retryable`` if it is worth a retry."""

    def __init__(
        self,
        status_code: int,
        method: str,
        url: str,
        body: str,
        *,
        retryable: bool = True,
        note: str = "",
    ) -> None:
        self.status_code = status_code
        self.body = body
        self.retryable = retryable
        final = "" if retryable else " (not retried: status not in retry_on_status)"
        super().__init__(f"HTTP {status_code} from {method} {url}{final}{note}: {body}")


class HttpRequestError(JobschedError):
    """The request did not get an answer (connection refused, timeout, protocol error)."""


class RequestRefusedError(NonRetryableError):
    """A request's host is an address the worker may not reach; nothing was sent."""

    def __init__(self, method: str, url: str, refusal: Refusal) -> None:
        self.refusal = refusal
        super().__init__(f"{method} {url}: {refusal.message}; nothing was sent")


class RedirectError(NonRetryableError):
    """A redirect cannot be followed: more than ``MAX_REDIRECTS``, or not to http(s)."""


@dataclass(frozen=True, slots=True)
class _Answer:
    request: httpx.Request  # the last one sent, after any redirects
    response: httpx.Response  # closed; its status and headers remain
    body: str


@dataclass(frozen=True, slots=True)
class HttpRequestSpec:
    """A validated ``http`` payload, its headers' environment references resolved."""

    url: str
    method: str
    headers: dict[str, str] = field(repr=False)  # may hold secrets
    content: bytes | None
    timeout_seconds: float
    retry_on_status: frozenset[int] | None = None  # None: 408, 429 and 5xx
    follow_redirects: bool = False

    def retries_status(self, status_code: int) -> bool:
        """Whether a run whose request got ``status_code`` (not 2xx) is tried again."""
        if self.retry_on_status is not None:
            return status_code in self.retry_on_status
        return status_code in _RETRIED_BY_DEFAULT or status_code >= _SERVER_ERRORS


def parse_http_payload(
    payload: JsonObject,
    *,
    default_timeout_seconds: float,
    env_allowlist: Collection[str] = frozenset(),
    environment: Mapping[str, str] | None = None,
) -> HttpRequestSpec:
    """Validate an ``http`` payload; ``InvalidPayloadError`` names the first key at fault.

    A header ``{"from_env": NAME}`` takes ``environment[NAME]`` (the process's
    environment by default), if ``env_allowlist`` holds NAME.
    """
    if not isinstance(payload, dict):
        raise InvalidPayloadError("", "must be a JSON object")
    unknown = sorted(set(payload) - PAYLOAD_KEYS)
    if unknown:
        raise InvalidPayloadError(
            unknown[0], f"unknown key; the http handler takes {', '.join(sorted(PAYLOAD_KEYS))}"
        )
    url = _parse_url(payload.get("url"))
    method = _parse_method(payload.get("method", "GET"))
    headers = _parse_headers(
        payload.get("headers", {}),
        env_allowlist,
        os.environ if environment is None else environment,
    )
    content = _encode_body(payload.get("body"), headers)
    follow_redirects = payload.get("follow_redirects", False)
    if not isinstance(follow_redirects, bool):
        raise InvalidPayloadError("follow_redirects", "must be true or false")
    return HttpRequestSpec(
        url=url,
        method=method,
        headers=headers,
        content=content,
        timeout_seconds=_parse_timeout(payload.get("timeout_seconds", default_timeout_seconds)),
        retry_on_status=_parse_statuses(payload.get("retry_on_status")),
        follow_redirects=follow_redirects,
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


def _parse_headers(
    value: object, env_allowlist: Collection[str], environment: Mapping[str, str]
) -> dict[str, str]:
    if not isinstance(value, dict):
        raise InvalidPayloadError("headers", "must be an object of header names to strings")
    headers: dict[str, str] = {}
    for name, given in value.items():
        # h11 would refuse these only when sending, as a retryable protocol error.
        if not isinstance(name, str) or not _HEADER_NAME.fullmatch(name):
            raise InvalidPayloadError(f"headers.{name}", "is not a valid header name")
        header_value = _header_value(name, given, env_allowlist, environment)
        if not header_value.isascii() or _FORBIDDEN_HEADER_CHARACTERS & set(header_value):
            raise InvalidPayloadError(
                f"headers.{name}", "must be ASCII without line breaks or NUL characters"
            )
        headers[name] = header_value
    return headers


def _header_value(
    name: str, given: object, env_allowlist: Collection[str], environment: Mapping[str, str]
) -> str:
    """A header's value: the string given, or the environment variable it names."""
    if isinstance(given, str):
        return given
    if not (isinstance(given, dict) and set(given) == {"from_env"}):
        raise InvalidPayloadError(
            f"headers.{name}", 'must be a string or {"from_env": "VARIABLE_NAME"}'
        )
    variable = given["from_env"]
    if not isinstance(variable, str) or not variable:
        raise InvalidPayloadError(f"headers.{name}.from_env", "must name a variable")
    if variable not in env_allowlist:
        raise InvalidPayloadError(
            f"headers.{name}.from_env",
            f"{variable} is not in {ENV_ALLOWLIST_SETTING}, which names the variables "
            "headers may take their values from",
        )
    found = environment.get(variable)
    if found is None:
        raise InvalidPayloadError(
            f"headers.{name}.from_env", f"{variable} is not set in this worker's environment"
        )
    return found


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
    """The headers that tell the receiver which execution of which run is calling."""
    return {
        "Jobsched-Run-Id": str(context.run_id),
        "Jobsched-Attempt": str(context.attempt),
        "Jobsched-Attempt-Id": str(context.attempt_id),
        "Jobsched-Scheduled-For": format_rfc3339_utc(context.scheduled_for),
    }


async def http_handler(payload: JsonObject, context: RunContext) -> JsonObject:
    """Send the request the payload describes, with the Jobsched-* headers."""
    async with _http_resources(context) as resources:
        spec = parse_http_payload(
            payload,
            default_timeout_seconds=context.timeout_seconds or DEFAULT_TIMEOUT_SECONDS,
            env_allowlist=resources.http_env_allowlist,
        )
        headers = httpx.Headers(spec.headers)
        headers.update(jobsched_headers(context))
        client = resources.http_client
        request = client.build_request(
            spec.method,
            spec.url,
            headers=headers,
            content=spec.content,
            timeout=spec.timeout_seconds,
        )
        answer = await _Exchange(client, spec, resources).send(request)
    status_code = answer.response.status_code
    if not 200 <= status_code < 300:
        raise HttpStatusError(
            status_code,
            answer.request.method,
            _without_query(answer.request.url),
            answer.body,
            retryable=spec.retries_status(status_code),
            note=_redirect_note(answer.response, spec),
        )
    return {"status_code": status_code, "body": answer.body}


class _Exchange:
    """One request and, if the payload asks, the redirects it leads to."""

    def __init__(
        self, client: httpx.AsyncClient, spec: HttpRequestSpec, resources: WorkerResources
    ) -> None:
        self._client = client
        self._spec = spec
        self._bytes_max = resources.http_response_bytes_max
        self._redaction = resources.http_redaction

    async def send(self, request: httpx.Request) -> _Answer:
        """The last answer and the start of its body; each hop goes through the guard."""
        for _hop in range(MAX_REDIRECTS + 1):
            response = await self._send_one(request)
            try:
                following = response.next_request if self._spec.follow_redirects else None
                if following is None:
                    return _Answer(request, response, await self._read_body(request, response))
            finally:
                await response.aclose()
            request = self._redirected(request, following)
        raise RedirectError(
            f"{self._spec.method} {_without_query(self._spec.url)}: "
            f"redirected more than {MAX_REDIRECTS} times"
        )

    async def _send_one(self, request: httpx.Request) -> httpx.Response:
        try:
            return await self._client.send(request, stream=True)
        except AddressRefusedError as error:
            raise RequestRefusedError(
                request.method, _without_query(request.url), error.refusal
            ) from error
        except httpx.HTTPError as error:
            raise _request_error(request, error) from error

    async def _read_body(self, request: httpx.Request, response: httpx.Response) -> str:
        try:
            return await _read_body(response, self._bytes_max)
        except httpx.HTTPError as error:
            raise _request_error(request, error) from error

    def _redirected(self, previous: httpx.Request, following: httpx.Request) -> httpx.Request:
        if following.url.scheme not in {"http", "https"}:
            raise RedirectError(
                f"{previous.method} {_without_query(previous.url)}: redirected to a "
                f"{following.url.scheme!r} URL; only http and https are followed"
            )
        # httpx drops Authorization on the way to another origin; so go the other
        # credentials, which are meant for the origin they were written for.
        if _origin(following.url) != _origin(previous.url):
            for name in list(following.headers):
                if self._redaction.redacts(name):
                    del following.headers[name]
        return following


def _origin(url: httpx.URL) -> tuple[str, str, int | None]:
    default_port = {"http": 80, "https": 443}.get(url.scheme)
    return (url.scheme, url.host, url.port or default_port)


def _request_error(request: httpx.Request, error: httpx.HTTPError) -> HttpRequestError:
    detail = str(error) or "no detail"
    return HttpRequestError(
        f"{request.method} {_without_query(request.url)}: {type(error).__name__}: {detail}"
    )


def _redirect_note(response: httpx.Response, spec: HttpRequestSpec) -> str:
    if spec.follow_redirects or not response.has_redirect_location:
        return ""
    return " (a redirect, not followed: the payload's follow_redirects is false)"


@asynccontextmanager
async def _http_resources(context: RunContext) -> AsyncIterator[WorkerResources]:
    """The worker's shared client; outside a worker (a test, a script) a client of its own.

    That client has the default network policy: no loopback or private address.
    """
    if context.resources is not None:
        yield context.resources
        return
    async with guarded_client(NetworkPolicy()) as client:
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


def _without_query(url: str | httpx.URL) -> str:
    """The URL for error messages: a query string often carries a token."""
    return str(httpx.URL(url).copy_with(query=None, fragment=None))
