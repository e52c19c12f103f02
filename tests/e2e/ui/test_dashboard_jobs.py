"""The jobs pages in a real browser: list, filters, create and edit forms, the job's actions."""

from __future__ import annotations

import re
import uuid

import httpx
import pytest
from playwright.sync_api import Page, expect

from tests.e2e.ui.conftest import Dashboard, login

pytestmark = pytest.mark.e2e


def _job_id_in(dashboard: Dashboard, job_id: object) -> str:
    """The id as the database's driver renders it (SQLite keeps UUIDs as 32 hex digits)."""
    value = uuid.UUID(str(job_id))
    return value.hex if dashboard.database_url.startswith("sqlite") else str(value)


def _status_of(dashboard: Dashboard, job_id: object) -> object:
    return dashboard.scalar(
        "SELECT status FROM jobs WHERE id = :id", id=_job_id_in(dashboard, job_id)
    )


def test_create_a_job_from_the_form_a_bad_schedule_first(page: Page, dashboard: Dashboard) -> None:
    login(page, dashboard.admin_token)
    page.get_by_role("link", name="Jobs", exact=True).click()
    page.get_by_role("link", name="New job").click()
    name = f"nightly-{uuid.uuid4().hex[:8]}"
    page.fill("#f-name", name)
    page.fill("#f-type", "noop")
    page.fill("#f-schedule", "every tuesday")
    # The live preview says what is wrong while typing.
    expect(page.locator("#preview-error")).to_contain_text("expected 5 fields")
    page.click("#save")
    expect(page.locator("#schedule-error")).to_contain_text("expected 5 fields")
    expect(page.locator("#f-schedule")).to_have_attribute("aria-invalid", "true")
    expect(page.locator("#f-name")).to_have_value(name)  # what was typed is kept
    assert dashboard.scalar("SELECT count(*) FROM jobs WHERE name = :n", n=name) == 0

    page.fill("#f-schedule", "30 2 * * *")
    page.fill("#f-timezone", "Europe/Berlin")
    expect(page.locator("#preview-times li")).to_have_count(5)
    page.click("#save")
    expect(page.locator("h1")).to_contain_text(name)
    expect(page.locator(".notice.ok")).to_have_text("Job created.")
    expect(page.locator("text=at 02:30 in Europe/Berlin")).to_be_visible()
    expect(page.locator("#fire-times-table tbody tr")).to_have_count(10)
    first = page.locator("#fire-times-table tbody tr").first
    expect(first.locator("td").first).to_contain_text("02:30:00 CE")
    assert dashboard.scalar("SELECT schedule FROM jobs WHERE name = :n", n=name) == "30 2 * * *"


def test_the_list_filters_and_explains_schedules(page: Page, dashboard: Dashboard) -> None:
    marker = uuid.uuid4().hex[:8]
    wanted = dashboard.create_job(name=f"report-{marker}", schedule="*/15 * * * *")
    dashboard.create_job(name=f"other-{marker}", queue="elsewhere")
    login(page, dashboard.admin_token)
    page.goto("/ui/jobs")
    page.fill("#q", f"report-{marker}")
    page.click("text=Filter")
    expect(page).to_have_url(re.compile(rf".*q=report-{marker}.*"))
    rows = page.locator("#jobs-table tbody tr")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text("every 15 minutes")
    expect(rows.first).to_have_attribute("data-job-id", str(wanted["id"]))
    page.goto(f"/ui/jobs?queue=elsewhere&q={marker}")
    expect(rows).to_have_count(1)
    expect(rows.first).to_contain_text(f"other-{marker}")
    page.goto(f"/ui/jobs?q={marker}")
    page.select_option("#sort", "name")
    page.click("text=Filter")
    expect(page).to_have_url(re.compile(r".*sort=name.*"))
    expect(rows).to_have_count(2)
    expect(rows.nth(0)).to_contain_text(f"other-{marker}")
    expect(rows.nth(1)).to_contain_text(f"report-{marker}")


