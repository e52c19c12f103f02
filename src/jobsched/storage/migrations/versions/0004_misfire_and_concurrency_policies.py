"""Per-job misfire and concurrency policies; an index for pruning finished runs.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-27 04:00:00
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.add_column(
            sa.Column("misfire_policy", sa.String(16), nullable=False, server_default="coalesce")
        )
        batch_op.add_column(sa.Column("misfire_grace_seconds", sa.Float(), nullable=True))
        batch_op.add_column(
            sa.Column("concurrency_policy", sa.String(16), nullable=False, server_default="allow")
        )
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.create_index(
            "ix_runs_finished",
            ["finished_at"],
            unique=False,
            postgresql_where=sa.text("finished_at IS NOT NULL"),
            sqlite_where=sa.text("finished_at IS NOT NULL"),
        )


def downgrade() -> None:
    with op.batch_alter_table("runs", schema=None) as batch_op:
        batch_op.drop_index(
            "ix_runs_finished",
            postgresql_where=sa.text("finished_at IS NOT NULL"),
            sqlite_where=sa.text("finished_at IS NOT NULL"),
        )
    with op.batch_alter_table("jobs", schema=None) as batch_op:
        batch_op.drop_column("concurrency_policy")
        batch_op.drop_column("misfire_grace_seconds")
        batch_op.drop_column("misfire_policy")
