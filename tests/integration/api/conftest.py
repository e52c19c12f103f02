"""An API client over the real app, on each test's own SQLite and PostgreSQL database."""

from __future__ import annotations

from collections.abc import AsyncIterator

import httpx
import pytest
from fastapi import FastAPI

from jobsched.api import create_app
from jobsched.config.settings import Settings
from jobsched.queue.database import DatabaseQueue
from jobsched.storage.database import SQLStorage

BASE_URL = "http://jobsched.test"


@pytest.fixture
def queue(storage: SQLStorage) -> DatabaseQueue:
    return DatabaseQueue(storage)


@pytest.fixture
def app(storage: SQLStorage, queue: DatabaseQueue) -> FastAPI:
    return create_app(storage, queue, Settings())


@pytest.fixture
async def api(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url=BASE_URL) as client:
        yield client
