"""The dashboard's switches: ``api.ui.enabled``, and the notice when auth is off."""

from __future__ import annotations

import httpx
import pytest

from jobsched.api import create_app
from jobsched.config.settings import ApiSettings, Settings, UiSettings
from jobsched.queue.database import DatabaseQueue
from jobsched.storage.database import SQLStorage
from tests.integration.api.conftest import BASE_URL


async def test_the_dashboard_is_served_with_a_notice_when_auth_is_off(
    api: httpx.AsyncClient,
) -> None:
    root = await api.get("/")
    assert root.status_code == 307
    assert root.headers["location"] == "/ui/"
    page = await api.get("/ui/")
    assert page.status_code == 200
    assert 'id="auth-off"' in page.text
    assert "Authentication is off" in page.text
    assert "unsafe-inline" not in page.headers["content-security-policy"]
    # The REST API's own answers carry no dashboard headers.
    jobs = await api.get("/jobs")
    assert "content-security-policy" not in jobs.headers


@pytest.mark.parametrize("path", ["/", "/ui/", "/ui/jobs", "/ui/static/app.css"])
async def test_ui_enabled_false_serves_no_dashboard(storage: SQLStorage, path: str) -> None:
    settings = Settings(api=ApiSettings(ui=UiSettings(enabled=False)))
    app = create_app(storage, DatabaseQueue(storage), settings)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url=BASE_URL) as client:
        assert (await client.get(path)).status_code == 404
