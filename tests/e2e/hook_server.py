"""A real HTTP endpoint for the ``http`` handler to call, recording each request."""

from __future__ import annotations

import threading
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class HookServer:
    url: str
    requests: list[dict[str, str]] = field(default_factory=list)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def received(self) -> list[dict[str, str]]:
        with self.lock:
            return list(self.requests)


@contextmanager
def hook_server(status_code: int = 200) -> Iterator[HookServer]:
    """Serve ``/hook`` on a free local port, answering ``status_code`` to every request."""
    recorder: HookServer

    class Handler(BaseHTTPRequestHandler):
        def _answer(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            body = self.rfile.read(length).decode() if length else ""
            with recorder.lock:
                recorder.requests.append(
                    {"method": self.command, "path": self.path, "body": body, **self.headers}
                )
            self.send_response(status_code)
            self.send_header("Content-Type", "text/plain")
            self.end_headers()
            self.wfile.write(b"hook ok")

        do_GET = do_POST = _answer  # noqa: N815 - names http.server dispatches on

        def log_message(self, format: str, *args: object) -> None:
            """Quiet: the test asserts on recorded requests instead."""

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    recorder = HookServer(url=f"http://127.0.0.1:{server.server_address[1]}/hook")
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield recorder
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
