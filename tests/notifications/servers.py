"""Real receivers on 127.0.0.1 for the notification tests: an HTTP server that records what
Slack and webhook channels post (and answers as scripted: 500 then 200, 429 with
Retry-After, 404, or a slow answer), and an SMTP server (aiosmtpd) that records mail."""

from __future__ import annotations

import email
import email.policy
import json
import socket
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from email.message import EmailMessage
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, Envelope, Session

__all__ = ["HttpReceiver", "Post", "SmtpReceiver", "http_receiver", "smtp_receiver"]


@dataclass(frozen=True)
class Post:
    path: str
    headers: dict[str, str]  # lower-case names
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class Answer:
    status: int = 200
    headers: dict[str, str] = field(default_factory=dict)
    delay: float = 0.0  # seconds before answering (after the post is recorded)


class HttpReceiver:
    """Records every POST; answers with the scripted answers in order, then 200."""

    def __init__(self) -> None:
        self.posts: list[Post] = []
        self.script: list[Answer] = []
        self._lock = threading.Condition()
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
                headers = {k.lower(): v for k, v in self.headers.items()}
                with receiver._lock:
                    receiver.posts.append(Post(self.path, headers, body))
                    answer = receiver.script.pop(0) if receiver.script else Answer()
                    receiver._lock.notify_all()
                time.sleep(answer.delay)
                self.send_response(answer.status)
                for name, value in answer.headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, format: str, *args: Any) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = int(self.server.server_address[1])
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def url(self, path: str = "/hook") -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def answer(self, *answers: Answer) -> None:
        with self._lock:
            self.script.extend(answers)

    def wait(self, count: int, timeout: float = 30) -> list[Post]:
        deadline = time.monotonic() + timeout
        with self._lock:
            while len(self.posts) < count and (left := deadline - time.monotonic()) > 0:
                self._lock.wait(left)
            return list(self.posts)

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


class _Recorder:
    def __init__(self, receiver: SmtpReceiver) -> None:
        self.receiver = receiver

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, options: list[str]
    ) -> str:
        if address in self.receiver.refused:
            return "550 5.1.1 no such user"
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raw = envelope.content if isinstance(envelope.content, bytes) else b""
        message = email.message_from_bytes(raw, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        with self.receiver.arrived:
            self.receiver.messages.append((list(envelope.rcpt_tos), message))
            self.receiver.arrived.notify_all()
        return "250 Message accepted"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class SmtpReceiver:
    """Records every message (recipients, parsed message); refuses the `refused` ones."""

    def __init__(self) -> None:
        self.messages: list[tuple[list[str], EmailMessage]] = []
        self.refused: set[str] = set()
        self.arrived = threading.Condition()
        self.port = _free_port()
        self.controller = Controller(_Recorder(self), hostname="127.0.0.1", port=self.port)
        self.controller.start()

    def wait(self, count: int, timeout: float = 30) -> list[tuple[list[str], EmailMessage]]:
        deadline = time.monotonic() + timeout
        with self.arrived:
            while len(self.messages) < count and (left := deadline - time.monotonic()) > 0:
                self.arrived.wait(left)
            return list(self.messages)

    def close(self) -> None:
        self.controller.stop()


@pytest.fixture
def http_receiver() -> Iterator[HttpReceiver]:
    receiver = HttpReceiver()
    yield receiver
    receiver.close()


@pytest.fixture
def smtp_receiver() -> Iterator[SmtpReceiver]:
    receiver = SmtpReceiver()
    yield receiver
    receiver.close()
