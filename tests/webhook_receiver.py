"""A real local HTTP receiver of Standard Webhooks events that checks each signature."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from jobsched.core.webhooks import verify


class WebhookReceiver:
    """Listens on 127.0.0.1:``port`` (0: any) until ``stop``; ``start`` again on the same port."""

    def __init__(self, key: bytes, port: int = 0) -> None:
        self.key = key
        self.port = port
        self.events: list[dict[str, Any]] = []
        self.ids: list[str] = []
        self.bad_signatures = 0
        self._server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"

    def start(self) -> WebhookReceiver:
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length", "0")))
                headers = {name.lower(): value for name, value in self.headers.items()}
                if not verify(receiver.key, headers, body):
                    receiver.bad_signatures += 1
                    self.send_response(401)
                else:
                    receiver.events.append(json.loads(body))
                    receiver.ids.append(headers["webhook-id"])
                    self.send_response(204)
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:
                pass

        ThreadingHTTPServer.allow_reuse_address = True
        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self.port = self._server.server_address[1]
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
