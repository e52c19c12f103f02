"""Errors a handler raises to steer what happens to its run."""

from __future__ import annotations

from jobsched.core.errors import JobschedError


class NonRetryableError(JobschedError):
    """The attempt failed in a way another try cannot fix: the run ends dead at once.

    Raise it (or a subclass) from a handler for a failure that retrying would only
    repeat, such as a payload the handler cannot use.
    """


class InvalidPayloadError(NonRetryableError):
    """A run's payload is not acceptable to its handler; ``field`` names the key at fault."""

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        self.message = message
        super().__init__(f"payload.{field}: {message}")
