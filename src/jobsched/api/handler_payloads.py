"""The shape of the built-in handlers' payloads, checked when a job is created or changed.

A payload the ``http`` or ``shell`` handler is sure to refuse is refused by the API
with a 422 naming the key (``payload.method``), rather than stored to end its
runs dead. The handlers check again when they run (``worker.handlers``), with
what only the worker knows: its environment for ``{"from_env": NAME}`` headers,
the address a host name resolves to.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal, get_args

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from jobsched.core.errors import InvalidInputError
from jobsched.core.models import JsonObject

HttpMethod = Literal["GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"]


Seconds = Annotated[float, Field(gt=0, le=10 * 365 * 86400)]


class _Payload(BaseModel):
    model_config = ConfigDict(extra="forbid", strict=True)


class FromEnv(_Payload):
    from_env: Annotated[str, Field(min_length=1)]


class HttpPayload(_Payload):
    url: Annotated[str, Field(min_length=1)]
    method: Annotated[str, Field(min_length=1)] = "GET"
    headers: dict[str, str | FromEnv] = Field(default_factory=dict)
    body: Any = None
    timeout_seconds: Seconds | None = None
    retry_on_status: list[Annotated[int, Field(ge=100, le=599)]] | None = None
    follow_redirects: bool = False


class ShellPayload(_Payload):
    command: Annotated[list[str], Field(min_length=1)]
    cwd: Annotated[str, Field(min_length=1)] | None = None
    env: dict[str, str] = Field(default_factory=dict)
    timeout_seconds: Seconds | None = None

    @field_validator("command")
    @classmethod
    def _names_a_program(cls, command: list[str]) -> list[str]:
        if not command[0]:
            raise ValueError("the first item must name a program")
        return command


_MODELS: dict[str, type[_Payload]] = {"http": HttpPayload, "shell": ShellPayload}
_METHODS = frozenset(get_args(HttpMethod))


def check_handler_payload(job_type: str, payload: JsonObject, field: str = "payload") -> None:
    """Raise ``InvalidInputError`` naming ``payload.<key>`` for a built-in handler's
    payload its handler would refuse; other types' payloads are their handler's affair."""
    model = _MODELS.get(job_type)
    if model is None:
        return
    try:
        model.model_validate(payload)
    except ValidationError as error:
        first = error.errors()[0]
        location = [str(part) for part in first["loc"] if part not in {"str", "FromEnv"}]
        raise InvalidInputError(".".join([field, *location]), first["msg"]) from error
    method = payload.get("method", "GET")
    if job_type == "http" and isinstance(method, str) and method.upper() not in _METHODS:
        raise InvalidInputError(
            f"{field}.method", f"must be one of {', '.join(sorted(_METHODS))}, not {method!r}"
        )
