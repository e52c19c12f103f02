"""``shell``: run a command on the worker's host. Disabled unless ``worker.shell.enabled``.

Payload::

    {"command": ["pg_dump", "--format=custom", "appdb"],  # required: the argv
     "cwd": "/var/backups",                              # default: the worker's
     "env": {"TZ": "Europe/Paris"},                      # names in worker.shell.env_allowlist
     "timeout_seconds": 600}                             # default: the run's timeout only

The command is executed directly, never through a shell: no globbing, pipes or
variable expansion, so a payload value cannot inject a second command (to use a
shell, say so: ``["/bin/sh", "-c", "..."]``). It runs in a session of its own with
stdin closed and only the allowlisted environment variables (the worker's values,
overridden by the payload's ``env``): the worker's own secrets, its database URL
say, are not handed to commands.

Exit code 0 succeeds with the result ``{"exit_code": 0, "stdout": "...", "stderr":
"...", "stdout_truncated": false, "stderr_truncated": false}``; only the last
``worker.shell.output_bytes_max`` bytes of each stream are kept. A non-zero exit
fails the attempt (retried by policy) with the exit code and the end of stderr in
the error, and the output as the attempt's result. On timeout, cancellation or a
lost lease the command's whole process group is killed. A payload the handler
cannot use, or a command that cannot be started (no such program), ends the run
dead.
"""

from __future__ import annotations

import asyncio
import contextlib
import math
import os
import signal
from dataclasses import dataclass

from jobsched.config.settings import ShellSettings
from jobsched.core.errors import JobschedError
from jobsched.core.models import JsonObject
from jobsched.worker.context import RunContext
from jobsched.worker.errors import InvalidPayloadError, NonRetryableError, UnstorableResultError

PAYLOAD_KEYS = frozenset({"command", "cwd", "env", "timeout_seconds"})
# How much of stderr the error message of a failed command quotes.
ERROR_STDERR_CHARACTERS = 1000
# After the command exits, how long its output may take to drain (a grandchild that
# left the process group may still hold the pipes open).
OUTPUT_DRAIN_SECONDS = 1.0


class ShellCommandError(JobschedError):
    """The command exited with a non-zero code (retried by the run's policy)."""

    def __init__(self, exit_code: int, stderr: str) -> None:
        self.exit_code = exit_code
        tail = stderr[-ERROR_STDERR_CHARACTERS:].strip()
        super().__init__(f"command exited with code {exit_code}" + (f": {tail}" if tail else ""))


class ShellTimeoutError(JobschedError):
    """The command ran past the payload's ``timeout_seconds`` and was killed."""


class CommandNotStartedError(NonRetryableError):
    """The command could not be started: no such program or directory, not executable."""


@dataclass(frozen=True, slots=True)
class ShellCommand:
    """A validated ``shell`` payload; ``env`` is the command's whole environment."""

    argv: list[str]
    cwd: str | None
    env: dict[str, str]
    timeout_seconds: float | None


@dataclass
class _Output:
    """The end of one output stream, at most ``bytes_max`` bytes, and whether more came."""

    bytes_max: int
    kept: bytearray
    truncated: bool = False

    def add(self, chunk: bytes) -> None:
        self.kept.extend(chunk)
        if len(self.kept) > self.bytes_max:
            del self.kept[: len(self.kept) - self.bytes_max]
            self.truncated = True

    def text(self) -> str:
        # PostgreSQL text and JSONB cannot hold NUL; a binary output must still be recordable.
        return self.kept.decode("utf-8", errors="replace").replace("\x00", "\ufffd")


def parse_shell_payload(
    payload: JsonObject, *, env_allowlist: list[str], worker_env: dict[str, str]
) -> ShellCommand:
    """Validate a ``shell`` payload; ``InvalidPayloadError`` names the first key at fault."""
    if not isinstance(payload, dict):
        raise InvalidPayloadError("", "must be a JSON object")
    unknown = sorted(set(payload) - PAYLOAD_KEYS)
    if unknown:
        raise InvalidPayloadError(
            unknown[0], f"unknown key; the shell handler takes {', '.join(sorted(PAYLOAD_KEYS))}"
        )
    return ShellCommand(
        argv=_parse_command(payload.get("command")),
        cwd=_parse_cwd(payload.get("cwd")),
        env=_command_env(payload.get("env", {}), env_allowlist, worker_env),
        timeout_seconds=_parse_timeout(payload.get("timeout_seconds")),
    )


def _parse_command(value: object) -> list[str]:
    if value is None:
        raise InvalidPayloadError("command", "is required: a list of strings, the program first")
    if not isinstance(value, list) or not value:
        raise InvalidPayloadError("command", "must be a non-empty list of strings")
    for index, argument in enumerate(value):
        if not isinstance(argument, str) or "\x00" in argument:
            raise InvalidPayloadError(f"command.{index}", "must be a string without NUL")
    if not value[0]:
        raise InvalidPayloadError("command.0", "must name a program")
    return list(value)


