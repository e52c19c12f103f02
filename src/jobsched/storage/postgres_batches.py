"""Single-statement claims and outcomes: the worker's hot path on PostgreSQL.

A worker claims runs and ends them in batches. Written with one statement per
table (and per run, for outcomes) inside an explicit transaction, a batch costs
several round trips; here each batch is one statement, run in autocommit (no
BEGIN/COMMIT round trips), whose text never changes: the batch travels as
arrays unnested server-side, so psycopg prepares the statement once per
connection and PostgreSQL plans it once. SQLite keeps the general path in
``SQLStorage``: it is in-process, where a statement costs no round trip, and it
has no data-modifying CTEs.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from jobsched.core.ids import new_id
from jobsched.core.models import CLAIMABLE_RUN_STATUSES, Run
from jobsched.storage.base import AttemptOutcome
from jobsched.storage.rows import run_from_row
from jobsched.storage.schema import runs

_CLAIMABLE = sorted(status.value for status in CLAIMABLE_RUN_STATUSES)

# The run columns a claim returns, named in the table's order: ``.columns(*runs.columns)``
# below matches result columns by position, so ``*`` (the database's order) would not do.
_RUN_COLUMNS = ", ".join(column.name for column in runs.columns)
_RETURNED_RUN_COLUMNS = ", ".join(f"runs.{column.name}" for column in runs.columns)

# Claiming takes the lease and opens the attempt in one statement. The attempt ids
# are made here (UUIDv7, so that they sort by creation like every other id) and
# handed over as an array, one per run that may be claimed, paired by row number.
_CLAIM = """
WITH claimed AS (
    UPDATE runs SET
        status = 'running',
        attempt = runs.attempt + 1,
        lease_owner = :worker_id,
        lease_expires_at = now() + make_interval(secs => :lease_seconds),
        started_at = COALESCE(runs.started_at, now()),
        updated_at = now()
    WHERE {condition}
    RETURNING {returning}
),
numbered AS (
    SELECT claimed.id, claimed.attempt, claimed.updated_at, row_number() OVER () AS position
    FROM claimed
),
started AS (
    INSERT INTO attempts (id, run_id, attempt, status, worker_id, started_at)
    SELECT (CAST(:attempt_ids AS uuid[]))[position], id, attempt, 'running', :worker_id,
        updated_at
    FROM numbered
)
SELECT {columns} FROM claimed
"""
_CLAIM_BY_ID = sa.text(
    _CLAIM.format(
        returning=_RETURNED_RUN_COLUMNS,
        columns=_RUN_COLUMNS,
        condition="""runs.id = ANY(CAST(:run_ids AS uuid[]))
      AND runs.status = ANY(CAST(:claimable AS text[]))
      -- A stale duplicate delivery must not start a retry before its backoff ends.
      AND runs.not_before <= now()""",
    )
).columns(*runs.columns)
_CLAIM_READY = sa.text(
    _CLAIM.format(
        returning=_RETURNED_RUN_COLUMNS,
        columns=_RUN_COLUMNS,
        condition="""runs.id IN (
        SELECT ready.id FROM runs AS ready
        WHERE ready.status = ANY(CAST(:claimable AS text[]))
          AND ready.queue = ANY(CAST(:queues AS text[]))
          AND ready.not_before <= now()
        ORDER BY ready.priority DESC, ready.not_before, ready.id
        LIMIT :limit
        FOR UPDATE SKIP LOCKED
    )""",
    )
).columns(*runs.columns)

# The fence is the row-at-a-time path's: only the lease holder's current attempt
# of a running run is ended. It appears twice: in the locking subquery, which
# takes the row locks in id order (as renew_leases does, so the worker's
# heartbeat and its outcome writer never deadlock), and in the UPDATE itself,
# which PostgreSQL re-checks against the newest row version after the lock wait.
_FINISH_ATTEMPTS = sa.text(
    """
