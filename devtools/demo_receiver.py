"""The webhook receiver that `make demo` points its alert channel at: a small HTTP server on
127.0.0.1 that keeps what it is sent, so the demo can show an alert arriving without the
internet (and without Slack)."""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

__all__ = ["Received", "WebhookReceiver"]


@dataclass(frozen=True)
class Received:
    headers: dict[str, str]  # lower-case names
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


class WebhookReceiver:
    """Answers every POST with 200 and keeps it (`received`)."""

    def __init__(self, host: str = "127.0.0.1") -> None:
        self.received: list[Received] = []
        self._arrived = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length") or 0)
                body = self.rfile.read(length)
                headers = {k.lower(): v for k, v in self.headers.items()}
                self.send_response(200)
                self.send_header("Content-Length", "0")
                self.end_headers()
                with receiver._arrived:
                    receiver.received.append(Received(headers, body))
                    receiver._arrived.notify_all()

            def log_message(self, format: str, *args: Any) -> None:
                pass  # the demo prints what arrived, not an access log

        self.server = ThreadingHTTPServer((host, 0), Handler)
        self.url = f"http://{host}:{self.server.server_address[1]}/alerts"

    def start(self) -> None:
        threading.Thread(
            target=self.server.serve_forever, name="demo-receiver", daemon=True
        ).start()

    def wait(self, count: int, timeout: float) -> list[Received]:
        """What arrived, once `count` posts have (or the timeout has passed)."""
        deadline = time.monotonic() + timeout
        with self._arrived:
            while len(self.received) < count and (left := deadline - time.monotonic()) > 0:
                self._arrived.wait(left)
            return list(self.received)
