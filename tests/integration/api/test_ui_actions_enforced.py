"""Each dashboard action checks the role and the CSRF token on the server, whatever was shown.

In process, auth on: a browser signs in with a token (a real session), then posts
each action route with a valid CSRF token; below the role it needs, the answer is
403 and nothing changes. Without the token, every one of them is 403 too.
"""

from __future__ import annotations

import re
import uuid
from collections.abc import AsyncIterator

import httpx
import pytest
import sqlalchemy as sa

from jobsched.api import create_app
from jobsched.config.settings import ApiSettings, AuthSettings, Settings
from jobsched.core.access import Role, generate_token, hash_token
from jobsched.core.models import JobSpec
from jobsched.queue.database import DatabaseQueue
from jobsched.storage.database import SQLStorage
from jobsched.storage.schema import audit_events
from tests.integration.api.conftest import BASE_URL

# path template, role it needs, form fields besides the CSRF token
ACTIONS = [
    ("/ui/jobs/new", Role.WRITE, {"type": "noop", "schedule": "@every 1h"}),
    ("/ui/jobs/{job}/edit", Role.WRITE, {"type": "noop", "schedule": "@every 2h"}),
    ("/ui/jobs/{job}/delete", Role.WRITE, {}),
    ("/ui/jobs/{job}/trigger", Role.OPERATE, {}),
    ("/ui/jobs/{job}/pause", Role.OPERATE, {}),
    ("/ui/jobs/{job}/resume", Role.OPERATE, {}),
    ("/ui/runs/{run}/cancel", Role.OPERATE, {}),
    ("/ui/runs/{run}/retry", Role.OPERATE, {}),
    ("/ui/dead/retry", Role.OPERATE, {"run_id": "{run}"}),
    ("/ui/dead/delete", Role.WRITE, {"run_id": "{run}"}),
]


@pytest.fixture
async def secured(storage: SQLStorage) -> AsyncIterator[httpx.AsyncClient]:
    settings = Settings(api=ApiSettings(auth=AuthSettings(enabled=True, cache_seconds=0)))
    app = create_app(storage, DatabaseQueue(storage), settings)
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url=BASE_URL) as client:
        yield client


async def _sign_in(client: httpx.AsyncClient, storage: SQLStorage, role: Role) -> str:
    secret = generate_token()
    now = await storage.now()
    await storage.create_token(
        name=f"{role}-{uuid.uuid4().hex[:6]}",
        role=role,
        queues=None,
        token_hash=hash_token(secret),
        expires_at=None,
        now=now,
    )
    login = await client.get("/ui/login")
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', login.text)
    assert csrf is not None
    signed_in = await client.post(
        "/ui/login", data={"csrf_token": csrf.group(1), "token": secret, "next": "/ui/"}
    )
    assert signed_in.status_code == 303, signed_in.text
    page = await client.get("/ui/")
    assert page.status_code == 200
    match = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert match is not None
    return match.group(1)


def _filled(template: str, job: str, run: str) -> str:
    return template.replace("{job}", job).replace("{run}", run)


@pytest.mark.parametrize("role", [Role.READ, Role.OPERATE])
async def test_an_action_above_the_role_is_refused_and_changes_nothing(
    secured: httpx.AsyncClient, storage: SQLStorage, sql: sa.Engine, role: Role
) -> None:
    now = await storage.now()
    job = await storage.create_job(
        JobSpec(type="noop", payload={}, schedule="@every 1h"), next_run_at=now, now=now
    )
    run = await storage.trigger_job(job.id, published=True)
    csrf = await _sign_in(secured, storage, role)
    refused = [action for action in ACTIONS if not role.allows(action[1])]
    assert refused, "each role tested is below some action"
    for path, _needed, fields in refused:
        data = {key: _filled(value, str(job.id), str(run.id)) for key, value in fields.items()}
        answer = await secured.post(
            _filled(path, str(job.id), str(run.id)), data={"csrf_token": csrf, **data}
        )
        assert answer.status_code == 403, (role, path, answer.status_code)
        assert "needs the" in answer.text
    with sql.connect() as connection:
        assert (
            connection.execute(sa.select(sa.func.count()).select_from(audit_events)).scalar() == 0
        )
    assert (await storage.get_job(job.id)).updated_at == job.updated_at


