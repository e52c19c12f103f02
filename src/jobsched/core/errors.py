"""The one exception tree of jobsched.

Every error a user can cause is an ``InvalidInputError`` (naming the field at
fault), a ``NotFoundError`` or a ``ConflictError``; the API maps these to
``application/problem+json`` in one place and the CLI prints them as one line.
"""

from __future__ import annotations


class JobschedError(Exception):
    """Root of every error jobsched raises on purpose."""


class InvalidInputError(JobschedError):
    """A value supplied by a user is not acceptable; ``field`` names it (dotted path)."""

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        self.message = message
        super().__init__(f"{field}: {message}")


class InvalidScheduleError(InvalidInputError):
    """A schedule expression, timezone or run time cannot be used."""


class NotFoundError(JobschedError):
    """The named resource does not exist."""

    def __init__(self, resource: str, identifier: object) -> None:
        self.resource = resource
        self.identifier = identifier
        super().__init__(f"{resource} {identifier} not found")


class ConflictError(JobschedError):
    """The request is well-formed but clashes with the current state (a taken name, say)."""

    def __init__(self, field: str, message: str) -> None:
        self.field = field
        self.message = message
        super().__init__(f"{field}: {message}")


class ConfigurationError(JobschedError):
    """The configuration file or environment cannot be used."""


class StorageError(JobschedError):
    """The database could not be used."""


class SchemaOutOfDateError(StorageError):
    """The database schema is missing or older than this release; run ``jobsched migrate``."""


class QueueError(JobschedError):
    """The queue backend could not be used."""


class HandlerError(JobschedError):
    """A handler cannot be found or registered."""


class AuthenticationError(JobschedError):
    """The request carries no usable credentials (missing, unknown, expired or revoked)."""

    def __init__(self, reason: str) -> None:
        self.reason = reason
        super().__init__(reason)


class PermissionDeniedError(JobschedError):
    """The caller is known, but may not do this; ``field`` names what it may not use."""

    def __init__(self, message: str, field: str = "Authorization") -> None:
        self.field = field
        self.message = message
        super().__init__(message)

    @classmethod
    def for_role(cls, needed: str, held: str) -> PermissionDeniedError:
        return cls(f"this action needs the {needed} role; the token has {held}")
