"""Secrets in job payloads are never shown back: header values are redacted to ``"***"``.

A payload's ``headers`` object (the ``http`` handler's, or any handler's using that
key) has the value of every header named Authorization, Proxy-Authorization,
Cookie or X-Api-Key, or whose name matches the configured pattern
(``worker.http.redact_header_pattern``, case-insensitive, whole name), replaced by
``"***"`` in every API answer and log line. Only what is shown is redacted: the
stored job keeps the value and the worker sends it. A ``{"from_env": NAME}``
reference names a variable of the worker's environment, not a secret, and is
shown as it is.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from jobsched.core.models import JsonObject

REDACTED = "***"
ALWAYS_REDACTED_HEADERS = frozenset({"authorization", "proxy-authorization", "cookie", "x-api-key"})
DEFAULT_REDACT_HEADER_PATTERN = (
    r".*(auth|token|secret|passw|api-?key|session|signature|credential|cookie).*"
)


@dataclass(frozen=True, slots=True)
class HeaderRedaction:
    """Which header names have their values redacted."""

    pattern: re.Pattern[str]

    @classmethod
    def from_pattern(cls, pattern: str) -> HeaderRedaction:
        return cls(re.compile(pattern, re.IGNORECASE))

    def redacts(self, name: str) -> bool:
        return name.lower() in ALWAYS_REDACTED_HEADERS or self.pattern.fullmatch(name) is not None


DEFAULT_REDACTION = HeaderRedaction.from_pattern(DEFAULT_REDACT_HEADER_PATTERN)


def redact_headers(
    payload: JsonObject, redaction: HeaderRedaction = DEFAULT_REDACTION
) -> JsonObject:
    """A copy of ``payload`` fit to show: redacted header values are ``"***"``.

    The payload itself is not changed; one without a ``headers`` object comes back
    as it is.
    """
    headers = payload.get("headers") if isinstance(payload, dict) else None
    if not isinstance(headers, dict):
        return payload
    shown = {
        name: REDACTED if redaction.redacts(str(name)) and not is_env_reference(value) else value
        for name, value in headers.items()
    }
    return {**payload, "headers": shown}


def restore_redacted(
    new_payload: JsonObject,
    old_payload: JsonObject,
    redaction: HeaderRedaction = DEFAULT_REDACTION,
) -> JsonObject:
    """``new_payload`` with each redacted header still ``"***"`` given its old value back.

    A client that reads a job, edits it and sends the payload back sends ``"***"``
    where a secret was: that keeps the secret rather than replacing it with stars.
    A ``"***"`` for a header the old payload lacks stays as it is.
    """
    new_headers = new_payload.get("headers")
    old_headers = old_payload.get("headers")
    if not isinstance(new_headers, dict) or not isinstance(old_headers, dict):
        return new_payload
    restored = {
        name: old_headers[name]
        if value == REDACTED and name in old_headers and redaction.redacts(str(name))
        else value
        for name, value in new_headers.items()
    }
    return {**new_payload, "headers": restored}


def is_env_reference(value: object) -> bool:
    """Whether a header value is ``{"from_env": "NAME"}``."""
    return isinstance(value, dict) and set(value) == {"from_env"}
