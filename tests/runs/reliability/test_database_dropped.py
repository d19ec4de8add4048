"""The database connections of workers and beat cut again and again while a run moves:
claims, heartbeats and transitions reconnect and carry on, and the run finishes."""

from __future__ import annotations

import threading

import pytest
from django.db import connection

from runs.models import TaskAttempt, TaskInstance
from tests.runs.reliability.conftest import Cluster

pytestmark = pytest.mark.slow


def _backend_pid() -> int:
    with connection.cursor() as cursor:
        cursor.execute("SELECT pg_backend_pid()")
        return int(cursor.fetchone()[0])


def _cut_connections(but: int) -> int:
    """Terminate the connections to the test database of every process but this one."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT count(pg_terminate_backend(pid)) FROM pg_stat_activity "
            "WHERE datname = current_database() AND pid NOT IN (pg_backend_pid(), %s)",
            [but],
        )
        return int(cursor.fetchone()[0])


def test_workers_recover_from_dropped_database_connections(cluster: Cluster) -> None:
    tasks = {
        f"step{i}": {
            "type": "shell",
            "command": cluster.body("sleep 0.3"),
            **({"depends_on": [f"step{i - 1}"]} if i else {}),
        }
        for i in range(6)
    }
    tasks.update(
        {
            f"side{i}": {
                "type": "shell",
                "command": cluster.body("sleep 0.2"),
                "depends_on": ["step0"],
            }
            for i in range(8)
        }
    )
    workflow = cluster.apply({"name": "flaky-db", "tasks": tasks})
    (run,) = cluster.trigger(workflow)

    cut = 0
    stop = threading.Event()
    ours = _backend_pid()  # this thread's connection: the test's own reads

    def cutter() -> None:
        nonlocal cut
        try:
            while not stop.wait(0.4):
                cut += _cut_connections(but=ours)
        finally:
            connection.close()

    thread = threading.Thread(target=cutter, daemon=True)
    thread.start()
    try:
        cluster.wait_finished([run], 120)
    finally:
        stop.set()
        thread.join()

    run.refresh_from_db()
    assert cut > 5, "the test must actually cut connections"
    logs = "".join(path.read_text(errors="replace") for path in cluster.workers.logs)
    assert "database error, retrying" in logs, "no worker step had to reconnect"
    assert run.state == "success", cluster.workers.log_text()
    with cluster.scope():
        assert set(TaskInstance.objects.filter(run=run).values_list("state", flat=True)) == {
            "success"
        }
        # Every step reconnected in time: no try was given up for a lapsed lease.
        assert (
            not TaskAttempt.objects.filter(task_instance__run=run).exclude(state="success").exists()
        )
    assert cluster.executions() == {(run.pk, task, 1): 1 for task in tasks}
