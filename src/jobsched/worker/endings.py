"""How an attempt's handler call ended, as a value: success, failure or timeout.

Pure: shared by the worker (``execution``) and the child processes of
process-isolated handlers (``isolation``), which compute their ending themselves.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from jobsched.core.models import AttemptStatus, JsonObject
from jobsched.worker.context import holds_nul
from jobsched.worker.registry import DEFAULT_OPTIONS, HandlerOptions

ERROR_LENGTH_MAX = 2000
_TRUNCATED = " … (truncated)"


@dataclass(frozen=True, slots=True)
class HandlerEnding:
    """How an attempt's handler call ended: ``succeeded``, ``failed`` or ``timed_out``.

    ``retryable`` False means another try would fail the same way (the run ends dead).
    """

    attempt_status: AttemptStatus
    error: str | None = None
    result: JsonObject | None = None
    retryable: bool = True


def success(result: object) -> HandlerEnding:
    """A handler's return value as an ending; one that cannot be stored fails, for good."""
    if result is None:
        return HandlerEnding(AttemptStatus.SUCCEEDED)
    if not isinstance(result, dict):
        return failure(
            f"handler returned {type(result).__name__}, not a JSON object or None",
            retryable=False,
        )
    try:
        normalised = json.loads(json.dumps(result, allow_nan=False))
    except (TypeError, ValueError) as error:
        return failure(f"handler result is not JSON: {error}", retryable=False)
    if holds_nul(normalised):
        return failure("handler result holds a NUL character, which cannot be stored", False)
    return HandlerEnding(AttemptStatus.SUCCEEDED, result=normalised)


def failure_from(error: BaseException, options: HandlerOptions = DEFAULT_OPTIONS) -> HandlerEnding:
    """A failed ending from an exception, retryable as ``options.is_retryable`` decides."""
    detail = str(error)
    text = f"{type(error).__name__}: {detail}" if detail else type(error).__name__
    return failure(text, retryable=options.is_retryable(error))


def failure(text: str, retryable: bool = True) -> HandlerEnding:
    return HandlerEnding(AttemptStatus.FAILED, error=bound_error_text(text), retryable=retryable)


def bound_error_text(text: str) -> str:
    """``text`` cut to ``ERROR_LENGTH_MAX`` characters, storable in PostgreSQL (no NUL)."""
    text = text.replace("\x00", "\\x00")
    if len(text) <= ERROR_LENGTH_MAX:
        return text
    return text[: ERROR_LENGTH_MAX - len(_TRUNCATED)] + _TRUNCATED
