"""Everything at once, as an operator's bad day: 200 runs while workers are SIGKILLed and
replaced and Redis is restarted without persistence. Every run succeeds, no try runs
twice, and a try is only ever failed because its worker died."""

from __future__ import annotations

import os
import signal
import time

import pytest

from runs.models import TaskAttempt, TaskInstance, WorkflowRun
from tests.runs.reliability.conftest import Cluster
from tests.workers import wait_for

pytestmark = pytest.mark.slow

RUNS = 200


def test_200_runs_survive_killed_workers_and_a_broker_restart(cluster: Cluster) -> None:
    workflow = cluster.apply(
        {
            "name": "chaos",
            "max_active_runs": RUNS,
            "tasks": {
                "a": {"type": "shell", "command": cluster.body("sleep 0.1")},
                "b": {"type": "shell", "command": cluster.body("sleep 0.1"), "depends_on": ["a"]},
            },
        }
    )
    runs = cluster.trigger(workflow, RUNS)
    ids = [run.pk for run in runs]

    def successes(at_least: int) -> bool:
        with cluster.scope():
            return TaskInstance.objects.filter(run_id__in=ids, state="success").count() >= at_least

    workers = cluster.workers
    wait_for(lambda: successes(20), 60, "work to start", workers)
    os.killpg(workers.named["w1"].pid, signal.SIGKILL)
    wait_for(lambda: successes(60), 60, "work to go on with one worker", workers)
    cluster.redis.restart(down_for=1)
    workers.start_worker("w3")
    wait_for(lambda: successes(120), 60, "work to go on after the restart", workers)
    os.killpg(workers.named["w2"].pid, signal.SIGKILL)
    time.sleep(1)
    workers.start_worker("w4")

    cluster.wait_finished(runs, 150)
    with cluster.scope():
        assert set(WorkflowRun.objects.filter(pk__in=ids).values_list("state", flat=True)) == {
            "success"
        }
        failed = TaskAttempt.objects.filter(task_instance__run_id__in=ids).exclude(state="success")
        assert all(a.error.startswith("lease expired") for a in failed), [a.error for a in failed]
        last_tries = dict(
            TaskInstance.objects.filter(run_id__in=ids).values_list("id", "try_number")
        )
        succeeded = set(
            TaskAttempt.objects.filter(task_instance__run_id__in=ids, state="success").values_list(
                "task_instance_id", "try_number"
            )
        )
    assert succeeded == set(last_tries.items()), "each task succeeded on its last try"
    executions = cluster.executions()
    assert set(executions.values()) == {1}, "a try ran more than once"
    assert {(run_id, task) for run_id, task, _ in executions} == {
        (run_id, task) for run_id in ids for task in ("a", "b")
    }
    print(f"chaos: {len(failed)} tries lost with their workers, all {RUNS} runs succeeded")
