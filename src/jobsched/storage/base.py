"""The storage contract: every SQL statement jobsched runs sits behind this interface.

One implementation serves PostgreSQL and SQLite (``storage.database.SQLStorage``);
the contract suite in ``tests/contract`` runs against both. Times written by the
lease operations come from the database's clock, so a host with a skewed clock
cannot shorten or stretch a lease.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Literal, Protocol

from jobsched.core.access import ApiToken, AuditEntry, AuditRecord, Role
from jobsched.core.models import (
    Attempt,
    AttemptStatus,
    Job,
    JobSpec,
    JobStatus,
    JsonObject,
    OutboxRun,
    Page,
    Run,
    RunStatus,
)
from jobsched.core.planning import FirePlan


@dataclass(frozen=True, slots=True)
class AttemptOutcome:
    """The end of one attempt, reported by the worker that holds the run's lease.

    ``run_status`` is ``succeeded``, ``retrying`` (then ``retry_at`` is set) or ``dead``.
    """

    run_id: uuid.UUID
    attempt: int
    worker_id: str
    attempt_status: AttemptStatus
    run_status: RunStatus
    error: str | None = None
    result: JsonObject | None = None
    retry_at: datetime | None = None


@dataclass(frozen=True, slots=True)
class WorkerInfo:
    """What a worker process says about itself when it registers."""

    id: str
    host: str
    pid: int
    queues: list[str]
    handler_types: list[str]
    concurrency: int


@dataclass(frozen=True, slots=True)
class WorkerRecord:
    """A registered worker as stored, with its heartbeat (database clock)."""

    info: WorkerInfo
    started_at: datetime
    heartbeat_at: datetime
    stopped_at: datetime | None
    runs_in_progress: int


@dataclass(frozen=True, slots=True)
class RescueReport:
    requeued: list[Run] = field(default_factory=list)
    dead: list[Run] = field(default_factory=list)


# How a list of jobs is ordered: creation (the default), name or next fire time, each
# ascending with jobs lacking the value last, ties broken by id.
JobSort = Literal["created", "name", "next_run"]


@dataclass(frozen=True, slots=True)
class JobFilter:
    type: str | None = None
    status: JobStatus | None = None
    queue: str | None = None
    # A case-insensitive substring of the job's name or type (the dashboard's search).
    search: str | None = None
    sort: JobSort = "created"
    # The caller's queue scope: only jobs of these queues (None: every queue).
    queues: frozenset[str] | None = None


@dataclass(frozen=True, slots=True)
class StoredAnswer:
    """What an idempotency key holds: the first request's body hash, and its answer
    once it has one (``status_code`` None while the first request is running)."""

    request_hash: str
    status_code: int | None
    body: object
    location: str | None


@dataclass(frozen=True, slots=True)
class AuditFilter:
    action: str | None = None
    target_kind: str | None = None
    target_id: str | None = None
    token_name: str | None = None
    since: datetime | None = None
    until: datetime | None = None


@dataclass(frozen=True, slots=True)
class UiSession:
    """A dashboard sign-in, found by its id's hash: it stands for the token it was opened with."""

    token_hash: str
    created_at: datetime
    expires_at: datetime


@dataclass(frozen=True, slots=True)
class MinuteActivity:
    """Attempts of one minute (its start, UTC): started, succeeded and failed in it."""

    minute: datetime
    started: int
    succeeded: int
    failed: int


@dataclass(frozen=True, slots=True)
class RunMark:
    """One run as a job's status strip shows it."""

    id: uuid.UUID
    status: RunStatus
    scheduled_for: datetime


