"""Runs, dead runs, workers and the audit log in a real browser, against a working standalone."""

from __future__ import annotations

import uuid

import httpx
import pytest
from playwright.sync_api import Page, expect

from tests.e2e.processes import wait_until
from tests.e2e.ui.conftest import Dashboard, login

pytestmark = pytest.mark.e2e


def _db_id(dashboard: Dashboard, value: object) -> str:
    parsed = uuid.UUID(str(value))
    return parsed.hex if dashboard.database_url.startswith("sqlite") else str(parsed)


def _run_column(dashboard: Dashboard, run_id: object, column: str) -> object:
    query = f"SELECT {column} FROM runs WHERE id = :id"  # noqa: S608 - the test's own column
    return dashboard.scalar(query, id=_db_id(dashboard, run_id))


def _trigger(dashboard: Dashboard, job_id: object) -> str:
    with dashboard.api() as admin:
        response = admin.post(f"/jobs/{job_id}/trigger")
    assert response.status_code == 201, response.text
    run_id: str = response.json()["id"]
    return run_id


def _dead_runs(dashboard: Dashboard, count: int) -> list[str]:
    job = dashboard.create_job(type="always_fails", retry={"max_attempts": 1})
    run_ids = [_trigger(dashboard, job["id"]) for _ in range(count)]
    wait_until(
        lambda: all(_run_column(dashboard, run, "status") == "dead" for run in run_ids),
        timeout_seconds=20,
        message="the runs dead",
    )
    return run_ids


def test_cancel_a_running_run_then_retry_it(page: Page, dashboard: Dashboard) -> None:
    job = dashboard.create_job(
        type="sleepy", payload={"sleep_seconds": 60}, retry={"max_attempts": 1}
    )
    run_id = _trigger(dashboard, job["id"])
    login(page, dashboard.admin_token)
    page.goto(f"/ui/runs/{run_id}")
    # The page follows the run without a reload: queued, then running on the worker.
    expect(page.locator("#run-live")).to_have_attribute("data-status", "running", timeout=15000)
    expect(page.locator("#attempts li[data-attempt='1']")).to_have_attribute(
        "data-status", "running"
    )
    page.click("#cancel")
    expect(page.locator(".notice.ok")).to_have_text("Cancelled.")
    expect(page.locator("#run-live")).to_have_attribute("data-status", "cancelled")
    expect(page.locator("#attempts li[data-attempt='1']")).to_have_attribute(
        "data-status", "cancelled"
    )
    assert _run_column(dashboard, run_id, "status") == "cancelled"

    page.click("#retry")
    expect(page.locator(".notice.ok")).to_have_text("Queued again.")
    # The second attempt of a sleepy job does not sleep: it succeeds, shown live.
    expect(page.locator("#run-live")).to_have_attribute("data-status", "succeeded", timeout=15000)
    expect(page.locator("#attempts li[data-attempt='2']")).to_have_attribute(
        "data-status", "succeeded"
    )
    assert _run_column(dashboard, run_id, "status") == "succeeded"


def test_the_run_page_shows_progress_live(page: Page, dashboard: Dashboard) -> None:
    job = dashboard.create_job(type="counting", payload={"steps": 5, "step_seconds": 1.0})
    run_id = _trigger(dashboard, job["id"])
    login(page, dashboard.admin_token)
    page.goto(f"/ui/runs/{run_id}")
    progress = page.locator("#attempts li[data-attempt='1'] .attempt-progress")
    expect(progress).to_contain_text('"step": ', timeout=10000)
    first = progress.inner_text()
    # Later reports replace it on the page as the worker's heartbeats store them.
    expect(progress).not_to_have_text(first, timeout=10000)
    expect(page.locator("#run-live")).to_have_attribute("data-status", "succeeded", timeout=15000)
    # The last report is the attempt's result (the handler returned none).
    expect(page.locator("#attempts li[data-attempt='1']")).to_contain_text('"step": 5')


