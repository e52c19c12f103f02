"""Who is calling: bearer tokens, roles and queue scopes, checked on every request.

``require(Role.X)`` is the dependency every route declares; it answers 401 for a
missing, malformed, unknown, expired or revoked token and 403 for a role below X,
and hands the route the caller (``Principal``). A token limited to queues sees
only their jobs and runs: routes pass ``principal.queues`` to storage, which treats
anything else as absent (404), so ids of other queues cannot be probed.

Auth is on unless the API listens on loopback only, or the config turns it off
(``api.auth.enabled``). Tokens come from the database (``jobsched tokens``,
``POST /tokens``) and from the config (``api.auth.tokens``). A lookup is kept at
most ``api.auth.cache_seconds``, so a revocation reaches every API process within it.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import logging
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

from fastapi import Depends, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from jobsched.config.settings import AuthSettings, ConfigToken
from jobsched.core.access import (
    ANONYMOUS,
    ApiToken,
    AuditEntry,
    Principal,
    Role,
    hash_token,
    same_hash,
)
from jobsched.core.errors import (
    AuthenticationError,
    ConfigurationError,
    PermissionDeniedError,
)
from jobsched.storage.base import Storage

__all__ = [
    "ANONYMOUS",
    "Admin",
    "Authenticator",
    "Operator",
    "Principal",
    "Reader",
    "Role",
    "Writer",
    "audit_entry",
    "auth_enabled",
    "is_loopback",
    "require",
]

logger = logging.getLogger(__name__)

# Declares the scheme in the OpenAPI document; the header is parsed by ``Authenticator``.
bearer_scheme = HTTPBearer(auto_error=False, description="An API token (`jobsched tokens`).")

# Lookups kept per process, at most; beyond it the cache starts over (a flood of
# random tokens cannot grow the process).
_CACHE_ENTRIES_MAX = 10_000
_MAX_TOKEN_LENGTH = 512

SessionResolver = Callable[[Request], Awaitable[Principal | None]]


def is_loopback(host: str) -> bool:
    """Whether binding ``host`` keeps the API reachable from this machine only."""
    if host.lower() in {"localhost", "localhost.localdomain"}:
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False  # a host name: it may resolve to anything


def auth_enabled(settings: AuthSettings, host: str) -> bool:
    if settings.enabled is not None:
        return settings.enabled
    return not is_loopback(host)


def _config_principals(tokens: list[ConfigToken]) -> dict[str, Principal]:
    principals: dict[str, Principal] = {}
    for index, token in enumerate(tokens):
        digest = token.token_hash.lower() if token.token_hash else _hash_of_file(index, token)
        queues = frozenset(token.queues) if token.queues is not None else None
        principals[digest] = Principal(name=token.name, role=Role(token.role), queues=queues)
    return principals


def _hash_of_file(index: int, token: ConfigToken) -> str:
    path = token.token_file
    assert path is not None, "ConfigToken holds a token_hash or a token_file"
    try:
        secret = Path(path).read_text(encoding="utf-8").strip()
    except OSError as error:
        raise ConfigurationError(
            f"setting api.auth.tokens.{index}.token_file: cannot read {path}: {error.strerror}"
        ) from error
    if len(secret) < 16:
        raise ConfigurationError(
            f"setting api.auth.tokens.{index}.token_file: {path} holds no token of 16 "
            "characters or more"
        )
    return hash_token(secret)


class Authenticator:
    """Turns a request's credentials into a ``Principal``, or refuses it."""

    def __init__(
        self,
        storage: Storage,
        settings: AuthSettings,
        *,
        enabled: bool,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.enabled = enabled
        self._storage = storage
        self._cache_seconds = settings.cache_seconds
        self._clock = clock
        self._config_tokens = _config_principals(settings.tokens) if enabled else {}
        self._cache: dict[str, tuple[float, ApiToken | None]] = {}
        # Set by the dashboard: a signed-in browser's session stands for a token.
        self.session_resolver: SessionResolver | None = None

    async def authenticate(self, request: Request) -> Principal:
        if not self.enabled:
            return ANONYMOUS
        header = request.headers.get("authorization")
        if header is None and self.session_resolver is not None:
            principal = await self.session_resolver(request)
            if principal is not None:
                return principal
        return await self.principal_for(_bearer_token(header))

    async def principal_for(self, token: str) -> Principal:
        """The caller holding ``token``; ``AuthenticationError`` unless it is usable now."""
        return await self.principal_for_hash(hash_token(token))

    async def principal_for_hash(self, digest: str) -> Principal:
        """The caller holding the token of this SHA-256 (a dashboard session keeps only it)."""
        for known, principal in self._config_tokens.items():
            if same_hash(known, digest):
                return principal
        stored = await self._lookup(digest)
        if stored is None:
            raise AuthenticationError("the token is not known")
        now = datetime.now(UTC)
        if stored.revoked_at is not None:
            raise AuthenticationError("the token has been revoked")
        if stored.expires_at is not None and now >= stored.expires_at:
            raise AuthenticationError("the token has expired")
        await self._note_use(digest, stored, now)
        return stored.principal()

    async def _lookup(self, digest: str) -> ApiToken | None:
        now = self._clock()
        cached = self._cache.get(digest)
        if cached is not None and now - cached[0] < self._cache_seconds:
            return cached[1]
        stored = await self._storage.find_token(digest)
        if self._cache_seconds > 0:
            if len(self._cache) >= _CACHE_ENTRIES_MAX:
                self._cache.clear()
            self._cache[digest] = (now, stored)
        return stored

    async def _note_use(self, digest: str, token: ApiToken, now: datetime) -> None:
        last = token.last_used_at
        if last is not None and (now - last).total_seconds() < 60:
            return
        await self._storage.note_token_used(token.id, now)
        cached = self._cache.get(digest)
        if cached is not None and cached[1] is not None:
            self._cache[digest] = (cached[0], dataclasses.replace(cached[1], last_used_at=now))


def _bearer_token(header: str | None) -> str:
    if header is None:
        raise AuthenticationError("this endpoint needs an API token: Authorization: Bearer <token>")
    scheme, _, token = header.partition(" ")
    token = token.strip()
    if scheme.lower() != "bearer" or not token:
        raise AuthenticationError("the Authorization header must be 'Bearer <token>'")
    if len(token) > _MAX_TOKEN_LENGTH or not token.isascii() or not token.isprintable():
        raise AuthenticationError("the token is not known")
    return token


def get_authenticator(request: Request) -> Authenticator:
    authenticator = request.app.state.authenticator
    assert isinstance(authenticator, Authenticator), "create_app() stores the authenticator"
    return authenticator


def require(role: Role) -> Callable[..., Awaitable[Principal]]:
    """A dependency: the caller, if it may act with ``role``; 401 or 403 otherwise."""

    async def caller_with_role(
        request: Request,
        _credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer_scheme)],
    ) -> Principal:
        principal = await get_authenticator(request).authenticate(request)
        if not principal.role.allows(role):
            raise PermissionDeniedError.for_role(role.value, principal.role.value)
        request.state.principal = principal
        return principal

    caller_with_role.required_role = role  # type: ignore[attr-defined]  # read by openapi
    return caller_with_role


Reader = Annotated[Principal, Depends(require(Role.READ))]
Operator = Annotated[Principal, Depends(require(Role.OPERATE))]
Writer = Annotated[Principal, Depends(require(Role.WRITE))]
Admin = Annotated[Principal, Depends(require(Role.ADMIN))]


def audit_entry(
    request: Request,
    principal: Principal,
    action: str,
    *,
    target_kind: str | None = None,
    target_id: object = None,
    fields: tuple[str, ...] = (),
) -> AuditEntry:
    """The audit row of the change ``request`` asks for, as ``principal``."""
    client = request.client
    return AuditEntry(
        action=action,
        actor=principal,
        request_id=getattr(request.state, "request_id", None),
        client_address=client.host if client is not None else None,
        target_kind=target_kind,
        target_id=None if target_id is None else str(target_id),
        fields=fields,
    )


def required_role_of(call: Any) -> Role | None:
    role = getattr(call, "required_role", None)
    return role if isinstance(role, Role) else None
