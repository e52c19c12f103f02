"""Which function runs a job of a given ``type``, and how.

A handler is called as ``handler(payload, context)`` and returns a JSON object (the
run's result) or None. Where it runs is its ``isolation``:

* ``"none"`` (the default): in the worker process. ``async def`` handlers run on
  the worker's event loop (they must not block it: a CPU-bound loop there would
  stall every other run and the heartbeats); plain functions run in a thread of
  their own, so they may block.
* ``"process"``: in a child process of its own, for CPU-bound work (no GIL shared
  with the worker) or code that leaks. The handler must be a module-level function
  (it is pickled by reference) and the payload picklable; the child gets a
  ``RunContext`` without ``resources``. Timeouts and cancellation kill the child.

Which failures are retried: an exception with ``retryable = False``
(``NonRetryableError``) never is; one matching ``no_retry_on`` ends the run dead at
once; with ``retry_on`` given, only matching exceptions are retried. Timeouts are
always retried by the run's policy.

Handler modules register on the module-level default registry with the decorator::

    import jobsched
    from jobsched.worker.context import RunContext

    @jobsched.handler("email_notification", no_retry_on=(RecipientUnknown,))
    async def send_email(payload: dict[str, Any], context: RunContext) -> None: ...

    @jobsched.handler("render_report", isolation="process")
    def render_report(payload: dict[str, Any], context: RunContext) -> dict[str, Any]: ...

and the worker imports them by name (``--import`` or ``worker.imports``).
"""

from __future__ import annotations

import functools
import importlib
import inspect
import os
import sys
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from typing import Literal, TypeAlias, TypeVar, get_args

from jobsched.core.errors import HandlerError
from jobsched.core.models import JsonObject
from jobsched.worker.context import RunContext

HandlerResult: TypeAlias = JsonObject | None
Handler: TypeAlias = Callable[[JsonObject, RunContext], Awaitable[HandlerResult] | HandlerResult]
HandlerT = TypeVar("HandlerT", bound=Handler)
Isolation: TypeAlias = Literal["none", "process"]
ExceptionTypes: TypeAlias = type[BaseException] | tuple[type[BaseException], ...]

TYPE_NAME_LENGTH_MAX = 200  # the width of jobs.type


@dataclass(frozen=True, slots=True)
class HandlerOptions:
    """How a handler runs and which of its failures are retried (see the module docstring)."""

    isolation: Isolation = "none"
    retry_on: tuple[type[BaseException], ...] | None = None
    no_retry_on: tuple[type[BaseException], ...] = ()

    def is_retryable(self, error: BaseException) -> bool:
        """Whether the run may be tried again after ``error`` (its policy permitting)."""
        if getattr(error, "retryable", True) is False:
            return False
        if isinstance(error, self.no_retry_on):
            return False
        return self.retry_on is None or isinstance(error, self.retry_on)


DEFAULT_OPTIONS = HandlerOptions()


def is_async_handler(handler: Handler) -> bool:
    """Whether calling ``handler`` returns an awaitable (so it runs on the event loop)."""
    while isinstance(handler, functools.partial):
        handler = handler.func
    if inspect.iscoroutinefunction(handler):
        return True
    call = getattr(handler, "__call__", None)  # noqa: B004  # an object with async __call__
    return inspect.iscoroutinefunction(call)


