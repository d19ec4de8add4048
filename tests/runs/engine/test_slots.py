"""Pools and concurrency keys in the engine: instances that take shared slots wait
`scheduled` with a reason until runs.engine.slots.allocate finds them room; slots come back
when a try ends, however it ends. In-process on PostgreSQL: the test runs queued tries."""

from __future__ import annotations

from typing import Any

import pytest

from runs import engine as engine_module
from runs import operations, worker
from runs.models import Pool, TaskInstance, WorkflowRun
from runs.services import trigger_run
from tests.runs.engine.helpers import Engine
from tests.runs.engine.test_mapping import drive


@pytest.fixture
def engine(transactional_db: None, settings: Any) -> Engine:
    settings.TASK_CONTINUE_SECONDS = 0
    return Engine(workers=None)


def pool(engine: Engine, name: str, slots: int) -> Pool:
    with engine.scope():
        return Pool.objects.create(tenant=engine.tenant, name=name, slots=slots)


def trigger(engine: Engine, workflow: Any, **params: Any) -> WorkflowRun:
    with engine.scope():
        return trigger_run(actor=engine.actor, workflow=workflow, params=params).run


def by_state(engine: Engine, **filters: Any) -> dict[str, int]:
    with engine.scope():
        states = TaskInstance.objects.filter(**filters).values_list("state", flat=True)
    counts: dict[str, int] = {}
    for state in states:
        counts[state] = counts.get(state, 0) + 1
    return counts


def pooled(name: str, width: int, **task: Any) -> dict[str, Any]:
    return {
        "name": name,
        "max_active_tasks": 50,
        "tasks": {f"t{i}": {"type": "noop", "pool": "warehouse", **task} for i in range(width)},
    }


def test_it_queues_no_more_than_the_pool_has_slots_across_workflows(engine: Engine) -> None:
    pool(engine, "warehouse", 4)
    runs = [trigger(engine, engine.apply(pooled(f"w{i}", 3))) for i in range(5)]
    assert by_state(engine, pool="warehouse") == {"queued": 4, "scheduled": 11}
    with engine.scope():
        reasons = set(
            TaskInstance.objects.filter(state="scheduled").values_list("wait_reason", flat=True)
        )
    assert reasons == {"waiting for 1 slot(s) of pool 'warehouse' (4 of 4 in use)"}
    for run in runs:
        drive(engine, run)
    assert by_state(engine, pool="warehouse") == {"success": 15}
    with engine.scope():
        assert all(WorkflowRun.objects.get(pk=r.pk).state == "success" for r in runs)


def test_pool_slots_count_what_a_task_takes(engine: Engine) -> None:
    pool(engine, "warehouse", 5)
    trigger(engine, engine.apply(pooled("big", 4, pool_slots=2)))
    assert by_state(engine, pool="warehouse") == {"queued": 2, "scheduled": 2}


def test_a_missing_pool_holds_the_task_until_it_is_created(engine: Engine) -> None:
    run = trigger(engine, engine.apply(pooled("lonely", 1)))
    with engine.scope():
        ti = TaskInstance.objects.get(run=run)
    assert ti.state == "scheduled"
    assert "pool 'warehouse', which does not exist" in ti.wait_reason
    pool(engine, "warehouse", 1)
    engine_module.allocate_waiting()
    ti.refresh_from_db()
    assert (ti.state, ti.wait_reason) == ("queued", "")


def test_a_paused_pool_says_so(engine: Engine) -> None:
    paused = pool(engine, "warehouse", 0)
    run = trigger(engine, engine.apply(pooled("held", 1)))
    with engine.scope():
        ti = TaskInstance.objects.get(run=run)
    assert (ti.state, ti.wait_reason) == (
        "scheduled",
        "waiting for pool 'warehouse', which is paused (0 slots): give it slots",
    )
    Pool.objects.dangerously_unscoped().filter(pk=paused.pk).update(slots=1)
    engine_module.allocate_waiting()
    ti.refresh_from_db()
    assert (ti.state, ti.wait_reason) == ("queued", "")


