"""Running the installed ``jobsched`` command as a user would, for the CLI tests."""

from __future__ import annotations

import json
import subprocess
from typing import Any

from tests.e2e.processes import JOBSCHED


def jobsched(
    *arguments: str, env: dict[str, str], stdin: str | None = None, timeout: float = 60
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [JOBSCHED, *arguments],
        env=env,
        input=stdin,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def ok(*arguments: str, env: dict[str, str], stdin: str | None = None) -> str:
    done = jobsched(*arguments, env=env, stdin=stdin)
    assert done.returncode == 0, (arguments, done.stdout, done.stderr)
    assert "Traceback" not in done.stderr
    return done.stdout


def ok_json(*arguments: str, env: dict[str, str], stdin: str | None = None) -> Any:
    return json.loads(ok(*arguments, "-o", "json", env=env, stdin=stdin))


def one_line_error(
    *arguments: str, env: dict[str, str], stdin: str | None = None, timeout: float = 60
) -> str:
    """Run a mistake: a non-zero exit and exactly one line on stderr, no traceback."""
    done = jobsched(*arguments, env=env, stdin=stdin, timeout=timeout)
    assert done.returncode != 0, (arguments, done.stdout, done.stderr)
    assert "Traceback" not in done.stderr, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, (arguments, done.stderr)
    return lines[0]
