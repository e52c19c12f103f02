"""Apply and check the schema migrations (Alembic), for PostgreSQL and SQLite alike."""

from __future__ import annotations

from pathlib import Path

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

from jobsched.storage.urls import DatabaseURL

MIGRATIONS_DIRECTORY = Path(__file__).parent / "migrations"


def _alembic_config() -> Config:
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIRECTORY))
    return config


def head_revision() -> str:
    head = ScriptDirectory.from_config(_alembic_config()).get_current_head()
    assert head is not None
    return head


def upgrade_to_head(database: DatabaseURL) -> None:
    """Bring the schema to the newest revision; safe to run again and from several hosts."""
    path = database.sqlite_path
    if path is not None:
        path.parent.mkdir(parents=True, exist_ok=True)
    engine = sa.create_engine(database.sync_url)
    try:
        with engine.begin() as connection:
            if database.dialect == "postgresql":
                # Two hosts running `jobsched migrate` at once must not both apply a revision.
                connection.execute(sa.text("SELECT pg_advisory_xact_lock(7413001)"))
            config = _alembic_config()
            config.attributes["connection"] = connection
            command.upgrade(config, "head")
    finally:
        engine.dispose()


def current_revision(connection: sa.Connection) -> str | None:
    return MigrationContext.configure(connection).get_current_revision()