async def test_without_the_csrf_token_every_action_is_refused(
    secured: httpx.AsyncClient, storage: SQLStorage, sql: sa.Engine
) -> None:
    now = await storage.now()
    job = await storage.create_job(
        JobSpec(type="noop", payload={}, schedule="@every 1h"), next_run_at=now, now=now
    )
    run = await storage.trigger_job(job.id, published=True)
    await _sign_in(secured, storage, Role.ADMIN)
    for path, _needed, fields in [*ACTIONS, ("/ui/logout", Role.READ, {})]:
        data = {key: _filled(value, str(job.id), str(run.id)) for key, value in fields.items()}
        for token in (None, "f" * 64, "ü" * 64):
            form = data if token is None else {**data, "csrf_token": token}
            answer = await secured.post(_filled(path, str(job.id), str(run.id)), data=form)
            assert answer.status_code == 403, (path, token, answer.status_code)
            assert "CSRF" in answer.text
        json_body = await secured.post(_filled(path, str(job.id), str(run.id)), json=data)
        assert json_body.status_code == 403, path
    with sql.connect() as connection:
        assert (
            connection.execute(sa.select(sa.func.count()).select_from(audit_events)).scalar() == 0
        )
    assert (await secured.get("/ui/")).status_code == 200, "still signed in"


async def test_an_unknown_dashboard_path_is_a_page(secured: httpx.AsyncClient) -> None:
    answer = await secured.get("/ui/no/such/page")
    assert answer.status_code == 404
    assert answer.headers["content-type"].startswith("text/html")
    assert "content-security-policy" in answer.headers
    assert (await secured.get("/ui/static/app.css")).status_code == 200
    assert (await secured.get("/ui/static/nothing.css")).status_code == 404


async def test_a_form_of_too_many_fields_is_refused(
    secured: httpx.AsyncClient, storage: SQLStorage
) -> None:
    csrf = await _sign_in(secured, storage, Role.ADMIN)
    fields = "&".join(f"f{index}=x" for index in range(1001))
    answer = await secured.post(
        "/ui/dead/retry",
        content=f"csrf_token={csrf}&{fields}",
        headers={"content-type": "application/x-www-form-urlencoded"},
    )
    assert answer.status_code == 403


HOSTILE_PAYLOADS = ['{"a": "x\\u0000y"}', '{"a": NaN}', '{"a": "\\ud800"}']


@pytest.mark.parametrize("payload", HOSTILE_PAYLOADS)
async def test_a_hostile_form_value_is_refused_and_writes_nothing(
    secured: httpx.AsyncClient, storage: SQLStorage, sql: sa.Engine, payload: str
) -> None:
    """The dashboard's forms refuse what the API's JSON checks refuse (no 500, no row)."""
    now = await storage.now()
    job = await storage.create_job(
        JobSpec(type="noop", payload={}, schedule="@every 1h"), next_run_at=now, now=now
    )
    csrf = await _sign_in(secured, storage, Role.ADMIN)
    posts = [
        (f"/ui/jobs/{job.id}/trigger", {"payload": payload}),
        ("/ui/jobs/new", {"type": "noop", "schedule": "@every 1h", "payload": payload}),
        ("/ui/jobs/new", {"type": "noop", "schedule": "@every 1h", "name": "a\x00b"}),
    ]
    for path, fields in posts:
        answer = await secured.post(path, data={"csrf_token": csrf, **fields})
        assert 400 <= answer.status_code < 500 or answer.status_code == 200, (path, answer)
        assert answer.status_code != 303, (path, "accepted")
    with sql.connect() as connection:
        assert (
            connection.execute(sa.select(sa.func.count()).select_from(audit_events)).scalar() == 0
        )
    assert (await storage.list_runs(job_id=job.id, status=None, limit=5, cursor=None)).items == []
