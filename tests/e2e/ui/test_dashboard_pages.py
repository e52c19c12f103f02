"""Every page, at 1280 px and at phone width: it renders, fits, and is captured.

Each page must fit the viewport's width (wide tables scroll inside their own box,
never the page). The screenshots go to the test's temporary directory; with
``JOBSCHED_UI_SCREENSHOTS=docs/images`` (``make screenshots``) they are written
there instead, from the SQLite run, for the README.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from tests.e2e.processes import wait_until
from tests.e2e.ui.conftest import Dashboard, login

pytestmark = pytest.mark.e2e

WIDTHS = {"desktop": (1280, 900), "phone": (390, 844)}


def _some_history(dashboard: Dashboard) -> dict[str, str]:
    job = dashboard.create_job(
        name="nightly-report",
        schedule="30 2 * * *",
        timezone="Europe/Berlin",
        payload={"url": "https://reports.example/run", "headers": {"Authorization": "Bearer x"}},
        type="noop",
    )
    dashboard.create_job(name="cache-warmer", schedule="*/15 * * * *")
    failing = dashboard.create_job(
        name="flaky-import", type="always_fails", retry={"max_attempts": 1}
    )
    with dashboard.api() as admin:
        for _ in range(3):
            assert admin.post(f"/jobs/{job['id']}/trigger").status_code == 201
        dead = admin.post(f"/jobs/{failing['id']}/trigger").json()["id"]
    wait_until(
        lambda: (
            dashboard.scalar(
                "SELECT count(*) FROM runs WHERE status IN ('queued', 'running')"
                " AND queue = 'default'"
            )
            == 0
        ),
        timeout_seconds=20,
        message="the runs finished",
    )
    return {"job": str(job["id"]), "run": str(dead)}


def _fits(page: Page) -> bool:
    return bool(page.evaluate("document.documentElement.scrollWidth <= window.innerWidth + 1"))


def test_every_page_renders_and_fits_at_both_widths(
    page: Page, dashboard: Dashboard, tmp_path: Path
) -> None:
    ids = _some_history(dashboard)
    pages = {
        "overview": "/ui/",
        "jobs": "/ui/jobs",
        "job": f"/ui/jobs/{ids['job']}",
        "job-new": "/ui/jobs/new",
        "run": f"/ui/runs/{ids['run']}",
        "dead-runs": "/ui/dead",
        "workers": "/ui/workers",
        "audit": "/ui/audit",
    }
    wanted = os.environ.get("JOBSCHED_UI_SCREENSHOTS")
    is_sqlite = dashboard.database_url.startswith("sqlite")
    directory = Path(wanted) if wanted and is_sqlite else tmp_path
    directory.mkdir(parents=True, exist_ok=True)
    page.goto("/ui/login")
    page.set_viewport_size({"width": 1280, "height": 900})
    page.screenshot(path=str(directory / "login.png"))
    login(page, dashboard.admin_token)
    for width_name, (width, height) in WIDTHS.items():
        page.set_viewport_size({"width": width, "height": height})
        for name, path in pages.items():
            response = page.goto(path)
            assert response is not None
            assert response.status == 200, (path, response.status)
            expect(page.locator("main h1")).to_be_visible()
            assert _fits(page), f"{path} is wider than {width} px"
            suffix = "" if width_name == "desktop" else "-phone"
            page.screenshot(path=str(directory / f"{name}{suffix}.png"), full_page=True)
