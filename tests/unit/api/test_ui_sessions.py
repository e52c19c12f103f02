"""The dashboard's cookies and CSRF tokens, and where a login may send the browser."""

from __future__ import annotations

from starlette.requests import Request
from starlette.responses import Response

from jobsched.api.ui.routes_auth import _safe_next
from jobsched.api.ui.sessions import (
    CSRF_COOKIE,
    anonymous_viewer,
    csrf_token_for,
    set_cookie,
)


def _request(scheme: str = "http", cookie: str | None = None) -> Request:
    headers = [(b"host", b"jobsched.test")]
    if cookie is not None:
        headers.append((b"cookie", cookie.encode()))
    scope = {
        "type": "http",
        "scheme": scheme,
        "method": "GET",
        "path": "/ui/",
        "query_string": b"",
        "headers": headers,
        "server": ("jobsched.test", 443 if scheme == "https" else 80),
    }
    return Request(scope)


def _set_cookie_header(scheme: str) -> str:
    response = Response()
    set_cookie(_request(scheme), response, "jobsched_session", "x" * 43, max_age=600)
    return response.headers["set-cookie"]


def test_the_session_cookie_is_secure_over_https_only() -> None:
    over_https = _set_cookie_header("https")
    assert "; Secure" in over_https
    assert "HttpOnly" in over_https
    assert "SameSite=strict" in over_https
    assert "Path=/ui" in over_https
    assert "Max-Age=600" in over_https
    assert "Secure" not in _set_cookie_header("http")


def test_csrf_tokens_differ_per_browser_secret() -> None:
    assert csrf_token_for("a" * 43) == csrf_token_for("a" * 43)
    assert csrf_token_for("a" * 43) != csrf_token_for("b" * 43)
    assert "a" * 43 not in csrf_token_for("a" * 43)


def test_a_browser_keeps_its_secret_and_a_bad_one_is_replaced() -> None:
    kept = anonymous_viewer(_request(cookie=f"{CSRF_COOKIE}={'k' * 43}"), auth_enabled=False)
    assert kept.secret == "k" * 43
    assert not kept.new_secret
    for cookie in (None, f"{CSRF_COOKIE}=short", f"{CSRF_COOKIE}={'x' * 200}"):
        fresh = anonymous_viewer(_request(cookie=cookie), auth_enabled=True)
        assert fresh.new_secret
        assert len(fresh.secret) >= 40
        assert fresh.principal.role == "read", "before sign-in, nothing more than read"


def test_a_login_only_returns_to_dashboard_pages() -> None:
    assert _safe_next("/ui/jobs?q=x") == "/ui/jobs?q=x"
    for target in (None, "", "https://evil.example/", "//evil.example/ui/", "/jobs", "/uix"):
        assert _safe_next(target) == "/ui/"
