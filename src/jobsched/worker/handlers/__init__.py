"""The handlers every worker has (``noop``, ``http``), and ``shell`` for those that enable it."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from jobsched.worker.registry import Handler


def builtin_handlers() -> dict[str, Handler]:
    """The built-in handlers by type name (imported on demand: ``http`` needs httpx).

    ``shell`` is not among them: a worker registers it only with ``worker.shell.enabled``.
    """
    from jobsched.worker.handlers.http import http_handler  # noqa: PLC0415
    from jobsched.worker.handlers.noop import noop_handler  # noqa: PLC0415

    return {"noop": noop_handler, "http": http_handler}
