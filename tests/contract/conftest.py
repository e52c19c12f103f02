"""Fixtures of the storage contract suite (on top of ``tests/conftest.py``)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
import sqlalchemy as sa

from jobsched.storage.database import SQLStorage
from jobsched.storage.urls import parse_database_url
from tests.contract.storage_scenario import StorageScenario


@pytest.fixture
def sql(database_url: str) -> Iterator[sa.Engine]:
    """A plain synchronous engine on the same database as ``storage``."""
    engine = sa.create_engine(parse_database_url(database_url).sync_url)
    yield engine
    engine.dispose()


@pytest.fixture
def scenario(storage: SQLStorage, sql: sa.Engine) -> StorageScenario:
    return StorageScenario(storage, sql)
