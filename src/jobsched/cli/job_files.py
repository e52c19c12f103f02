"""Job definitions read from ``-f job.yaml``, ``job.json`` or ``-`` (standard input).

A file that is not valid YAML or JSON is one line naming the file, the line and
the problem. YAML is read for every name but ``*.json`` (YAML 1.2 reads JSON too).
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

import yaml

from jobsched.cli.client_errors import CliError


def read_document(path: str) -> Any:
    name = "standard input" if path == "-" else path
    try:
        content = sys.stdin.read() if path == "-" else Path(path).read_text()
    except OSError as error:
        raise CliError(f"-f {path}: {error.strerror}") from error
    if path.endswith(".json"):
        try:
            return json.loads(content)
        except json.JSONDecodeError as error:
            raise CliError(f"{name}: line {error.lineno}: {error.msg} (JSON)") from error
    try:
        return yaml.safe_load(content)
    except yaml.MarkedYAMLError as error:
        line = error.problem_mark.line + 1 if error.problem_mark else "?"
        raise CliError(f"{name}: line {line}: {error.problem} (YAML)") from error
    except yaml.YAMLError as error:
        raise CliError(f"{name}: not YAML: {error}") from error


def read_job(path: str) -> dict[str, Any]:
    """One job definition: the fields of ``POST /jobs``."""
    document = read_document(path)
    if not isinstance(document, dict):
        raise CliError(f"-f {path}: expected one job definition (a mapping of fields)")
    return document


def read_jobs(path: str) -> list[dict[str, Any]]:
    """``apply``'s file: a list of job definitions, or a mapping with that list as ``jobs``."""
    document = read_document(path)
    if isinstance(document, dict) and set(document) == {"jobs"}:
        document = document["jobs"]
    if document is None:
        document = []
    if not isinstance(document, list):
        raise CliError(f"-f {path}: expected a list of job definitions (or 'jobs: [...]')")
    for index, item in enumerate(document):
        if not isinstance(item, dict):
            raise CliError(f"-f {path}: job {index + 1} is not a mapping of fields")
    return document
