"""The outer layers of the app: request counting, the catch-all for unexpected errors,
the request body limits, and ``HEAD`` served as ``GET`` without its body."""

from __future__ import annotations

import uuid

from starlette.routing import BaseRoute
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from jobsched.api.problems import internal_error_problem, jobsched_error_problem
from jobsched.api.request_checks import BodyTooLargeError
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


BATCH_ROUTE = ("POST", "/jobs/batch")


def _content_length(scope: Scope) -> int | None:
    for name, value in scope.get("headers", ()):
        if name == b"content-length":
            try:
                return int(value)
            except ValueError:
                return None
    return None


class BodyLimitMiddleware:
    """Refuses a request body past ``api.max_body_bytes`` (``api.max_batch_body_bytes`` for
    ``POST /jobs/batch``) with a 413 problem, never holding more of it than the limit.

    A ``Content-Length`` past the limit is answered at once, before any of the body
    is read; a chunked body is counted as it streams in and refused as soon as it
    passes the limit (the route reading it gets ``BodyTooLargeError``).
    """

    def __init__(self, app: ASGIApp, *, max_body_bytes: int, max_batch_body_bytes: int) -> None:
        self.app = app
        self.max_body_bytes = max_body_bytes
        self.max_batch_body_bytes = max_batch_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        if (scope["method"], scope["path"]) == BATCH_ROUTE:
            too_large = BodyTooLargeError(self.max_batch_body_bytes, "api.max_batch_body_bytes")
        else:
            too_large = BodyTooLargeError(self.max_body_bytes, "api.max_body_bytes")
        declared = _content_length(scope)
        if declared is not None and declared > too_large.limit:
            await jobsched_error_problem(too_large, scope["path"])(scope, receive, send)
            return
        received = 0

        async def counted_receive() -> Message:
            nonlocal received
            message = await receive()
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > too_large.limit:
                    raise too_large
            return message

        started = False

        async def noted_send(message: Message) -> None:
            nonlocal started
            started = started or message["type"] == "http.response.start"
            await send(message)

        try:
            await self.app(scope, counted_receive, noted_send)
        except BodyTooLargeError as error:  # read outside a route's own error handling
            if started:
                raise
            await jobsched_error_problem(error, scope["path"])(scope, receive, send)


class HeadMiddleware:
    """Serves ``HEAD`` as the ``GET`` of the same path, with its headers and no body."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] != "HEAD":
            await self.app(scope, receive, send)
            return

        async def send_headers_only(message: Message) -> None:
            if message["type"] == "http.response.body":
                message = {**message, "body": b""}
            await send(message)

        await self.app({**scope, "method": "GET"}, receive, send_headers_only)
