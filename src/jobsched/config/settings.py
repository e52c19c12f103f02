"""Settings: defaults, then a YAML file, then ``JOBSCHED_*`` environment variables.

Environment variables name a section and its keys joined by ``_``:
``JOBSCHED_DATABASE_URL`` is ``database.url``, ``JOBSCHED_WORKER_CONCURRENCY`` is
``worker.concurrency``, and nested sections go deeper the same way:
``JOBSCHED_WORKER_SHELL_ENABLED`` is ``worker.shell.enabled`` and
``JOBSCHED_JOBS_RETRY_MAX_ATTEMPTS`` is ``jobs.retry.max_attempts``. A list takes JSON
(``["a", "b"]``) or comma-separated values (``a,b``); other structured values take JSON.
``config/config.yaml.example`` documents every setting.
"""

from __future__ import annotations

import json
import os
import re
import socket
import types
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal, Union, get_args, get_origin

import yaml
from pydantic import (
    BaseModel,
    ConfigDict,
    Field,
    ValidationError,
    field_validator,
    model_validator,
)
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
)

from jobsched.core.errors import ConfigurationError
from jobsched.core.models import RetryPolicy
from jobsched.core.network_policy import NetworkPolicy, parse_network
from jobsched.core.planning import MisfireLimits
from jobsched.core.redaction import DEFAULT_REDACT_HEADER_PATTERN
from jobsched.core.webhooks import EVENT_TYPES, decode_secret

DEFAULT_SQLITE_URL = "sqlite:///./data/jobsched.db"


class Section(BaseModel):
    model_config = ConfigDict(extra="forbid")


class DatabaseSettings(Section):
    url: str = DEFAULT_SQLITE_URL
    pool_size: int = Field(default=10, ge=1, le=200)


class QueueSettings(Section):
    # None (or a postgresql:// / sqlite:// URL) means the database itself is the queue;
    # redis://... selects Redis Streams, amqp://... RabbitMQ.
    url: str | None = None
    poll_interval_seconds: float = Field(default=0.2, gt=0, le=60)
    # Prefix of every Redis key and RabbitMQ queue/exchange name, so several
    # deployments (or test runs) can share one broker.
    namespace: str = Field(default="jobsched", min_length=1, max_length=100)
    # Redis: a delivery held this long by a consumer that never acknowledged it
    # (its worker died) is claimed by another consumer.
    redis_reclaim_idle_seconds: float = Field(default=60.0, gt=0)
    # Redis: approximate cap on each stream's length; only acknowledged entries are trimmed.
    redis_stream_max_length: int = Field(default=100_000, ge=1000)
    # RabbitMQ: "classic" queues with x-max-priority, or "quorum" queues; "auto"
    # picks quorum on servers whose quorum queues honour priorities (4.0+).
    rabbitmq_queue_type: Literal["auto", "classic", "quorum"] = "auto"
    # Reconnection backoff after a broker outage (doubles up to this cap).
    reconnect_backoff_max_seconds: float = Field(default=5.0, gt=0)


class CacheSettings(Section):
    # Redis URL of the API's job cache (GET /jobs/{id}); None: no cache.
    url: str | None = None
    # How old a cached job may get. API writes are never served stale whatever this
    # is; the scheduler's fields (next_run_at, last_fired_at, status) may lag by it.
    # 10 s still spares the database all but one read per job per 10 s.
    ttl_seconds: float = Field(default=10.0, gt=0)


class ConfigToken(Section):
    """An API token defined by configuration (a Kubernetes secret, say), not the database.

    Give the SHA-256 of the token (``token_hash``, hex) or a file holding the token
    itself (``token_file``, read at start). Such a token is revoked by removing it.
    """

    name: str = Field(min_length=1, max_length=200)
    role: Literal["read", "operate", "write", "admin"]
    queues: list[str] | None = Field(default=None, min_length=1)
    token_hash: str | None = Field(default=None, pattern=r"^[0-9a-fA-F]{64}$")
    token_file: Path | None = None

    @model_validator(mode="after")
    def _one_secret(self) -> ConfigToken:
        if (self.token_hash is None) == (self.token_file is None):
            raise ValueError("give exactly one of token_hash and token_file")
        return self


