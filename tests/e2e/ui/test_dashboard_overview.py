"""The overview in a real browser: figures that match the database, live, with a pause."""

from __future__ import annotations

import time

import pytest
from playwright.sync_api import Page, expect

from tests.e2e.processes import wait_until
from tests.e2e.ui.conftest import Dashboard, login

pytestmark = pytest.mark.e2e


def _trigger(dashboard: Dashboard, job_id: object) -> str:
    with dashboard.api() as admin:
        response = admin.post(f"/jobs/{job_id}/trigger")
    assert response.status_code == 201, response.text
    run_id: str = response.json()["id"]
    return run_id


def _succeeded(dashboard: Dashboard) -> int:
    count = dashboard.scalar("SELECT count(*) FROM runs WHERE status = 'succeeded'")
    assert isinstance(count, int)
    return count


def _settled(dashboard: Dashboard) -> None:
    wait_until(
        lambda: (
            dashboard.scalar(
                "SELECT count(*) FROM runs WHERE status IN ('queued', 'running', 'retrying')"
                " AND queue = 'default'"
            )
            == 0
        ),
        timeout_seconds=20,
        message="every run on the default queue finished",
    )


def test_the_overview_shows_the_figures_and_follows_them_live(
    page: Page, dashboard: Dashboard
) -> None:
    noop = dashboard.create_job()
    failing = dashboard.create_job(type="always_fails", retry={"max_attempts": 1})
    stranded = dashboard.create_job(queue="nobody-listens")
    _trigger(dashboard, noop["id"])
    dead = _trigger(dashboard, failing["id"])
    _trigger(dashboard, stranded["id"])
    _settled(dashboard)

    login(page, dashboard.admin_token)
    succeeded = page.locator("#status-counts tr[data-status=succeeded] .count")
    expect(succeeded).to_have_text(str(_succeeded(dashboard)))
    expect(page.locator("#queue-depth tr[data-queue=nobody-listens] .count")).to_have_text("1")
    expect(page.locator("#overview-workers")).to_have_text("1")
    expect(page.locator(f"#latest-failures tr[data-run-id='{dead}']")).to_contain_text(
        "always fails"
    )
    expect(page.locator("#activity-chart rect.succeeded").first).to_be_attached()
    expect(page.locator("#activity-chart rect.failed").first).to_be_attached()
    expect(page.locator("#scheduler-lag")).to_contain_text(" s")

    # New work shows up without a reload...
    before = _succeeded(dashboard)
    _trigger(dashboard, noop["id"])
    _settled(dashboard)
    expect(succeeded).to_have_text(str(before + 1))

    # ... unless live updates are paused.
    page.click("#live-toggle")
    expect(page.locator("#live-toggle")).to_have_attribute("aria-pressed", "true")
    _trigger(dashboard, noop["id"])
    _settled(dashboard)
    time.sleep(1.5)  # three refresh intervals (0.5 s) pass
    expect(succeeded).to_have_text(str(before + 1))
    page.click("#live-toggle")
    expect(page.locator("#live-toggle")).to_have_attribute("aria-pressed", "false")
    expect(succeeded).to_have_text(str(before + 2))
