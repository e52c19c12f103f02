#!/usr/bin/env bash
# Apply the database migrations: `jobsched migrate` with the usual configuration
# (JOBSCHED_DATABASE_URL, JOBSCHED_CONFIG or --config FILE passed through).
set -euo pipefail
case "${1:-}" in
    -h|--help)
        cat <<'USAGE'
usage: scripts/migrate.sh [--config FILE]

Create or upgrade the jobsched database schema: runs `jobsched migrate` (from
.venv/bin if there is one), which is safe to run again and from several hosts.
The database is database.url: JOBSCHED_DATABASE_URL, or the YAML file given
with --config or JOBSCHED_CONFIG (default: sqlite:///./data/jobsched.db).
USAGE
        exit 0
        ;;
esac
cd "$(dirname "$0")/.."
if [ -x .venv/bin/jobsched ]; then
    exec .venv/bin/jobsched "$@" migrate
fi
exec jobsched "$@" migrate
