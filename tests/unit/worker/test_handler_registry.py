"""The handler registry: registering, refusing clashes, importing handler modules."""

from __future__ import annotations

import functools
import sys
import uuid
from pathlib import Path

import pytest

import jobsched
from jobsched.core.errors import HandlerError
from jobsched.core.models import JsonObject
from jobsched.worker.context import RunContext
from jobsched.worker.registry import (
    HandlerOptions,
    HandlerRegistry,
    default_registry,
    import_handler_modules,
    is_async_handler,
)


async def async_handler(payload: JsonObject, context: RunContext) -> None:
    return None


def sync_handler(payload: JsonObject, context: RunContext) -> JsonObject:
    return {}


def test_builtins_are_registered() -> None:
    registry = HandlerRegistry()
    assert registry.type_names() == ["http", "noop"]
    assert "http" in registry
    assert HandlerRegistry(builtins=False).type_names() == []


def test_register_and_look_up() -> None:
    registry = HandlerRegistry(builtins=False)
    registry.register("email", async_handler)
    assert registry.get("email") is async_handler
    assert registry.lookup("email") is async_handler
    assert registry.get("sms") is None


def test_lookup_of_unknown_type_names_it() -> None:
    with pytest.raises(HandlerError, match="no handler registered for type 'sms'"):
        HandlerRegistry().lookup("sms")


def test_registering_the_same_function_again_is_harmless() -> None:
    registry = HandlerRegistry(builtins=False)
    registry.register("email", async_handler)
    registry.register("email", async_handler)
    assert registry.get("email") is async_handler


def test_another_function_for_a_taken_name_is_refused() -> None:
    registry = HandlerRegistry(builtins=False)
    registry.register("email", async_handler)
    with pytest.raises(HandlerError, match="type 'email' already has a handler") as raised:
        registry.register("email", sync_handler)
    assert "async_handler" in str(raised.value)
    assert "sync_handler" in str(raised.value)
    assert registry.get("email") is async_handler


def test_builtin_names_cannot_be_taken() -> None:
    with pytest.raises(HandlerError, match="'http' already has a handler"):
        HandlerRegistry().register("http", sync_handler)


@pytest.mark.parametrize("bad_name", ["", "   ", "x" * 201])
def test_bad_type_names_are_refused(bad_name: str) -> None:
    with pytest.raises(HandlerError):
        HandlerRegistry().register(bad_name, sync_handler)


def test_non_callables_are_refused() -> None:
    with pytest.raises(HandlerError, match="not callable"):
        HandlerRegistry().register("thing", "not a function")  # type: ignore[arg-type]


def test_decorator_registers_and_returns_the_function() -> None:
    registry = HandlerRegistry()

    @registry.handler("report")
    def report(payload: JsonObject, context: RunContext) -> None:
        return None

    assert registry.get("report") is report
    assert report({}, None) is None  # type: ignore[arg-type]  # still the plain function


def test_package_level_decorator_uses_the_default_registry() -> None:
    type_name = f"email_notification_{uuid.uuid4().hex[:8]}"

    @jobsched.handler(type_name)
    async def send(payload: JsonObject, context: RunContext) -> None:
        return None

    assert default_registry.get(type_name) is send


def test_async_handlers_are_told_apart_from_sync_ones() -> None:
    class AsyncCallable:
        async def __call__(self, payload: JsonObject, context: RunContext) -> None:
            return None

    class SyncCallable:
        def __call__(self, payload: JsonObject, context: RunContext) -> None:
            return None

    assert is_async_handler(async_handler)
    assert is_async_handler(functools.partial(async_handler))
    assert is_async_handler(AsyncCallable())
    assert not is_async_handler(sync_handler)
    assert not is_async_handler(SyncCallable())
    assert not is_async_handler(lambda payload, context: None)


