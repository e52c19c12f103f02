"""Database URLs as users write them, turned into SQLAlchemy driver URLs."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from sqlalchemy.engine import URL, make_url
from sqlalchemy.exc import ArgumentError

from jobsched.core.errors import ConfigurationError


@dataclass(frozen=True, slots=True)
class DatabaseURL:
    """One database, with the driver URL for async services and for sync migrations."""

    dialect: str  # "postgresql" or "sqlite"
    async_url: URL
    sync_url: URL

    @property
    def sqlite_path(self) -> Path | None:
        database = self.sync_url.database
        if self.dialect != "sqlite" or not database or database == ":memory:":
            return None
        return Path(database)


def parse_database_url(text: str) -> DatabaseURL:
    """Accept ``postgresql://``/``postgres://`` (psycopg 3) and ``sqlite:///path`` URLs."""
    try:
        url = make_url(text)
    except ArgumentError as error:
        raise ConfigurationError(f"database.url {text!r} is not a database URL") from error
    backend = url.get_backend_name()
    if backend in ("postgresql", "postgres"):
        sync = url.set(drivername="postgresql+psycopg")
        return DatabaseURL("postgresql", async_url=sync, sync_url=sync)
    if backend == "sqlite":
        return DatabaseURL(
            "sqlite",
            async_url=url.set(drivername="sqlite+aiosqlite"),
            sync_url=url.set(drivername="sqlite"),
        )
    raise ConfigurationError(
        f"database.url {url.render_as_string(hide_password=True)!r}: "
        "only postgresql:// and sqlite:/// databases are supported"
    )
