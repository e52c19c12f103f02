"""Every error the API answers, as RFC 9457 ``application/problem+json``, mapped here only.

A problem names its kind in ``type`` (``https://jobsched.dev/problems/<slug>``),
the request path in ``instance`` and, in ``errors``, each field at fault by its
dotted path (``retry.max_attempts``, ``payload``, ``cursor``, ``id``). Nothing
that reaches a client carries a traceback or a database message.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass
from http import HTTPStatus
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.routing import iter_route_contexts
from starlette.exceptions import HTTPException
from starlette.responses import JSONResponse, Response
from starlette.routing import BaseRoute, Match
from starlette.types import Scope

from jobsched.api.request_checks import (
    BodyTooLargeError,
    MalformedBodyError,
    UnsupportedMediaTypeError,
)
from jobsched.core.errors import (
    AuthenticationError,
    ConflictError,
    InvalidInputError,
    JobschedError,
    NotFoundError,
    PermissionDeniedError,
    StorageError,
)

PROBLEM_CONTENT_TYPE = "application/problem+json"
PROBLEM_TYPE_BASE = "https://jobsched.dev/problems/"
# Where a pydantic error's location says which part of the request it came from.
_LOCATION_SOURCES = frozenset({"body", "query", "path", "header", "cookie"})

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class FieldError:
    field: str
    message: str


@dataclass(frozen=True, slots=True)
class ProblemKind:
    slug: str
    title: str
    status: int


VALIDATION = ProblemKind("validation-error", "The request is not valid", 422)
NOT_FOUND = ProblemKind("not-found", "Not found", 404)
CONFLICT = ProblemKind("conflict", "The request conflicts with the current state", 409)
STORAGE_UNAVAILABLE = ProblemKind("storage-unavailable", "The database is unavailable", 503)
NOT_READY = ProblemKind("not-ready", "The service is not ready", 503)
INTERNAL = ProblemKind("internal-error", "Internal server error", 500)
UNAUTHENTICATED = ProblemKind("unauthenticated", "Authentication required", 401)
FORBIDDEN = ProblemKind("forbidden", "The token's role does not allow this", 403)
MALFORMED_BODY = ProblemKind("malformed-body", "The body is not a JSON document", 400)
BODY_TOO_LARGE = ProblemKind("body-too-large", "The request body is too large", 413)
UNSUPPORTED_MEDIA_TYPE = ProblemKind(
    "unsupported-media-type", "The body must be application/json", 415
)
METHOD_NOT_ALLOWED = ProblemKind("method-not-allowed", "Method not allowed", 405)
_HTTP_KINDS = {404: NOT_FOUND, 405: METHOD_NOT_ALLOWED}
_BODY_KINDS: dict[type[JobschedError], ProblemKind] = {
    MalformedBodyError: MALFORMED_BODY,
    BodyTooLargeError: BODY_TOO_LARGE,
    UnsupportedMediaTypeError: UNSUPPORTED_MEDIA_TYPE,
}


def problem_response(
    kind: ProblemKind,
    *,
    detail: str,
    instance: str,
    errors: Sequence[FieldError] = (),
    headers: dict[str, str] | None = None,
) -> JSONResponse:
    body: dict[str, Any] = {
        "type": PROBLEM_TYPE_BASE + kind.slug,
        "title": kind.title,
        "status": kind.status,
        "detail": detail,
        "instance": instance,
        "errors": [{"field": error.field, "message": error.message} for error in errors],
    }
    return JSONResponse(
        body, status_code=kind.status, headers=headers, media_type=PROBLEM_CONTENT_TYPE
    )


def field_from_location(location: Sequence[int | str]) -> str:
    """The dotted field path of a pydantic error location, without its request part.

    ``("body", "retry", "max_attempts")`` is ``retry.max_attempts``; an error about
    the body as a whole (malformed JSON, not an object) is ``body``.
    """
    parts = list(location)
    source = parts.pop(0) if parts and parts[0] in _LOCATION_SOURCES else None
    if source == "body" and parts and isinstance(parts[0], int):
        parts = []  # a position in malformed JSON, not a field
    if not parts:
        return str(source or "body")
    return ".".join(str(part) for part in parts)


# Pydantic's words for a body that is not an object speak of Python; say what to send.
_BODY_MESSAGES = {
    "json_invalid": "the body is not valid JSON",
    "missing": "a JSON object is required (Content-Type: application/json)",
    "model_attributes_type": "the body must be a JSON object (Content-Type: application/json)",
}


def validation_field_errors(errors: Sequence[Any]) -> list[FieldError]:
    field_errors = []
    for error in errors:
        field = field_from_location(error.get("loc", ()))
        message = str(error.get("msg", "invalid value"))
        if field == "body":
            message = _BODY_MESSAGES.get(str(error.get("type")), message)
        field_errors.append(FieldError(field, message))
    return field_errors


async def _request_validation_problem(request: Request, error: Exception) -> Response:
    assert isinstance(error, RequestValidationError)
    field_errors = validation_field_errors(error.errors())
    return problem_response(
        VALIDATION,
        detail="; ".join(f"{item.field}: {item.message}" for item in field_errors),
        instance=request.url.path,
        errors=field_errors,
    )


def jobsched_error_problem(  # noqa: PLR0911  # one answer per kind of error
    error: JobschedError, instance: str
) -> JSONResponse:
    """The problem for an error of the jobsched tree (a 500 for one the API should not see)."""
    if isinstance(error, InvalidInputError):
        return problem_response(
            VALIDATION,
            detail=str(error),
            instance=instance,
            errors=[FieldError(error.field, error.message)],
        )
    kind = _BODY_KINDS.get(type(error))
    if kind is not None:
        field = getattr(error, "field", "body")
        message = getattr(error, "message", str(error))
        return problem_response(
            kind, detail=str(error), instance=instance, errors=[FieldError(field, message)]
        )
    if isinstance(error, NotFoundError):
        return problem_response(
            NOT_FOUND, detail=str(error), instance=instance, errors=[FieldError("id", str(error))]
        )
    if isinstance(error, ConflictError):
        return problem_response(
            CONFLICT,
            detail=str(error),
            instance=instance,
            errors=[FieldError(error.field, error.message)],
        )
    if isinstance(error, AuthenticationError | PermissionDeniedError):
        return access_problem(error, instance)
    if isinstance(error, StorageError):
        # The driver's message may name hosts and users: it goes to the log only.
        logger.warning("storage unavailable while serving %s: %s", instance, error)
        return problem_response(
            STORAGE_UNAVAILABLE,
            detail="the database did not answer; try again later",
            instance=instance,
            headers={"Retry-After": "5"},
        )
    return internal_error_problem(error, instance)


async def _jobsched_problem(request: Request, error: Exception) -> Response:
    assert isinstance(error, JobschedError)
    return jobsched_error_problem(error, request.url.path)


async def _http_problem(request: Request, error: Exception) -> Response:
    assert isinstance(error, HTTPException)
    phrase = HTTPStatus(error.status_code).phrase
    kind = _HTTP_KINDS.get(
        error.status_code, ProblemKind(f"http-{error.status_code}", phrase, error.status_code)
    )
    detail = error.detail if isinstance(error.detail, str) and error.detail else phrase
    headers = dict(error.headers or {})
    if error.status_code == METHOD_NOT_ALLOWED.status:
        headers["Allow"] = ", ".join(allowed_methods(request.app.routes, request.scope))
    return problem_response(kind, detail=detail, instance=request.url.path, headers=headers)


def allowed_methods(routes: Sequence[BaseRoute], scope: Scope) -> list[str]:
    """Every method of every route at the request's path (``HEAD`` with ``GET``), sorted.

    Starlette's own ``Allow`` names only the methods of the first route that matched
    the path.
    """
    methods: set[str] = set()
    for route in iter_route_contexts(routes):
        match, _ = route.matches(scope)
        if match is not Match.NONE:
            methods.update(getattr(route, "methods", None) or ())
    if "GET" in methods:
        methods.add("HEAD")
    return sorted(methods)


def access_problem(
    error: AuthenticationError | PermissionDeniedError, instance: str
) -> JSONResponse:
    """401 (with ``WWW-Authenticate``) for bad credentials, 403 for a role that falls short."""
    if isinstance(error, AuthenticationError):
        return problem_response(
            UNAUTHENTICATED,
            detail=error.reason,
            instance=instance,
            errors=[FieldError("Authorization", error.reason)],
            headers={"WWW-Authenticate": 'Bearer realm="jobsched"'},
        )
    return problem_response(
        FORBIDDEN,
        detail=str(error),
        instance=instance,
        errors=[FieldError(error.field, error.message)],
    )


def internal_error_problem(error: BaseException, instance: str) -> JSONResponse:
    """Log ``error`` with its traceback; answer a 500 that says nothing of it."""
    logger.error("unhandled error while serving %s", instance, exc_info=error)
    return problem_response(
        INTERNAL, detail="an unexpected error occurred; it has been logged", instance=instance
    )


def install_problem_handlers(app: FastAPI) -> None:
    """Answer validation, jobsched and HTTP errors as problems (500s: ``api.middleware``)."""
    app.add_exception_handler(RequestValidationError, _request_validation_problem)
    app.add_exception_handler(JobschedError, _jobsched_problem)
    app.add_exception_handler(HTTPException, _http_problem)