def test_retry_dead_runs_singly_and_in_bulk_then_delete_them(
    page: Page, dashboard: Dashboard
) -> None:
    single, *bulk = _dead_runs(dashboard, 3)
    login(page, dashboard.admin_token)
    page.get_by_role("link", name="Dead runs", exact=True).click()
    expect(page.locator(f"tr[data-run-id='{single}']")).to_contain_text("always fails")

    page.locator(f"tr[data-run-id='{single}'] button", has_text="Retry").click()
    expect(page.locator(".notice.ok")).to_have_text("Queued again.")
    assert _run_column(dashboard, single, "attempt") == 2

    for run_id in bulk:
        page.check(f"input[name=run_id][value='{run_id}']")
    page.click("#bulk-retry")
    expect(page.locator(".notice.ok")).to_have_text("The selected runs are queued again.")
    for run_id in bulk:
        assert _run_column(dashboard, run_id, "attempt") == 2
    assert _run_column(dashboard, single, "attempt") == 2, "only the selected runs"

    everything = [single, *bulk]
    wait_until(
        lambda: all(_run_column(dashboard, run, "status") == "dead" for run in everything),
        timeout_seconds=20,
        message="the retried runs dead again",
    )
    page.reload()
    for run_id in everything:
        page.check(f"input[name=run_id][value='{run_id}']")
    page.click("#bulk-delete")  # confirmed in the dialog (the page fixture accepts)
    expect(page.locator(".notice.ok")).to_have_text("The selected runs are deleted.")
    for run_id in everything:
        assert _run_column(dashboard, run_id, "status") is None
        expect(page.locator(f"tr[data-run-id='{run_id}']")).to_have_count(0)


def test_a_read_token_cannot_cancel_or_retry(page: Page, dashboard: Dashboard) -> None:
    (dead,) = _dead_runs(dashboard, 1)
    login(page, dashboard.token("read"))
    page.goto(f"/ui/runs/{dead}")
    expect(page.locator("#run-live")).to_have_attribute("data-status", "dead")
    expect(page.locator("#retry")).to_have_count(0)
    page.goto("/ui/dead")
    expect(page.locator(f"tr[data-run-id='{dead}']")).to_have_count(1)
    expect(page.locator("#bulk-retry")).to_have_count(0)
    expect(page.locator("input[name=run_id]")).to_have_count(0)
    csrf = page.locator("input[name=csrf_token]").first.get_attribute("value")
    session = next(c for c in page.context.cookies() if c["name"] == "jobsched_session")
    with httpx.Client(
        base_url=dashboard.url, cookies={"jobsched_session": session["value"]}
    ) as forged:
        for path, data in (
            (f"/ui/runs/{dead}/retry", {"csrf_token": csrf or ""}),
            ("/ui/dead/retry", {"csrf_token": csrf or "", "run_id": dead}),
            ("/ui/dead/delete", {"csrf_token": csrf or "", "run_id": dead}),
        ):
            refused = forged.post(path, data=data)
            assert refused.status_code == 403, (path, refused.text)
    assert _run_column(dashboard, dead, "status") == "dead"
    assert _run_column(dashboard, dead, "attempt") == 1


def test_workers_page_shows_the_live_worker(page: Page, dashboard: Dashboard) -> None:
    login(page, dashboard.admin_token)
    page.get_by_role("link", name="Workers", exact=True).click()
    alive = page.locator("#workers tr[data-status=alive]")
    expect(alive).to_have_count(1)
    expect(alive.first).to_contain_text("ago")
    expect(page.locator("#workers-alive")).to_have_text("1")


def test_the_audit_log_is_for_admins_and_filters(page: Page, dashboard: Dashboard) -> None:
    job = dashboard.create_job()
    with dashboard.api() as admin:
        assert admin.post(f"/jobs/{job['id']}/pause").status_code == 200
    login(page, dashboard.admin_token)
    page.get_by_role("link", name="Audit", exact=True).click()
    page.fill("#a-action", "job.paused")
    page.fill("#a-target", str(job["id"]))
    page.click("text=Filter")
    rows = page.locator("#audit tbody tr[data-action]")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("root")

    page.click("text=Log out")
    login(page, dashboard.token("write"))
    expect(page.get_by_role("link", name="Audit", exact=True)).to_have_count(0)
    assert page.request.get("/ui/audit").status == 403