def _parse_cwd(value: object) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value or "\x00" in value:
        raise InvalidPayloadError("cwd", "must be a non-empty path")
    return value


def _command_env(
    value: object, env_allowlist: list[str], worker_env: dict[str, str]
) -> dict[str, str]:
    if not isinstance(value, dict):
        raise InvalidPayloadError("env", "must be an object of variable names to strings")
    allowed = set(env_allowlist)
    env = {name: worker_env[name] for name in env_allowlist if name in worker_env}
    for name, text in value.items():
        if name not in allowed:
            raise InvalidPayloadError(
                f"env.{name}", "is not in this worker's worker.shell.env_allowlist"
            )
        if not isinstance(text, str) or "\x00" in text:
            raise InvalidPayloadError(f"env.{name}", "must be a string without NUL")
        env[name] = text
    return env


def _parse_timeout(value: object) -> float | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise InvalidPayloadError("timeout_seconds", "must be a number of seconds")
    if not math.isfinite(value) or value <= 0:
        raise InvalidPayloadError("timeout_seconds", "must be greater than 0")
    return float(value)


async def shell_handler(payload: JsonObject, context: RunContext) -> JsonObject:
    """Run the payload's command; succeed on exit code 0."""
    settings = _settings(context)
    command = parse_shell_payload(
        payload, env_allowlist=settings.env_allowlist, worker_env=dict(os.environ)
    )
    process = await _start(command)
    stdout = _Output(settings.output_bytes_max, bytearray())
    stderr = _Output(settings.output_bytes_max, bytearray())
    try:
        exit_code = await _wait(process, command, stdout, stderr)
    finally:
        await _kill_group(process)
    output: JsonObject = {
        "exit_code": exit_code,
        "stdout": stdout.text(),
        "stderr": stderr.text(),
        "stdout_truncated": stdout.truncated,
        "stderr_truncated": stderr.truncated,
    }
    if exit_code != 0:
        _set_failure_result(context, output)
        raise ShellCommandError(exit_code, output["stderr"])
    return output


def _settings(context: RunContext) -> ShellSettings:
    if context.resources is not None and context.resources.shell is not None:
        return context.resources.shell
    return ShellSettings()  # outside a worker (a test, a script): the defaults


async def _start(command: ShellCommand) -> asyncio.subprocess.Process:
    try:
        return await asyncio.create_subprocess_exec(
            *command.argv,
            cwd=command.cwd,
            env=command.env,
            stdin=asyncio.subprocess.DEVNULL,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
            # Its own process group: a timeout or cancellation kills what it started too.
            start_new_session=True,
        )
    except OSError as error:
        raise CommandNotStartedError(
            f"cannot start {command.argv[0]!r}: {error.strerror or error}"
        ) from error


async def _wait(
    process: asyncio.subprocess.Process, command: ShellCommand, stdout: _Output, stderr: _Output
) -> int:
    """The exit code, once the command exited and its output is read (bounded)."""
    assert process.stdout is not None
    assert process.stderr is not None
    readers = [
        asyncio.ensure_future(_read_into(process.stdout, stdout)),
        asyncio.ensure_future(_read_into(process.stderr, stderr)),
    ]
    try:
        try:
            exit_code = await asyncio.wait_for(process.wait(), command.timeout_seconds)
        except TimeoutError:
            raise ShellTimeoutError(
                f"command timed out after {command.timeout_seconds:g}s and was killed"
            ) from None
        await asyncio.wait(readers, timeout=OUTPUT_DRAIN_SECONDS)
        return exit_code
    finally:
        for reader in readers:
            reader.cancel()
        await asyncio.gather(*readers, return_exceptions=True)


async def _read_into(stream: asyncio.StreamReader, output: _Output) -> None:
    while chunk := await stream.read(65536):
        output.add(chunk)


async def _kill_group(process: asyncio.subprocess.Process) -> None:
    """Kill the command's process group unless the command exited; reap the command.

    After a normal exit the group is left alone: its id may be free for reuse, and a
    command may leave a daemon behind on purpose.
    """
    if process.returncode is None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.killpg(process.pid, signal.SIGKILL)
    await process.wait()


def _set_failure_result(context: RunContext, output: JsonObject) -> None:
    """Record the output of a failed command, cut further if it is over the result bound."""
    characters = max(len(output["stdout"]), len(output["stderr"]))
    while True:
        try:
            context.set_result(output)
            return
        except UnstorableResultError:
            if characters == 0:
                return
            characters //= 2
            for stream in ("stdout", "stderr"):
                if len(output[stream]) > characters:
                    output[stream] = output[stream][-characters:] if characters else ""
                    output[f"{stream}_truncated"] = True
