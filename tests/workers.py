"""Real Celery worker and beat processes for engine tests, on the test database and a
Redis key prefix of their own (so parallel runs never take each other's messages)."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import kombu.pools
import redis
from django.db import connection

from orchestrator.celery import app
from tests.subprocesses import ROOT, die_with_parent, platform_keys

REDIS_URL = os.environ.get("TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
LEASE_SECONDS = 3


class Workers:
    """`count` worker processes (prefork, `concurrency` each) and one beat."""

    def __init__(
        self,
        count: int = 2,
        concurrency: int = 2,
        beat: bool = True,
        redis_url: str = REDIS_URL,
        env: dict[str, str] | None = None,
    ) -> None:
        self.count, self.concurrency, self.with_beat = count, concurrency, beat
        self.redis_url = redis_url
        self.named: dict[str, subprocess.Popen[bytes]] = {}
        self.prefix = f"orc-test-{uuid.uuid4().hex[:10]}:"
        self.processes: list[subprocess.Popen[bytes]] = []
        self.logs: list[Path] = []
        db = connection.settings_dict
        self.env = {
            **{k: v for k, v in os.environ.items() if k != "DJANGO_SETTINGS_MODULE"},
            "DATABASE_URL": f"postgres://{db['USER']}@{db['HOST']}:{db['PORT']}/{db['NAME']}",
            "CELERY_BROKER_URL": redis_url,
            "CELERY_KEY_PREFIX": self.prefix,
            "TASK_LEASE_SECONDS": str(LEASE_SECONDS),
            "QUEUED_RESEND_AFTER_SECONDS": "5",
            "VAR_DIR": str(Path(tempfile.gettempdir()) / self.prefix.strip(":")),
            **platform_keys(),  # DEBUG is off: a worker refuses the built-in SECRET_KEY
            **(env or {}),
        }

    def start_worker(self, name: str) -> subprocess.Popen[bytes]:
        return self._spawn(
            name,
            [
                "-m",
                "celery",
                "-A",
                "orchestrator",
                "worker",
                "-n",
                f"{name}@%h",
                "-l",
                "INFO",
                "-c",
                str(self.concurrency),
                "--pool",
                "prefork",
                "-Q",
                "tasks,housekeeping,notifications",
                "--without-heartbeat",
                "--without-gossip",
                "--without-mingle",
            ],
        )

    def start_command(self, name: str, command: list[str]) -> subprocess.Popen[bytes]:
        """A command as the docs give it (`celery -A orchestrator worker ...`), run with this
        venv's interpreter (`python -m celery ...`) in the workers' environment."""
        return self._spawn(name, ["-m", *command])

    def start_beat(self) -> subprocess.Popen[bytes]:
        schedule = Path(self.env["VAR_DIR"])
        schedule.mkdir(parents=True, exist_ok=True)
        return self._spawn(
            "beat",
            [
                "-m",
                "celery",
                "-A",
                "orchestrator",
                "beat",
                "-l",
                "INFO",
                "--scheduler",
                "tests.beat:ReloadingScheduler",
                "--max-interval",
                "1",
            ],
        )

    def _spawn(self, name: str, argv: list[str]) -> subprocess.Popen[bytes]:
        log = Path(self.env["VAR_DIR"]) / f"{name}.log"
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("ab") as out:
            process = subprocess.Popen(
                [sys.executable, *argv],
                cwd=ROOT,
                env=self.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=die_with_parent,
            )
        self.processes.append(process)
        self.named[name] = process
        self.logs.append(log)
        return process

    def start(self) -> None:
        for index in range(self.count):
            self.start_worker(f"w{index + 1}")
        if self.with_beat:
            self.start_beat()

    def stop(self) -> None:
        for process in self.processes:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
        deadline = time.monotonic() + 15
        for process in self.processes:
            try:
                process.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        shutil.rmtree(self.env["VAR_DIR"], ignore_errors=True)
        try:
            client = redis.Redis.from_url(self.redis_url)
            keys = list(client.scan_iter(f"{self.prefix}*"))
        except redis.ConnectionError:  # a test's own server, already stopped
            return
        if keys:
            client.delete(*keys)

    def log_text(self) -> str:
        return "\n".join(
            f"== {p.name}\n{p.read_text(errors='replace')[-5000:]}" for p in self.logs if p.exists()
        )


@contextmanager
def publishing_to(workers: Workers) -> Iterator[None]:
    """Point this process's Celery app at the workers' broker and key prefix."""
    saved: dict[str, Any] = {
        "broker_url": app.conf.broker_url,
        "broker_transport_options": app.conf.broker_transport_options,
    }
    app.conf.update(
        broker_url=workers.redis_url,
        broker_transport_options={"global_keyprefix": workers.prefix, "visibility_timeout": 3600},
    )
    _reset_pools()
    try:
        yield
    finally:
        app.conf.update(**saved)
        _reset_pools()


def _reset_pools() -> None:
    """Close every broker pool and forget them. kombu keeps pools in registries keyed by
    broker URL and options: a pool closed but left there would be handed out again once
    the app is pointed back at that broker ("Acquire on closed pool")."""
    app._pool = None
    app.amqp._producer_pool = None
    kombu.pools.reset()


def alive(pid: int) -> bool:
    """Whether a process runs (a zombie, killed but not yet reaped by init, does not)."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except (FileNotFoundError, ProcessLookupError):
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


def wait_for(predicate: Any, timeout: float, what: str, workers: Workers | None = None) -> Any:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    logs = workers.log_text() if workers else ""
    raise AssertionError(f"timed out after {timeout}s waiting for {what}\n{logs}")


def share_with_tasks(tenant: Any, *paths: Path, writable: bool = True) -> None:
    """Let the tenant's sandboxed tasks see host directories (its policy `task_mounts`),
    at the same paths, as tests share files with tasks: the directories are opened to the
    tenant's uid (and their parents made traversable, pytest's being private)."""
    mounts = list(tenant.policy.get("task_mounts", []))
    for path in paths:
        path.mkdir(parents=True, exist_ok=True)
        os.chmod(path, 0o777 if writable else 0o755)
        for parent in path.parents:
            if not os.stat(parent).st_mode & 0o001:
                os.chmod(parent, os.stat(parent).st_mode | 0o001)
        mounts.append({"path": str(path), "writable": writable})
    tenant.policy = {**tenant.policy, "task_mounts": mounts}
    type(tenant).objects.filter(pk=tenant.pk).update(policy=tenant.policy)


def sandboxed_pids(marker: str) -> list[int]:
    """Host pids of `sleep` processes (in any PID namespace, sandboxes included) whose
    argument holds `marker`: a task's `$!` is its own namespace's pid, not the host's.
    Use `sleep 300.<digits>` as a command line of your own."""
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                argv = Path(f"/proc/{entry}/cmdline").read_bytes().split(b"\0")
            except OSError:
                continue
            if argv[0] == b"sleep" and len(argv) > 1 and marker.encode() in argv[1]:
                found.append(int(entry))
    return found
