"""Errors a handler raises to steer what happens to its run.

Whether a failed attempt is retried is decided, in order, by: an exception whose
``retryable`` attribute is False (``NonRetryableError`` and its subclasses) ends the
run dead at once; then the handler's ``no_retry_on`` and ``retry_on`` (see
``jobsched.worker.registry``); otherwise the run's retry policy alone.
"""

from __future__ import annotations

from jobsched.core.errors import JobschedError


class NonRetryableError(JobschedError):
    """The attempt failed in a way another try cannot fix: the run ends dead at once.

    Raise it (or a subclass) from a handler for a failure that retrying would only
    repeat, such as a payload the handler cannot use. Any exception class (or
    instance) may say the same with a ``retryable = False`` attribute.
    """

    retryable = False


class InvalidPayloadError(NonRetryableError):
    """A run's payload is not acceptable to its handler; ``field`` names the key at fault."""

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        self.message = message
        super().__init__(f"payload.{field}: {message}")


class UnstorableResultError(NonRetryableError):
    """A result or progress report given to ``RunContext`` cannot be recorded.

    ``what`` is ``"result"`` or ``"progress"``; the value is not a JSON object, holds
    a NUL character, or is larger than ``RESULT_BYTES_MAX`` once encoded.
    """

    def __init__(self, what: str, message: str) -> None:
        self.what = what
        self.message = message
        super().__init__(f"{what}: {message}")
