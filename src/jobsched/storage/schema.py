"""The tables, declared once for both PostgreSQL and SQLite.

Alembic migrations create exactly this schema (a test compares them). Timestamps
are always UTC: ``UTCDateTime`` stores aware datetimes on PostgreSQL and naive
UTC text on SQLite, which sorts and compares correctly as text.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql
from sqlalchemy.engine import Dialect

metadata = sa.MetaData(
    naming_convention={
        "ix": "ix_%(table_name)s_%(column_0_N_name)s",
        "uq": "uq_%(table_name)s_%(column_0_N_name)s",
        "fk": "fk_%(table_name)s_%(column_0_name)s_%(referred_table_name)s",
        "pk": "pk_%(table_name)s",
        "ck": "ck_%(table_name)s_%(constraint_name)s",
    }
)


class UTCDateTime(sa.TypeDecorator[datetime]):
    """An aware UTC datetime in Python, whatever the database keeps."""

    impl = sa.DateTime(timezone=True)
    cache_ok = True

    def process_bind_param(self, value: datetime | None, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if value.tzinfo is None:
            raise ValueError("naive datetimes are not stored; attach a timezone")
        value = value.astimezone(UTC)
        return value.replace(tzinfo=None) if dialect.name == "sqlite" else value

    def process_result_value(self, value: Any, dialect: Dialect) -> datetime | None:
        if value is None:
            return None
        if isinstance(value, str):  # raw SQLite text, as in some aggregate results
            value = datetime.fromisoformat(value)
        assert isinstance(value, datetime)
        return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


Json = sa.JSON().with_variant(postgresql.JSONB(), "postgresql")

jobs = sa.Table(
    "jobs",
    metadata,
    sa.Column("id", sa.Uuid(), primary_key=True),
    sa.Column("name", sa.String(200), nullable=True, unique=True),
    sa.Column("type", sa.String(200), nullable=False),
    sa.Column("schedule", sa.String(200), nullable=True),
    sa.Column("timezone", sa.String(64), nullable=False),
    sa.Column("run_at", UTCDateTime(), nullable=True),
    sa.Column("payload", Json, nullable=False),
    sa.Column("queue", sa.String(200), nullable=False),
    sa.Column("priority", sa.Integer(), nullable=False),
    sa.Column("timeout_seconds", sa.Float(), nullable=True),
    sa.Column("retry", Json, nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("next_run_at", UTCDateTime(), nullable=True),
    sa.Column("schedule_anchor_at", UTCDateTime(), nullable=False),
    sa.Column("last_fired_at", UTCDateTime(), nullable=True),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("updated_at", UTCDateTime(), nullable=False),
    sa.Column("misfire_policy", sa.String(16), nullable=False, server_default="coalesce"),
    sa.Column("misfire_grace_seconds", sa.Float(), nullable=True),
    sa.Column("concurrency_policy", sa.String(16), nullable=False, server_default="allow"),
    # The scheduler's hot query: due active jobs by time. Partial, so a tick costs O(due jobs).
    sa.Index(
        "ix_jobs_due",
        "next_run_at",
        postgresql_where=sa.text("status = 'active'"),
        sqlite_where=sa.text("status = 'active'"),
    ),
    sa.Index("ix_jobs_type", "type"),
    sa.Index("ix_jobs_queue", "queue"),
)

# The runs that ``uq_runs_fire_time`` keeps to one per fire time. An ``ON CONFLICT``
# aimed at that index repeats it (SQLite matches the predicate as written).
FIRED_BY_SCHEDULE = sa.text("trigger <> 'manual'")

runs = sa.Table(
    "runs",
    metadata,
    sa.Column("id", sa.Uuid(), primary_key=True),
    sa.Column("job_id", sa.Uuid(), sa.ForeignKey("jobs.id", ondelete="CASCADE"), nullable=False),
    sa.Column("job_type", sa.String(200), nullable=False),
    sa.Column("queue", sa.String(200), nullable=False),
    sa.Column("priority", sa.Integer(), nullable=False),
    sa.Column("payload", Json, nullable=False),
    sa.Column("timeout_seconds", sa.Float(), nullable=True),
    sa.Column("retry", Json, nullable=False),
    sa.Column("scheduled_for", UTCDateTime(), nullable=False),
    sa.Column("trigger", sa.String(16), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("attempt", sa.Integer(), nullable=False),
    sa.Column("not_before", UTCDateTime(), nullable=False),
    sa.Column("lease_owner", sa.String(200), nullable=True),
    sa.Column("lease_expires_at", UTCDateTime(), nullable=True),
    sa.Column("published_at", UTCDateTime(), nullable=True),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("updated_at", UTCDateTime(), nullable=False),
    sa.Column("started_at", UTCDateTime(), nullable=True),
    sa.Column("finished_at", UTCDateTime(), nullable=True),
    sa.Column("last_error", sa.Text(), nullable=True),
    sa.Column("result", Json, nullable=True),
    # Guarantee 1's last line of defence: a fire time becomes at most one run. Manual
    # runs are outside it: a trigger is a run of its own even at the instant of another
    # trigger or of a fire time, and never takes a fire time's place.
    sa.Index(
        "uq_runs_fire_time",
        "job_id",
        "scheduled_for",
        unique=True,
        postgresql_where=FIRED_BY_SCHEDULE,
        sqlite_where=FIRED_BY_SCHEDULE,
    ),
    # A job's runs, manual ones included: its run history, its concurrency policy, and
    # the cascade when it is deleted.
    sa.Index("ix_runs_job_id_scheduled_for", "job_id", "scheduled_for"),
    # Workers' claim query on the database queue: ready runs per queue by priority.
    sa.Index(
        "ix_runs_ready",
        "queue",
        "priority",
        "not_before",
        postgresql_where=sa.text("status IN ('queued', 'retrying')"),
        sqlite_where=sa.text("status IN ('queued', 'retrying')"),
    ),
    # The outbox sweep: committed runs not yet handed to the broker.
    sa.Index(
        "ix_runs_outbox",
        "not_before",
        postgresql_where=sa.text("published_at IS NULL AND status IN ('queued', 'retrying')"),
        sqlite_where=sa.text("published_at IS NULL AND status IN ('queued', 'retrying')"),
    ),
    sa.Index(
        "ix_runs_leased",
        "lease_expires_at",
        postgresql_where=sa.text("status = 'running'"),
        sqlite_where=sa.text("status = 'running'"),
    ),
    sa.Index("ix_runs_status", "status"),
    # History pruning: the oldest finished runs first.
    sa.Index(
        "ix_runs_finished",
        "finished_at",
        postgresql_where=sa.text("finished_at IS NOT NULL"),
        sqlite_where=sa.text("finished_at IS NOT NULL"),
    ),
)

attempts = sa.Table(
    "attempts",
    metadata,
    sa.Column("id", sa.Uuid(), primary_key=True),
    sa.Column("run_id", sa.Uuid(), sa.ForeignKey("runs.id", ondelete="CASCADE"), nullable=False),
    sa.Column("attempt", sa.Integer(), nullable=False),
    sa.Column("status", sa.String(16), nullable=False),
    sa.Column("worker_id", sa.String(200), nullable=False),
    sa.Column("started_at", UTCDateTime(), nullable=False),
    sa.Column("finished_at", UTCDateTime(), nullable=True),
    sa.Column("error", sa.Text(), nullable=True),
    sa.Column("result", Json, nullable=True),
    # The handler's latest progress report, written by the worker's lease renewals.
    sa.Column("progress", Json, nullable=True),
    sa.UniqueConstraint("run_id", "attempt"),
    # The dashboard's activity chart: attempts started in the last hour.
    sa.Index("ix_attempts_started_at", "started_at"),
)

# The worker registry: what each worker process said about itself, and its last
# heartbeat (database clock). Operators read it through ``GET /workers``.
workers = sa.Table(
    "workers",
    metadata,
    sa.Column("id", sa.String(200), primary_key=True),
    sa.Column("host", sa.String(255), nullable=False),
    sa.Column("pid", sa.Integer(), nullable=False),
    sa.Column("queues", Json, nullable=False),
    sa.Column("handler_types", Json, nullable=False),
    sa.Column("concurrency", sa.Integer(), nullable=False),
    sa.Column("started_at", UTCDateTime(), nullable=False),
    sa.Column("heartbeat_at", UTCDateTime(), nullable=False),
    sa.Column("stopped_at", UTCDateTime(), nullable=True),
    sa.Column("runs_in_progress", sa.Integer(), nullable=False),
)

# API tokens: only the SHA-256 of each token is kept. A revoked token stays listed
# (revoked_at) and frees its name for a new token.
api_tokens = sa.Table(
    "api_tokens",
    metadata,
    sa.Column("id", sa.Uuid(), primary_key=True),
    sa.Column("name", sa.String(200), nullable=False),
    sa.Column("role", sa.String(16), nullable=False),
    sa.Column("queues", Json, nullable=True),
    sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("expires_at", UTCDateTime(), nullable=True),
    sa.Column("last_used_at", UTCDateTime(), nullable=True),
    sa.Column("revoked_at", UTCDateTime(), nullable=True),
    sa.Index(
        "uq_api_tokens_live_name",
        "name",
        unique=True,
        postgresql_where=sa.text("revoked_at IS NULL"),
        sqlite_where=sa.text("revoked_at IS NULL"),
    ),
)

# The audit log: one row per change made through the API, written in the change's
# own transaction. Field names only, never values. Rows are never updated; only
# retention deletes them.
audit_events = sa.Table(
    "audit_events",
    metadata,
    sa.Column("id", sa.Uuid(), primary_key=True),
    sa.Column("at", UTCDateTime(), nullable=False),
    sa.Column("action", sa.String(64), nullable=False),
    sa.Column("token_id", sa.Uuid(), nullable=True),
    sa.Column("token_name", sa.String(200), nullable=False),
    sa.Column("target_kind", sa.String(32), nullable=False),
    sa.Column("target_id", sa.String(200), nullable=True),
    sa.Column("request_id", sa.String(200), nullable=True),
    sa.Column("client_address", sa.String(200), nullable=True),
    sa.Column("fields", Json, nullable=False),
    sa.Index("ix_audit_events_at", "at"),
    sa.Index("ix_audit_events_target", "target_kind", "target_id"),
)

# Dashboard sign-ins: the SHA-256 of each session id (the cookie) and of the token it
# was opened with. Logging out deletes the row; an expired one is deleted at sign-in.
ui_sessions = sa.Table(
    "ui_sessions",
    metadata,
    sa.Column("session_hash", sa.String(64), primary_key=True),
    sa.Column("token_hash", sa.String(64), nullable=False),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("expires_at", UTCDateTime(), nullable=False),
    sa.Index("ix_ui_sessions_expires_at", "expires_at"),
)

# The first answer to each request made with an Idempotency-Key, replayed to its
# repeats until expires_at. status_code is null while the first request is running.
idempotency_keys = sa.Table(
    "idempotency_keys",
    metadata,
    sa.Column("scope", sa.String(300), primary_key=True),
    sa.Column("key", sa.String(200), primary_key=True),
    sa.Column("request_hash", sa.String(64), nullable=False),
    sa.Column("status_code", sa.Integer(), nullable=True),
    sa.Column("response_body", Json, nullable=True),
    sa.Column("location", sa.String(500), nullable=True),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("expires_at", UTCDateTime(), nullable=False),
    sa.Index("ix_idempotency_keys_expires_at", "expires_at"),
)

# The notification outbox: one row per event and endpoint that wants it, inserted in
# the transaction of the state change that caused the event, delivered (and retried)
# by the scheduler. ``id`` is the event's ``webhook-id``.
webhook_deliveries = sa.Table(
    "webhook_deliveries",
    metadata,
    sa.Column("id", sa.Uuid(), primary_key=True),
    sa.Column("endpoint", sa.String(2000), nullable=False),
    sa.Column("event_type", sa.String(50), nullable=False),
    sa.Column("data", Json, nullable=False),
    sa.Column("created_at", UTCDateTime(), nullable=False),
    sa.Column("attempts", sa.Integer(), nullable=False, default=0),
    sa.Column("next_attempt_at", UTCDateTime(), nullable=True),
    sa.Column("last_error", sa.Text(), nullable=True),
    sa.Column("delivered_at", UTCDateTime(), nullable=True),
    sa.Column("given_up_at", UTCDateTime(), nullable=True),
    # Pending rows have a next_attempt_at; done (delivered or given up) rows have none.
    sa.Index("ix_webhook_deliveries_next_attempt_at", "next_attempt_at"),
    sa.Index("ix_webhook_deliveries_created_at", "created_at"),
)
