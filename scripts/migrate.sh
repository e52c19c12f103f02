#!/usr/bin/env bash
# Apply the database migrations: `jobsched migrate` with the usual configuration
# (JOBSCHED_DATABASE_URL, JOBSCHED_CONFIG or --config FILE passed through).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -x .venv/bin/jobsched ]; then
    exec .venv/bin/jobsched "$@" migrate
fi
exec jobsched "$@" migrate
