"""What both clients share: base URL and token settings, headers, and reading an answer."""

from __future__ import annotations

import os
from importlib import metadata
from typing import Any

import httpx

from jobsched.client.errors import ApiError, UnreachableError

DEFAULT_URL = "http://127.0.0.1:8080"
DEFAULT_TIMEOUT_SECONDS = 10.0
# httpx retries a connection that could not be made (never a request that was sent),
# so every call, writes included, is safe to retry this way.
CONNECT_RETRIES = 2


def user_agent() -> str:
    try:
        version = metadata.version("jobsched")
    except metadata.PackageNotFoundError:
        version = "unknown"
    return f"jobsched-client/{version}"


def headers(token: str | None) -> dict[str, str]:
    values = {"User-Agent": user_agent(), "Accept": "application/json"}
    if token:
        values["Authorization"] = f"Bearer {token}"
    return values


def resolve(url: str | None, token: str | None) -> tuple[str, str | None]:
    """``url`` or ``$JOBSCHED_URL`` or the default; ``token`` or ``$JOBSCHED_TOKEN``."""
    base = (url or os.environ.get("JOBSCHED_URL") or DEFAULT_URL).rstrip("/")
    return base, token if token is not None else os.environ.get("JOBSCHED_TOKEN") or None


def unreachable(base_url: str, error: httpx.TransportError) -> UnreachableError:
    reason = str(error) or type(error).__name__
    if isinstance(error, httpx.TimeoutException):
        reason = f"no answer in time ({type(error).__name__})"
    return UnreachableError(base_url, reason)


def answer(response: httpx.Response) -> Any:
    """The decoded JSON of a 2xx answer (None for 204); ``ApiError`` for any other."""
    if response.is_success:
        if response.status_code == 204 or not response.content:
            return None
        return response.json()
    try:
        body: Any = response.json()
    except ValueError:
        body = response.text
    raise ApiError.from_response(
        response.status_code, body, method=response.request.method, url=str(response.request.url)
    )
