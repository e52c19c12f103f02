"""Who may do what: roles, the caller (``Principal``), API tokens and audit entries.

Pure: the API decides with these, storage keeps tokens and audit rows, and nothing
here does I/O. A token is 32 random bytes shown once; only its SHA-256 is stored,
which is enough for a secret of that entropy (no slow hash is needed against guessing).
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import secrets
import uuid
from dataclasses import dataclass, field
from datetime import datetime

TOKEN_PREFIX = "jobsched_"  # noqa: S105  # a public prefix, not a secret


class Role(enum.StrEnum):
    """Each role includes the ones before it."""

    READ = "read"
    OPERATE = "operate"
    WRITE = "write"
    ADMIN = "admin"

    @property
    def rank(self) -> int:
        return _ROLE_ORDER.index(self)

    def allows(self, needed: Role) -> bool:
        return self.rank >= needed.rank


_ROLE_ORDER = (Role.READ, Role.OPERATE, Role.WRITE, Role.ADMIN)


@dataclass(frozen=True, slots=True)
class Principal:
    """The caller of one request. ``queues`` None: every queue."""

    name: str
    role: Role
    token_id: uuid.UUID | None = None
    queues: frozenset[str] | None = None

    def sees_queue(self, queue: str) -> bool:
        return self.queues is None or queue in self.queues


# The caller when auth is off (standalone on loopback, or turned off explicitly).
ANONYMOUS = Principal(name="anonymous", role=Role.ADMIN)


@dataclass(frozen=True, slots=True)
class ApiToken:
    """A stored API token; the token itself is never kept, only ``token_hash``."""

    id: uuid.UUID
    name: str
    role: Role
    queues: tuple[str, ...] | None
    token_hash: str
    created_at: datetime
    expires_at: datetime | None = None
    last_used_at: datetime | None = None
    revoked_at: datetime | None = None

    def usable_at(self, now: datetime) -> bool:
        return self.revoked_at is None and (self.expires_at is None or now < self.expires_at)

    def principal(self) -> Principal:
        queues = frozenset(self.queues) if self.queues is not None else None
        return Principal(name=self.name, role=self.role, token_id=self.id, queues=queues)


def generate_token() -> str:
    """A new token: a recognisable prefix (secret scanners can match it) and 256 random bits."""
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def hash_token(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def same_hash(left: str, right: str) -> bool:
    return hmac.compare_digest(left.lower(), right.lower())


@dataclass(frozen=True, slots=True)
class AuditEntry:
    """An audit row a change writes in its own transaction.

    The caller states who and why (``action``); the storage method that makes the
    change names the target when only it knows it (a created job's id) and, for
    edits, the fields the change actually touched. Only field names are kept,
    never values: payloads and headers may hold secrets.
    """

    action: str
    actor: Principal
    request_id: str | None = None
    client_address: str | None = None
    target_kind: str | None = None
    target_id: str | None = None
    fields: tuple[str, ...] = field(default_factory=tuple)


@dataclass(frozen=True, slots=True)
class AuditRecord:
    """A stored audit row."""

    id: uuid.UUID
    at: datetime
    action: str
    token_id: uuid.UUID | None
    token_name: str
    target_kind: str
    target_id: str | None
    request_id: str | None
    client_address: str | None
    fields: tuple[str, ...]
