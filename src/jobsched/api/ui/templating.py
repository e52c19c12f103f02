"""Rendering the dashboard's Jinja2 templates (autoescaped) into answers."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from typing import Any

from fastapi import Request
from fastapi.responses import HTMLResponse, RedirectResponse
from jinja2 import Environment, PackageLoader, select_autoescape
from markupsafe import Markup

from jobsched.api.ui.sessions import CSRF_FIELD, Viewer

HTMX_FILE = "vendor/htmx-2.0.11.min.js"
# What a page says after an action redirected to it (``?done=<code>``): only these,
# so a link cannot make the dashboard say anything else.
DONE_MESSAGES = {
    "created": "Job created.",
    "triggered": "Triggered: the new run is below.",
    "paused": "Paused.",
    "resumed": "Resumed.",
    "saved": "Saved.",
    "deleted": "Job deleted, with its runs.",
    "cancelled": "Cancelled.",
    "retried": "Queued again.",
    "bulk-retried": "The selected runs are queued again.",
    "bulk-deleted": "The selected runs are deleted.",
}


def _utc_text(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def when(moment: datetime | None) -> Markup:
    """A time: in UTC as sent, shown in the viewer's zone by app.js; UTC on hover."""
    if moment is None:
        return Markup("<span class='muted'>—</span>")
    utc = _utc_text(moment)
    iso = moment.astimezone(UTC).isoformat()
    return Markup('<time datetime="{}" title="{}">{}</time>').format(iso, utc, utc)


def age(moment: datetime | None, now: datetime) -> str:
    """How long ago, roughly: "12 s ago", "3 min ago"."""
    if moment is None:
        return "never"
    return duration_text(now - moment) + " ago"


def duration_text(span: timedelta) -> str:
    seconds = max(0.0, span.total_seconds())
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 172800:
        return f"{seconds / 3600:.0f} h"
    return f"{seconds / 86400:.0f} d"


def pretty_json(value: object) -> str:
    return json.dumps(value, indent=2, sort_keys=True, default=str)


environment = Environment(
    loader=PackageLoader("jobsched.api.ui", "templates"),
    autoescape=select_autoescape(default=True, default_for_string=True),
    trim_blocks=True,
    lstrip_blocks=True,
)
environment.filters["when"] = when
environment.filters["json"] = pretty_json
environment.filters["duration"] = duration_text
environment.globals["age"] = age
environment.globals["HTMX_FILE"] = HTMX_FILE
environment.globals["CSRF_FIELD"] = CSRF_FIELD


def render(
    request: Request,
    viewer: Viewer | None,
    template: str,
    context: dict[str, Any] | None = None,
    *,
    status_code: int = 200,
) -> HTMLResponse:
    values = {
        "request": request,
        "viewer": viewer,
        "settings": request.app.state.services.settings,
        "path": request.url.path,
        "done": DONE_MESSAGES.get(request.query_params.get("done", "")),
        **(context or {}),
    }
    html = environment.get_template(template).render(values)
    response = HTMLResponse(html, status_code=status_code)
    if viewer is not None:
        viewer.set_cookies(request, response)
    return response


def see_after(path: str, done: str) -> RedirectResponse:
    """After a POST, the page to look at (Post/Redirect/Get), saying what was done."""
    assert done in DONE_MESSAGES, done
    return RedirectResponse(f"{path}{'&' if '?' in path else '?'}done={done}", status_code=303)
