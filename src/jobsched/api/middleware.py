"""The outermost layer of the app: request counting and the catch-all for unexpected errors."""

from __future__ import annotations

import uuid

from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from jobsched.api.problems import internal_error_problem
from jobsched.monitoring.metrics import HTTP_REQUESTS

# Label for requests no route matched: raw paths would give every scanner its own series.
UNMATCHED_ROUTE = "unmatched"


def route_template(scope: Scope) -> str:
    """The template of the route that served the request (``/jobs/{id}``), never its raw path."""
    route = scope.get("route")
    if isinstance(route, BaseRoute):
        path = getattr(route, "path", None)
        if isinstance(path, str):
            return path
    return UNMATCHED_ROUTE


_REQUEST_ID_HEADER = b"x-request-id"
_REQUEST_ID_LENGTH_MAX = 200


def _request_id(scope: Scope) -> str:
    """The client's ``X-Request-Id`` when it is a short printable ASCII string, else a new one."""
    for name, value in scope.get("headers", ()):
        if name == _REQUEST_ID_HEADER:
            try:
                text = bytes(value).decode("ascii")
            except UnicodeDecodeError:
                break
            if 0 < len(text) <= _REQUEST_ID_LENGTH_MAX and text.isprintable():
                return text
            break
    return uuid.uuid4().hex


class RequestAccountingMiddleware:
    """Counts each answered request in ``api_requests_total`` by method, route and status.

    It also gives each request its id (``X-Request-Id``, the client's or a new one),
    answered in the same header and kept in audit rows.

    An exception no handler answered becomes a logged 500 problem here, before
    Starlette's server-error layer would re-raise it: the client learns nothing
    of it but that it happened.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        status_code = 500
        response_started = False
        request_id = _request_id(scope)
        scope.setdefault("state", {})["request_id"] = request_id

        async def send_and_note(message: Message) -> None:
            nonlocal status_code, response_started
            if message["type"] == "http.response.start":
                status_code = message["status"]
                response_started = True
                headers = list(message.get("headers", []))
                headers.append((b"x-request-id", request_id.encode("ascii")))
                message = {**message, "headers": headers}
            await send(message)

        try:
            await self.app(scope, receive, send_and_note)
        except Exception as error:
            if response_started:
                raise  # too late for a problem document; the server closes the connection
            await internal_error_problem(error, scope["path"])(scope, receive, send_and_note)
        finally:
            HTTP_REQUESTS.labels(
                method=scope["method"], route=route_template(scope), status=str(status_code)
            ).inc()