class AuthSettings(Section):
    # null: on unless the API listens on a loopback address only. false on any other
    # address runs an open API on the network, with a warning at every start.
    enabled: bool | None = None
    tokens: list[ConfigToken] = Field(default_factory=list)
    # How long one API process may keep a token lookup: a revocation takes effect
    # everywhere within this bound. 0: look up on every request.
    cache_seconds: float = Field(default=2.0, ge=0, le=10)
    # /metrics asks for a token (role read) when true; /healthz and /readyz never do.
    protect_metrics: bool = False


class UiSettings(Section):
    # The web dashboard at /ui/ (and / redirecting there), served by api and standalone.
    enabled: bool = True
    # How long a dashboard sign-in lasts; logging out ends it at once.
    session_seconds: int = Field(default=8 * 3600, ge=60, le=30 * 24 * 3600)
    # How often live parts of a page (overview, run progress, lists) refresh.
    refresh_seconds: float = Field(default=3.0, ge=0.5, le=3600)


class ApiSettings(Section):
    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    page_size_max: int = Field(default=500, ge=1)
    # Request bodies larger than this are refused with 413 before they are read whole;
    # POST /jobs/batch has its own, larger limit.
    max_body_bytes: int = Field(default=1024 * 1024, ge=1024)
    max_batch_body_bytes: int = Field(default=16 * 1024 * 1024, ge=1024)
    # How deeply objects and lists may nest in a request body (422 beyond).
    max_json_depth: int = Field(default=64, ge=4, le=512)
    # How long the first answer to an Idempotency-Key is kept and replayed.
    idempotency_ttl_seconds: float = Field(default=86400.0, gt=0, le=30 * 86400)
    auth: AuthSettings = Field(default_factory=AuthSettings)
    ui: UiSettings = Field(default_factory=UiSettings)


class MetricsSettings(Section):
    host: str = "127.0.0.1"
    # The scheduler's or worker's own metrics port; 0 turns the endpoint off.
    port: int = Field(default=9100, ge=0, le=65535)


class SchedulerSettings(Section):
    batch_size: int = Field(default=500, ge=1, le=10_000)
    max_sleep_seconds: float = Field(default=1.0, gt=0, le=60)
    # The shortest time from one tick's start to the next, unless a full batch shows
    # a backlog: fire times this close together are fired by one tick. Each tick
    # costs a few milliseconds of CPU however few jobs it fires; this bounds ticks
    # to 40/s by default, for up to 25 ms more lag. 0: a tick for every fire time.
    min_tick_interval_seconds: float = Field(default=0.025, ge=0, le=1)
    rescue_interval_seconds: float = Field(default=5.0, gt=0)
    # How often committed-but-unpublished runs (new, retries due, rescued) are
    # published when the queue is a broker.
    outbox_interval_seconds: float = Field(default=0.1, gt=0)
    # A fire time at most this late counts as on time and runs (jobs may set their
    # own misfire_grace_seconds); later ones follow the job's misfire_policy.
    misfire_grace_seconds: float = Field(default=60.0, ge=0)
    # misfire_policy "all": the most runs created for fire times missed beyond the grace.
    misfire_max_catch_up_runs: int = Field(default=100, ge=1, le=100_000)

    def misfire_limits(self) -> MisfireLimits:
        return MisfireLimits(
            default_grace_seconds=self.misfire_grace_seconds,
            max_catch_up_runs=self.misfire_max_catch_up_runs,
        )


class ShellSettings(Section):
    # The `shell` handler runs commands on the worker's host: off unless enabled.
    enabled: bool = False
    # The only environment variables a command gets: the worker's own values of these
    # names, overridden by a run's payload `env` (which may name no others).
    env_allowlist: list[str] = Field(
        default_factory=lambda: ["PATH", "HOME", "LANG", "LC_ALL", "TZ"]
    )
    # How much of a command's stdout, and of its stderr, is kept (the end of each).
    output_bytes_max: int = Field(default=8192, ge=0, le=1_048_576)


