"""Dashboard pages."""

from __future__ import annotations

from fastapi import APIRouter

from jobsched.api.ui.routing import UiRoute

router = APIRouter(prefix="/ui", route_class=UiRoute, include_in_schema=False)
