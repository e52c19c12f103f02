"""The client commands of ``jobsched``, on typer: they speak to a running API over HTTP.

``jobsched.cli.main`` hands them every argument list whose first word is one of
``COMMANDS``; the service commands stay on argparse. Every mistake, whether a
usage error, a refused request or an unreachable server, is one line on stderr
and a non-zero exit, never a traceback.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

import typer
from typer._click.exceptions import ClickException, NoArgsIsHelpError, UsageError

from jobsched.cli import apply, client_jobs, client_misc, client_runs
from jobsched.cli.client_errors import CliError

COMMANDS = frozenset({"jobs", "runs", "workers", "schedules", "audit", "apply"})

app = typer.Typer(add_completion=False, pretty_exceptions_enable=False, no_args_is_help=True)
app.add_typer(client_jobs.app, name="jobs")
app.add_typer(client_runs.app, name="runs")
app.add_typer(client_misc.workers, name="workers")
app.add_typer(client_misc.schedules, name="schedules")
app.add_typer(client_misc.audit, name="audit")
app.command("apply")(apply.apply_jobs)


def _error(message: str) -> None:
    print(f"jobsched: error: {' '.join(message.split())}", file=sys.stderr)


def run(arguments: Sequence[str]) -> int:
    command = typer.main.get_command(app)
    try:
        code = command.main(list(arguments), prog_name="jobsched", standalone_mode=False)
    except NoArgsIsHelpError as error:
        print(error.format_message(), file=sys.stderr)
        return 2
    except UsageError as error:
        where = error.ctx.command_path if error.ctx is not None else "jobsched"
        _error(f"{error.format_message()} (see `{where} --help`)")
        return error.exit_code
    except ClickException as error:
        _error(error.format_message())
        return error.exit_code
    except CliError as error:
        _error(str(error))
        return 1
    except (typer.Abort, KeyboardInterrupt):
        return 130
    return code if isinstance(code, int) else 0
