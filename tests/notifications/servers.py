"""Real receivers on 127.0.0.1 for the notification tests: an HTTP server that records what
Slack and webhook channels post (and answers as scripted: 500 then 200, 429 with
Retry-After, 404, or a slow answer), and an SMTP server (aiosmtpd) that records mail (and
refuses recipients or the message as scripted). Each listens on a free port.

    from tests.notifications.servers import Answer, http_receiver, smtp_receiver

    def test_it_retries(http_receiver: HttpReceiver) -> None:
        http_receiver.answer(Answer(500), Answer(429, {"Retry-After": "120"}))
        ...  # post to http_receiver.url("/hook"); then read http_receiver.posts

tests/notifications/conftest.py makes both fixtures available to every test there."""

from __future__ import annotations

import email
import email.policy
import json
import logging
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
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, Session

__all__ = [
    "Answer",
    "HttpReceiver",
    "Post",
    "SmtpReceiver",
    "free_port",
    "http_receiver",
    "smtp_receiver",
]

# aiosmtpd logs every SMTP command at INFO: noise in a failing test's output.
logging.getLogger("mail.log").setLevel(logging.WARNING)


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
    body: bytes = b"ok"


class HttpReceiver:
    """Records every POST; answers with the scripted answers in order, then 200.
    `connections` counts the connections made to it (also those that sent nothing)."""

    def __init__(self) -> None:
        self.posts: list[Post] = []
        self.connections = 0
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
                self.send_header("Content-Length", str(len(answer.body)))
                self.end_headers()
                self.wfile.write(answer.body)

            def log_message(self, format: str, *args: Any) -> None:
                pass

        class Server(ThreadingHTTPServer):
            def verify_request(self, request: Any, client_address: Any) -> bool:
                with receiver._lock:
                    receiver.connections += 1
                return True

        self.server = Server(("127.0.0.1", 0), Handler)
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
        if address in self.receiver.rcpt_answers:
            return self.receiver.rcpt_answers[address]
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        if self.receiver.data_answer:
            return self.receiver.data_answer
        raw = envelope.content if isinstance(envelope.content, bytes) else b""
        message = email.message_from_bytes(raw, policy=email.policy.default)
        assert isinstance(message, EmailMessage)
        with self.receiver.arrived:
            self.receiver.messages.append((list(envelope.rcpt_tos), message))
            self.receiver.arrived.notify_all()
        return "250 Message accepted"


def free_port() -> int:
    """A port on 127.0.0.1 that nothing listens on (right now): a dead server's."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


class SmtpReceiver:
    """Records every message (recipients, parsed message). Refuses the `refused` addresses
    (550), answers RCPT for the addresses in `rcpt_answers` as given ("451 4.2.1 busy"),
    and answers DATA with `data_answer` when set ("554 5.7.1 spam"). It offers AUTH (also
    without TLS) and accepts any login unless `refuse_logins`."""

    def __init__(self) -> None:
        self.messages: list[tuple[list[str], EmailMessage]] = []
        self.refused: set[str] = set()
        self.rcpt_answers: dict[str, str] = {}
        self.data_answer = ""
        self.refuse_logins = False
        self.arrived = threading.Condition()
        self.port = free_port()
        self.controller = Controller(
            _Recorder(self),
            hostname="127.0.0.1",
            port=self.port,
            authenticator=self._authenticate,
            auth_require_tls=False,
        )
        self.controller.start()

    def _authenticate(self, *args: Any) -> AuthResult:
        return AuthResult(success=not self.refuse_logins, handled=False)

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
