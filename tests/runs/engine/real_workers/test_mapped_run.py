"""A mapped task on real workers: 120 instances, each its own try on whichever worker, and a
reducer that gets their 120 results in index order."""

from __future__ import annotations

from runs.models import TaskInstance
from tests.runs.engine.helpers import Engine, run_to_end


def test_a_hundred_and_twenty_instances_and_a_reducer_that_gets_their_results_in_order(
    engine: Engine,
) -> None:
    spec = {
        "name": "fan-120",
        "max_active_tasks": 64,
        "params": {"files": {"type": "array", "default": [str(i) for i in range(120)]}},
        "tasks": {
            "list": {
                "type": "python",
                "callable": "runs.library:echo",
                "kwargs": {"files": "{{ params.files }}"},
            },
            "each": {
                "type": "shell",
                "command": ["echo", "done-{{ file }}"],
                "depends_on": ["list"],
                "map": {"over": "{{ tasks.list.result.files }}", "as": "file"},
            },
            "reduce": {
                "type": "python",
                "callable": "runs.library:echo",
                "kwargs": {"results": "{{ tasks.each.result }}"},
                "depends_on": ["each"],
            },
        },
    }
    run = run_to_end(engine, spec, timeout=180)
    assert run.state == "success"
    with engine.scope():
        each = list(
            TaskInstance.objects.filter(run=run, task_id="each")
            .order_by("map_index")
            .values_list("map_index", "state", "try_number")
        )
        reduce = TaskInstance.objects.get(run=run, task_id="reduce")
    assert [(i, s, t) for i, s, t in each] == [(i, "success", 1) for i in range(120)]
    assert reduce.result == {"results": [f"done-{i}" for i in range(120)]}
