"""Which function runs a job of a given ``type``.

A handler is called as ``handler(payload, context)`` and returns a JSON object (the
run's result) or None. ``async def`` handlers run on the worker's event loop;
plain functions run in a thread, so they may block.

Handler modules register on the module-level default registry with the decorator::

    import jobsched
    from jobsched.worker.context import RunContext

    @jobsched.handler("email_notification")
    async def send_email(payload: dict[str, Any], context: RunContext) -> None: ...

and the worker imports them by name (``--import`` or ``worker.imports``).
"""

from __future__ import annotations

import functools
import importlib
import inspect
from collections.abc import Awaitable, Callable, Sequence
from typing import TypeAlias, TypeVar

from jobsched.core.errors import HandlerError
from jobsched.core.models import JsonObject
from jobsched.worker.context import RunContext

HandlerResult: TypeAlias = JsonObject | None
Handler: TypeAlias = Callable[[JsonObject, RunContext], Awaitable[HandlerResult] | HandlerResult]
HandlerT = TypeVar("HandlerT", bound=Handler)

TYPE_NAME_LENGTH_MAX = 200  # the width of jobs.type


def is_async_handler(handler: Handler) -> bool:
    """Whether calling ``handler`` returns an awaitable (so it runs on the event loop)."""
    while isinstance(handler, functools.partial):
        handler = handler.func
    if inspect.iscoroutinefunction(handler):
        return True
    call = getattr(handler, "__call__", None)  # noqa: B004  # an object with async __call__
    return inspect.iscoroutinefunction(call)


class HandlerRegistry:
    """A mapping of job type to handler; the built-ins (``noop``, ``http``) are registered."""

    def __init__(self, *, builtins: bool = True) -> None:
        self._handlers: dict[str, Handler] = {}
        if builtins:
            # Imported here so that importing the registry (for the decorator) stays light.
            from jobsched.worker.handlers import builtin_handlers  # noqa: PLC0415

            for type_name, builtin in builtin_handlers().items():
                self.register(type_name, builtin)

    def register(self, type_name: str, handler: Handler) -> None:
        """Register ``handler`` for ``type_name``.

        Registering the same function again is a no-op (a module imported twice);
        a different function for a taken name raises ``HandlerError``.
        """
        _check_type_name(type_name)
        if not callable(handler):
            raise HandlerError(f"handler for type {type_name!r} is not callable: {handler!r}")
        existing = self._handlers.get(type_name)
        if existing is not None and existing is not handler:
            raise HandlerError(
                f"type {type_name!r} already has a handler ({_describe(existing)}); "
                f"cannot register {_describe(handler)}"
            )
        self._handlers[type_name] = handler

    def handler(self, type_name: str) -> Callable[[HandlerT], HandlerT]:
        """Decorator form of ``register``; returns the function unchanged."""

        def decorate(function: HandlerT) -> HandlerT:
            self.register(type_name, function)
            return function

        return decorate

    def get(self, type_name: str) -> Handler | None:
        return self._handlers.get(type_name)

    def lookup(self, type_name: str) -> Handler:
        """The handler of ``type_name``, or ``HandlerError``."""
        found = self._handlers.get(type_name)
        if found is None:
            raise HandlerError(f"no handler registered for type {type_name!r}")
        return found

    def type_names(self) -> list[str]:
        return sorted(self._handlers)

    def __contains__(self, type_name: object) -> bool:
        return type_name in self._handlers


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


def handler(type_name: str) -> Callable[[HandlerT], HandlerT]:
    """Register the decorated function on the default registry for jobs of ``type_name``."""
    return default_registry.handler(type_name)


def import_handler_modules(names: Sequence[str]) -> None:
    """Import the modules that register handlers; ``HandlerError`` (one line) if one fails."""
    for name in names:
        try:
            importlib.import_module(name)
        except Exception as error:  # any failure of user code becomes one line
            detail = " ".join(f"{type(error).__name__}: {error}".split())
            raise HandlerError(f"cannot import handler module {name!r}: {detail}") from error
