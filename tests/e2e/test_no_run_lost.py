"""No run is lost: real schedulers and workers, real brokers, real faults.

Each test fires thousands of one-time jobs from a ``jobsched scheduler`` process
to ``jobsched worker`` processes through one queue backend, breaks something on
the way, and then checks by SQL that every run ended ``succeeded`` with exactly
one succeeded attempt:

* workers are SIGKILLed every few seconds and restarted (every backend): their
  leases expire, the scheduler rescues the runs, and the outbox publishes them again;
* the broker restarts mid-flow (Redis, which forgets every stream, and RabbitMQ):
  the running processes reconnect by themselves, and what Redis lost is republished;
* the scheduler dies between committing runs and publishing them: the next
  scheduler's outbox sweep publishes them.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from jobsched.scheduler.service import (
    CRASH_BEFORE_PUBLISH_EXIT_CODE,
    CRASH_BEFORE_PUBLISH_VARIABLE,
)
from jobsched.storage.database import SQLStorage
from tests.e2e.broker_services import BROKER_SERVICES, BrokerService, purge_broker_namespace
from tests.e2e.deployment import (
    Deployment,
    RunLedger,
    deployment_env,
    running_deployment,
    wait_for_all_final,
)
from tests.e2e.processes import wait_until
from tests.queue_backends import BACKENDS

pytestmark = pytest.mark.e2e

RUN_COUNT = 10_000
WORKER_COUNT = 3
# Each run sleeps 5-20 ms: long enough that a kill lands mid-run, short enough for 10,000.
SHORT_SLEEP = {"min_seconds": 0.005, "max_seconds": 0.02}
KILL_EVERY_SUCCEEDED = 2_000
FINISH_TIMEOUT_SECONDS = 240.0
# The broker restarts once this many runs succeeded, with most of the flow still to come.
RESTART_AFTER_SUCCEEDED = 1_500
RESTART_WAIT_TIMEOUT_SECONDS = 60.0
# Within pytest's 300 s per test: waiting for the restart point, the restart, the rest.
AFTER_RESTART_TIMEOUT_SECONDS = 200.0
BROKER_OUTAGE_SECONDS = 2.0
CRASH_RUN_COUNT = 50


@pytest.fixture
def queue_namespace(postgres_url: str) -> Iterator[str]:
    """A namespace of this test's own; its broker keys and queues are deleted afterwards."""
    namespace = f"e2e-{uuid.uuid4().hex[:12]}"
    yield namespace
    asyncio.run(_purge(postgres_url, namespace))


async def _purge(database_url: str, namespace: str) -> None:
    storage = SQLStorage.from_url(database_url)
    try:
        await purge_broker_namespace(namespace, ["default"], storage)
    except Exception as error:  # cleanup must not hide the test's own outcome
        print(f"could not delete the broker state of namespace {namespace}: {error!r}")
    finally:
        await storage.close()


@pytest.fixture
def ledger(postgres_url: str) -> Iterator[RunLedger]:
    run_ledger = RunLedger(postgres_url)
    yield run_ledger
    run_ledger.close()


@pytest.fixture
def broker_service(request: pytest.FixtureRequest) -> Iterator[BrokerService]:
    """The broker named by the test's parameter, running before and after the test."""
    service = BROKER_SERVICES[request.param]
    service.ensure_running()
    try:
        yield service
    finally:
        # Even when the test failed halfway through a restart: later tests need it.
        service.ensure_running()


class WorkerKiller:
    """Each time another ``every_succeeded`` runs succeeded, SIGKILLs a worker holding runs.

    Kills follow progress, not the clock, and the victim is the worker with the most
    attempts under way: however fast the flow drains, every kill lands mid-flow on a
    worker that dies holding runs.
    """

    def __init__(self, deployment: Deployment, ledger: RunLedger, every_succeeded: int) -> None:
        self._deployment = deployment
        self._ledger = ledger
        self._every_succeeded = every_succeeded
        self._next_kill_at = every_succeeded
        self.attempts_held_by_victims = 0

    def kill_when_due(self) -> None:
        if self._ledger.succeeded_count() < self._next_kill_at:
            return
        held = self._ledger.running_attempts_by_worker()
        worker_ids = self._deployment.worker_ids()
        count, index = max(
            (held.get(worker_id, 0), index) for index, worker_id in enumerate(worker_ids)
        )
        if count == 0:
            return  # every worker is between runs or still starting: try at the next poll
        self._deployment.kill_and_restart_worker(index)
        self.attempts_held_by_victims += count
        self._next_kill_at += self._every_succeeded