def test_a_cancelled_run_gives_its_slots_back_to_the_waiting_ones(engine: Engine) -> None:
    pool(engine, "warehouse", 2)
    first = trigger(engine, engine.apply(pooled("first", 2)))
    second = trigger(engine, engine.apply(pooled("second", 2)))
    assert by_state(engine, run=second) == {"scheduled": 2}
    operations.cancel(first.pk)
    assert by_state(engine, run=second) == {"queued": 2}


def test_a_failed_try_waiting_for_its_retry_holds_no_slot(engine: Engine) -> None:
    pool(engine, "warehouse", 1)
    flaky = {
        "name": "flaky",
        "tasks": {
            "t": {
                "type": "shell",
                "command": ["false"],
                "pool": "warehouse",
                "retries": 1,
                "retry_delay": "1h",
            }
        },
    }
    run = trigger(engine, engine.apply(flaky))
    other = trigger(engine, engine.apply(pooled("other", 1)))
    assert by_state(engine, run=other) == {"scheduled": 1}
    with engine.scope():
        ti = TaskInstance.objects.get(run=run)
    worker.execute(ti.pk, 1)
    engine_module.take_kept()
    assert by_state(engine, run=run) == {"up_for_retry": 1}
    assert by_state(engine, run=other) == {"queued": 1}


def test_a_concurrency_key_limits_running_tasks_per_rendered_key(engine: Engine) -> None:
    spec = {
        "name": "per-customer",
        "params": {"customer": {"type": "string", "default": "acme"}},
        "tasks": {
            "load": {
                "type": "noop",
                "concurrency": {"key": "customer-{{ params.customer }}", "limit": 1},
            }
        },
    }
    workflow = engine.apply(spec)
    acme = [trigger(engine, workflow, customer="acme") for _ in range(3)]
    globex = trigger(engine, workflow, customer="globex")
    assert by_state(engine, concurrency_key="customer-acme") == {"queued": 1, "scheduled": 2}
    assert by_state(engine, run=globex) == {"queued": 1}
    with engine.scope():
        waiting = TaskInstance.objects.filter(state="scheduled").first()
    assert waiting is not None
    assert waiting.wait_reason == "waiting for concurrency key 'customer-acme' (1 of 1 running)"
    for run in acme:
        drive(engine, run)
    assert by_state(engine, concurrency_key="customer-acme") == {"success": 3}


def test_mapped_instances_each_take_a_slot_and_a_key_of_their_own(engine: Engine) -> None:
    pool(engine, "warehouse", 3)
    spec = {
        "name": "mapped-pool",
        "params": {"files": {"type": "array", "default": ["a", "b", "a", "c", "b"]}},
        "tasks": {
            "each": {
                "type": "noop",
                "map": {"over": "{{ params.files }}", "as": "f"},
                "pool": "warehouse",
                "concurrency": {"key": "{{ f }}", "limit": 1},
            }
        },
    }
    run = trigger(engine, engine.apply(spec))
    with engine.scope():
        queued = list(
            TaskInstance.objects.filter(run=run, state="queued").values_list(
                "concurrency_key", flat=True
            )
        )
    assert sorted(queued) == ["a", "b", "c"]
    assert drive(engine, run).state == "success"


def test_the_api_shows_why_a_task_waits(engine: Engine) -> None:
    from runs.api.serializers import TaskInstanceSerializer

    run = trigger(engine, engine.apply(pooled("lonely", 1)))
    with engine.scope():
        data = TaskInstanceSerializer(TaskInstance.objects.get(run=run)).data
    assert data["state"] == "scheduled"
    assert (data["pool"], data["pool_slots"], data["concurrency_key"]) == ("warehouse", 1, "")
    assert data["wait_reason"].startswith("waiting for pool 'warehouse', which does not exist")
