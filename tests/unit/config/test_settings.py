"""``load_settings``: defaults, then the YAML file, then ``JOBSCHED_*`` variables."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from jobsched.config.settings import DEFAULT_SQLITE_URL, Settings, load_settings
from jobsched.core.errors import ConfigurationError
from jobsched.core.models import RetryPolicy

EXAMPLE_CONFIG = Path(__file__).parents[3] / "config" / "config.yaml.example"


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No ``JOBSCHED_*`` variable of the host leaks into these tests."""
    for name in list(os.environ):
        if name.upper().startswith("JOBSCHED_"):
            monkeypatch.delenv(name)


@pytest.fixture
def config_file(tmp_path: Path) -> Path:
    path = tmp_path / "jobsched.yaml"
    path.write_text(
        "database:\n"
        "  url: postgresql://db.example/jobs\n"
        "  pool_size: 25\n"
        "queue:\n"
        "  url: redis://broker.example:6379/0\n"
        "  poll_interval_seconds: 0.5\n"
        "api:\n"
        "  host: 0.0.0.0\n"
        "  port: 9000\n"
        "  page_size_max: 100\n"
        "metrics:\n"
        "  port: 9300\n"
        "worker:\n"
        "  concurrency: 4\n"
        "  queues: [emails, reports]\n"
        "  shutdown_grace_seconds: 12.5\n"
        "jobs:\n"
        "  retry:\n"
        "    max_attempts: 7\n"
        "    backoff: fixed\n"
        "logging:\n"
        "  format: json\n",
        encoding="utf-8",
    )
    return path


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "config.yaml"
    path.write_text(text, encoding="utf-8")
    return path


# --- defaults and the file -------------------------------------------------------


def test_defaults_without_file_or_environment() -> None:
    settings = load_settings()

    assert settings.database.url == DEFAULT_SQLITE_URL
    assert settings.database.pool_size == 10
    assert settings.queue.url is None
    assert settings.api.host == "127.0.0.1"
    assert settings.api.port == 8080
    assert settings.metrics.port == 9100
    assert settings.worker.concurrency == 10
    assert settings.worker.queues == ["default"]
    assert settings.worker.shutdown_grace_seconds == 30.0
    assert settings.jobs.retry.policy() == RetryPolicy()
    assert settings.logging.level == "INFO"


def test_the_example_config_documents_the_defaults() -> None:
    assert load_settings(EXAMPLE_CONFIG) == Settings()


def test_file_values_replace_defaults(config_file: Path) -> None:
    settings = load_settings(config_file)

    assert settings.database.url == "postgresql://db.example/jobs"
    assert settings.database.pool_size == 25
    assert settings.queue.url == "redis://broker.example:6379/0"
    assert settings.queue.poll_interval_seconds == 0.5
    assert (settings.api.host, settings.api.port, settings.api.page_size_max) == (
        "0.0.0.0",
        9000,
        100,
    )
    assert settings.metrics.port == 9300
    assert settings.worker.concurrency == 4
    assert settings.worker.queues == ["emails", "reports"]
    assert settings.worker.shutdown_grace_seconds == 12.5
    assert settings.logging.format == "json"


def test_keys_missing_from_the_file_keep_their_defaults(config_file: Path) -> None:
    settings = load_settings(config_file)

    assert settings.metrics.host == "127.0.0.1"
    assert settings.worker.lease_seconds == 30.0
    assert settings.jobs.retry.max_attempts == 7
    assert settings.jobs.retry.initial_delay_seconds == 1.0
    assert settings.scheduler.batch_size == 500


def test_an_empty_file_means_defaults(tmp_path: Path) -> None:
    assert load_settings(_write(tmp_path, "# nothing set\n")) == Settings()


