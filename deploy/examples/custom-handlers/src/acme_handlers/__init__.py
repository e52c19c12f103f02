"""Example handlers: importing this module registers them with jobsched.

A worker imports it at start because ``JOBSCHED_WORKER_IMPORTS=acme_handlers``
(``worker.imports``) says so.
"""

from __future__ import annotations

from typing import Any

import jobsched


class UnknownReportError(Exception):
    """Retrying cannot help: the run ends dead at once."""


REPORTS = {"daily-sales", "weekly-signups"}


@jobsched.handler("acme.report", no_retry_on=(UnknownReportError,))
async def build_report(payload: dict[str, Any], context: Any) -> dict[str, Any]:
    name = payload.get("report")
    if name not in REPORTS:
        raise UnknownReportError(f"no report named {name!r}; known: {sorted(REPORTS)}")
    context.logger.info("building report %s", name)
    return {"report": name, "rows": 0}
