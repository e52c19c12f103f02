"""Signing in and out of the dashboard, CSRF, and its security headers, in a real browser."""

from __future__ import annotations

import httpx
import pytest
from playwright.sync_api import Page, expect

from jobsched.api.ui.security import CONTENT_SECURITY_POLICY
from tests.e2e.ui.conftest import Dashboard, login

pytestmark = pytest.mark.e2e


def _session_cookie(page: Page) -> str:
    cookies = {cookie["name"]: cookie for cookie in page.context.cookies()}
    session = cookies["jobsched_session"]
    assert session["httpOnly"] is True
    assert session["sameSite"] == "Strict"
    assert session["path"] == "/ui"
    assert session["expires"] > 0, "the session cookie expires"
    return session["value"]


def test_root_leads_to_the_login_page_with_a_strict_csp(page: Page, dashboard: Dashboard) -> None:
    response = page.goto("/")
    assert response is not None
    expect(page).to_have_url(f"{dashboard.url}/ui/login?next=/ui/")
    assert response.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
    assert "unsafe-inline" not in response.headers["content-security-policy"]
    expect(page.locator("h1")).to_have_text("Sign in")
    expect(page.locator("nav")).to_have_count(0)


def test_a_wrong_token_is_refused_and_a_good_one_signs_in_and_out(
    page: Page, dashboard: Dashboard
) -> None:
    page.goto("/ui/login")
    page.fill("#token", "jobsched_not-a-real-token-at-all")
    page.click("button[type=submit]")
    expect(page.locator("#token-error")).to_contain_text("not known")

    login(page, dashboard.admin_token)
    expect(page.locator(".principal")).to_contain_text("root · admin")
    session_id = _session_cookie(page)
    assert dashboard.scalar("SELECT count(*) FROM ui_sessions") == 1

    page.click("text=Log out")
    expect(page).to_have_url(f"{dashboard.url}/ui/login")
    assert dashboard.scalar("SELECT count(*) FROM ui_sessions") == 0
    # The old cookie is worth nothing now, from any client.
    with httpx.Client(base_url=dashboard.url, cookies={"jobsched_session": session_id}) as old:
        answer = old.get("/ui/")
    assert answer.status_code == 303
    assert answer.headers["location"].startswith("/ui/login")


def test_a_post_without_the_csrf_token_is_refused(page: Page, dashboard: Dashboard) -> None:
    login(page, dashboard.admin_token)
    session_id = _session_cookie(page)
    with httpx.Client(base_url=dashboard.url, cookies={"jobsched_session": session_id}) as forged:
        missing = forged.post("/ui/logout", data={})
        wrong = forged.post("/ui/logout", data={"csrf_token": "0" * 64})
        still_in = forged.get("/ui/")
    assert missing.status_code == 403
    assert wrong.status_code == 403
    assert "CSRF" in missing.text
    assert missing.headers["content-security-policy"] == CONTENT_SECURITY_POLICY
    assert still_in.status_code == 200, "a refused logout changes nothing"
    # A login form without its token is refused too (login CSRF).
    with httpx.Client(base_url=dashboard.url) as anonymous:
        refused = anonymous.post("/ui/login", data={"token": dashboard.admin_token})
    assert refused.status_code == 403
    assert "set-cookie" not in refused.headers