@pytest.mark.parametrize("backend", BACKENDS)
def test_no_run_lost_while_workers_are_killed(
    backend: str, postgres_url: str, queue_namespace: str, ledger: RunLedger, tmp_path: Path
) -> None:
    env = deployment_env(postgres_url, backend, queue_namespace)
    started = time.monotonic()
    with running_deployment(env, tmp_path) as deployment:
        deployment.start_scheduler()
        deployment.start_workers(WORKER_COUNT)
        ledger.insert_due_jobs(RUN_COUNT, SHORT_SLEEP)
        killer = WorkerKiller(deployment, ledger, KILL_EVERY_SUCCEEDED)
        wait_for_all_final(
            ledger,
            deployment,
            RUN_COUNT,
            timeout_seconds=FINISH_TIMEOUT_SECONDS,
            between_checks=killer.kill_when_due,
        )
        duration_seconds = time.monotonic() - started
        exit_codes = deployment.stop_all()
    attempts = ledger.attempt_counts()
    print(
        f"[{backend}] {RUN_COUNT} runs in {duration_seconds:.1f}s with {deployment.kills} "
        f"worker kills holding {killer.attempts_held_by_victims} attempts; "
        f"attempts by status: {attempts}"
    )
    ledger.assert_each_run_succeeded_once(RUN_COUNT)
    # The faults really happened: workers died holding runs, and those runs were rescued.
    assert deployment.kills >= 3, f"only {deployment.kills} kills: the flow ended too soon"
    assert attempts.get("lost", 0) > 0, f"no attempt was lost to a kill: {attempts}"
    assert set(exit_codes.values()) == {0}, exit_codes
    # A worker's heartbeat and outcome writes lock the same runs rows: in one order.
    assert deployment.log_lines_containing("DeadlockDetected") == []


@pytest.mark.serial
@pytest.mark.parametrize("broker_service", ["redis", "rabbitmq"], indirect=True)
def test_no_run_lost_when_the_broker_restarts(
    broker_service: BrokerService,
    postgres_url: str,
    queue_namespace: str,
    ledger: RunLedger,
    tmp_path: Path,
) -> None:
    env = deployment_env(postgres_url, broker_service.name, queue_namespace)
    started = time.monotonic()
    with running_deployment(env, tmp_path) as deployment:
        deployment.start_scheduler()
        deployment.start_workers(WORKER_COUNT)
        pids = [process.process.pid for process in deployment.running()]
        ledger.insert_due_jobs(RUN_COUNT, SHORT_SLEEP)

        def enough_succeeded() -> bool:
            deployment.check_alive()
            return ledger.succeeded_count() >= RESTART_AFTER_SUCCEEDED

        wait_until(
            enough_succeeded,
            timeout_seconds=RESTART_WAIT_TIMEOUT_SECONDS,
            message=f"{RESTART_AFTER_SUCCEEDED} runs succeeded before the broker restart",
        )
        broker_service.restart(outage_seconds=BROKER_OUTAGE_SECONDS)
        back_at = ledger.database_now()
        succeeded_at_restart = ledger.succeeded_count()
        wait_for_all_final(
            ledger, deployment, RUN_COUNT, timeout_seconds=AFTER_RESTART_TIMEOUT_SECONDS
        )
        duration_seconds = time.monotonic() - started
        deployment.check_alive()
        assert [process.process.pid for process in deployment.running()] == pids
        exit_codes = deployment.stop_all()
    attempts = ledger.attempt_counts()
    print(
        f"[{broker_service.name} restart] {RUN_COUNT} runs in {duration_seconds:.1f}s; "
        f"{succeeded_at_restart} had succeeded when the broker came back; attempts: {attempts}"
    )
    # The restart hit the middle of the flow, not its end.
    assert succeeded_at_restart <= RUN_COUNT - 1_000, succeeded_at_restart
    ledger.assert_each_run_succeeded_once(RUN_COUNT)
    # Every worker reconnected by itself and went on completing runs.
    after_restart = ledger.succeeded_attempts_by_worker(started_after=back_at)
    assert len(after_restart) == WORKER_COUNT, f"succeeded after the restart: {after_restart}"
    assert set(exit_codes.values()) == {0}, exit_codes


@pytest.mark.parametrize("backend", ["redis", "rabbitmq"])
def test_runs_committed_before_a_scheduler_crash_are_published_by_the_next_one(
    backend: str, postgres_url: str, queue_namespace: str, ledger: RunLedger, tmp_path: Path
) -> None:
    env = deployment_env(postgres_url, backend, queue_namespace)
    with running_deployment(env, tmp_path) as deployment:
        crashing = deployment.start_scheduler(**{CRASH_BEFORE_PUBLISH_VARIABLE: "1"})
        ledger.insert_due_jobs(CRASH_RUN_COUNT, SHORT_SLEEP)
        wait_until(
            lambda: crashing.process.poll() is not None,
            timeout_seconds=60,
            message="the scheduler exiting between commit and publish",
        )
        assert deployment.retire_scheduler().process.returncode == CRASH_BEFORE_PUBLISH_EXIT_CODE, (
            crashing.log()
        )
        # Committed, never handed to the broker.
        assert ledger.run_counts() == {"queued": CRASH_RUN_COUNT}
        assert ledger.unpublished_run_count() == CRASH_RUN_COUNT

        deployment.start_scheduler()
        deployment.start_workers(1)
        wait_for_all_final(ledger, deployment, CRASH_RUN_COUNT, timeout_seconds=60)
        exit_codes = deployment.stop_all()
    ledger.assert_each_run_succeeded_once(CRASH_RUN_COUNT)
    assert set(exit_codes.values()) == {0}, exit_codes
