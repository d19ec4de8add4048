"""A pool's slots hold across real worker processes: ten workflows share a pool of two,
and the recorded start and end times of their tries never overlap more than two deep;
a concurrency key of limit 1 runs its tasks one at a time across runs."""

from __future__ import annotations

import datetime as dt

from runs.models import Pool, TaskAttempt, WorkflowRun
from runs.services import trigger_run
from tests.runs.engine.helpers import Engine
from tests.workers import wait_for


def deepest_overlap(spans: list[tuple[dt.datetime, dt.datetime]]) -> int:
    edges = sorted([(start, 1) for start, _ in spans] + [(end, -1) for _, end in spans])
    depth = deepest = 0
    for _, step in edges:  # an end sorts before a start at the same instant
        depth += step
        deepest = max(deepest, depth)
    return deepest


def run_all(engine: Engine, runs: list[WorkflowRun]) -> None:
    def ended() -> bool:
        with engine.scope():
            return not WorkflowRun.objects.filter(
                pk__in=[r.pk for r in runs], state__in=["queued", "running"]
            ).exists()

    wait_for(ended, 120, "the runs to end", engine.workers)


def spans(engine: Engine, **filters: object) -> list[tuple[dt.datetime, dt.datetime]]:
    with engine.scope():
        rows = TaskAttempt.objects.filter(**filters).values_list("started_at", "ended_at")
        return [(start, end) for start, end in rows if end is not None]


def test_ten_workflows_never_run_more_tasks_than_their_pool_has_slots(engine: Engine) -> None:
    with engine.scope():
        Pool.objects.create(tenant=engine.tenant, name="warehouse", slots=2)
    runs = []
    for i in range(10):
        workflow = engine.apply(
            {
                "name": f"load-{i}",
                "tasks": {
                    f"t{j}": {"type": "shell", "command": ["sleep", "0.3"], "pool": "warehouse"}
                    for j in range(2)
                },
            }
        )
        with engine.scope():
            runs.append(trigger_run(actor=engine.actor, workflow=workflow).run)
    run_all(engine, runs)
    with engine.scope():
        assert set(
            WorkflowRun.objects.filter(pk__in=[r.pk for r in runs]).values_list("state", flat=True)
        ) == {"success"}
    recorded = spans(engine, task_instance__pool="warehouse")
    assert len(recorded) == 20
    assert deepest_overlap(recorded) == 2  # full use of the pool, never more


def test_a_concurrency_key_runs_its_tasks_one_at_a_time_across_runs(engine: Engine) -> None:
    workflow = engine.apply(
        {
            "name": "per-customer",
            "params": {"customer": {"type": "string"}},
            "tasks": {
                "sync": {
                    "type": "shell",
                    "command": ["sleep", "0.3"],
                    "concurrency": {"key": "{{ params.customer }}", "limit": 1},
                }
            },
        }
    )
    with engine.scope():
        runs = [
            trigger_run(actor=engine.actor, workflow=workflow, params={"customer": c}).run
            for c in ("acme", "acme", "acme", "globex", "globex")
        ]
    run_all(engine, runs)
    acme = spans(engine, task_instance__concurrency_key="acme")
    globex = spans(engine, task_instance__concurrency_key="globex")
    assert (len(acme), len(globex)) == (3, 2)
    assert deepest_overlap(acme) == 1
    assert deepest_overlap(globex) == 1
    assert deepest_overlap(acme + globex) >= 2  # different keys do run side by side
