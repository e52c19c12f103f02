"""The client commands of the installed ``jobsched`` against a real API."""

from __future__ import annotations

import json
import uuid
from pathlib import Path

import pytest

from tests.clients.cli import jobsched, ok, ok_json
from tests.clients.server import Server

pytestmark = pytest.mark.e2e


def _name() -> str:
    return f"cli-{uuid.uuid4().hex[:10]}"


def test_jobs_create_from_flags_get_update_pause_resume_delete(server: Server) -> None:
    env = server.cli_env()
    name = _name()
    created = ok_json(
        "jobs", "create", "--type", "noop", "--name", name, "--schedule", "@every 1h",
        "--payload", '{"a": 1}', "--priority", "5", "--max-attempts", "4", env=env,
    )  # fmt: skip
    assert (created["name"], created["payload"], created["priority"]) == (name, {"a": 1}, 5)
    assert created["retry"]["max_attempts"] == 4
    # By name or by id; the table shows the fields.
    assert ok_json("jobs", "get", name, env=env)["id"] == created["id"]
    table = ok("jobs", "get", created["id"], env=env)
    assert name in table
    assert "@every 1h" in table
    updated = ok_json("jobs", "update", name, "--schedule", "@every 2h", env=env)
    assert updated["schedule"] == "@every 2h"
    assert ok_json("jobs", "pause", name, env=env)["status"] == "paused"
    assert ok_json("jobs", "resume", name, env=env)["status"] == "active"
    deleted = jobsched("jobs", "delete", name, env=env)
    assert deleted.returncode == 0
    assert deleted.stderr.strip() == f"deleted job {created['id']}"
    assert jobsched("jobs", "get", created["id"], env=env).returncode == 1


@pytest.mark.parametrize("suffix", [".yaml", ".json", "-"])
def test_jobs_create_from_a_file_or_stdin(server: Server, tmp_path: Path, suffix: str) -> None:
    name = _name()
    definition = {"name": name, "type": "noop", "schedule": "@daily", "payload": {"k": "v"}}
    text = (
        json.dumps(definition)
        if suffix == ".json"
        else (f"name: {name}\ntype: noop\nschedule: '@daily'\npayload:\n  k: v\n")
    )
    if suffix == "-":
        created = ok_json("jobs", "create", "-f", "-", "--priority", "3", env=server.cli_env(),
                          stdin=text)  # fmt: skip
        assert created["priority"] == 3
    else:
        path = tmp_path / f"job{suffix}"
        path.write_text(text)
        created = ok_json("jobs", "create", "-f", str(path), env=server.cli_env())
    assert (created["name"], created["schedule"], created["payload"]) == (
        name,
        "@daily",
        {"k": "v"},
    )


def test_lists_page_by_themselves_in_every_format(server: Server) -> None:
    env = server.cli_env()
    queue = f"q-{uuid.uuid4().hex[:8]}"
    ids = [
        ok_json("jobs", "create", "--type", "noop", "--queue", queue, "--schedule", "@hourly",
                env=env)["id"]
        for _ in range(4)
    ]  # fmt: skip
    # The API's default page is 50 jobs; --limit 3 asks pages of 3, and stops at 3.
    listed = ok_json("jobs", "list", "--queue", queue, env=env)
    assert [job["id"] for job in listed] == ids
    assert [job["id"] for job in ok_json("jobs", "list", "--queue", queue, "--limit", "3",
                                         env=env)] == ids[:3]  # fmt: skip
    lines = ok("jobs", "list", "--queue", queue, "-o", "jsonl", env=env).splitlines()
    assert [json.loads(line)["id"] for line in lines] == ids
    table = ok("jobs", "list", "--queue", queue, env=env)
    assert table.splitlines()[0].split()[:3] == ["ID", "NAME", "TYPE"]
    assert all(job_id in table for job_id in ids)


