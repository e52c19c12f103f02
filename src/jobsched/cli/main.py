"""The ``jobsched`` command: ``api``, ``scheduler``, ``worker``, ``standalone``, ``migrate``."""

from __future__ import annotations

import signal
import sys
from types import FrameType


def _stop_while_starting(signal_number: int, _frame: FrameType | None) -> None:
    """SIGTERM before a service is up: nothing to drain, so leave at once, cleanly."""
    raise SystemExit(0)


# Installed before the heavy imports below: a process told to stop while it is
# still starting (a supervisor restarting it, say) exits 0 instead of dying of
# the signal. Each service replaces it with its own graceful handling once running.
signal.signal(signal.SIGTERM, _stop_while_starting)

import argparse  # noqa: E402 - after the early signal handler, on purpose
import asyncio  # noqa: E402
import logging  # noqa: E402
from collections.abc import Callable, Coroutine, Sequence  # noqa: E402
from typing import Any  # noqa: E402

from pydantic import ValidationError  # noqa: E402

from jobsched.cli.migrating import migrate_database  # noqa: E402
from jobsched.cli.tokens import add_token_commands, run_token_command  # noqa: E402
from jobsched.config.settings import Settings, load_settings  # noqa: E402
from jobsched.core.errors import ConfigurationError, JobschedError  # noqa: E402
from jobsched.monitoring.logs import configure_logging  # noqa: E402
from jobsched.storage.migrate import head_revision  # noqa: E402

# Client commands, handed to ``jobsched.cli.client_app`` (typer) before argparse sees them.
_CLIENT_DESCRIPTIONS = {
    "jobs": "list, create, change, trigger, pause and delete jobs (over the API)",
    "runs": "list, watch, cancel and retry runs (over the API)",
    "workers": "list the workers (over the API)",
    "schedules": "preview a schedule's fire times (over the API)",
    "audit": "list the audit log (over the API, admin)",
    "apply": "make the jobs of the API match a file of job definitions",
}

_DESCRIPTIONS = {
    "api": "serve the REST API",
    "scheduler": "fire due jobs onto the queue",
    "worker": "execute runs from the queue",
    "standalone": "API, scheduler and worker in one process (SQLite by default)",
    "migrate": "create or upgrade the database schema",
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="jobsched", description="A distributed job scheduler.")
    parser.add_argument(
        "--config", metavar="FILE", help="YAML config file (default: $JOBSCHED_CONFIG)"
    )
    parser.add_argument("--version", action="version", version=f"jobsched {_version()}")
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    parser.set_defaults(subparsers=commands.choices)
    for name, description in _DESCRIPTIONS.items():
        command = commands.add_parser(name, help=description, description=description)
        command.add_argument("--config", metavar="FILE", default=argparse.SUPPRESS)
        if name in ("worker", "standalone"):
            _add_worker_options(command)
        if name in ("api", "standalone"):
            command.add_argument("--host", help="API address (api.host)")
            command.add_argument("--port", type=int, help="API port (api.port)")
    add_token_commands(commands)
    for name, description in _CLIENT_DESCRIPTIONS.items():
        # Listed in `jobsched --help` only: main() dispatches them before parsing.
        commands.add_parser(name, help=description, add_help=False)
    return parser


def _version() -> str:
    from importlib import metadata  # noqa: PLC0415

    try:
        return metadata.version("jobsched")
    except metadata.PackageNotFoundError:
        return "unknown"


def _add_worker_options(command: argparse.ArgumentParser) -> None:
    command.add_argument(
        "--import",
        dest="imports",
        action="append",
        default=[],
        metavar="MODULE",
        help="module defining handlers; repeatable (adds to worker.imports)",
    )
    command.add_argument("--concurrency", type=int, help="runs at once (worker.concurrency)")
    command.add_argument(
        "--queue",
        dest="queues",
        action="append",
        metavar="NAME",
        help="queue to take runs from; repeatable (replaces worker.queues)",
    )


def _apply_options(settings: Settings, options: argparse.Namespace) -> Settings:
    updates: dict[str, dict[str, Any]] = {}
    if getattr(options, "host", None):
        updates.setdefault("api", {})["host"] = options.host
    if getattr(options, "port", None) is not None:
        updates.setdefault("api", {})["port"] = options.port
    if getattr(options, "imports", None):
        updates.setdefault("worker", {})["imports"] = [*settings.worker.imports, *options.imports]
    if getattr(options, "concurrency", None) is not None:
        updates.setdefault("worker", {})["concurrency"] = options.concurrency
    if getattr(options, "queues", None):
        updates.setdefault("worker", {})["queues"] = options.queues
    merged = settings.model_dump()
    for section, values in updates.items():
        merged[section].update(values)
    try:
        return Settings.model_validate(merged)
    except ValidationError as error:
        first = error.errors()[0]
        setting = ".".join(str(part) for part in first["loc"][:2])
        option = _OPTIONS.get(setting, setting)
        raise ConfigurationError(f"{option} ({setting}): {first['msg']}") from error


# The command-line option of each setting it sets, for the one-line error of a bad value.
_OPTIONS = {
    "api.host": "--host",
    "api.port": "--port",
    "worker.imports": "--import",
    "worker.concurrency": "--concurrency",
    "worker.queues": "--queue",
}


def _migrate(settings: Settings) -> None:
    migrate_database(settings.database.url)
    print(f"database schema at revision {head_revision()}")


def _service(command: str) -> Callable[[Settings], Coroutine[Any, Any, None]]:
    from jobsched.cli import services  # noqa: PLC0415 - keeps `migrate` and `--help` fast

    runners: dict[str, Callable[[Settings], Coroutine[Any, Any, None]]] = {
        "api": services.serve_api,
        "scheduler": services.serve_scheduler,
        "worker": services.serve_worker,
        "standalone": services.serve_standalone,
    }
    return runners[command]


def _run(service: Coroutine[Any, Any, None]) -> None:
    """Run a service on uvloop where it is installed: every service is loop-bound."""
    try:
        import uvloop  # noqa: PLC0415 - optional: not on Windows
    except ImportError:
        asyncio.run(service)
        return
    with asyncio.Runner(loop_factory=uvloop.new_event_loop) as runner:
        runner.run(service)


def main(argv: Sequence[str] | None = None) -> int:
    arguments = list(sys.argv[1:] if argv is None else argv)
    if arguments and arguments[0] in _CLIENT_DESCRIPTIONS:
        from jobsched.cli.client_app import run  # noqa: PLC0415 - service commands skip typer

        return run(arguments)
    parser = build_parser()
    options, unknown = parser.parse_known_args(arguments)
    if unknown:
        # `jobsched api --prot 8081`: the usage of `api`, not of `jobsched`.
        command = options.subparsers.get(options.command, parser)
        command.error(f"unrecognized arguments: {' '.join(unknown)}")
    try:
        settings = _apply_options(load_settings(options.config), options)
        configure_logging(settings.logging.level, settings.logging.format)
        if options.command != "migrate":
            # The services' schema check would log alembic's set-up chatter at start.
            logging.getLogger("alembic").setLevel(logging.WARNING)
        if options.command == "migrate":
            _migrate(settings)
        elif options.command == "tokens":
            run_token_command(settings, options)
        else:
            _run(_service(options.command)(settings))
    except JobschedError as error:
        print(f"jobsched: error: {error}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    return 0


if __name__ == "__main__":
    sys.exit(main())