class Storage(Protocol):
    """Persistence of jobs, runs and attempts. All methods are safe to call concurrently."""

    dialect: str

    async def close(self) -> None: ...

    async def ping(self) -> None:
        """Raise ``StorageError`` unless the database answers."""

    async def check_schema(self) -> None:
        """Raise ``SchemaOutOfDateError`` unless the schema is at the newest migration."""

    async def now(self) -> datetime:
        """The database's clock (UTC); the scheduler's fire decisions use it."""

    # --- jobs -----------------------------------------------------------------
    #
    # Every method that changes something takes ``audit``: when given, its audit row
    # (see ``core.access.AuditEntry``) is written in the change's own transaction, so
    # there is no change without its row and no row for a change that failed. Methods
    # that take ``queues`` act only on jobs or runs of those queues (None: any); one of
    # another queue is a ``NotFoundError``, as if it did not exist.

    async def create_job(
        self,
        spec: JobSpec,
        *,
        next_run_at: datetime | None,
        now: datetime,
        audit: AuditEntry | None = None,
    ) -> Job:
        """Insert a job; ``ConflictError`` on a taken name, and nothing is written."""

    async def create_jobs(
        self,
        planned: Sequence[tuple[JobSpec, datetime | None]],
        *,
        now: datetime,
        audit: AuditEntry | None = None,
    ) -> list[Job]:
        """Insert many jobs (spec, next_run_at) in one transaction: all or none.

        A name already taken is a ``ConflictError`` naming ``jobs.<index>.name``;
        names repeated within the batch must be refused by the caller. ``audit`` is
        written once per job created, each row naming its job.
        """

    async def get_job(self, job_id: uuid.UUID) -> Job:
        """The job, or ``NotFoundError``."""

    async def list_jobs(
        self, job_filter: JobFilter, *, limit: int, cursor: str | None
    ) -> Page[Job]:
        """Jobs in creation order; ``cursor`` is a ``next_cursor`` from an earlier page."""

    async def update_job(
        self,
        job_id: uuid.UUID,
        edit: Callable[[Job], Job],
        *,
        queues: frozenset[str] | None = None,
        audit: AuditEntry | None = None,
    ) -> Job:
        """Lock the job, apply ``edit`` and write every mutable field it returns, atomically.

        The audit row names the fields the edit changed (none for a no-op edit).

        ``edit`` may raise (``InvalidInputError`` say); then nothing is written. The
        row lock keeps a scheduler from firing the job from its old definition meanwhile.
        ``updated_at`` is the job's version: when ``edit`` changes anything, the job is
        written (and returned) with the ``updated_at`` it set, or 1 µs after the stored
        one if that is not later, so versions only grow whatever order writers' clocks
        were read in. An edit that changes nothing writes the job as it was.
        """

    async def delete_job(
        self,
        job_id: uuid.UUID,
        *,
        queues: frozenset[str] | None = None,
        audit: AuditEntry | None = None,
    ) -> None:
        """Delete the job with its runs and attempts; ``NotFoundError`` if absent."""

    async def trigger_job(
        self,
        job_id: uuid.UUID,
        *,
        published: bool,
        payload: JsonObject | None = None,
        queues: frozenset[str] | None = None,
        audit: AuditEntry | None = None,
    ) -> Run:
        """Create a manual run of the job, due now (database clock).

        ``payload`` replaces the job's payload for this run only.

        Never conflicts: manual runs are outside the fire-time key, so a trigger at the
        instant of another trigger or of a fire time is a run of its own.
        """

    # --- runs -----------------------------------------------------------------

    async def get_run(self, run_id: uuid.UUID) -> Run: ...

    async def list_attempts(self, run_id: uuid.UUID) -> list[Attempt]: ...

    async def list_runs(
        self,
        *,
        job_id: uuid.UUID | None,
        status: RunStatus | None,
        limit: int,
        cursor: str | None,
        queues: frozenset[str] | None = None,
    ) -> Page[Run]:
        """Runs newest fire time first."""

    # --- scheduler ------------------------------------------------------------

    async def earliest_next_run_at(self) -> datetime | None:
        """The soonest ``next_run_at`` of an active job (the scheduler sleeps until it)."""

    async def fire_due_jobs(
        self,
        now: datetime,
        limit: int,
        plan: Callable[[Job], FirePlan],
        *,
        published: bool,
    ) -> list[Run]:
        """Fire up to ``limit`` active jobs whose ``next_run_at <= now``, in one transaction.

        Due rows are claimed with ``FOR UPDATE SKIP LOCKED`` (PostgreSQL), so replicas
        share the work; ``plan`` decides each job's runs and next fire time; runs are
        inserted with ``ON CONFLICT (job_id, scheduled_for) WHERE trigger <> 'manual' DO
        NOTHING`` (the fire-time key, which manual runs are outside) and only the
        runs actually inserted are returned. ``published`` marks them as already on
        the queue (the database queue, where committing is publishing). Each fired job's
        ``updated_at`` becomes ``now``, or 1 µs after its stored one if ``now`` is not
        later (see ``update_job``).
        """

    async def mark_published(self, run_ids: Sequence[uuid.UUID]) -> None: ...

    async def publish_pending(
        self, limit: int, publish: Callable[[list[OutboxRun]], Awaitable[None]]
    ) -> int:
        """The outbox sweep: publish up to ``limit`` committed, unpublished, due runs.

        Runs ``queued``/``retrying`` with no ``published_at`` and ``not_before <= now``
        are locked (SKIP LOCKED: replicas share the sweep), passed to ``publish``
        (longest waiting first, each as no more than publishing needs), and marked
        published in the same transaction only if ``publish`` returned. Returns how
        many were published.
        """

    async def count_unpublished(self) -> int:
        """Runs ``queued``/``retrying``, due, and not yet published: the outbox backlog."""

    async def mark_waiting_unpublished(self) -> int:
        """Mark every ``queued``/``retrying`` run unpublished (the broker lost its messages)."""

    async def prune_history(self, finished_before: datetime, batch_size: int) -> int:
        """Delete up to ``batch_size`` finished runs (with their attempts) older than given.

        Bounded so each call is one short transaction; call again while it returns
        ``batch_size``. Jobs and active runs are never touched.
        """

    async def ready_run_counts(self) -> dict[str, int]:
        """Runs ``queued`` or ``retrying`` per queue name."""

    async def rescue_expired_leases(self, limit: int) -> RescueReport:
        """Runs whose lease expired: their attempt becomes ``lost``; retried or dead by policy."""

    # --- workers --------------------------------------------------------------

    async def claim_ready_runs(
        self, queues: Sequence[str], limit: int, worker_id: str, lease_seconds: float
    ) -> list[Run]:
        """Claim up to ``limit`` ready runs (database queue), highest priority first.

        Each claimed run is ``running`` with ``attempt`` incremented, a lease held by
        ``worker_id`` until now + ``lease_seconds``, and a ``running`` attempt row.
        """

    async def claim_runs(
        self, run_ids: Sequence[uuid.UUID], worker_id: str, lease_seconds: float
    ) -> list[Run]:
        """Claim the given runs (delivered by a broker) if they are still claimable.

        A run already running elsewhere, finished or cancelled is left alone and not
        returned: that is how duplicate deliveries become harmless.
        """

    async def renew_leases(
        self,
        worker_id: str,
        held: Sequence[tuple[uuid.UUID, int]],
        lease_seconds: float,
        *,
        progress: Mapping[tuple[uuid.UUID, int], JsonObject] | None = None,
    ) -> set[uuid.UUID]:
        """Extend the leases ``worker_id`` still holds (fenced by attempt); return their ids.

        ``progress`` holds the latest progress report of some of the ``held`` attempts
        (those whose report changed since the last renewal). Each becomes its attempt's
        ``progress`` in the same transaction, only if that lease was renewed: a stale
        attempt, or a run another worker holds now, gets nothing. Without ``progress``
        the renewal costs no more than before.
        """

    async def finish_attempts(self, outcomes: Sequence[AttemptOutcome]) -> list[bool]:
        """Record attempt outcomes, each only if its worker still holds the run's lease.

        Returns, per outcome, whether it was accepted. A refused outcome (lease lost,
        run rescued by another worker) changes nothing. An ended attempt keeps its
        ``progress`` as the last renewal wrote it: a report made after the worker's last
        heartbeat is not in it (the attempt's result holds it when the handler neither
        returned nor set one).
        """

    async def release_runs(
        self, worker_id: str, held: Sequence[tuple[uuid.UUID, int]]
    ) -> list[Run]:
        """Hand back runs a stopping worker holds but will not finish; the attempt is not counted.

        Called at shutdown (for runs claimed but not started, say), so they go to
        another worker at once instead of waiting for their lease to expire. Fenced
        like ``finish_attempts``: only runs still ``running`` under ``worker_id``'s
        lease at the given attempt are released; any other pair is ignored. Each
        released run goes back to ``queued`` (``retrying`` if an earlier attempt was
        counted) with ``attempt`` decremented, that attempt's row deleted, ``not_before``
        now, the lease cleared and ``published_at`` cleared (the outbox publishes it
        again). Atomic; returns the released runs.
        """

    # --- operators ------------------------------------------------------------

    async def cancel_run(
        self,
        run_id: uuid.UUID,
        *,
        queues: frozenset[str] | None = None,
        audit: AuditEntry | None = None,
    ) -> Run:
        """Cancel a run that has not finished; return it ``cancelled``.

        ``queued``/``retrying``: cancelled before any further attempt (a broker's
        delivery of it is then refused at claim time). ``running``: the lease is cleared
        and the running attempt ends ``cancelled``; the worker holding it learns at its
        next heartbeat (the lease is not renewed) and its outcome is refused. One
        transaction on the locked row. ``NotFoundError`` for an unknown run;
        ``ConflictError("status")`` for a finished one, and nothing is written.
        """

    async def retry_run(
        self,
        run_id: uuid.UUID,
        *,
        queues: frozenset[str] | None = None,
        audit: AuditEntry | None = None,
    ) -> Run:
        """Queue a ``dead`` or ``cancelled`` run again, with a fresh attempt budget.

        The run becomes ``queued``, due now (``not_before``), unpublished (the caller or
        the outbox publishes it), unleased, not finished; ``attempt`` keeps counting
        and its ``max_attempts`` becomes ``attempt`` plus the run's original
        ``max_attempts``. ``NotFoundError`` for an unknown run; ``ConflictError("status")``
        for any other status, and nothing is written.
        """

    async def delete_run(
        self,
        run_id: uuid.UUID,
        *,
        queues: frozenset[str] | None = None,
        audit: AuditEntry | None = None,
    ) -> None:
        """Delete a finished run with its attempts (the dashboard's bulk delete of dead runs).

        ``NotFoundError`` for an unknown run; ``ConflictError("status")`` for one that
        is queued, running or retrying, and nothing is written.
        """

    # --- worker registry ----------------------------------------------------------

    async def register_worker(self, info: WorkerInfo) -> WorkerRecord:
        """Record a starting worker (started and heartbeat now, database clock).

        Registering an id again (a restarted worker) replaces its record: not stopped,
        no runs in progress.
        """

    async def worker_heartbeat(self, worker_id: str, runs_in_progress: int) -> bool:
        """Note that the worker is alive (database clock) and how many runs it holds.

        Returns False, writing nothing, if no worker ``worker_id`` is registered (its
        record was pruned): the caller registers again.
        """

    async def deregister_worker(self, worker_id: str) -> None:
        """Mark the worker stopped (now, no runs in progress); an unknown id is ignored.

        The record stays for inspection until ``prune_workers`` deletes it.
        """

    async def list_workers(self) -> list[WorkerRecord]:
        """Every registered worker, stopped ones included, newest start first.

        Whether a silent worker counts as gone is the caller's decision (its heartbeat
        age against a threshold); storage only reports the records.
        """

    async def prune_webhook_deliveries(self, before: datetime, limit: int) -> int:
        """Delete up to ``limit`` delivered or given-up notifications recorded before ``before``."""

    async def prune_workers(self, last_seen_before: datetime) -> int:
        """Delete the records of workers last seen before the given time; return how many.

        A worker's last sign of life is its ``stopped_at`` if it stopped, else its
        ``heartbeat_at`` (a killed worker never stops). Live workers heartbeat, so
        they are never pruned by a time older than their heartbeat interval.
        """

    # --- API tokens and the audit log ----------------------------------------------
    #
    # Audit rows are written only by the changes they record (the ``audit`` arguments
    # above); this interface offers no way to edit or delete one but retention.

    async def claim_idempotency_key(
        self, *, scope: str, key: str, request_hash: str, now: datetime, expires_at: datetime
    ) -> StoredAnswer | None:
        """Claim ``key`` in ``scope`` until ``expires_at``: None if this call claimed it
        (an expired claim is replaced), else what the key holds."""

    async def store_idempotent_answer(
        self, *, scope: str, key: str, status_code: int, body: object, location: str | None
    ) -> None:
        """Keep the answer of the request that claimed ``key``, for its repeats."""

    async def release_idempotency_key(self, *, scope: str, key: str) -> None:
        """Free a claimed key that has no answer (its request failed), so a repeat may run."""

    async def create_token(
        self,
        *,
        name: str,
        role: Role,
        queues: tuple[str, ...] | None,
        token_hash: str,
        expires_at: datetime | None,
        now: datetime,
        audit: AuditEntry | None = None,
    ) -> ApiToken:
        """Store a token by its hash; ``ConflictError("name")`` if a live token has the name."""

    async def find_token(self, token_hash: str) -> ApiToken | None:
        """The token with this hash, revoked and expired ones included (the caller decides)."""

    async def note_token_used(self, token_id: uuid.UUID, now: datetime) -> None:
        """Set the token's ``last_used_at`` to ``now`` unless it is less than a minute old."""

    async def list_tokens(self) -> list[ApiToken]:
        """Every token, revoked ones included, oldest first."""

    async def revoke_token(
        self, name_or_id: str, *, now: datetime, audit: AuditEntry | None = None
    ) -> ApiToken:
        """Revoke the live token of that name or the token of that id (at once, for good).

        ``NotFoundError`` if there is none; a token already revoked is returned as it
        is, with no audit row.
        """

    async def list_audit(
        self, audit_filter: AuditFilter, *, limit: int, cursor: str | None
    ) -> Page[AuditRecord]:
        """Audit rows newest first."""

    async def prune_audit(self, before: datetime, batch_size: int) -> int:
        """Retention: delete up to ``batch_size`` audit rows older than ``before``."""

    # --- the dashboard -------------------------------------------------------------

    async def create_ui_session(
        self, *, session_hash: str, token_hash: str, now: datetime, expires_at: datetime
    ) -> None:
        """Store a sign-in by its id's hash; expired sign-ins are deleted meanwhile."""

    async def find_ui_session(self, session_hash: str) -> UiSession | None:
        """The sign-in with this hash, expired or not (the caller decides)."""

    async def delete_ui_session(self, session_hash: str) -> None:
        """End a sign-in (logging out); an unknown hash is ignored."""

    async def run_status_counts(self, *, queues: frozenset[str] | None = None) -> dict[str, int]:
        """How many runs are in each status now (statuses with none are left out)."""

    async def attempts_per_minute(
        self, since: datetime, *, queues: frozenset[str] | None = None
    ) -> list[MinuteActivity]:
        """Attempts started, succeeded and failed per minute since ``since``, oldest first."""

    async def recent_runs_of_jobs(
        self, job_ids: Sequence[uuid.UUID], per_job: int
    ) -> dict[uuid.UUID, list[RunMark]]:
        """The last ``per_job`` runs of each of the jobs, newest fire time first."""
