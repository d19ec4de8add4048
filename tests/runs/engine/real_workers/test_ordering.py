"""No task starts before all its upstreams finished, on random DAGs (real workers)."""

from __future__ import annotations

import random

import pytest

from runs.models import TaskInstance
from tests.runs.engine.helpers import Engine, run_to_end

pytestmark = pytest.mark.slow


def random_dag(rng: random.Random, size: int) -> dict[str, dict[str, object]]:
    tasks: dict[str, dict[str, object]] = {}
    for index in range(size):
        earlier = list(tasks)
        ups = rng.sample(earlier, k=min(len(earlier), rng.randint(0, 3)))
        tasks[f"t{index}"] = {"type": "noop", "depends_on": ups}
    return tasks


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_it_starts_every_task_after_its_upstreams_ended(engine: Engine, seed: int) -> None:
    rng = random.Random(seed)
    tasks = random_dag(rng, rng.choice([60, 120, 200]))
    run = run_to_end(
        engine, {"name": f"random-{seed}", "max_active_tasks": 8, "tasks": tasks}, timeout=120
    )
    assert run.state == "success"
    with engine.scope():
        rows = {t.task_id: t for t in TaskInstance.objects.filter(run=run)}
    assert {t.state for t in rows.values()} == {"success"}
    for task_id, task in tasks.items():
        for up in task["depends_on"]:  # type: ignore[attr-defined]
            assert rows[up].ended_at <= rows[task_id].started_at, (up, task_id)