def test_trigger_runs_and_watch(server: Server) -> None:
    env = server.cli_env()
    name = _name()
    ok("jobs", "create", "--type", "noop", "--name", name, "--schedule", "@every 1h", env=env)
    run = ok_json("jobs", "trigger", name, "--payload", '{"once": true}', env=env)
    assert run["trigger"] == "manual"
    watched = jobsched("runs", "watch", run["id"], "--interval", "0.1", "--timeout", "30", env=env)
    assert watched.returncode == 0, watched.stderr
    assert "succeeded" in watched.stdout.splitlines()[-1]
    assert watched.stderr.strip() == f"run {run['id']} succeeded"
    detail = ok_json("runs", "get", run["id"], env=env)
    assert detail["status"] == "succeeded"
    assert [attempt["status"] for attempt in detail["attempts"]] == ["succeeded"]
    assert [r["id"] for r in ok_json("jobs", "runs", name, env=env)] == [run["id"]]
    assert [r["id"] for r in ok_json("runs", "list", "--job", name, env=env)] == [run["id"]]
    assert run["id"] in ok("runs", "list", "--status", "succeeded", "--limit", "500", env=env)


def test_watch_exits_non_zero_when_the_run_does_not_succeed(server: Server) -> None:
    env = server.cli_env()
    job = ok_json("jobs", "create", "--type", "always_fails", "--schedule", "@every 1h",
                  "--max-attempts", "2", env=env)  # fmt: skip
    run = ok_json("jobs", "trigger", job["id"], env=env)
    watched = jobsched("runs", "watch", run["id"], "--interval", "0.1", "-o", "jsonl", env=env)
    assert watched.returncode == 1
    states = [json.loads(line) for line in watched.stdout.splitlines()]
    assert states[-1]["status"] == "dead"
    assert states[-1]["attempt"] == 2
    assert "this handler always fails" in states[-1]["last_error"]
    assert watched.stderr.strip() == (
        f"jobsched: error: run {run['id']} ended dead: {states[-1]['last_error']}"
    )


def test_cancel_retry_and_a_watch_that_times_out(server: Server) -> None:
    env = server.cli_env()
    job = ok_json("jobs", "create", "--type", "noop", "--queue", "nobody-serves-this",
                  "--schedule", "@every 1h", env=env)  # fmt: skip
    run = ok_json("jobs", "trigger", job["id"], env=env)
    timed_out = jobsched("runs", "watch", run["id"], "--interval", "0.1", "--timeout", "0.3",
                         env=env)  # fmt: skip
    assert timed_out.returncode == 1
    assert "still queued after --timeout 0.3s" in timed_out.stderr
    assert ok_json("runs", "cancel", run["id"], env=env)["status"] == "cancelled"
    assert ok_json("runs", "retry", run["id"], env=env)["status"] == "queued"


def test_workers_schedules_and_audit(server: Server) -> None:
    env = server.cli_env()
    workers = ok_json("workers", "list", env=env)
    assert any(worker["status"] == "alive" for worker in workers)
    assert "alive" in ok("workers", "list", env=env)
    preview = ok_json("schedules", "preview", "@every 1h", "--count", "2",
                      "--after", "2030-01-01T00:00:00Z", env=env)  # fmt: skip
    assert preview["fire_times"] == ["2030-01-01T01:00:00Z", "2030-01-01T02:00:00Z"]
    assert "2030-01-01T02:00:00Z" in ok("schedules", "preview", "@every 1h", "--after",
                                        "2030-01-01T00:00:00Z", env=env)  # fmt: skip
    job = ok_json("jobs", "create", "--type", "noop", "--schedule", "@hourly", env=env)
    rows = ok_json("audit", "list", "--target-id", job["id"], env=env)
    assert [(row["action"], row["token_name"]) for row in rows] == [("job.created", "root")]
    assert "job.created" in ok("audit", "list", "--by", "root", "--limit", "5", env=env)


def test_profiles_from_the_user_config_file(server: Server, tmp_path: Path) -> None:
    config = tmp_path / "jobsched" / "cli.yaml"
    config.parent.mkdir()
    token_file = tmp_path / "token"
    token_file.write_text(server.admin_token + "\n")
    config.write_text(
        "default_profile: broken\n"
        "profiles:\n"
        f"  here: {{url: '{server.url}', token_file: '{token_file}'}}\n"
        "  broken: {url: 'http://127.0.0.1:9', token: nope}\n"
    )
    env = server.cli_env(XDG_CONFIG_HOME=str(tmp_path))
    del env["JOBSCHED_URL"], env["JOBSCHED_TOKEN"]
    assert isinstance(ok_json("workers", "list", "--profile", "here", env=env), list)
    # The default profile applies without --profile; flags beat it.
    assert "127.0.0.1:9" in jobsched("workers", "list", env=env).stderr
    assert isinstance(
        ok_json("workers", "list", "--url", server.url, "--token", server.admin_token, env=env),
        list,
    )
