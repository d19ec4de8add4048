"""Joins never lose their wake-up: 1 -> 500 -> 1, many times, two worker processes."""

from __future__ import annotations

import time

import pytest

from runs.models import TaskInstance, WorkflowRun
from runs.services import trigger_run
from tests.runs.engine.helpers import Engine
from tests.workers import wait_for

pytestmark = pytest.mark.slow

WIDTH = 500
RUNS = 20


def test_it_always_runs_the_join_of_a_wide_fan_out(engine: Engine) -> None:
    tasks = {"root": {"type": "noop"}}
    tasks.update({f"t{i}": {"type": "noop", "depends_on": ["root"]} for i in range(WIDTH)})
    tasks["join"] = {"type": "noop", "depends_on": [f"t{i}" for i in range(WIDTH)]}
    workflow = engine.apply(
        {"name": "fan", "max_active_runs": RUNS, "max_active_tasks": 1000, "tasks": tasks}
    )
    started = time.monotonic()
    with engine.scope():
        runs = [trigger_run(actor=engine.actor, workflow=workflow).run for _ in range(RUNS)]

    def all_finished() -> bool:
        with engine.scope():
            return (
                not WorkflowRun.objects.filter(pk__in=[r.pk for r in runs])
                .exclude(state__in=WorkflowRun.FINISHED)
                .exists()
            )

    wait_for(all_finished, 240, f"{RUNS} fan-out runs to finish", engine.workers)
    elapsed = time.monotonic() - started
    with engine.scope():
        states = set(
            WorkflowRun.objects.filter(pk__in=[r.pk for r in runs]).values_list("state", flat=True)
        )
        joins = TaskInstance.objects.filter(run__in=runs, task_id="join")
        assert states == {"success"}
        assert [j.state for j in joins] == ["success"] * RUNS
        for join in joins:
            last_upstream = (
                TaskInstance.objects.filter(run=join.run_id)
                .exclude(task_id__in=["root", "join"])
                .order_by("-ended_at")
                .first()
            )
            assert last_upstream is not None
            assert join.started_at >= last_upstream.ended_at
        assert TaskInstance.objects.filter(run__in=runs, try_number=1).count() == RUNS * (WIDTH + 2)
    print(f"{RUNS * (WIDTH + 2)} tasks in {elapsed:.1f}s")
