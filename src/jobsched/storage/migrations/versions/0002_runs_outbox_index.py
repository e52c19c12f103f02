"""Index the transactional outbox: runs committed but not yet published.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27 03:40:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

_WHERE = "published_at IS NULL AND status IN ('queued', 'retrying')"


def upgrade() -> None:
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.create_index(
            "ix_runs_outbox",
            ["not_before"],
            unique=False,
            postgresql_where=sa.text(_WHERE),
            sqlite_where=sa.text(_WHERE),
        )


def downgrade() -> None:
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.drop_index(
            "ix_runs_outbox", postgresql_where=sa.text(_WHERE), sqlite_where=sa.text(_WHERE)
        )
