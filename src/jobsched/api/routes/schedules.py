"""``/schedules/preview``: the next fire times of an expression, before any job uses it."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query

from jobsched.api.auth import Role, require
from jobsched.api.dependencies import ServicesDependency
from jobsched.api.request_checks import CheckedRoute
from jobsched.api.schemas import PROBLEM_RESPONSES, SchedulePreview
from jobsched.core.errors import InvalidInputError, InvalidScheduleError
from jobsched.schedules import parse_run_at, parse_schedule, preview_fire_times

router = APIRouter(
    route_class=CheckedRoute,
    prefix="/schedules",
    tags=["schedules"],
    responses=PROBLEM_RESPONSES,
    dependencies=[Depends(require(Role.READ))],
)

PREVIEW_COUNT_MAX = 100


@router.get("/preview", summary="Preview a schedule's fire times")
async def preview_schedule(
    services: ServicesDependency,
    schedule: Annotated[str, Query(min_length=1, max_length=200)],
    timezone: Annotated[str, Query(min_length=1, max_length=64)] = "UTC",
    count: Annotated[int, Query(ge=1, le=PREVIEW_COUNT_MAX)] = 5,
    after: Annotated[
        str | None, Query(max_length=64, description="ISO 8601 with an offset; default now.")
    ] = None,
) -> SchedulePreview:
    """The first ``count`` fire times strictly after ``after``, in UTC.

    An ``@every`` interval is anchored at ``after``, so its first fire time is
    ``after`` plus the interval.
    """
    if after is None:
        start = await services.storage.now()
    else:
        try:
            start = parse_run_at(after)
        except InvalidScheduleError as error:
            raise InvalidInputError("after", error.message) from error
    parsed = parse_schedule(schedule, timezone, anchor=start)
    return SchedulePreview(
        schedule=parsed.expression,
        timezone=timezone,
        fire_times=preview_fire_times(parsed, start, count),
    )
