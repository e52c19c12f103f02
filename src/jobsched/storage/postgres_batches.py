"""Set-based statements for the worker's hot path on PostgreSQL.

A worker ends runs in batches (``OutcomeRecorder``). Written one run at a time,
a batch of N outcomes costs 2N round trips and 2N statement executions; here
the whole batch is one statement whose text never changes (the outcomes travel
as arrays, unnested server-side), so psycopg prepares it once per connection
and PostgreSQL plans it once. SQLite keeps the row-at-a-time path in
``SQLStorage``: it is in-process, where a statement costs no round trip.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Sequence

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncConnection

from jobsched.storage.base import AttemptOutcome

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
