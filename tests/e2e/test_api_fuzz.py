"""Property-based fuzzing of a real ``jobsched api`` against its own ``/openapi.json``.

Schemathesis generates valid and invalid requests for every operation (NUL
characters and odd strings included), on SQLite and on PostgreSQL. No answer may be
a 5xx, and every answer must match the document: a documented status, content type
and schema. The API runs on loopback with auth off, as ``standalone`` does.
"""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis.errors import Unsatisfiable
from schemathesis import APIOperation, BaseSchema, Case, GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from tests.e2e.processes import JobschedProcess, free_port, metric_value, migrated_database

pytestmark = pytest.mark.e2e

# Per operation and generation mode (valid and invalid requests); about 20 operations,
# on two databases.
EXAMPLES_PER_OPERATION = 40
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
]


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def api_schema(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[BaseSchema, str]]:
    directory = tmp_path_factory.mktemp(f"fuzz-{request.param}")
    databases = migrated_database(request.param, directory)
    env = {"JOBSCHED_DATABASE_URL": next(databases)}
    port = free_port()
    process = JobschedProcess(["api", "--port", str(port)], env, directory / "api.log").start()
    url = f"http://127.0.0.1:{port}"
    try:
        process.wait_for_http(f"{url}/healthz")
        schema = schemathesis.openapi.from_url(f"{url}/openapi.json")
        schema.config.update(base_url=url)
        yield schema, url
    finally:
        process.stop()
        next(databases, None)


def _fuzz(operation: APIOperation, mode: GenerationMode) -> None:
    @given(case=operation.as_strategy(generation_mode=mode))
    @settings(
        max_examples=EXAMPLES_PER_OPERATION,
        deadline=None,
        suppress_health_check=list(HealthCheck),
        derandomize=True,
        database=None,
    )
    def answers_within_the_schema(case: Case) -> None:
        case.call_and_validate(checks=CHECKS)

    answers_within_the_schema()


# Schemathesis's own pytest integration (``from_fixture``) does not run on pytest 9:
# each operation is driven here with its Hypothesis strategy instead.
def test_no_answer_is_a_5xx_or_contradicts_the_schema(
    api_schema: tuple[BaseSchema, str],
) -> None:
    api_schema, url = api_schema
    failures = []
    operations = [result.ok() for result in api_schema.get_all_operations()]
    assert len(operations) >= 15
    for operation in operations:
        for mode in (GenerationMode.POSITIVE, GenerationMode.NEGATIVE):
            try:
                _fuzz(operation, mode)
            except Unsatisfiable:
                # No invalid request exists for an operation without parameters or body.
                assert mode is GenerationMode.NEGATIVE, operation.path
            except (Exception, BaseExceptionGroup) as error:  # every failure, not only the first
                failures.append(
                    f"{operation.method.upper()} {operation.path} ({mode.value}):\n{error}"
                )
    assert not failures, "\n\n".join(failures)
    # The run was not vacuous: many requests, answered both ways.
    metrics = httpx.get(f"{url}/metrics").text
    served = metric_value(metrics, "api_requests_total")
    refused = sum(
        metric_value(metrics, "api_requests_total", status=str(code))
        for code in (400, 404, 405, 409, 413, 415, 422)
    )
    assert served > 20 * EXAMPLES_PER_OPERATION, served
    assert 0 < refused < served, (refused, served)
