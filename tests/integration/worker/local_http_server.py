"""A minimal HTTP/1.1 server on asyncio streams, recording what the ``http`` handler sends."""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import Callable
from dataclasses import dataclass, field
from http import HTTPStatus


@dataclass(frozen=True)
class ReceivedRequest:
    method: str
    target: str
    headers: dict[str, str]  # names lower-cased
    body: bytes


# The status and body to answer with, and optionally more headers (a Location, say).
Responder = Callable[[ReceivedRequest], tuple[int, bytes] | tuple[int, bytes, dict[str, str]]]


@dataclass
class LocalHttpServer:
    """Answers each request with ``respond(request)``; one request per connection.

    ``connections`` counts every connection accepted, a request on it or not: a
    test that must show nothing reached the server checks it stayed 0.
    """

    respond: Responder = lambda request: (200, b"ok")  # a default answer
    requests: list[ReceivedRequest] = field(default_factory=list)
    connections: int = 0
    port: int = 0
    _server: asyncio.Server | None = None

    async def start(self, ssl_context: ssl.SSLContext | None = None) -> None:
        """Listen on a free loopback port; over TLS with ``ssl_context``."""
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0, ssl=ssl_context)
        self.port = self._server.sockets[0].getsockname()[1]

    async def close(self) -> None:
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()

    def url(self, path: str = "/") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    async def _serve(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.connections += 1
        try:
            request = await read_request(reader)
            if request is None:
                return
            self.requests.append(request)
            status, content, *more = self.respond(request)
            extra = "".join(f"{name}: {value}\r\n" for name, value in (more or [{}])[0].items())
            head = (
                f"HTTP/1.1 {status} {HTTPStatus(status).phrase}\r\n"
                f"{extra}"
                "Content-Type: text/plain; charset=utf-8\r\n"
                f"Content-Length: {len(content)}\r\n"
                "Connection: close\r\n\r\n"
            )
            writer.write(head.encode("ascii") + content)
            await writer.drain()
        finally:
            writer.close()
            with contextlib.suppress(ConnectionError):
                await writer.wait_closed()


async def read_request(reader: asyncio.StreamReader) -> ReceivedRequest | None:
    request_line = await reader.readline()
    if not request_line:
        return None
    method, target, _version = request_line.decode("latin-1").split(" ", 2)
    headers: dict[str, str] = {}
    while (line := await reader.readline()) not in (b"\r\n", b"\n", b""):
        name, _, value = line.decode("latin-1").partition(":")
        headers[name.strip().lower()] = value.strip()
    body = await reader.readexactly(int(headers.get("content-length", "0")))
    return ReceivedRequest(method, target, headers, body)
