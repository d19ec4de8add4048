"""The distributed mode's processes, started side by side on one machine for
`manage.py demo --distributed` (`make demo-distributed`) and `manage.py bench`: gunicorn,
Celery workers, a housekeeper worker, a notifier worker and a beat, each a real process
with its own log, as in production. Kill any of them by hand to watch the service recover
(docs/reliability.md)."""

from __future__ import annotations

import ctypes
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from types import FrameType

from django.conf import settings

__all__ = ["WEB_LAYOUT", "Distributed", "ensure_database"]

# gunicorn: single-threaded processes, two per core (as docs/deployment.md advises;
# WEB_CONCURRENCY sets how many). The API is CPU-bound Python: in threads of one process
# its requests take turns on the GIL, and one holding a row lock waits for its turn too
# (docs/performance.md).
WEB_LAYOUT = ["--workers", os.environ.get("WEB_CONCURRENCY") or "4", "--threads", "1"]


def _die_with_parent() -> None:
    """Linux: the demo's processes get SIGTERM when the demo itself dies."""
    if sys.platform.startswith("linux"):
        ctypes.CDLL(None).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


class Distributed:
    """Start the processes; `wait()` blocks until SIGINT/SIGTERM, then stops them all."""

    def __init__(
        self,
        *,
        host: str,
        port: int,
        workers: int = 2,
        concurrency: int = 2,
        logs: str = "demo-logs",
        extra: dict[str, list[str]] | None = None,
        env: dict[str, str] | None = None,
    ) -> None:
        self.host, self.port = host, port
        self.workers, self.concurrency = workers, concurrency
        self.logs = Path(settings.VAR_DIR) / logs
        self.extra = extra or {}  # more processes: name -> argv
        self.env = {**os.environ, **(env or {})}
        self.processes: dict[str, subprocess.Popen[bytes]] = {}
        self.stopped = threading.Event()
        self.started = 0.0  # time.time() at `start`

    def commands(self) -> dict[str, list[str]]:
        celery = [sys.executable, "-m", "celery", "-A", "orchestrator"]
        commands = {
            "web": [
                sys.executable,
                "-m",
                "gunicorn",
                "orchestrator.wsgi:application",
                "--bind",
                f"{self.host}:{self.port}",
                *WEB_LAYOUT,
            ],
        }
        for index in range(1, self.workers + 1):
            commands[f"worker{index}"] = [
                *celery,
                "worker",
                "-l",
                "INFO",
                "-Q",
                "tasks,housekeeping",  # alerts go to the notifier
                "-n",
                f"worker{index}@%h",
                "-c",
                str(self.concurrency),
            ]
        commands["housekeeper"] = [
            *celery,
            "worker",
            "-l",
            "INFO",
            "-Q",
            "housekeeping",
            "-c",
            "1",
            "-n",
            "housekeeper@%h",
        ]
        commands["notifier"] = [
            *celery,
            "worker",
            "-l",
            "INFO",
            "-Q",
            "notifications",
            "--pool",
            "threads",  # sending is waiting on receivers: threads suit it
            "-c",
            "8",
            "-n",
            "notifier@%h",
        ]
        commands["beat"] = [*celery, "beat", "-l", "INFO"]
        return {**commands, **self.extra}

    def start(self) -> None:
        self.logs.mkdir(parents=True, exist_ok=True)
        self.started = time.time()
        for name, argv in self.commands().items():
            with (self.logs / f"{name}.log").open("ab") as log:
                self.processes[name] = subprocess.Popen(
                    argv,
                    cwd=settings.BASE_DIR,
                    env=self.env,
                    stdout=log,
                    stderr=subprocess.STDOUT,
                    start_new_session=True,  # Ctrl-C reaches the demo, which stops them
                    preexec_fn=_die_with_parent,
                )
        for sig in (signal.SIGTERM, signal.SIGINT):
            signal.signal(sig, self._on_signal)

    def wait_for_workers(self, timeout: float = 120.0) -> float:
        """Block until every task worker has said it is ready (its first heartbeat since
        `start`, which a worker sends once it consumes): a cold start of several Python
        processes on a small machine takes seconds, which the first run would otherwise
        spend `queued` with no word why. Returns the seconds waited. RuntimeError: a
        process ended, or `timeout` passed, naming which and its log."""
        from orchestrator import metrics

        began = time.time()
        names = [f"worker{index}" for index in range(1, self.workers + 1)]
        while True:
            ended = [name for name in self.exited() if name in names or name == "web"]
            if ended:
                raise RuntimeError(self._failed(ended, "ended"))
            try:
                beats = metrics.heartbeats()
            except Exception:  # the store not up yet: look again
                beats = {}
            ready = {
                node.partition("@")[0] for node, stamp in beats.items() if stamp >= self.started
            }
            if all(name in ready for name in names):
                return time.time() - began
            if time.time() - began > timeout:
                late = [name for name in names if name not in ready]
                raise RuntimeError(self._failed(late, f"not ready after {timeout:.0f}s"))
            time.sleep(0.2)

    def _failed(self, names: list[str], what: str) -> str:
        return "; ".join(f"{name} {what} (log: {self.logs / (name + '.log')})" for name in names)

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        self.stopped.set()

    def banner(self) -> str:
        lines = [
            f"distributed: broker {settings.CELERY_BROKER_URL}, database "
            f"{settings.DATABASES['default']['ENGINE'].rsplit('.', 1)[-1]}",
        ]
        lines += [
            f"  {name:<12} pid {process.pid:<8} log {self.logs / (name + '.log')}"
            for name, process in self.processes.items()
        ]
        worker = self.processes.get("worker1")
        if worker is not None:
            lines.append(
                f"Kill a worker mid-run to watch the service recover: kill -9 -{worker.pid}"
            )
        return "\n".join(lines)

    def exited(self) -> list[str]:
        return [name for name, p in self.processes.items() if p.poll() is not None]

    def wait(self) -> None:
        while not self.stopped.wait(0.5):
            pass
        self.stop()

    def stop(self) -> None:
        for process in self.processes.values():
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + 20
        for process in self.processes.values():
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()


def ensure_database() -> bool:
    """Create the PostgreSQL database DATABASE_URL names when it does not exist yet (a
    convenience for the demo; production databases are provisioned). True if created."""
    import psycopg2
    from psycopg2 import sql

    db = settings.DATABASES["default"]
    if db["ENGINE"] != "django.db.backends.postgresql":
        return False
    params = {
        "host": db.get("HOST") or None,
        "port": db.get("PORT") or None,
        "user": db.get("USER") or None,
        "password": db.get("PASSWORD") or None,
    }
    try:
        psycopg2.connect(dbname=db["NAME"], **params).close()
        return False
    except psycopg2.OperationalError as exc:
        if "does not exist" not in str(exc):
            raise
    admin = psycopg2.connect(dbname="postgres", **params)
    admin.autocommit = True
    try:
        with admin.cursor() as cursor:
            cursor.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(db["NAME"])))
    finally:
        admin.close()
    return True