class HandlerRegistry:
    """A mapping of job type to handler and its options; ``noop`` and ``http`` are built in.

    The ``shell`` built-in is registered by a worker configured with
    ``worker.shell.enabled``, never by default.
    """

    def __init__(self, *, builtins: bool = True) -> None:
        self._handlers: dict[str, Handler] = {}
        self._options: dict[str, HandlerOptions] = {}
        if builtins:
            # Imported here so that importing the registry (for the decorator) stays light.
            from jobsched.worker.handlers import builtin_handlers  # noqa: PLC0415

            for type_name, builtin in builtin_handlers().items():
                self.register(type_name, builtin)

    def register(
        self,
        type_name: str,
        handler: Handler,
        *,
        isolation: Isolation = "none",
        retry_on: ExceptionTypes | None = None,
        no_retry_on: ExceptionTypes = (),
    ) -> None:
        """Register ``handler`` for ``type_name`` with the given options.

        Registering the same function again with the same options is a no-op (a
        module imported twice); anything else for a taken name raises ``HandlerError``,
        as do options that cannot work (``isolation="process"`` for a function that
        cannot be pickled by reference, ``retry_on`` naming something not an exception).
        """
        _check_type_name(type_name)
        if not callable(handler):
            raise HandlerError(f"handler for type {type_name!r} is not callable: {handler!r}")
        options = HandlerOptions(
            isolation=_check_isolation(type_name, handler, isolation),
            retry_on=None if retry_on is None else _exception_types(type_name, retry_on),
            no_retry_on=_exception_types(type_name, no_retry_on),
        )
        existing = self._handlers.get(type_name)
        if existing is not None and (
            existing is not handler or self._options[type_name] != options
        ):
            raise HandlerError(
                f"type {type_name!r} already has a handler ({_describe(existing)}); "
                f"cannot register {_describe(handler)}"
            )
        self._handlers[type_name] = handler
        self._options[type_name] = options

    def handler(
        self,
        type_name: str,
        *,
        isolation: Isolation = "none",
        retry_on: ExceptionTypes | None = None,
        no_retry_on: ExceptionTypes = (),
    ) -> Callable[[HandlerT], HandlerT]:
        """Decorator form of ``register``; returns the function unchanged."""

        def decorate(function: HandlerT) -> HandlerT:
            self.register(
                type_name, function, isolation=isolation, retry_on=retry_on, no_retry_on=no_retry_on
            )
            return function

        return decorate

    def get(self, type_name: str) -> Handler | None:
        return self._handlers.get(type_name)

    def options(self, type_name: str) -> HandlerOptions:
        """The options ``type_name`` was registered with (the defaults if it was not)."""
        return self._options.get(type_name, DEFAULT_OPTIONS)

    def lookup(self, type_name: str) -> Handler:
        """The handler of ``type_name``, or ``HandlerError``."""
        found = self._handlers.get(type_name)
        if found is None:
            raise HandlerError(f"no handler registered for type {type_name!r}")
        return found

    def type_names(self) -> list[str]:
        return sorted(self._handlers)

    def process_isolated_modules(self) -> list[str]:
        """The modules defining handlers with ``isolation="process"`` (children import them)."""
        return sorted(
            {
                getattr(self._handlers[type_name], "__module__", None) or ""
                for type_name, options in self._options.items()
                if options.isolation == "process"
            }
            - {""}
        )

    def __contains__(self, type_name: object) -> bool:
        return type_name in self._handlers


def _check_isolation(type_name: str, handler: Handler, isolation: object) -> Isolation:
    if isolation == "none":
        return "none"
    if isolation != "process":
        choices = ", ".join(repr(choice) for choice in get_args(Isolation))
        raise HandlerError(f"type {type_name!r}: isolation must be one of {choices}")
    qualified_name = getattr(handler, "__qualname__", "")
    if not inspect.isfunction(handler) or "<" in qualified_name:  # <locals>, <lambda>
        raise HandlerError(
            f"type {type_name!r}: a handler with isolation='process' must be a module-level "
            f"function (it is pickled by reference into the child), not {_describe(handler)}"
        )
    return "process"


def _exception_types(type_name: str, value: object) -> tuple[type[BaseException], ...]:
    types = value if isinstance(value, tuple) else (value,)
    for item in types:
        if not (isinstance(item, type) and issubclass(item, BaseException)):
            raise HandlerError(
                f"type {type_name!r}: retry_on and no_retry_on take exception classes, not {item!r}"
            )
    return types


def _check_type_name(type_name: str) -> None:
    if not isinstance(type_name, str) or not type_name.strip():
        raise HandlerError(f"a handler type must be a non-empty string, not {type_name!r}")
    if len(type_name) > TYPE_NAME_LENGTH_MAX:
        raise HandlerError(f"handler type {type_name[:40]!r}... is over 200 characters")


def _describe(handler: Handler) -> str:
    module = getattr(handler, "__module__", None) or "?"
    name = getattr(handler, "__qualname__", None) or type(handler).__qualname__
    return f"{module}.{name}"


default_registry = HandlerRegistry()


def handler(
    type_name: str,
    *,
    isolation: Isolation = "none",
    retry_on: ExceptionTypes | None = None,
    no_retry_on: ExceptionTypes = (),
) -> Callable[[HandlerT], HandlerT]:
    """Register the decorated function on the default registry for jobs of ``type_name``.

    ``isolation``, ``retry_on`` and ``no_retry_on`` are described in the module docstring.
    """
    return default_registry.handler(
        type_name, isolation=isolation, retry_on=retry_on, no_retry_on=no_retry_on
    )


def import_handler_modules(names: Sequence[str]) -> None:
    """Import the modules that register handlers; ``HandlerError`` (one line) if one fails.

    The current directory is searched first, as ``python -m`` does, so that
    ``--import myapp.handlers`` finds ``./myapp`` without ``PYTHONPATH=.``.
    """
    if names and "" not in sys.path and os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    for name in names:
        try:
            importlib.import_module(name)
        except Exception as error:  # any failure of user code becomes one line
            detail = " ".join(f"{type(error).__name__}: {error}".split())
            raise HandlerError(f"cannot import handler module {name!r}: {detail}") from error