WITH outcome AS (
    SELECT *
    FROM unnest(
        CAST(:run_ids AS uuid[]), CAST(:attempts AS integer[]), CAST(:worker_ids AS text[]),
        CAST(:run_statuses AS text[]), CAST(:attempt_statuses AS text[]),
        CAST(:finals AS boolean[]), CAST(:errors AS text[]), CAST(:results AS text[]),
        CAST(:retry_ats AS timestamptz[])
    ) AS o(run_id, attempt, worker_id, run_status, attempt_status, final, error, result, retry_at)
),
finished AS (
    UPDATE runs SET
        status = o.run_status,
        lease_owner = NULL,
        lease_expires_at = NULL,
        updated_at = now(),
        finished_at = CASE WHEN o.final THEN now() END,
        last_error = o.error,
        result = CAST(o.result AS jsonb),
        not_before = COALESCE(o.retry_at, runs.not_before),
        -- The outbox publishes a retry once its not_before has come.
        published_at = CASE WHEN o.retry_at IS NULL THEN runs.published_at END
    FROM outcome AS o
    WHERE runs.id = o.run_id
      AND runs.attempt = o.attempt
      AND runs.lease_owner = o.worker_id
      AND runs.status = 'running'
      AND runs.id IN (
          SELECT locked.id
          FROM runs AS locked JOIN outcome AS held ON held.run_id = locked.id
          WHERE locked.attempt = held.attempt
            AND locked.lease_owner = held.worker_id
            AND locked.status = 'running'
          ORDER BY locked.id
          FOR UPDATE OF locked
      )
    RETURNING runs.id, runs.attempt
)
UPDATE attempts SET
    status = o.attempt_status,
    finished_at = now(),
    error = o.error,
    result = CAST(o.result AS jsonb)
FROM finished JOIN outcome AS o ON o.run_id = finished.id AND o.attempt = finished.attempt
WHERE attempts.run_id = finished.id AND attempts.attempt = finished.attempt
RETURNING attempts.run_id, attempts.attempt
"""
)


async def finish_attempts(
    connection: AsyncConnection, outcomes: Sequence[AttemptOutcome]
) -> list[bool]:
    """End every attempt of ``outcomes`` in one statement; which ones were accepted.

    An outcome is refused (False) when its worker no longer holds the run's lease
    for that attempt: nothing is written for it.
    """
    # The first outcome for an attempt is the one written; a duplicate later in the
    # batch is refused, as it would be in a batch of its own.
    first: dict[tuple[uuid.UUID, int], int] = {}
    for index, outcome in enumerate(outcomes):
        first.setdefault((outcome.run_id, outcome.attempt), index)
    unique = [outcomes[index] for index in first.values()]
    parameters = {
        "run_ids": [outcome.run_id for outcome in unique],
        "attempts": [outcome.attempt for outcome in unique],
        "worker_ids": [outcome.worker_id for outcome in unique],
        "run_statuses": [outcome.run_status.value for outcome in unique],
        "attempt_statuses": [outcome.attempt_status.value for outcome in unique],
        "finals": [outcome.run_status.is_final for outcome in unique],
        "errors": [outcome.error for outcome in unique],
        "results": [
            None if outcome.result is None else json.dumps(outcome.result) for outcome in unique
        ],
        "retry_ats": [outcome.retry_at for outcome in unique],
    }
    ended: set[tuple[uuid.UUID, int]] = {
        (row.run_id, row.attempt) for row in await connection.execute(_FINISH_ATTEMPTS, parameters)
    }
    return [
        first[key] == index and key in ended
        for index, outcome in enumerate(outcomes)
        for key in [(outcome.run_id, outcome.attempt)]
    ]


async def claim_runs(
    connection: AsyncConnection,
    run_ids: Sequence[uuid.UUID],
    worker_id: str,
    lease_seconds: float,
) -> list[Run]:
    """Claim those of ``run_ids`` that are claimable now; each gets a running attempt."""
    parameters = {
        "run_ids": list(run_ids),
        "claimable": _CLAIMABLE,
        "worker_id": worker_id,
        "lease_seconds": lease_seconds,
        "attempt_ids": [new_id() for _ in run_ids],
    }
    rows = await connection.execute(_CLAIM_BY_ID, parameters)
    return [run_from_row(row) for row in rows.mappings()]


async def claim_ready_runs(
    connection: AsyncConnection,
    queues: Sequence[str],
    limit: int,
    worker_id: str,
    lease_seconds: float,
) -> list[Run]:
    """Claim up to ``limit`` ready runs of ``queues``, highest priority first."""
    parameters = {
        "queues": list(queues),
        "limit": limit,
        "claimable": _CLAIMABLE,
        "worker_id": worker_id,
        "lease_seconds": lease_seconds,
        "attempt_ids": [new_id() for _ in range(limit)],
    }
    rows = await connection.execute(_CLAIM_READY, parameters)
    return [run_from_row(row) for row in rows.mappings()]
