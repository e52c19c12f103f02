"""Who is looking at the dashboard: sign-in sessions, CSRF tokens and the viewer's rights.

With API auth on, the login page takes an API token and opens a session: a random
id in an HttpOnly, SameSite=Strict cookie scoped to ``/ui`` (Secure over https),
stored server-side only as its SHA-256 with the token's hash. Every request looks
the session up and re-checks the token (revoked or expired ends the session);
logging out deletes the row, so the old cookie is worth nothing afterwards.

Every form that changes something carries a CSRF token: an HMAC of the browser's
secret (the session id, or before sign-in and with auth off a random cookie of its
own), checked on the server before anything else. The role and queue scope of the
token are enforced on every action, whatever buttons the page showed.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from dataclasses import dataclass
from datetime import timedelta
from typing import Annotated

from fastapi import Depends, Request
from starlette.responses import Response

from jobsched.api.auth import get_authenticator
from jobsched.api.dependencies import Services, get_services
from jobsched.core.access import ANONYMOUS, Principal, Role, hash_token
from jobsched.core.errors import AuthenticationError

SESSION_COOKIE = "jobsched_session"
CSRF_COOKIE = "jobsched_csrf"
CSRF_FIELD = "csrf_token"
COOKIE_PATH = "/ui"
_CSRF_CONTEXT = b"jobsched dashboard csrf v1"
_SECRET_LENGTH_MAX = 100


class LoginRequired(Exception):  # noqa: N818 - a signal to redirect, not a failure
    """No valid session: GET pages redirect to the login page, POSTs answer 401."""


class UiForbidden(Exception):  # noqa: N818
    """The viewer's token may not do this (role or queue): 403."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class CsrfRefused(Exception):  # noqa: N818
    """A form without the right CSRF token: 403, before anything else is looked at."""


def csrf_token_for(secret: str) -> str:
    return hmac.new(secret.encode("utf-8"), _CSRF_CONTEXT, hashlib.sha256).hexdigest()


@dataclass(frozen=True, slots=True)
class Viewer:
    """The person behind a dashboard request."""

    principal: Principal
    auth_enabled: bool
    # The browser secret the CSRF token derives from, and whether it is new (to be set).
    secret: str
    new_secret: bool = False
    session_hash: str | None = None

    @property
    def csrf_token(self) -> str:
        return csrf_token_for(self.secret)

    def can(self, role: str | Role) -> bool:
        return self.principal.role.allows(Role(role))

    def require(self, role: Role) -> None:
        if not self.can(role):
            raise UiForbidden(
                f"this needs the {role.value} role; you are signed in with "
                f"{self.principal.role.value}"
            )

    def check_csrf(self, submitted: str | None) -> None:
        if not submitted or not hmac.compare_digest(
            submitted.encode("utf-8"), self.csrf_token.encode("ascii")
        ):
            raise CsrfRefused

    def set_cookies(self, request: Request, response: Response) -> None:
        """Set the CSRF cookie when this request made a new browser secret."""
        if self.new_secret:
            set_cookie(request, response, CSRF_COOKIE, self.secret, max_age=None)


def set_cookie(
    request: Request, response: Response, name: str, value: str, *, max_age: int | None
) -> None:
    response.set_cookie(
        name,
        value,
        max_age=max_age,
        path=COOKIE_PATH,
        secure=request.url.scheme == "https",
        httponly=True,
        samesite="strict",
    )


def _usable_secret(value: str | None) -> str | None:
    if value is None or not 16 <= len(value) <= _SECRET_LENGTH_MAX or not value.isascii():
        return None
    return value


def anonymous_viewer(request: Request, *, auth_enabled: bool) -> Viewer:
    """A viewer before sign-in (the login page), or anyone when auth is off."""
    secret = _usable_secret(request.cookies.get(CSRF_COOKIE))
    principal = ANONYMOUS if not auth_enabled else Principal(name="signed out", role=Role.READ)
    if secret is not None:
        return Viewer(principal=principal, auth_enabled=auth_enabled, secret=secret)
    return Viewer(
        principal=principal,
        auth_enabled=auth_enabled,
        secret=secrets.token_urlsafe(32),
        new_secret=True,
    )


async def get_viewer(
    request: Request, services: Annotated[Services, Depends(get_services)]
) -> Viewer:
    """The signed-in viewer; ``LoginRequired`` without a live session (auth on)."""
    authenticator = get_authenticator(request)
    if not authenticator.enabled:
        return anonymous_viewer(request, auth_enabled=False)
    session_id = _usable_secret(request.cookies.get(SESSION_COOKIE))
    if session_id is None:
        raise LoginRequired
    session_hash = hash_token(session_id)
    session = await services.storage.find_ui_session(session_hash)
    if session is None:
        raise LoginRequired
    if await services.storage.now() >= session.expires_at:
        await services.storage.delete_ui_session(session_hash)
        raise LoginRequired
    try:
        principal = await authenticator.principal_for_hash(session.token_hash)
    except AuthenticationError:
        await services.storage.delete_ui_session(session_hash)
        raise LoginRequired from None
    request.state.principal = principal
    return Viewer(
        principal=principal, auth_enabled=True, secret=session_id, session_hash=session_hash
    )


async def open_session(request: Request, services: Services, token: str) -> str:
    """Check ``token`` and store a new session for it; returns the session id (the cookie).

    ``AuthenticationError`` for a token that is not usable now.
    """
    await get_authenticator(request).principal_for(token)
    session_id = secrets.token_urlsafe(32)
    now = await services.storage.now()
    lifetime = timedelta(seconds=services.settings.api.ui.session_seconds)
    await services.storage.create_ui_session(
        session_hash=hash_token(session_id),
        token_hash=hash_token(token),
        now=now,
        expires_at=now + lifetime,
    )
    return session_id


ViewerDependency = Annotated[Viewer, Depends(get_viewer)]
