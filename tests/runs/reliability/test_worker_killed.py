"""A worker SIGKILLed in the middle of a task: the try is failed once its lease expires and
the task runs again on the other worker; the dead try's processes die with it, and its
message, delivered late, changes nothing."""

from __future__ import annotations

import os
import secrets
import signal
import time
from pathlib import Path

import pytest

from runs.models import TaskAttempt, TaskInstance, WorkflowRun
from tests.runs.engine.helpers import attempts_of, states
from tests.runs.reliability.conftest import Cluster
from tests.workers import alive, sandboxed_pids, wait_for

pytestmark = pytest.mark.slow


def test_a_killed_workers_try_is_retried_and_its_processes_die(cluster: Cluster) -> None:
    # Try 1 starts a grandchild that would outlive a careless worker, then hangs. Its pid
    # in the sandbox means nothing here: it is found by its argument.
    marker = f"300.{secrets.randbelow(10**12):012d}"
    hang = f'if [ "{{{{ try_number }}}}" = "1" ]; then sleep {marker} & sleep 300; fi; echo done'
    workflow = cluster.apply(
        {
            "name": "victim",
            "tasks": {
                "t": {"type": "shell", "command": cluster.body(hang)},
                "after": {"type": "shell", "command": cluster.body(), "depends_on": ["t"]},
            },
        }
    )
    (run,) = cluster.trigger(workflow)

    def first_attempt() -> TaskAttempt | None:
        with cluster.scope():
            return TaskAttempt.objects.filter(task_instance__run=run, try_number=1).first()

    attempt = wait_for(first_attempt, 30, "try 1 to start", cluster.workers)
    grandchildren = wait_for(
        lambda: sandboxed_pids(marker), 10, "the grandchild to start", cluster.workers
    )
    # The whole worker: its main process and its pool processes.
    victim = next(p for p in cluster.workers.named.values() if _has_child(p.pid, attempt.pid))
    os.killpg(victim.pid, signal.SIGKILL)

    wait_for(
        lambda: not any(map(alive, grandchildren)) and not sandboxed_pids(marker),
        10,
        "the dead try's grandchild to be killed",
    )
    cluster.wait_finished([run], 60)
    run.refresh_from_db()
    assert run.state == WorkflowRun.State.SUCCESS
    assert states(cluster, run) == {"t": "success", "after": "success"}
    tries = attempts_of(cluster, run, "t")
    assert [(a.try_number, a.state) for a in tries] == [(1, "failed"), (2, "success")]
    assert tries[0].error.startswith("lease expired")
    # Losing a worker did not use up the task's retries (it has none).
    with cluster.scope():
        ti = TaskInstance.objects.get(run=run, task_id="t")
    assert (ti.try_number, ti.lost_tries) == (2, 1)
    assert cluster.executions() == {
        (run.pk, "t", 1): 1,
        (run.pk, "t", 2): 1,
        (run.pk, "after", 1): 1,
    }

    # The dead try's message turns up late (Redis gives unacked messages back): nothing moves.
    from runs.tasks import execute_task_instance

    execute_task_instance.delay(ti.pk, 1)
    time.sleep(2)
    assert [(a.try_number, a.state) for a in attempts_of(cluster, run, "t")] == [
        (1, "failed"),
        (2, "success"),
    ]
    assert sum(cluster.executions().values()) == 3
    with cluster.scope():
        assert not TaskAttempt.objects.filter(task_instance__run=run, state="running").exists()


def _has_child(parent: int, pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except FileNotFoundError:
        return False
    return int(stat.rsplit(")", 1)[1].split()[1]) == parent
