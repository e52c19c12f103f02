"""Manual runs leave the one-run-per-fire-time key, so a trigger never conflicts.

``(job_id, scheduled_for)`` stays unique for the runs the scheduler fires (a partial
unique index in place of the unique constraint); a manual run may share its instant
with another trigger or with a fire time. A plain index on the same columns keeps
every run of a job quick to find. On SQLite, dropping the constraint rebuilds the
table (Alembic's batch mode), rows and indexes included.

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-27 04:20:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

_FIRED_BY_SCHEDULE = "trigger <> 'manual'"
_COLUMNS = ["job_id", "scheduled_for"]


def upgrade() -> None:
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.drop_constraint("uq_runs_job_id_scheduled_for", type_="unique")
        batch_op.create_index(
            "uq_runs_fire_time",
            _COLUMNS,
            unique=True,
            postgresql_where=sa.text(_FIRED_BY_SCHEDULE),
            sqlite_where=sa.text(_FIRED_BY_SCHEDULE),
        )
        batch_op.create_index("ix_runs_job_id_scheduled_for", _COLUMNS, unique=False)


def downgrade() -> None:
    # Fails while a manual run shares its instant with another run of its job: such
    # runs cannot be kept under the older, stricter key.
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.drop_index("ix_runs_job_id_scheduled_for")
        batch_op.drop_index(
            "uq_runs_fire_time",
            postgresql_where=sa.text(_FIRED_BY_SCHEDULE),
            sqlite_where=sa.text(_FIRED_BY_SCHEDULE),
        )
        batch_op.create_unique_constraint("uq_runs_job_id_scheduled_for", _COLUMNS)
