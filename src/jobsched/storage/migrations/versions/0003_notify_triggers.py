"""PostgreSQL triggers that NOTIFY schedulers of job changes and workers of ready runs.

``jobsched_jobs`` carries the earliest ``next_run_at`` (epoch seconds) among the
active jobs a statement wrote, so a sleeping scheduler wakes only when it must;
``jobsched_runs`` carries the queue name of runs that became claimable now, so
database-queue workers claim at once instead of waiting for their next poll.
Statement-level triggers: one notification per statement, not per row. SQLite
has no NOTIFY; the standalone process wakes its parts in memory.

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-27 03:50:00
"""

from __future__ import annotations

from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

_FUNCTIONS = """
CREATE OR REPLACE FUNCTION jobsched_notify_jobs() RETURNS trigger AS $$
DECLARE
    earliest timestamptz;
BEGIN
    SELECT min(next_run_at) INTO earliest FROM changed_jobs WHERE status = 'active';
    IF earliest IS NOT NULL THEN
        PERFORM pg_notify('jobsched_jobs', extract(epoch FROM earliest)::text);
    END IF;
    RETURN NULL;
END
$$ LANGUAGE plpgsql;

CREATE OR REPLACE FUNCTION jobsched_notify_runs() RETURNS trigger AS $$
DECLARE
    ready_queue text;
BEGIN
    FOR ready_queue IN
        SELECT DISTINCT queue FROM changed_runs
        WHERE status IN ('queued', 'retrying') AND not_before <= now()
    LOOP
        PERFORM pg_notify('jobsched_runs', ready_queue);
    END LOOP;
    RETURN NULL;
END
$$ LANGUAGE plpgsql;
"""

_TRIGGERS = {
    "jobs_notify_insert": "AFTER INSERT ON jobs REFERENCING NEW TABLE AS changed_jobs "
    "FOR EACH STATEMENT EXECUTE FUNCTION jobsched_notify_jobs()",
    "jobs_notify_update": "AFTER UPDATE ON jobs REFERENCING NEW TABLE AS changed_jobs "
    "FOR EACH STATEMENT EXECUTE FUNCTION jobsched_notify_jobs()",
    "runs_notify_insert": "AFTER INSERT ON runs REFERENCING NEW TABLE AS changed_runs "
    "FOR EACH STATEMENT EXECUTE FUNCTION jobsched_notify_runs()",
    "runs_notify_update": "AFTER UPDATE ON runs REFERENCING NEW TABLE AS changed_runs "
    "FOR EACH STATEMENT EXECUTE FUNCTION jobsched_notify_runs()",
}


def _is_postgresql() -> bool:
    return bool(op.get_context().dialect.name == "postgresql")


def upgrade() -> None:
    if not _is_postgresql():
        return
    op.execute(_FUNCTIONS)
    for name, definition in _TRIGGERS.items():
        table = "jobs" if name.startswith("jobs") else "runs"
        op.execute(f"DROP TRIGGER IF EXISTS {name} ON {table}")
        op.execute(f"CREATE TRIGGER {name} {definition}")


def downgrade() -> None:
    if not _is_postgresql():
        return
    for name in _TRIGGERS:
        table = "jobs" if name.startswith("jobs") else "runs"
        op.execute(f"DROP TRIGGER IF EXISTS {name} ON {table}")
    op.execute("DROP FUNCTION IF EXISTS jobsched_notify_jobs()")
    op.execute("DROP FUNCTION IF EXISTS jobsched_notify_runs()")