@pytest.fixture
def module_dir(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.syspath_prepend(str(tmp_path))
    return tmp_path


def test_import_handler_modules_runs_their_registrations(module_dir: Path) -> None:
    module = f"handlers_{uuid.uuid4().hex[:8]}"
    type_name = f"imported_{uuid.uuid4().hex[:8]}"
    (module_dir / f"{module}.py").write_text(
        "import jobsched\n"
        f"@jobsched.handler({type_name!r})\n"
        "def imported(payload, context):\n"
        "    return None\n"
    )
    try:
        import_handler_modules([module])
        assert default_registry.get(type_name) is sys.modules[module].imported
    finally:
        sys.modules.pop(module, None)


def test_missing_module_is_one_line_handler_error() -> None:
    with pytest.raises(HandlerError) as raised:
        import_handler_modules(["no_such_module_for_jobsched_tests"])
    message = str(raised.value)
    assert message.startswith("cannot import handler module 'no_such_module_for_jobsched_tests'")
    assert "ModuleNotFoundError" in message
    assert "\n" not in message


def test_module_failing_at_import_is_one_line_handler_error(module_dir: Path) -> None:
    module = f"broken_{uuid.uuid4().hex[:8]}"
    (module_dir / f"{module}.py").write_text("x = (\n  1 +\n")  # a syntax error over lines
    with pytest.raises(HandlerError, match=f"cannot import handler module '{module}'") as raised:
        import_handler_modules([module])
    assert "SyntaxError" in str(raised.value)
    assert "\n" not in str(raised.value)


# --- options: isolation, retry_on, no_retry_on ---------------------------------------


class QuotaError(Exception):
    pass


class NotWorthRetryingError(Exception):
    retryable = False


def test_options_default_to_no_isolation_and_every_failure_retried() -> None:
    registry = HandlerRegistry(builtins=False)
    registry.register("email", async_handler)
    assert registry.options("email") == HandlerOptions()
    assert registry.options("unknown") == HandlerOptions()
    assert registry.process_isolated_modules() == []


def test_options_are_kept_with_the_handler() -> None:
    registry = HandlerRegistry(builtins=False)

    @registry.handler("report", retry_on=ConnectionError)
    def report(payload: JsonObject, context: RunContext) -> None:
        return None

    assert registry.options("report") == HandlerOptions(retry_on=(ConnectionError,))
    registry.register("sync", sync_handler, isolation="process", no_retry_on=(QuotaError,))
    assert registry.options("sync") == HandlerOptions(
        isolation="process", retry_on=None, no_retry_on=(QuotaError,)
    )
    assert registry.process_isolated_modules() == [__name__]


@pytest.mark.parametrize(
    ("options", "error", "retryable"),
    [
        (HandlerOptions(), ValueError("x"), True),
        (HandlerOptions(), NotWorthRetryingError("x"), False),
        (HandlerOptions(retry_on=(NotWorthRetryingError,)), NotWorthRetryingError("x"), False),
        (HandlerOptions(no_retry_on=(QuotaError,)), QuotaError("x"), False),
        (HandlerOptions(no_retry_on=(QuotaError,)), ValueError("x"), True),
        (HandlerOptions(retry_on=(ConnectionError,)), ConnectionResetError("x"), True),
        (HandlerOptions(retry_on=(ConnectionError,)), ValueError("x"), False),
        (HandlerOptions(retry_on=()), ValueError("x"), False),
        (
            HandlerOptions(retry_on=(ConnectionError,), no_retry_on=(ConnectionResetError,)),
            ConnectionResetError("x"),
            False,
        ),
    ],
)
def test_which_failures_are_retryable(
    options: HandlerOptions, error: BaseException, retryable: bool
) -> None:
    assert options.is_retryable(error) is retryable


def test_same_function_with_other_options_is_refused() -> None:
    registry = HandlerRegistry(builtins=False)
    registry.register("email", sync_handler)
    with pytest.raises(HandlerError, match="type 'email' already has a handler"):
        registry.register("email", sync_handler, no_retry_on=(QuotaError,))
    registry.register("email", sync_handler)  # the same again is still harmless


def test_process_isolation_needs_a_module_level_function() -> None:
    registry = HandlerRegistry(builtins=False)

    def nested(payload: JsonObject, context: RunContext) -> None:
        return None

    for handler in (nested, lambda payload, context: None, functools.partial(sync_handler)):
        with pytest.raises(HandlerError, match="must be a module-level function"):
            registry.register("isolated", handler, isolation="process")
    assert "isolated" not in registry


def test_unknown_isolation_is_refused() -> None:
    with pytest.raises(HandlerError, match="isolation must be one of 'none', 'process'"):
        HandlerRegistry().register("thing", sync_handler, isolation="thread")  # type: ignore[arg-type]


def test_retry_options_take_exception_classes_only() -> None:
    with pytest.raises(HandlerError, match="take exception classes, not 'ValueError'"):
        HandlerRegistry().register("thing", sync_handler, retry_on=("ValueError",))  # type: ignore[arg-type]
    with pytest.raises(HandlerError, match="not <class 'int'>"):
        HandlerRegistry().register("thing", sync_handler, no_retry_on=int)  # type: ignore[arg-type]


def test_package_level_decorator_takes_the_options() -> None:
    type_name = f"isolated_{uuid.uuid4().hex[:8]}"
    jobsched.handler(type_name, isolation="process", no_retry_on=QuotaError)(sync_handler)
    assert default_registry.options(type_name) == HandlerOptions(
        isolation="process", no_retry_on=(QuotaError,)
    )


def test_shell_is_not_a_builtin_a_worker_must_enable_it() -> None:
    assert "shell" not in HandlerRegistry()