def test_jobsched_config_selects_the_file(
    config_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("JOBSCHED_CONFIG", str(config_file))

    assert load_settings().api.port == 9000


def test_an_explicit_file_beats_jobsched_config(
    config_file: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("JOBSCHED_CONFIG", str(config_file))
    other = _write(tmp_path, "api:\n  port: 7000\n")

    assert load_settings(other).api.port == 7000


# --- the environment ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("variable", "setting", "value"),
    [
        ("JOBSCHED_DATABASE_URL", "database.url", "postgresql://env.example/db"),
        ("JOBSCHED_QUEUE_URL", "queue.url", "amqp://guest@env.example//"),
        ("JOBSCHED_API_HOST", "api.host", "10.1.2.3"),
        ("JOBSCHED_API_PORT", "api.port", "8181"),
        ("JOBSCHED_METRICS_PORT", "metrics.port", "9101"),
        ("JOBSCHED_WORKER_CONCURRENCY", "worker.concurrency", "64"),
        ("JOBSCHED_WORKER_SHUTDOWN_GRACE_SECONDS", "worker.shutdown_grace_seconds", "2.5"),
    ],
)
def test_environment_beats_the_file(
    config_file: Path, monkeypatch: pytest.MonkeyPatch, variable: str, setting: str, value: str
) -> None:
    section, key = setting.split(".")
    from_file = getattr(getattr(load_settings(config_file), section), key)
    monkeypatch.setenv(variable, value)

    from_environment = getattr(getattr(load_settings(config_file), section), key)

    assert str(from_environment) == value
    assert from_environment != from_file


def test_environment_beats_the_defaults(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JOBSCHED_API_PORT", "8282")

    assert load_settings().api.port == 8282


def test_one_variable_keeps_the_other_file_keys_of_its_section(
    config_file: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("JOBSCHED_DATABASE_URL", "postgresql://env.example/db")
    monkeypatch.setenv("JOBSCHED_API_PORT", "8181")
    monkeypatch.setenv("JOBSCHED_WORKER_SHUTDOWN_GRACE_SECONDS", "3")

    settings = load_settings(config_file)

    assert settings.database.url == "postgresql://env.example/db"
    assert settings.database.pool_size == 25
    assert settings.api.port == 8181
    assert (settings.api.host, settings.api.page_size_max) == ("0.0.0.0", 100)
    assert settings.worker.shutdown_grace_seconds == 3.0
    assert settings.worker.concurrency == 4
    assert settings.worker.queues == ["emails", "reports"]


def test_unrelated_jobsched_variables_are_ignored(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JOBSCHED_TEST_POSTGRES_URL", "postgresql://elsewhere/db")

    assert load_settings() == Settings()


# --- refusals ----------------------------------------------------------------------


@pytest.mark.parametrize(
    ("variable", "value", "setting"),
    [
        ("JOBSCHED_API_PORT", "eighty", "api.port"),
        ("JOBSCHED_API_PORT", "70000", "api.port"),
        ("JOBSCHED_METRICS_PORT", "-1", "metrics.port"),
        ("JOBSCHED_WORKER_CONCURRENCY", "0", "worker.concurrency"),
        ("JOBSCHED_WORKER_SHUTDOWN_GRACE_SECONDS", "-5", "worker.shutdown_grace_seconds"),
        ("JOBSCHED_WORKER_SHUTDOWN_GRACE_SECONDS", "soon", "worker.shutdown_grace_seconds"),
        ("JOBSCHED_API_BOGUS", "1", "api.bogus"),
    ],
)
def test_a_bad_environment_value_names_the_setting(
    monkeypatch: pytest.MonkeyPatch, variable: str, value: str, setting: str
) -> None:
    monkeypatch.setenv(variable, value)

    with pytest.raises(ConfigurationError, match=rf"\b{setting}\b"):
        load_settings()


@pytest.mark.parametrize(
    ("text", "setting"),
    [
        ("database:\n  pool_size: 0\n", "database.pool_size"),
        ("queue:\n  poll_interval_seconds: 0\n", "queue.poll_interval_seconds"),
        ("worker:\n  queues: []\n", "worker.queues"),
        ("jobs:\n  retry:\n    backoff: linear\n", "jobs.retry.backoff"),
        ("logging:\n  level: LOUD\n", "logging.level"),
        ("api: 8080\n", "api"),
    ],
)
def test_a_bad_file_value_names_the_setting(tmp_path: Path, text: str, setting: str) -> None:
    with pytest.raises(ConfigurationError, match=rf"\b{setting}\b"):
        load_settings(_write(tmp_path, text))


@pytest.mark.parametrize(
    ("text", "setting"),
    [
        ("api:\n  prot: 8080\n", "api.prot"),
        ("databse:\n  url: sqlite:///x.db\n", "databse"),
        ("jobs:\n  retry:\n    attempts: 3\n", "jobs.retry.attempts"),
    ],
)
def test_unknown_keys_in_the_file_are_refused(tmp_path: Path, text: str, setting: str) -> None:
    with pytest.raises(ConfigurationError, match=rf"\b{setting}\b"):
        load_settings(_write(tmp_path, text))


def test_a_missing_file_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="cannot read config file"):
        load_settings(tmp_path / "absent.yaml")


def test_a_directory_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="cannot read config file"):
        load_settings(tmp_path)


def test_a_missing_file_named_by_jobsched_config_is_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("JOBSCHED_CONFIG", str(tmp_path / "absent.yaml"))

    with pytest.raises(ConfigurationError, match=re.escape("absent.yaml")):
        load_settings()


def test_a_file_that_is_not_yaml_is_refused(tmp_path: Path) -> None:
    with pytest.raises(ConfigurationError, match="not valid YAML"):
        load_settings(_write(tmp_path, "api: [port: 8080\n"))


def test_a_file_that_is_not_text_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "config.yaml"
    path.write_bytes(b"\xff\xfe\x00\x81 binary")

    with pytest.raises(ConfigurationError, match=re.escape("config.yaml")):
        load_settings(path)


@pytest.mark.parametrize("text", ["- database\n- api\n", "just a string\n", "42\n"])
def test_a_file_that_is_not_a_mapping_is_refused(tmp_path: Path, text: str) -> None:
    with pytest.raises(ConfigurationError, match="mapping"):
        load_settings(_write(tmp_path, text))


@pytest.mark.parametrize(
    ("variable", "value", "path", "expected"),
    [
        ("JOBSCHED_WORKER_SHELL_ENABLED", "true", ("worker", "shell", "enabled"), True),
        ("JOBSCHED_JOBS_RETRY_MAX_ATTEMPTS", "7", ("jobs", "retry", "max_attempts"), 7),
        (
            "JOBSCHED_WORKER_SHELL_ENV_ALLOWLIST",
            "PATH, HOME",
            ("worker", "shell", "env_allowlist"),
            ["PATH", "HOME"],
        ),
        ("JOBSCHED_WORKER_QUEUES", "default", ("worker", "queues"), ["default"]),
        ("JOBSCHED_WORKER_QUEUES", "a,b", ("worker", "queues"), ["a", "b"]),
        ("JOBSCHED_WORKER_QUEUES", '["a", "b"]', ("worker", "queues"), ["a", "b"]),
        ("JOBSCHED_JOBS_TIMEOUT_SECONDS", "null", ("jobs", "timeout_seconds"), None),
        (
            "JOBSCHED_WORKER_HTTP_RESPONSE_BYTES_MAX",
            "10",
            ("worker", "http_response_bytes_max"),
            10,
        ),
    ],
)
def test_nested_and_list_settings_come_from_the_environment(
    monkeypatch: pytest.MonkeyPatch,
    variable: str,
    value: str,
    path: tuple[str, ...],
    expected: object,
) -> None:
    monkeypatch.setenv(variable, value)

    found: object = load_settings()
    for key in path:
        found = getattr(found, key)
    assert found == expected


def test_an_unknown_nested_key_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("JOBSCHED_WORKER_SHELL_ENABLD", "true")

    with pytest.raises(ConfigurationError, match=r"worker\.shell\.enabld"):
        load_settings()


def test_a_nested_variable_overrides_only_its_key_of_the_file(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    path = tmp_path / "c.yaml"
    path.write_text("jobs:\n  retry:\n    max_attempts: 4\n    backoff: fixed\n")
    monkeypatch.setenv("JOBSCHED_JOBS_RETRY_MAX_ATTEMPTS", "9")

    retry = load_settings(path).jobs.retry
    assert (retry.max_attempts, retry.backoff) == (9, "fixed")