class HttpSettings(Section):
    """The ``http`` handler's guard and secrets (see README, Security)."""

    # CIDRs the handler may reach although they are loopback, private, link-local or
    # otherwise refused by default. None: nothing refused is admitted, except that
    # `jobsched standalone` admits loopback (127.0.0.0/8, ::1).
    allowed_networks: list[str] | None = None
    # Environment variables a header may take its value from ({"from_env": NAME}).
    env_allowlist: list[str] = Field(default_factory=list)
    # Header names (case-insensitive, whole name) whose values are shown as "***",
    # besides Authorization, Proxy-Authorization, Cookie and X-Api-Key.
    redact_header_pattern: str = DEFAULT_REDACT_HEADER_PATTERN

    @field_validator("allowed_networks")
    @classmethod
    def _networks_are_cidrs(cls, value: list[str] | None) -> list[str] | None:
        if value is not None:
            for cidr in value:
                parse_network(cidr)
        return value

    @field_validator("redact_header_pattern")
    @classmethod
    def _pattern_compiles(cls, value: str) -> str:
        try:
            re.compile(value)
        except re.error as error:
            raise ValueError(f"is not a regular expression: {error}") from error
        return value

    def network_policy(self) -> NetworkPolicy:
        return NetworkPolicy.from_cidrs(self.allowed_networks or ())


class WorkerSettings(Section):
    id: str | None = None
    concurrency: int = Field(default=10, ge=1, le=10_000)
    queues: list[str] = Field(default_factory=lambda: ["default"], min_length=1)
    imports: list[str] = Field(default_factory=list)
    lease_seconds: float = Field(default=30.0, ge=1)
    # Each heartbeat renews every held lease in one statement; it is also how soon a
    # worker notices that a run was cancelled.
    heartbeat_interval_seconds: float = Field(default=2.0, gt=0)
    shutdown_grace_seconds: float = Field(default=30.0, ge=0)
    http_response_bytes_max: int = Field(default=4096, ge=0)
    # How often CPython makes a running thread hand over the GIL (Python's default:
    # 0.005). Sync handlers spinning in pure Python take the GIL from the event loop
    # for up to this long at each of its I/O steps, so a heartbeat's few dozen steps
    # can take a second under load at 5 ms; at 1 ms it takes a few tens of
    # milliseconds. Process-wide; null leaves Python's setting alone.
    gil_switch_interval_seconds: float | None = Field(default=0.001, gt=0, le=0.1)
    shell: ShellSettings = Field(default_factory=ShellSettings)
    http: HttpSettings = Field(default_factory=HttpSettings)

    @model_validator(mode="after")
    def _lease_outlasts_heartbeats(self) -> WorkerSettings:
        # A worker stops a run whose lease it could not renew one heartbeat before the
        # lease ends; a lease shorter than three beats would leave no room for a missed one.
        if self.lease_seconds < 3 * self.heartbeat_interval_seconds:
            raise ValueError(
                f"lease_seconds ({self.lease_seconds:g}) must be at least 3 times "
                f"heartbeat_interval_seconds ({self.heartbeat_interval_seconds:g})"
            )
        return self

    def resolved_id(self) -> str:
        return self.id or f"{socket.gethostname()}-{os.getpid()}"


class RetrySettings(Section):
    max_attempts: int = Field(default=3, ge=1, le=1000)
    backoff: Literal["fixed", "exponential"] = "exponential"
    initial_delay_seconds: float = Field(default=1.0, ge=0)
    max_delay_seconds: float = Field(default=300.0, ge=0)
    jitter: bool = True

    def policy(self) -> RetryPolicy:
        return RetryPolicy(
            max_attempts=self.max_attempts,
            backoff=self.backoff,
            initial_delay_seconds=self.initial_delay_seconds,
            max_delay_seconds=self.max_delay_seconds,
            jitter=self.jitter,
        )


class JobDefaults(Section):
    queue: str = "default"
    timeout_seconds: float | None = Field(default=3600.0, gt=0)
    retry: RetrySettings = Field(default_factory=RetrySettings)
    # A job's (or a trigger's) payload, as compact UTF-8 JSON, may be at most this big.
    payload_max_bytes: int = Field(default=256 * 1024, ge=1)


class RetentionSettings(Section):
    # Finished runs (and their attempts) older than this are deleted by the
    # scheduler that leads housekeeping, in batches of batch_size.
    days: float = Field(default=30.0, gt=0)
    # Audit rows older than this are deleted the same way.
    audit_days: float = Field(default=365.0, gt=0)
    batch_size: int = Field(default=1000, ge=1, le=100_000)
    interval_seconds: float = Field(default=60.0, gt=0)


EventType = Literal["run.dead", "run.retrying", "job.fire_skipped"]


def _dead_runs_only() -> list[EventType]:
    return ["run.dead"]


