"""A real ``jobsched standalone`` (API with the dashboard, scheduler, worker) and a browser.

One process per database and module, with API auth on and the e2e test handlers
loaded; one headless Chromium (Debian's, ``/usr/bin/chromium``) per module, a fresh
browser context per test. Every page a test opens is watched: a console error, a
page error or a request to any host but the dashboard's fails the test.
"""

from __future__ import annotations

import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import httpx
import psycopg
import pytest
import sqlalchemy as sa
from playwright.sync_api import Browser, BrowserContext, Page, sync_playwright

from jobsched.storage.migrate import upgrade_to_head
from jobsched.storage.urls import parse_database_url
from tests.conftest import POSTGRES_ADMIN_URL
from tests.e2e.processes import JOBSCHED, JobschedProcess, free_port

CHROMIUM = "/usr/bin/chromium"
E2E_DIRECTORY = Path(__file__).resolve().parents[1]


@dataclass
class Dashboard:
    url: str
    database_url: str
    admin_token: str
    process: JobschedProcess
    engine: sa.Engine

    def api(self, token: str | None = None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {token or self.admin_token}"}
        return httpx.Client(base_url=self.url, headers=headers, timeout=10)

    def token(self, role: str, queues: list[str] | None = None) -> str:
        body: dict[str, object] = {"name": f"{role}-{uuid.uuid4().hex[:8]}", "role": role}
        if queues is not None:
            body["queues"] = queues
        with self.api() as admin:
            response = admin.post("/tokens", json=body)
        assert response.status_code == 201, response.text
        token: str = response.json()["token"]
        return token

    def create_job(self, **fields: object) -> dict[str, object]:
        body = {"name": f"job-{uuid.uuid4().hex[:10]}", "type": "noop", "schedule": "@every 1h"}
        body.update(fields)
        with self.api() as admin:
            response = admin.post("/jobs", json=body)
        assert response.status_code == 201, response.text
        job: dict[str, object] = response.json()
        return job

    def scalar(self, sql: str, **parameters: object) -> object:
        with self.engine.connect() as connection:
            return connection.execute(sa.text(sql), parameters).scalar()


def _migrated_database(kind: str, directory: Path) -> Iterator[str]:
    if kind == "sqlite":
        url = f"sqlite:///{directory / 'dashboard.db'}"
        upgrade_to_head(parse_database_url(url))
        yield url
        return
    name = f"jobsched_ui_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as connection:
        connection.execute(f"CREATE DATABASE {name}")  # type: ignore[arg-type]
    url = POSTGRES_ADMIN_URL.rsplit("/", 1)[0] + "/" + name
    upgrade_to_head(parse_database_url(url))
    yield url
    with psycopg.connect(POSTGRES_ADMIN_URL, autocommit=True) as connection:
        connection.execute(f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")  # type: ignore[arg-type]


def _cli_token(env: dict[str, str]) -> str:
    done = subprocess.run(
        [JOBSCHED, "tokens", "create", "--name", "root", "--role", "admin"],
        env=env,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    return done.stdout.strip()


def start_standalone(env: dict[str, str], log_path: Path) -> tuple[JobschedProcess, str]:
    port = free_port()
    env = {**env, "JOBSCHED_API_PORT": str(port), "PYTHONPATH": str(E2E_DIRECTORY)}
    process = JobschedProcess(
        ["standalone", "--import", "handlers_for_tests"], env, log_path
    ).start()
    url = f"http://127.0.0.1:{port}"
    process.wait_for_http(f"{url}/readyz")
    return process, url


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def dashboard(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Dashboard]:
    directory = tmp_path_factory.mktemp(f"ui-{request.param}")
    databases = _migrated_database(request.param, directory)
    database_url = next(databases)
    env = {
        "JOBSCHED_DATABASE_URL": database_url,
        "JOBSCHED_API_AUTH_ENABLED": "true",
        "JOBSCHED_API_AUTH_CACHE_SECONDS": "0",
        "JOBSCHED_API_UI_REFRESH_SECONDS": "0.5",
        "JOBSCHED_WORKER_HEARTBEAT_INTERVAL_SECONDS": "0.5",
        "JOBSCHED_METRICS_PORT": "0",
    }
    admin_token = _cli_token(env)
    process, url = start_standalone(env, directory / "standalone.log")
    engine = sa.create_engine(parse_database_url(database_url).sync_url)
    try:
        yield Dashboard(url, database_url, admin_token, process, engine)
    finally:
        engine.dispose()
        process.stop()
        next(databases, None)


@pytest.fixture(scope="module")
def browser() -> Iterator[Browser]:
    with sync_playwright() as playwright:
        launched = playwright.chromium.launch(executable_path=CHROMIUM, headless=True)
        yield launched
        launched.close()


@dataclass
class Watched:
    """What the pages of one test did that they must not."""

    problems: list[str] = field(default_factory=list)
    hosts: set[str] = field(default_factory=set)


@pytest.fixture
def page(browser: Browser, dashboard: Dashboard) -> Iterator[Page]:
    """A page in a fresh context; fails the test on console errors or foreign requests."""
    context: BrowserContext = browser.new_context(base_url=dashboard.url)
    watched = Watched()
    context.set_default_timeout(5000)
    opened = context.new_page()
    opened.on(
        "console",
        lambda message: (
            watched.problems.append(f"console {message.type}: {message.text}")
            if message.type == "error"
            else None
        ),
    )
    opened.on("pageerror", lambda error: watched.problems.append(f"page error: {error}"))
    context.on("request", lambda sent: watched.hosts.add(urlsplit(sent.url).netloc))
    opened.on("dialog", lambda dialog: dialog.accept())
    yield opened
    context.close()
    own_host = urlsplit(dashboard.url).netloc
    assert watched.hosts <= {own_host}, f"requests to other hosts: {watched.hosts - {own_host}}"
    assert not watched.problems, watched.problems


def login(page: Page, token: str) -> None:
    page.goto("/ui/login")
    page.fill("#token", token)
    page.click("button[type=submit]")
    page.wait_for_url("**/ui/")
