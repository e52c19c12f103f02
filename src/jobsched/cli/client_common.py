"""What every client command shares: the ``--url``/``--token``/``--profile``/``-o`` options
and a client whose API errors become one line naming the setting at fault."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Annotated, Any

import typer

from jobsched.cli.client_errors import CliError
from jobsched.cli.output import Output
from jobsched.cli.profiles import Target, resolve_target
from jobsched.client import ApiError, Client, UnreachableError

UrlOption = Annotated[
    str | None,
    typer.Option(
        "--url",
        help="API URL (default: $JOBSCHED_URL, the profile's url, http://127.0.0.1:8080)",
        show_default=False,
    ),
]
TokenOption = Annotated[
    str | None,
    typer.Option(
        "--token", help="API token (default: $JOBSCHED_TOKEN, the profile's)", show_default=False
    ),
]
ProfileOption = Annotated[
    str | None,
    typer.Option(
        "--profile",
        help="a profile of ~/.config/jobsched/cli.yaml (default: $JOBSCHED_PROFILE)",
        show_default=False,
    ),
]
OutputOption = Annotated[
    Output, typer.Option("--output", "-o", help="table, json or jsonl", case_sensitive=False)
]
LimitOption = Annotated[
    int | None, typer.Option("--limit", min=1, help="at most this many (default: all)")
]

REQUEST_TIMEOUT_SECONDS = 30.0


def describe(error: ApiError, target: Target) -> str:
    """The API's refusal in one line, naming the token's source for 401 and 403."""
    if error.status == 401:
        if target.token is None:
            return (
                f"{target.url} needs an API token: give --token, set JOBSCHED_TOKEN "
                f"or use a profile with a token ({error.detail})"
            )
        return f"{target.url} refused the token from {target.token_source}: {error.detail}"
    if error.status == 403:
        return f"the token from {target.token_source} may not do this: {error.detail}"
    return str(error)


@contextmanager
def connect(url: str | None, token: str | None, profile: str | None) -> Iterator[Client]:
    target = resolve_target(url, token, profile)
    with Client(target.url, token=target.token or "", timeout=REQUEST_TIMEOUT_SECONDS) as client:
        try:
            yield client
        except ApiError as error:
            raise CliError(describe(error, target)) from error
        except UnreachableError as error:
            raise CliError(
                f"cannot reach the jobsched API at {target.url} (--url, JOBSCHED_URL or "
                f"the profile's url): {error.reason}"
            ) from error


def parse_json_option(option: str, value: str | None) -> Any:
    if value is None:
        return None
    try:
        return json.loads(value)
    except json.JSONDecodeError as error:
        raise CliError(f"{option}: not JSON ({error.msg} at character {error.pos})") from error


def job_id(client: Client, reference: str) -> str:
    """A job's id from its id or its name (names are unique)."""
    try:
        return str(uuid.UUID(reference))
    except ValueError:
        pass
    for job in client.jobs.list():
        if job.name == reference:
            return str(job.id)
    raise CliError(f"no job named {reference!r} (JOB is a job's id or name)")
