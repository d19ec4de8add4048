"""Redis restarted (without persistence) or flushed while 100 runs are queued: every message
in it is gone, yet every run completes and no task body runs twice for the same try."""

from __future__ import annotations

import time

import pytest

from runs.models import TaskInstance, WorkflowRun
from tests.runs.reliability.conftest import Cluster
from tests.workers import wait_for

pytestmark = pytest.mark.slow

RUNS = 100


@pytest.mark.parametrize("loss", ["restart", "flush"])
def test_every_run_completes_after_the_broker_loses_its_messages(
    cluster: Cluster, loss: str
) -> None:
    workflow = cluster.apply(
        {
            "name": "batch",
            "max_active_runs": RUNS,
            "tasks": {
                "extract": {"type": "shell", "command": cluster.body("sleep 0.05")},
                "load": {"type": "shell", "command": cluster.body(), "depends_on": ["extract"]},
            },
        }
    )
    runs = cluster.trigger(workflow, RUNS)

    def some_done() -> bool:
        with cluster.scope():
            return TaskInstance.objects.filter(run__in=runs, state="success").count() >= 20

    wait_for(some_done, 60, "the first tasks to finish", cluster.workers)
    with cluster.scope():
        waiting = TaskInstance.objects.filter(run__in=runs, state="queued").count()
    assert waiting > 50, "the loss must hit a full queue"
    lost_at = time.monotonic()
    if loss == "restart":
        cluster.redis.restart(down_for=2)
    else:
        cluster.redis.flush()

    cluster.wait_finished(runs, 120)
    recovered = time.monotonic() - lost_at
    with cluster.scope():
        assert set(
            WorkflowRun.objects.filter(pk__in=[r.pk for r in runs]).values_list("state", flat=True)
        ) == {"success"}
        assert not TaskInstance.objects.filter(run__in=runs).exclude(state="success").exists()
    executions = cluster.executions()
    assert max(executions.values()) == 1, "a try ran twice"
    assert {(run_id, task) for run_id, task, _ in executions} == {
        (run.pk, task) for run in runs for task in ("extract", "load")
    }
    # Nothing was lost with a worker, so every task ran exactly once, as its first try.
    assert {try_number for _, _, try_number in executions} == {1}
    print(f"{loss}: all {RUNS} runs finished {recovered:.1f}s after the loss")
