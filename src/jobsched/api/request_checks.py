"""What every request is checked for before a route sees it: no hostile input goes further.

``CheckedRoute`` is the route class of every router. Before FastAPI reads the
request it refuses query parameters the route does not take, NUL characters in
query and path parameters, a body that is not ``application/json``, and a JSON
body that is malformed, not UTF-8, nested deeper than ``api.max_json_depth``,
or holds a non-finite number (``NaN``, ``Infinity``, ``1e400``) or a string (or
key) with a NUL or an unpaired surrogate anywhere, each answered as a problem
naming the field (``payload.a.b``). PostgreSQL cannot store such strings and
JSON cannot carry such numbers, so none of them reaches the database.
"""

from __future__ import annotations

import email.message
import json
import math
from collections.abc import Callable, Coroutine, Iterable
from typing import Any

from fastapi.dependencies.models import Dependant
from fastapi.routing import APIRoute
from starlette.requests import Request
from starlette.responses import Response

from jobsched.core.errors import InvalidInputError, JobschedError

JSON_DEPTH_DEFAULT = 64


class MalformedBodyError(JobschedError):
    """The body is not a JSON document at all (a 400 ``malformed-body`` problem)."""

    def __init__(self, message: str) -> None:
        self.field = "body"
        self.message = message
        super().__init__(f"body: {message}")


class UnsupportedMediaTypeError(JobschedError):
    """A body sent as something other than JSON (a 415 ``unsupported-media-type`` problem)."""

    def __init__(self, content_type: str | None) -> None:
        self.field = "Content-Type"
        self.message = f"must be application/json, not {content_type or 'missing'}"
        super().__init__(f"Content-Type: {self.message}")


def _integer(text: str) -> int | float:
    """An integer; infinity (refused by ``check_json_values``, naming its field) for one
    of more digits than Python converts (``sys.get_int_max_str_digits``)."""
    try:
        return int(text)
    except ValueError:
        return math.inf


def _printable_key(key: str) -> str:
    return key.encode("unicode_escape").decode("ascii")


def _dotted(path: tuple[str | int, ...]) -> str:
    return ".".join(str(part) for part in path) or "body"


def _string_fault(text: str) -> str | None:
    if "\x00" in text:
        return "must not contain a NUL character"
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return "must not contain an unpaired surrogate (\\ud800-\\udfff)"
    return None


def check_json_values(value: Any, max_depth: int, path: tuple[str | int, ...] = ()) -> None:
    """Refuse, naming its dotted path, a string or key that PostgreSQL or UTF-8 cannot hold,
    a non-finite number, or nesting deeper than ``max_depth``."""
    if isinstance(value, dict | list) and len(path) >= max_depth:
        raise InvalidInputError(_dotted(path), f"nests deeper than {max_depth} levels")
    if isinstance(value, str):
        fault = _string_fault(value)
        if fault is not None:
            raise InvalidInputError(_dotted(path), fault)
    elif isinstance(value, float) and not math.isfinite(value):
        raise InvalidInputError(_dotted(path), "must be a finite number")
    elif isinstance(value, dict):
        for key, item in value.items():
            fault = _string_fault(key)
            if fault is not None:
                raise InvalidInputError(_dotted((*path, _printable_key(key))), "key " + fault)
            check_json_values(item, max_depth, (*path, key))
    elif isinstance(value, list):
        for index, item in enumerate(value):
            check_json_values(item, max_depth, (*path, index))


def parse_json_body(body: bytes, max_depth: int = JSON_DEPTH_DEFAULT) -> Any:
    """The JSON document ``body`` holds, checked by ``check_json_values``.

    Not UTF-8 or not JSON is a ``MalformedBodyError``. ``NaN``, ``Infinity`` and a
    number too large for a double (``1e400``) are read, then refused by
    ``check_json_values`` as an ``InvalidInputError`` naming their field.
    """
    try:
        text = body.decode("utf-8")
    except UnicodeDecodeError as error:
        raise MalformedBodyError(f"is not valid UTF-8 (byte {error.start})") from error
    try:
        document = json.loads(text, parse_int=_integer)
    except json.JSONDecodeError as error:
        raise MalformedBodyError(
            f"is not valid JSON: {error.msg} (line {error.lineno}, column {error.colno})"
        ) from error
    except RecursionError as error:
        raise InvalidInputError("body", f"nests deeper than {max_depth} levels") from error
    check_json_values(document, max_depth)
    return document


def _is_json(content_type: str | None) -> bool:
    if content_type is None:
        return False
    message = email.message.Message()
    message["content-type"] = content_type
    subtype = message.get_content_subtype()
    return message.get_content_maintype() == "application" and (
        subtype == "json" or subtype.endswith("+json")
    )


def _check_parameters(request: Request, known_query: frozenset[str]) -> None:
    unknown = sorted(set(request.query_params) - known_query)
    if unknown:
        takes = ", ".join(sorted(known_query)) or "none"
        raise InvalidInputError(unknown[0], f"unknown query parameter; this endpoint takes {takes}")
    parameters: Iterable[tuple[str, str]] = [
        *request.query_params.multi_items(),
        *request.path_params.items(),
    ]
    for name, value in parameters:
        fault = _string_fault(value)
        if fault is not None:
            raise InvalidInputError(name, fault)


def _query_names(dependant: Dependant) -> frozenset[str]:
    """The query parameters a route takes, its dependencies' included."""
    names = {param.alias for param in dependant.query_params}
    for dependency in dependant.dependencies:
        names |= _query_names(dependency)
    return frozenset(names)


class CheckedRoute(APIRoute):
    """An ``APIRoute`` that refuses hostile parameters and bodies before FastAPI reads them."""

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        known_query = _query_names(self.dependant)
        takes_body = self.body_field is not None

        async def checked_handler(request: Request) -> Response:
            _check_parameters(request, known_query)
            if takes_body:
                request = await _checked_json_request(request)
            return await handler(request)

        return checked_handler


class _CheckedJsonRequest(Request):
    """A request whose ``json()`` is ``parse_json_body`` of its body (checked, cached)."""

    max_depth = JSON_DEPTH_DEFAULT

    async def json(self) -> Any:
        if not hasattr(self, "checked_json"):
            self.checked_json = parse_json_body(await self.body(), self.max_depth)
        return self.checked_json


async def _checked_json_request(request: Request) -> Request:
    """The request, its JSON body parsed now so that a fault is answered as a problem
    (FastAPI would answer a bare 400 for an error raised while it reads the body)."""
    checked = _CheckedJsonRequest(request.scope, request.receive)
    services = getattr(request.app.state, "services", None)
    if services is not None:
        checked.max_depth = services.settings.api.max_json_depth
    if not await checked.body():
        return checked
    content_type = checked.headers.get("content-type")
    if not _is_json(content_type):
        raise UnsupportedMediaTypeError(content_type)
    await checked.json()
    return checked


class BodyTooLargeError(JobschedError):
    """A body past its limit (a 413 ``body-too-large`` problem); ``setting`` sets the limit."""

    def __init__(self, limit: int, setting: str) -> None:
        self.limit = limit
        self.field = "body"
        self.message = f"is larger than {limit} bytes, the limit set by {setting}"
        super().__init__(f"body: {self.message}")
