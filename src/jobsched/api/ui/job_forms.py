"""The job form: its fields read into the API's own request models, errors per field.

A form posts text; this turns it into the JSON ``POST /jobs`` and ``PATCH /jobs/{id}``
take (numbers as numbers, the payload parsed), then validates it with the same
pydantic models and the same ``job_changes`` functions, so the dashboard accepts
and refuses exactly what the API does. Each error is keyed by the form field it
belongs beside.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from jobsched.api.request_checks import JSON_DEPTH_DEFAULT, check_json_values
from jobsched.api.schemas import JobCreate, JobPatch
from jobsched.api.ui.forms import Form
from jobsched.core.errors import InvalidInputError
from jobsched.core.models import Job
from jobsched.core.redaction import HeaderRedaction, redact_headers

FIELDS = (
    "name",
    "type",
    "schedule",
    "timezone",
    "run_at",
    "queue",
    "priority",
    "timeout_seconds",
    "max_attempts",
    "misfire_policy",
    "concurrency_policy",
    "payload",
)
# Where an error on a nested request field is shown.
_FIELD_OF_LOCATION = {"retry.max_attempts": "max_attempts", "retry": "max_attempts"}


class FormInvalid(Exception):  # noqa: N818 - carries the errors back to the form
    def __init__(self, errors: dict[str, str]) -> None:
        super().__init__(errors)
        self.errors = errors


@dataclass
class JobFormValues:
    """What the form shows: the text of each field, and the errors beside them."""

    values: dict[str, str]
    errors: dict[str, str] = field(default_factory=dict)

    @classmethod
    def blank(cls) -> JobFormValues:
        values = dict.fromkeys(FIELDS, "")
        values.update(
            timezone="UTC",
            priority="0",
            payload="{}",
            misfire_policy="coalesce",
            concurrency_policy="allow",
        )
        return cls(values)

    @classmethod
    def of_job(cls, job: Job, redaction: HeaderRedaction) -> JobFormValues:
        return cls(
            {
                "name": job.name or "",
                "type": job.type,
                "schedule": job.schedule or "",
                "timezone": job.timezone,
                "run_at": job.run_at.isoformat() if job.run_at is not None else "",
                "queue": job.queue,
                "priority": str(job.priority),
                "timeout_seconds": _number_text(job.timeout_seconds),
                "max_attempts": str(job.retry.max_attempts),
                "misfire_policy": job.misfire_policy.value,
                "concurrency_policy": job.concurrency_policy.value,
                "payload": json.dumps(redact_headers(job.payload, redaction), indent=2),
            }
        )

    @classmethod
    def of_form(cls, form: Form) -> JobFormValues:
        return cls({name: form.get(name) for name in FIELDS})


def _number_text(value: float | None) -> str:
    if value is None:
        return ""
    return str(int(value)) if value == int(value) else str(value)


def _request_body(values: dict[str, str], errors: dict[str, str]) -> dict[str, Any]:
    body: dict[str, Any] = {}
    for name in ("name", "type", "schedule", "run_at", "queue"):
        text = values.get(name, "").strip()
        body[name] = text or None
    body["timezone"] = values.get("timezone", "").strip() or "UTC"
    body["misfire_policy"] = values.get("misfire_policy") or "coalesce"
    body["concurrency_policy"] = values.get("concurrency_policy") or "allow"
    body["priority"] = _parsed(values, "priority", int, errors, default=0)
    body["timeout_seconds"] = _parsed(values, "timeout_seconds", float, errors, default=None)
    attempts = _parsed(values, "max_attempts", int, errors, default=None)
    if attempts is not None:
        body["retry"] = {"max_attempts": attempts}
    payload_text = values.get("payload", "").strip() or "{}"
    try:
        payload = json.loads(payload_text)
    except json.JSONDecodeError as error:
        errors["payload"] = f"not JSON: {error.msg} (line {error.lineno})"
    else:
        if isinstance(payload, dict):
            body["payload"] = payload
        else:
            errors["payload"] = "must be a JSON object"
    try:
        # What the API's request checks refuse in a JSON body (a NUL, an unpaired
        # surrogate, NaN): form fields and the payload text reach the same storage.
        check_json_values(body, JSON_DEPTH_DEFAULT)
    except InvalidInputError as error:
        errors[error.field.split(".", 1)[0]] = error.message
    return body


def _parsed(
    values: dict[str, str],
    name: str,
    kind: type[int] | type[float],
    errors: dict[str, str],
    *,
    default: float | None,
) -> Any:
    text = values.get(name, "").strip()
    if not text:
        return default
    try:
        return kind(text)
    except ValueError:
        errors[name] = "must be a whole number" if kind is int else "must be a number"
        return default


def _validation_errors(error: ValidationError) -> dict[str, str]:
    errors: dict[str, str] = {}
    for item in error.errors():
        location = ".".join(str(part) for part in item["loc"])
        errors.setdefault(_FIELD_OF_LOCATION.get(location, location), item["msg"])
    return errors


def job_create_of(values: JobFormValues) -> JobCreate:
    """The ``POST /jobs`` body the form stands for; ``FormInvalid`` with every error."""
    errors: dict[str, str] = {}
    body = _request_body(values.values, errors)
    if body.get("name") is None:
        body.pop("name")
    if body.get("queue") is None:
        body.pop("queue")
    if not values.values.get("timeout_seconds", "").strip():
        body.pop("timeout_seconds")  # the configured default
    try:
        request = JobCreate.model_validate(body)
    except ValidationError as error:
        errors = {**_validation_errors(error), **errors}
    if errors:
        raise FormInvalid(errors)
    return request


def job_patch_of(values: JobFormValues) -> JobPatch:
    """The ``PATCH /jobs/{id}`` body: every field of the form, as it now reads."""
    errors: dict[str, str] = {}
    body = _request_body(values.values, errors)
    if body.get("run_at") is None:
        body.pop("run_at")  # keep a one-time job's time; a recurring one drops it
    if body.get("queue") is None:
        body.pop("queue")
    if body.get("type") is None:
        errors["type"] = "a job needs a handler type"
    try:
        patch = JobPatch.model_validate(body)
    except ValidationError as error:
        errors = {**_validation_errors(error), **errors}
    if errors:
        raise FormInvalid(errors)
    return patch


def form_field_of(api_field: str) -> str:
    """The form field an API error names (``retry.max_attempts`` is beside max_attempts)."""
    if api_field.startswith("payload"):
        return "payload"
    return _FIELD_OF_LOCATION.get(api_field, api_field)
