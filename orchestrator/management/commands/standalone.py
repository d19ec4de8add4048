"""`manage.py standalone`: the whole service in one process, for trying it and development.

Migrates, then runs the web app (waitress), a Celery worker (a thread pool) and beat in
this one process. With no CELERY_BROKER_URL the broker is in-process memory, which is why
nothing but this command may use it."""

from __future__ import annotations

import contextlib
import logging
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

logger = logging.getLogger(__name__)


class Command(BaseCommand):
    help = "Run web server, Celery worker and beat in one process (embedded mode)."

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument("--host", default="127.0.0.1")
        parser.add_argument("--port", type=int, default=int(os.environ.get("PORT") or 8000))
        parser.add_argument(
            "--concurrency", type=int, default=4, help="worker threads executing tasks (default 4)"
        )
        parser.add_argument("--web-threads", type=int, default=8)
        parser.add_argument("--no-migrate", action="store_true")

    def handle(self, *args: Any, **options: Any) -> None:
        allow_embedded_broker()
        if not options["no_migrate"]:
            call_command("migrate", interactive=False, verbosity=0)
        worker = start_worker(concurrency=options["concurrency"])
        beat: Any = EmbeddedService(app, thread=True, scheduler_cls=settings.CELERY_BEAT_SCHEDULER)
        beat.start()
        broker = "in-process" if settings.EMBEDDED_BROKER else settings.CELERY_BROKER_URL
        self.stdout.write(
            f"standalone: web on http://{options['host']}:{options['port']}/, worker "
            f"({options['concurrency']} threads) and beat in this process; broker {broker}; "
            f"database {settings.DATABASES['default']['ENGINE'].rsplit('.', 1)[-1]}"
        )
        self.stdout.flush()
        try:
            serve(options["host"], options["port"], options["web_threads"])
        finally:
            beat.stop()
            worker.stop(in_sighandler=False)


def start_worker(*, concurrency: int) -> Any:
    """A Celery worker in a background thread (heartbeats, mingle and gossip off: they need
    a broker with fan-out, which the in-process one has not)."""
    worker = app.WorkController(
        pool_cls="threads",
        concurrency=concurrency,
        hostname=f"standalone@{os.uname().nodename}",
        without_heartbeat=True,
        without_mingle=True,
        without_gossip=True,
        loglevel=settings.LOG_LEVEL,
    )
    threading.Thread(target=worker.start, name="celery-worker", daemon=True).start()
    return worker


def serve(host: str, port: int, threads: int) -> None:
    from waitress.server import create_server

    from orchestrator.wsgi import application

    server = create_server(application, host=host, port=port, threads=threads)

    def stop(signum: int, frame: FrameType | None) -> None:
        server.close()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    with contextlib.suppress(OSError):  # the listening socket was closed by stop()
        server.run()
