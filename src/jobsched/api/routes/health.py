"""Operations endpoints: liveness, readiness and Prometheus metrics."""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence

from fastapi import APIRouter, Depends, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, generate_latest

from jobsched.api.auth import Role, require
from jobsched.api.dependencies import ServicesDependency
from jobsched.api.problems import NOT_READY, FieldError, problem_response
from jobsched.api.request_checks import CheckedRoute
from jobsched.api.schemas import HealthOut, Problem

ReadinessCheck = Callable[[], Awaitable[None]]

router = APIRouter(route_class=CheckedRoute, tags=["operations"])
logger = logging.getLogger(__name__)


@router.get("/healthz", summary="Liveness")
async def healthz() -> HealthOut:
    """200 while the process serves requests; it checks nothing else."""
    return HealthOut()


def _check_name(check: ReadinessCheck) -> str:
    return getattr(check, "__name__", None) or type(check).__name__


async def _failed_checks(checks: Sequence[tuple[str, ReadinessCheck]]) -> list[FieldError]:
    failed = []
    for name, check in checks:
        try:
            await check()
        except Exception as error:  # any failure means "not ready"
            logger.warning("readiness check %s failed: %s", name, error)
            failed.append(FieldError(name, "failed; see the server log"))
    return failed


@router.get(
    "/readyz",
    summary="Readiness",
    response_model=HealthOut,
    responses={503: {"model": Problem, "description": "A dependency is not usable."}},
)
async def readyz(request: Request, services: ServicesDependency) -> Response | HealthOut:
    """200 when the database answers and every extra readiness check passes, else 503."""
    extra: Sequence[ReadinessCheck] = request.app.state.readiness_checks
    checks: list[tuple[str, ReadinessCheck]] = [("storage", services.storage.ping)]
    checks += [(_check_name(check), check) for check in extra]
    failed = await _failed_checks(checks)
    if failed:
        return problem_response(
            NOT_READY,
            detail="not ready: " + ", ".join(item.field for item in failed),
            instance=request.url.path,
            errors=failed,
        )
    return HealthOut()


async def metrics() -> Response:
    """This process's metrics in the Prometheus text format."""
    return Response(generate_latest(REGISTRY), media_type=CONTENT_TYPE_LATEST)


def router_for(metrics_role: Role | None) -> APIRouter:
    """The operations routes; ``/metrics`` asks for ``metrics_role`` when one is given."""
    operations = APIRouter(route_class=CheckedRoute, tags=["operations"])
    operations.include_router(router)
    dependencies = [Depends(require(metrics_role))] if metrics_role is not None else []
    operations.add_api_route(
        "/metrics",
        metrics,
        methods=["GET"],
        summary="Prometheus metrics",
        response_class=Response,
        dependencies=dependencies,
    )
    return operations