class NotificationEndpoint(Section):
    """One receiver of signed Standard Webhooks events (see README, Operations)."""

    url: str = Field(pattern=r"^https?://")
    # The signing secret, ``whsec_<base64>``; or a file holding it, read at start.
    secret: str | None = None
    secret_file: Path | None = None
    events: list[EventType] = Field(default_factory=_dead_runs_only, min_length=1)
    # Only runs (or jobs) of these queues and job types; None: all of them.
    queues: list[str] | None = Field(default=None, min_length=1)
    types: list[str] | None = Field(default=None, min_length=1)

    @model_validator(mode="after")
    def _one_secret(self) -> NotificationEndpoint:
        if (self.secret is None) == (self.secret_file is None):
            raise ValueError("give exactly one of secret and secret_file")
        if self.secret is not None:
            decode_secret(self.secret)
        return self

    def signing_key(self) -> bytes:
        if self.secret is not None:
            return decode_secret(self.secret)
        assert self.secret_file is not None
        try:
            text = self.secret_file.read_text(encoding="utf-8").strip()
        except OSError as error:
            raise ConfigurationError(
                f"cannot read notification secret_file {self.secret_file}: {error}"
            ) from error
        try:
            return decode_secret(text)
        except ValueError as error:
            raise ConfigurationError(f"{self.secret_file}: {error}") from error

    def wants(self, event_type: str, queue: str, job_type: str) -> bool:
        return (
            event_type in self.events
            and (self.queues is None or queue in self.queues)
            and (self.types is None or job_type in self.types)
        )


class NotificationSettings(Section):
    endpoints: list[NotificationEndpoint] = Field(default_factory=list)
    # CIDRs a receiver may be on although loopback, private or link-local; as
    # worker.http.allowed_networks, but nothing refused is admitted otherwise.
    allowed_networks: list[str] | None = None
    # Delivery retries back off exponentially between these bounds; an event not
    # delivered within max_age_seconds is given up (logged and counted).
    initial_delay_seconds: float = Field(default=1.0, gt=0)
    max_delay_seconds: float = Field(default=300.0, gt=0)
    max_age_seconds: float = Field(default=86400.0, gt=0)
    timeout_seconds: float = Field(default=10.0, gt=0, le=300)
    interval_seconds: float = Field(default=0.5, gt=0)
    batch_size: int = Field(default=100, ge=1, le=10_000)

    @field_validator("allowed_networks")
    @classmethod
    def _networks_are_cidrs(cls, value: list[str] | None) -> list[str] | None:
        if value is not None:
            for cidr in value:
                parse_network(cidr)
        return value

    @field_validator("endpoints")
    @classmethod
    def _urls_are_unique(cls, value: list[NotificationEndpoint]) -> list[NotificationEndpoint]:
        # A delivery names its endpoint by URL.
        urls = [endpoint.url for endpoint in value]
        if len(set(urls)) != len(urls):
            raise ValueError("each endpoint url may appear once")
        return value

    def network_policy(self) -> NetworkPolicy:
        return NetworkPolicy.from_cidrs(self.allowed_networks or ())

    def event_types(self) -> frozenset[str]:
        """The event types some endpoint wants: storage records only these."""
        return frozenset(event for endpoint in self.endpoints for event in endpoint.events)


assert set(get_args(EventType)) == set(EVENT_TYPES)


class LoggingSettings(Section):
    level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    format: Literal["text", "json"] = "text"


ENV_PREFIX = "JOBSCHED_"


class Settings(BaseSettings):
    model_config = SettingsConfigDict(env_prefix=ENV_PREFIX, extra="forbid")

    database: DatabaseSettings = Field(default_factory=DatabaseSettings)
    queue: QueueSettings = Field(default_factory=QueueSettings)
    cache: CacheSettings = Field(default_factory=CacheSettings)
    api: ApiSettings = Field(default_factory=ApiSettings)
    metrics: MetricsSettings = Field(default_factory=MetricsSettings)
    scheduler: SchedulerSettings = Field(default_factory=SchedulerSettings)
    worker: WorkerSettings = Field(default_factory=WorkerSettings)
    jobs: JobDefaults = Field(default_factory=JobDefaults)
    retention: RetentionSettings = Field(default_factory=RetentionSettings)
    notifications: NotificationSettings = Field(default_factory=NotificationSettings)
    logging: LoggingSettings = Field(default_factory=LoggingSettings)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        # Environment beats the file (given as init values), which beats the defaults.
        return (EnvironmentSource(settings_cls, os.environ), init_settings)


