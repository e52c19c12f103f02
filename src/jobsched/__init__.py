"""jobsched: a distributed job scheduler.

``jobsched.handler("type")`` registers a handler on the default registry; it is
loaded on first use so that ``import jobsched`` stays cheap for the CLI and API.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from jobsched.worker.registry import handler

__all__ = ["handler"]


def __getattr__(name: str) -> Any:
    if name == "handler":
        from jobsched.worker.registry import handler  # noqa: PLC0415

        return handler
    raise AttributeError(f"module 'jobsched' has no attribute {name!r}")