def test_trigger_pause_resume_edit_and_delete_with_the_buttons(
    page: Page, dashboard: Dashboard
) -> None:
    job = dashboard.create_job(
        schedule="@every 1h",
        payload={"headers": {"Authorization": "Bearer very-secret"}, "note": "hello"},
    )
    login(page, dashboard.admin_token)
    page.goto(f"/ui/jobs/{job['id']}")
    expect(page.locator("#payload")).to_contain_text('"***"')
    expect(page.locator("#payload")).not_to_contain_text("very-secret")

    page.fill("#trigger-payload", '{"note": "just this once"}')
    page.click("#trigger")
    expect(page.locator(".notice.ok")).to_contain_text("Triggered")
    # The run appears, and then succeeds, without a reload (the runs list polls).
    expect(page.locator("#job-runs tbody tr[data-status=succeeded]")).to_have_count(1)
    runs = dashboard.scalar(
        "SELECT count(*) FROM runs WHERE job_id = :id AND trigger = 'manual'",
        id=_job_id_in(dashboard, job["id"]),
    )
    assert runs == 1

    page.click("#pause")
    expect(page.locator(".notice.ok")).to_have_text("Paused.")
    assert _status_of(dashboard, job["id"]) == "paused"
    page.click("#resume")
    expect(page.locator(".notice.ok")).to_have_text("Resumed.")
    assert _status_of(dashboard, job["id"]) == "active"

    page.click("#edit")
    page.fill("#f-timezone", "Mars/Olympus_Mons")
    page.click("#save")
    expect(page.locator("#timezone-error")).to_be_visible()
    page.fill("#f-timezone", "UTC")
    page.fill("#f-priority", "7")
    page.click("#save")
    expect(page.locator(".notice.ok")).to_have_text("Saved.")
    priority = dashboard.scalar(
        "SELECT priority FROM jobs WHERE id = :id", id=_job_id_in(dashboard, job["id"])
    )
    assert priority == 7
    # The secret was shown as *** in the form and sent back so: it is kept.
    with dashboard.api() as admin:
        kept = admin.get(f"/jobs/{job['id']}").json()
    assert kept["payload"]["headers"]["Authorization"] == "***"
    assert (
        dashboard.scalar(
            "SELECT count(*) FROM jobs WHERE id = :id AND payload LIKE '%very-secret%'"
            if dashboard.database_url.startswith("sqlite")
            else "SELECT count(*) FROM jobs WHERE id = :id AND payload::text LIKE '%very-secret%'",
            id=_job_id_in(dashboard, job["id"]),
        )
        == 1
    )

    page.click("#delete")
    page.click("#confirm-delete")
    expect(page.locator(".notice.ok")).to_contain_text("Job deleted")
    assert _status_of(dashboard, job["id"]) is None


def _csrf_and_session(page: Page) -> tuple[str, str]:
    csrf = page.locator("input[name=csrf_token]").first.get_attribute("value")
    assert csrf
    session = next(c for c in page.context.cookies() if c["name"] == "jobsched_session")
    return csrf, session["value"]


def test_a_read_token_sees_no_actions_and_its_forged_posts_are_refused(
    page: Page, dashboard: Dashboard
) -> None:
    job = dashboard.create_job()
    login(page, dashboard.token("read"))
    page.goto(f"/ui/jobs/{job['id']}")
    expect(page.locator("h1")).to_contain_text(str(job["name"]))
    expect(page.locator("#job-actions")).to_have_count(0)
    expect(page.locator("button", has_text="Trigger")).to_have_count(0)
    page.goto("/ui/jobs")
    expect(page.locator("text=New job")).to_have_count(0)
    csrf, session = _csrf_and_session(page)
    with httpx.Client(base_url=dashboard.url, cookies={"jobsched_session": session}) as forged:
        for action in ("trigger", "pause", "delete"):
            refused = forged.post(f"/ui/jobs/{job['id']}/{action}", data={"csrf_token": csrf})
            assert refused.status_code == 403, (action, refused.text)
            assert "needs the" in refused.text
        new = forged.post("/ui/jobs/new", data={"csrf_token": csrf, "type": "noop"})
        assert new.status_code == 403
    assert _status_of(dashboard, job["id"]) == "active"
    assert (
        dashboard.scalar(
            "SELECT count(*) FROM runs WHERE job_id = :id", id=_job_id_in(dashboard, job["id"])
        )
        == 0
    )


def test_a_queue_scoped_token_cannot_act_on_other_queues(page: Page, dashboard: Dashboard) -> None:
    job = dashboard.create_job(queue="payroll")
    login(page, dashboard.token("operate", queues=["reports"]))
    response = page.request.get(f"/ui/jobs/{job['id']}")
    assert response.status == 404
    csrf, session = _csrf_and_session(page)
    with httpx.Client(base_url=dashboard.url, cookies={"jobsched_session": session}) as forged:
        refused = forged.post(f"/ui/jobs/{job['id']}/pause", data={"csrf_token": csrf})
    assert refused.status_code == 404
    assert _status_of(dashboard, job["id"]) == "active"
