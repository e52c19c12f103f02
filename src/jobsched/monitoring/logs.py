"""Process-wide logging: one line per event, as text or as JSON objects."""

from __future__ import annotations

import json
import logging
import sys
from datetime import UTC, datetime

_STANDARD_ATTRIBUTES = frozenset(
    logging.LogRecord("", 0, "", 0, "", (), None).__dict__.keys() | {"message", "asctime"}
)


def _extra_fields(record: logging.LogRecord) -> dict[str, object]:
    """The ``extra=`` fields of ``record`` (run_id, attempt, job_type, ...), in order."""
    return {key: value for key, value in record.__dict__.items() if key not in _STANDARD_ATTRIBUTES}


class TextFormatter(logging.Formatter):
    """One line per record; its ``extra=`` fields follow as ``key=value`` pairs.

    So a handler's line says which run and attempt it belongs to in text logs too:
    ``... jobsched.handler: fetched 3 pages run_id=... attempt=2 job_type=http``.
    """

    def __init__(self) -> None:
        super().__init__("%(asctime)s %(levelname)s %(name)s: %(message)s")

    def formatMessage(self, record: logging.LogRecord) -> str:  # noqa: N802 - the base's name
        line = super().formatMessage(record)
        fields = _extra_fields(record)
        if not fields:
            return line
        return line + " " + " ".join(f"{key}={value}" for key, value in fields.items())


class JsonFormatter(logging.Formatter):
    """Each record as one JSON object, with any ``extra=`` fields kept as keys."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, object] = {
            "time": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        entry.update(_extra_fields(record))
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def configure_logging(level: str, output_format: str) -> None:
    handler = logging.StreamHandler(sys.stderr)
    if output_format == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(TextFormatter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level)
    # httpx logs every request at INFO; the worker's http handler makes many.
    logging.getLogger("httpx").setLevel(logging.WARNING)
