"""A worker or scheduler process does not load the HTTP stack it never serves."""

from __future__ import annotations

import subprocess
import sys


def test_the_services_module_leaves_fastapi_and_uvicorn_unimported() -> None:
    probe = (
        "import sys, jobsched.cli.services; "
        "print(sorted(m for m in ('fastapi', 'starlette', 'uvicorn') if m in sys.modules))"
    )
    result = subprocess.run(
        [sys.executable, "-c", probe], capture_output=True, text=True, check=True, timeout=60
    )
    assert result.stdout.strip() == "[]"
