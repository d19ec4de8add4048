"""SIGTERM to a worker (a deploy, `docker stop`) while it runs a task: the worker finishes
the task before it exits, gives back what it had not started, and no work is lost."""

from __future__ import annotations

import signal

import pytest

from runs.models import TaskAttempt, WorkflowRun
from tests.runs.engine.helpers import attempts_of, states
from tests.runs.reliability.conftest import Cluster
from tests.workers import wait_for

pytestmark = pytest.mark.slow


def test_a_warm_shutdown_finishes_the_running_task(cluster: Cluster) -> None:
    workflow = cluster.apply(
        {
            "name": "deploy-time",
            "tasks": {
                "long": {"type": "shell", "command": cluster.body("sleep 3")},
                **{
                    f"next{i}": {"type": "shell", "command": cluster.body(), "depends_on": ["long"]}
                    for i in range(6)
                },
            },
        }
    )
    (run,) = cluster.trigger(workflow)

    def running() -> TaskAttempt | None:
        with cluster.scope():
            return TaskAttempt.objects.filter(task_instance__run=run, state="running").first()

    attempt = wait_for(running, 30, "the long task to start", cluster.workers)
    worker = next(p for p in cluster.workers.named.values() if _is_parent(p.pid, attempt.pid))
    worker.send_signal(signal.SIGTERM)  # the main process only, as `docker stop` does
    assert worker.wait(timeout=30) == 0  # it waited for the task, then left cleanly

    cluster.wait_finished([run], 60)
    run.refresh_from_db()
    assert run.state == "success", f"{_attempts(cluster, run)}\n{cluster.workers.log_text()}"
    assert set(states(cluster, run).values()) == {"success"}
    assert [(a.try_number, a.state) for a in attempts_of(cluster, run, "long")] == [(1, "success")]
    executions = cluster.executions()
    assert set(executions.values()) == {1}
    assert len(executions) == 7


def _attempts(cluster: Cluster, run: WorkflowRun) -> str:
    """Each task's tries, for a failure's message: which one failed, where, and why."""
    with cluster.scope():
        tries = TaskAttempt.objects.filter(task_instance__run=run).order_by("started_at")
        return "\n".join(
            f"{a.task_instance.task_id} try {a.try_number} on {a.worker} pid {a.pid}: "
            f"{a.state} exit {a.exit_code} {a.error!r}"
            for a in tries.select_related("task_instance")
        )


def _is_parent(parent: int, pid: int) -> bool:
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return int(stat.read().rsplit(")", 1)[1].split()[1]) == parent
    except FileNotFoundError:
        return False
