"""``jobsched apply -f jobs.yaml``: create, update, no-op, dry run and prune, by name."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.clients.cli import jobsched, ok, ok_json, one_line_error
from tests.clients.server import Server, standalone

pytestmark = pytest.mark.e2e

JOBS = """\
# Schedules as a team keeps them in git. None fires while the test runs: a job that
# fires gets a new next_run_at, and so a new updated_at, whatever apply does.
- name: nightly-report
  type: noop
  schedule: "@Yearly"          # the API keeps "@yearly"
  timezone: Europe/Paris
  payload: {report: sales}
  retry: {max_attempts: 5}
  timeout_seconds: 60
- name: heartbeat
  type: noop
  schedule: "0 3 1 1 *"
  priority: 3
- name: launch
  type: noop
  run_at: "2031-06-01T09:00:00+02:00"
"""


@pytest.fixture(scope="module")
def own_server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Server]:
    """A server of this module's own: --prune deletes every named job not in the file."""
    with standalone(tmp_path_factory.mktemp("apply-server")) as running:
        yield running


def _jobs(server: Server) -> dict[str, dict[str, object]]:
    return {job["name"]: job for job in ok_json("jobs", "list", env=server.cli_env())}


def _updated_at(server: Server) -> dict[str, object]:
    """Each named job's updated_at, its version."""
    return {name: job["updated_at"] for name, job in _jobs(server).items()}


def _audit_count(server: Server) -> int:
    return len(ok_json("audit", "list", env=server.cli_env()))


def test_apply_creates_then_changes_nothing_then_updates_then_prunes(
    own_server: Server, tmp_path: Path
) -> None:
    env = own_server.cli_env()
    unnamed = ok_json("jobs", "create", "--type", "noop", "--schedule", "@hourly", env=env)
    path = tmp_path / "jobs.yaml"
    path.write_text(JOBS)

    first = jobsched("apply", "-f", str(path), env=env)
    assert first.returncode == 0, first.stderr
    assert first.stderr.strip() == "apply: 3 created, 0 updated, 0 deleted, 0 unchanged"
    assert "+ create job nightly-report" in first.stdout
    assert '    schedule: "@Yearly"' in first.stdout
    jobs = _jobs(own_server)
    assert jobs["nightly-report"]["schedule"] == "@yearly"
    assert jobs["nightly-report"]["retry"]["max_attempts"] == 5  # type: ignore[index]
    assert jobs["launch"]["run_at"] == "2031-06-01T07:00:00Z"

    # The same file again: nothing to change, nothing written.
    audit_rows = _audit_count(own_server)
    again = ok_json("apply", "-f", str(path), env=env)
    assert again == {
        "dry_run": False,
        "created": [],
        "updated": [],
        "deleted": [],
        "unchanged": ["nightly-report", "heartbeat", "launch"],
    }
    assert _audit_count(own_server) == audit_rows
    assert _updated_at(own_server) == {name: job["updated_at"] for name, job in jobs.items()}

    # A changed field: the dry run says what, field by field, and changes nothing.
    changed = JOBS.replace("priority: 3", "priority: 4").replace("sales", "costs")
    path.write_text(changed)
    dry = jobsched("apply", "-f", str(path), "--dry-run", env=env)
    assert dry.returncode == 0, dry.stderr
    assert dry.stdout.splitlines() == [
        f"~ would update job nightly-report ({jobs['nightly-report']['id']})",
        '    payload: {"report": "sales"} -> {"report": "costs"}',
        f"~ would update job heartbeat ({jobs['heartbeat']['id']})",
        "    priority: 3 -> 4",
    ]
    assert dry.stderr.strip() == (
        "apply (dry run): 0 to create, 2 to update, 0 to delete, 1 unchanged"
    )
    assert _audit_count(own_server) == audit_rows
    assert _updated_at(own_server) == {name: job["updated_at"] for name, job in jobs.items()}
    updated = ok_json("apply", "-f", str(path), env=env)
    assert updated["updated"][1] == {
        "name": "heartbeat",
        "id": jobs["heartbeat"]["id"],
        "changes": {"priority": {"from": 3, "to": 4}},
    }
    after = _jobs(own_server)
    assert (after["heartbeat"]["priority"], after["nightly-report"]["payload"]) == (
        4,
        {"report": "costs"},
    )
    assert after["launch"]["updated_at"] == jobs["launch"]["updated_at"]

    # A job left out of the file stays, unless --prune; jobs without a name always stay.
    path.write_text(changed.split("- name: launch", maxsplit=1)[0])
    kept = ok_json("apply", "-f", str(path), env=env)
    assert (kept["deleted"], kept["unchanged"]) == ([], ["nightly-report", "heartbeat"])
    assert "launch" in _jobs(own_server)
    dry_prune = ok("apply", "-f", str(path), "--prune", "--dry-run", env=env)
    assert dry_prune.splitlines() == [f"- would delete job launch ({jobs['launch']['id']})"]
    assert "launch" in _jobs(own_server)
    pruned = ok_json("apply", "-f", str(path), "--prune", env=env)
    assert pruned["deleted"] == [{"name": "launch", "id": jobs["launch"]["id"]}]
    remaining = ok_json("jobs", "list", env=env)
    assert sorted(str(job["name"]) for job in remaining if job["name"]) == [
        "heartbeat",
        "nightly-report",
    ]
    assert unnamed["id"] in {job["id"] for job in remaining}


def test_apply_from_stdin_as_json(own_server: Server) -> None:
    definitions = {"jobs": [{"name": "from-stdin", "type": "noop", "schedule": "@weekly"}]}
    first = ok_json("apply", "-f", "-", env=own_server.cli_env(), stdin=json.dumps(definitions))
    assert [item["name"] for item in first["created"]] == ["from-stdin"]
    assert first["created"][0]["id"] == _jobs(own_server)["from-stdin"]["id"]


def test_apply_mistakes(own_server: Server, tmp_path: Path) -> None:
    env = own_server.cli_env()
    path = tmp_path / "jobs.yaml"
    path.write_text("- type: noop\n")
    line = one_line_error("apply", "-f", str(path), env=env)
    assert line == f"jobsched: error: -f {path}: job 1 has no 'name' (apply matches jobs by name)"
    path.write_text("- {name: a, type: noop}\n- {name: a, type: noop}\n")
    line = one_line_error("apply", "-f", str(path), env=env)
    assert line == f"jobsched: error: -f {path}: job 2 repeats the name 'a' of job 1"
    path.write_text("name: a\ntype: noop\n")
    line = one_line_error("apply", "-f", str(path), env=env)
    assert "expected a list of job definitions" in line
    path.write_text("- {name: fine-one, type: noop, schedule: '@daily'}\n"
                    "- {name: bad-one, type: noop, priority: 1000}\n")  # fmt: skip
    line = one_line_error("apply", "-f", str(path), env=env)
    assert line.startswith("jobsched: error: apply stopped creating job 'bad-one': 422 priority: ")
    assert line.endswith("(1 change(s) made before it)")
    line = one_line_error("apply", env=env)
    assert "--file" in line
