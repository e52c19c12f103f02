"""``jobsched migrate`` (and ``standalone``'s own migration), failing in one line.

An unreachable host, a wrong port, a missing database, a refused user or an
SQLite path that cannot be created each name ``database.url`` (its password
hidden) and the reason, instead of a driver's traceback.
"""

from __future__ import annotations

import sqlalchemy as sa

from jobsched.core.errors import ConfigurationError
from jobsched.storage.migrate import upgrade_to_head
from jobsched.storage.urls import parse_database_url


def _reason(error: BaseException) -> str:
    """The driver's own first words: ``database "x" does not exist``, not SQLAlchemy's."""
    original = getattr(error, "orig", None) or error
    text = str(original).strip() or type(original).__name__
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    fatal = [line for line in lines if "FATAL:" in line]
    return (fatal[0].split("FATAL:", 1)[1].strip() if fatal else lines[0]).rstrip(".")


def migrate_database(url: str) -> None:
    database = parse_database_url(url)
    shown = database.sync_url.render_as_string(hide_password=True)
    try:
        upgrade_to_head(database)
    except sa.exc.OperationalError as error:
        raise ConfigurationError(f"database.url {shown}: {_reason(error)}") from error
    except OSError as error:
        raise ConfigurationError(
            f"database.url {shown}: cannot create {error.filename or 'the file'} ({error.strerror})"
        ) from error