class EnvironmentSource(PydanticBaseSettingsSource):
    """``JOBSCHED_<SECTION>_<KEY>[_<SUBKEY>...]`` variables as nested setting values.

    Field names contain ``_`` too, so a variable is matched against the model's own
    field names, level by level: a whole remaining name that is a field is that field,
    otherwise the longest nested section whose name starts it. Variables whose first
    word names no section (``JOBSCHED_CONFIG``, the client's ``JOBSCHED_URL``) are not
    settings; an unknown key inside a known section is kept, so that validation names
    it (``api.bogus``) instead of silently ignoring a typo.
    """

    def __init__(self, settings_cls: type[BaseSettings], environ: Mapping[str, str]) -> None:
        super().__init__(settings_cls)
        self._environ = environ

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        # Unused: __call__ reads every variable at once.
        return None, field_name, False

    def __call__(self) -> dict[str, Any]:
        values: dict[str, Any] = {}
        for variable, raw in self._environ.items():
            if not variable.upper().startswith(ENV_PREFIX):
                continue
            name = variable[len(ENV_PREFIX) :].lower()
            path = _field_path(self.settings_cls, name)
            if path is None:
                continue
            keys, field = path
            target = values
            for key in keys[:-1]:
                target = target.setdefault(key, {})
            target[keys[-1]] = _environment_value(raw, field)
        return values


def _field_path(
    model: type[BaseModel], name: str, depth: int = 0
) -> tuple[list[str], FieldInfo | None] | None:
    fields = model.model_fields
    if name in fields:
        return [name], fields[name]
    for field_name in sorted(fields, key=len, reverse=True):
        nested = _model_of(fields[field_name].annotation)
        if nested is not None and name.startswith(field_name + "_"):
            rest = _field_path(nested, name[len(field_name) + 1 :], depth + 1)
            if rest is not None:
                return [field_name, *rest[0]], rest[1]
    if depth == 0:
        return None
    # Inside a known section: keep the unknown key so that validation names it.
    return [name], None


def _model_of(annotation: Any) -> type[BaseModel] | None:
    if isinstance(annotation, type) and issubclass(annotation, BaseModel):
        return annotation
    return None


def _annotation_parts(annotation: Any) -> tuple[Any, ...]:
    if get_origin(annotation) in (Union, types.UnionType):
        return get_args(annotation)
    return (annotation,)


def _environment_value(raw: str, field: FieldInfo | None) -> Any:
    parts = _annotation_parts(field.annotation) if field is not None else ()
    text = raw.strip()
    if type(None) in parts and text.lower() in {"", "null", "none"}:
        return None
    structured = [part for part in parts if get_origin(part) in (list, dict) or _model_of(part)]
    if not structured:
        return raw
    if text.startswith(("[", "{")):
        try:
            return json.loads(text)
        except json.JSONDecodeError:
            return raw  # validation reports the value as invalid
    if any(get_origin(part) is list for part in structured):
        return [item.strip() for item in text.split(",") if item.strip()]
    return raw


def _read_yaml(path: Path) -> dict[str, Any]:
    try:
        content = yaml.safe_load(path.read_text(encoding="utf-8"))
    except OSError as error:
        raise ConfigurationError(f"cannot read config file {path}: {error.strerror}") from error
    except UnicodeDecodeError as error:
        raise ConfigurationError(f"config file {path} is not UTF-8 text: {error}") from error
    except yaml.MarkedYAMLError as error:
        line = f"line {error.problem_mark.line + 1}: " if error.problem_mark else ""
        raise ConfigurationError(
            f"config file {path} is not valid YAML: {line}{error.problem or error.context}"
        ) from error
    except yaml.YAMLError as error:
        detail = " ".join(str(error).split())
        raise ConfigurationError(f"config file {path} is not valid YAML: {detail}") from error
    if content is None:
        return {}
    if not isinstance(content, dict):
        raise ConfigurationError(f"config file {path} must hold a mapping of sections")
    return content


def load_settings(config_file: str | Path | None = None) -> Settings:
    """Load settings from ``config_file`` (or ``$JOBSCHED_CONFIG``) and the environment.

    Raises ``ConfigurationError`` naming the setting at fault.
    """
    chosen = config_file or os.environ.get("JOBSCHED_CONFIG")
    file_values = _read_yaml(Path(chosen)) if chosen else {}
    try:
        return Settings(**file_values)
    except ValidationError as error:
        first = error.errors()[0]
        location = ".".join(str(part) for part in first["loc"])
        raise ConfigurationError(f"setting {location}: {first['msg']}") from error
