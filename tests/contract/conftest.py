"""Fixtures of the storage contract suite (on top of ``tests/conftest.py``)."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from jobsched.storage.database import SQLStorage
from tests.contract.storage_scenario import StorageScenario


@pytest.fixture
def scenario(storage: SQLStorage, sql: sa.Engine) -> StorageScenario:
    return StorageScenario(storage, sql)
