"""Fault-injection tests: each test gets its own redis-server (on a free port, so it can be
restarted and flushed), two `celery worker` processes and a beat on the test database, and
counts how many times each task body actually ran.

A task body counts itself by appending a line `<run id> <task id> <try>` to a file
(`Cluster.body`); `Cluster.executions()` reads those lines back. The file's directory is
shared with the tenant's sandboxed tasks (`share_with_tasks`), at the same path."""

from __future__ import annotations

import collections
import os
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import redis

from runs.models import WorkflowRun
from runs.periodic import ensure_periodic_tasks
from runs.services import trigger_run
from tests.runs.engine.helpers import Engine
from tests.subprocesses import die_with_parent, free_port
from tests.workers import Workers, publishing_to, share_with_tasks, wait_for

__all__ = ["Cluster", "RedisServer", "cluster"]

pytestmark = pytest.mark.slow


class RedisServer:
    """A redis-server of the test's own, without persistence (so a restart loses every
    message, as a crashed broker without AOF does)."""

    def __init__(self, directory: Path) -> None:
        self.port = free_port()
        self.directory = directory
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def start(self) -> None:
        self.process = subprocess.Popen(
            [
                "redis-server",
                "--port",
                str(self.port),
                "--bind",
                "127.0.0.1",
                "--save",
                "",
                "--appendonly",
                "no",
                "--dir",
                str(self.directory),
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            preexec_fn=die_with_parent,
        )
        client = redis.Redis(port=self.port)
        wait_for(lambda: self._pings(client), 10, f"redis-server on port {self.port}")

    @staticmethod
    def _pings(client: redis.Redis) -> bool:
        try:
            return bool(client.ping())
        except redis.ConnectionError:
            return False

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.send_signal(signal.SIGKILL)
            self.process.wait()

    def restart(self, down_for: float = 1.0) -> None:
        self.stop()
        time.sleep(down_for)
        self.start()

    def flush(self) -> None:
        redis.Redis(port=self.port).flushall()


class Cluster(Engine):
    """A tenant, the processes, and ways to count what ran."""

    def __init__(self, workers: Workers, redis_server: RedisServer, directory: Path) -> None:
        super().__init__(workers)
        self.redis = redis_server
        self.directory = directory
        self.ledger = directory / "executions.log"
        self.ledger.touch()
        os.chmod(self.ledger, 0o666)  # noqa: S103 (the tasks append to it, as the tenant's uid)
        share_with_tasks(self.tenant, directory)

    def body(self, then: str = "") -> list[str]:
        """A shell command that records its execution, then runs `then`."""
        line = "{{ run.id }} {{ task.id }} {{ try_number }}"
        script = f'echo "{line}" >> {self.ledger}'
        return ["sh", "-c", f"{script}; {then}" if then else script]

    def executions(self) -> collections.Counter[tuple[int, str, int]]:
        counts: collections.Counter[tuple[int, str, int]] = collections.Counter()
        for raw in self.ledger.read_text().splitlines():
            run_id, task_id, try_number = raw.split()
            counts[(int(run_id), task_id, int(try_number))] += 1
        return counts

    def trigger(self, workflow: Any, count: int = 1) -> list[WorkflowRun]:
        with self.scope():
            return [trigger_run(actor=self.actor, workflow=workflow).run for _ in range(count)]

    def wait_finished(self, runs: list[WorkflowRun], timeout: float) -> None:
        ids = [run.pk for run in runs]

        def finished() -> bool:
            with self.scope():
                return (
                    not WorkflowRun.objects.filter(pk__in=ids)
                    .exclude(state__in=WorkflowRun.FINISHED)
                    .exists()
                )

        wait_for(finished, timeout, f"{len(ids)} runs to finish", self.workers)

    def wait_drained(self, timeout: float) -> None:
        """Until every task message sent so far has been taken and acknowledged: none waits
        in the queue, none is in a worker's hands (kombu keeps those in `unacked`)."""
        client = redis.Redis.from_url(self.redis.url)
        prefix = self.workers.prefix if self.workers else ""

        def drained() -> bool:
            # A queue is a list per priority: tasks, tasks\x06\x163, ...
            queued = sum(client.llen(key) for key in client.scan_iter(f"{prefix}tasks*"))
            return not queued and not client.hlen(f"{prefix}unacked")

        try:
            wait_for(drained, timeout, "the task messages to be taken and acknowledged")
        finally:
            client.close()


@pytest.fixture
def cluster_env() -> dict[str, str]:
    """Extra environment for the worker processes; tests override it to tune settings."""
    return {}


@pytest.fixture
def cluster(transactional_db: None, cluster_env: dict[str, str]) -> Iterator[Cluster]:
    with tempfile.TemporaryDirectory(prefix="orc-reliability-") as tmp:
        directory = Path(tmp)
        server = RedisServer(directory)
        server.start()
        ensure_periodic_tasks()  # the previous test's flush removed the reconciler's entry
        workers = Workers(count=2, concurrency=2, redis_url=server.url, env=cluster_env)
        workers.start()
        try:
            with publishing_to(workers):
                yield Cluster(workers, server, directory)
        finally:
            workers.stop()
            server.stop()
