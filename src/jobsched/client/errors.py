"""What the client raises: an API's problem document, or a server it could not reach."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


class ClientError(Exception):
    """Every error of ``jobsched.client``."""


@dataclass(frozen=True, slots=True)
class FieldProblem:
    field: str
    message: str


class ApiError(ClientError):
    """The API refused the request: its RFC 9457 problem document, typed.

    ``field`` is the first field at fault (``schedule``, ``retry.max_attempts``,
    ``Authorization``...) or None; ``errors`` has every one of them.
    """

    def __init__(
        self,
        *,
        status: int,
        type: str,
        title: str,
        detail: str,
        instance: str | None = None,
        errors: tuple[FieldProblem, ...] = (),
        method: str = "",
        url: str = "",
    ) -> None:
        self.status = status
        self.type = type
        self.title = title
        self.detail = detail
        self.instance = instance
        self.errors = errors
        self.method = method
        self.url = url
        super().__init__(str(self))

    @property
    def field(self) -> str | None:
        return self.errors[0].field if self.errors else None

    @property
    def message(self) -> str:
        """The detail, led by the field at fault (the API's details often name it already)."""
        if self.field and not self.detail.startswith(f"{self.field}:"):
            return f"{self.field}: {self.detail}"
        return self.detail

    def __str__(self) -> str:
        return f"{self.status} {self.title}: {self.message}"

    @classmethod
    def from_response(cls, status: int, body: Any, *, method: str, url: str) -> ApiError:
        """From a problem document, or from whatever else a proxy in the way answered."""
        if not isinstance(body, dict) or "title" not in body:
            text = str(body).strip()[:200] if body else ""
            return cls(
                status=status,
                type="about:blank",
                title=_reason(status),
                detail=text or "the server gave no problem document",
                method=method,
                url=url,
            )
        problems = tuple(
            FieldProblem(str(item.get("field", "")), str(item.get("message", "")))
            for item in body.get("errors") or ()
            if isinstance(item, dict)
        )
        return cls(
            status=int(body.get("status", status)),
            type=str(body.get("type", "about:blank")),
            title=str(body["title"]),
            detail=str(body.get("detail", "")),
            instance=body.get("instance"),
            errors=problems,
            method=method,
            url=url,
        )


def _reason(status: int) -> str:
    from http import HTTPStatus  # noqa: PLC0415

    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return f"HTTP {status}"


class UnreachableError(ClientError):
    """No answer from the server at ``url`` (refused, unknown host, timed out...)."""

    def __init__(self, url: str, reason: str) -> None:
        self.url = url
        self.reason = reason
        super().__init__(f"cannot reach the jobsched API at {url}: {reason}")


class WaitTimeoutError(ClientError, TimeoutError):
    """``runs.wait`` gave up before the run ended."""

    def __init__(self, run_id: str, status: str, timeout: float) -> None:
        self.run_id = run_id
        self.status = status
        self.timeout = timeout
        super().__init__(f"run {run_id} is still {status} after {timeout:g}s")
