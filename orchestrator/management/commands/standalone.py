"""`manage.py standalone`: the whole service in one process, for trying it and development.

Migrates, then runs the web app (waitress), a Celery worker (a thread pool) and beat in
this one process. With no CELERY_BROKER_URL the broker is in-process memory, which is why
nothing but this command may use it."""

from __future__ import annotations

import contextlib
import os
import signal
import threading
from types import FrameType
from typing import Any

from celery.beat import EmbeddedService
from django.conf import settings
from django.core.management import call_command
from django.core.management.base import BaseCommand, CommandParser

from orchestrator.celery import allow_embedded_broker, app


class Command(BaseCommand):
    help = "Run web server, Celery worker and beat in one process (embedded mode)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=int(os.environ.get("PORT") or 8000))
        parser.add_argument(
            "--concurrency", type=int, default=4, help="worker threads executing tasks"
        )
        parser.add_argument("--web-threads", type=int, default=8)
        parser.add_argument("--no-migrate", action="store_true")

    def handle(self, *args: Any, **options: Any) -> None:
        if not options["no_migrate"]:
            call_command("migrate", interactive=False, verbosity=0)
        service = Standalone(
            **{k: options[k] for k in ("host", "port", "concurrency", "web_threads")}
        )
        service.start()
        self.stdout.write(service.banner())
        self.stdout.flush()
        service.wait()


class Standalone:
    """Web server, worker and beat of one process; `wait()` blocks until SIGINT/SIGTERM."""

    def __init__(self, *, host: str, port: int, concurrency: int, web_threads: int) -> None:
        self.host, self.port = host, port
        self.concurrency, self.web_threads = concurrency, web_threads
        self.stopped = threading.Event()

    def public_url(self) -> str:
        """Where people reach this server: PUBLIC_URL when set; else the address it listens
        on, so that the webhook and reset links it shows work on another --port too (a
        wildcard host is shown as this machine's loopback)."""
        if os.environ.get("PUBLIC_URL"):
            return str(settings.PUBLIC_URL)
        host = {"0.0.0.0": "127.0.0.1", "::": "::1", "": "127.0.0.1"}.get(self.host, self.host)  # noqa: S104
        return f"http://[{host}]:{self.port}" if ":" in host else f"http://{host}:{self.port}"

    def start(self) -> None:
        settings.PUBLIC_URL = self.public_url()
        allow_embedded_broker()  # before the WSGI module, which checks for a real broker
        from waitress.server import create_server

        from orchestrator.wsgi import application

        self.worker = app.WorkController(
            pool_cls="threads",
            concurrency=self.concurrency,
            hostname=f"standalone@{os.uname().nodename}",
            # Heartbeats, mingle and gossip need a broker with fan-out: the memory one has not.
            without_heartbeat=True,
            without_mingle=True,
            without_gossip=True,
            loglevel=settings.LOG_LEVEL,
        )
        threading.Thread(target=self.worker.start, name="celery-worker", daemon=True).start()
        self.beat: Any = EmbeddedService(  # thread=True gives the threaded service
            app, thread=True, scheduler_cls=settings.CELERY_BEAT_SCHEDULER
        )
        self.beat.start()  # type: ignore[union-attr]
        self.server = create_server(
            application, host=self.host, port=self.port, threads=self.web_threads
        )
        threading.Thread(target=self._serve, name="web", daemon=True).start()
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._on_signal)

    def _serve(self) -> None:
        with contextlib.suppress(OSError):  # the listening socket was closed by stop()
            self.server.run()

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self.stopped.set()

    def banner(self) -> str:
        broker = "in-process" if settings.EMBEDDED_BROKER else settings.CELERY_BROKER_URL
        engine = settings.DATABASES["default"]["ENGINE"].rsplit(".", 1)[-1]
        return (
            f"standalone: web on http://{self.host}:{self.port}/, worker "
            f"({self.concurrency} threads) and beat in this process; broker {broker}; "
            f"database {engine}"
        )

    def wait(self) -> None:
        while not self.stopped.wait(0.5):
            pass
        self.server.close()
        self.beat.stop()
        self.worker.stop(in_sighandler=False)
