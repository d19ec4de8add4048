"""Dynamic fan-out (`map`): a task expands at run time into one instance per element,
each with its own tries and state; its downstream sees the group and gets the results in
index order. Driven in-process on PostgreSQL: the test runs each queued try itself."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from django.conf import settings

from orchestrator.models import Tenant
from runs import engine as engine_module
from runs import operations, worker
from runs.models import TaskAttempt, TaskInstance, WorkflowRun
from runs.services import trigger_run
from tests.runs.engine.helpers import Engine


@pytest.fixture
def engine(transactional_db: None, settings: Any) -> Engine:
    settings.TASK_CONTINUE_SECONDS = 0  # one step at a time: the test drives the run
    return Engine(workers=None)


def drive(engine: Engine, run: WorkflowRun, limit: int = 5000) -> WorkflowRun:
    """Run queued tries in-process until the run ends (noops in batches, as workers do)."""
    for _ in range(limit):
        engine_module.take_kept()
        with engine.scope():
            queued = list(
                TaskInstance.objects.filter(run=run, state="queued").values_list(
                    "id", "try_number", "task_type"
                )
            )
        if not queued:
            break
        noops = [(i, t) for i, t, kind in queued if kind == "noop"]
        if noops:
            worker.execute_batch(noops)
        for ti_id, try_number, kind in queued:
            if kind != "noop":
                worker.execute(ti_id, try_number)
    engine_module.take_kept()
    run.refresh_from_db()
    return run


def start(
    engine: Engine, spec: dict[str, Any], params: dict[str, Any] | None = None
) -> WorkflowRun:
    workflow = engine.apply(spec)
    with engine.scope():
        return trigger_run(actor=engine.actor, workflow=workflow, params=params or {}).run


def instances(engine: Engine, run: WorkflowRun, task_id: str) -> list[TaskInstance]:
    with engine.scope():
        return list(TaskInstance.objects.filter(run=run, task_id=task_id).order_by("map_index"))


LIST_PARAM = {"files": {"type": "array", "default": []}}


def fan_spec(**each: Any) -> dict[str, Any]:
    return {
        "name": "fan",
        "max_active_tasks": 64,
        "params": LIST_PARAM,
        "tasks": {
            "each": {
                "type": "noop",
                "map": {"over": "{{ params.files }}", "as": "file"},
                **each,
            },
            "after": {"type": "noop", "depends_on": ["each"]},
        },
    }


def test_it_runs_one_instance_per_element_and_the_downstream_after_the_group(
    engine: Engine,
) -> None:
    items = [f"f{i}.csv" for i in range(300)]
    run = drive(engine, start(engine, fan_spec(), {"files": items}))
    assert run.state == "success"
    each = instances(engine, run, "each")
    assert [ti.map_index for ti in each] == list(range(300))
    assert [ti.map_value for ti in each] == items
    assert {ti.state for ti in each} == {"success"}
    (after,) = instances(engine, run, "after")
    assert after.state == "success"
    # The downstream started only once the last instance had ended.
    assert after.queued_at is not None
    assert after.queued_at >= max(ti.ended_at for ti in each if ti.ended_at is not None)


def test_the_reducer_gets_the_results_in_index_order(engine: Engine) -> None:
    spec = {
        "name": "reduce",
        "max_active_tasks": 8,
        "tasks": {
            "ls": {
                "type": "python",
                "callable": "runs.library:echo",
                "kwargs": {"files": ["c", "a", "b", "d", "e"]},
            },
            "each": {
                "type": "shell",
                "command": ["echo", "{{ map_index }}:{{ name }}"],
                "map": {"over": "{{ tasks.ls.result.files }}", "as": "name"},
                "depends_on": ["ls"],
            },
            "reduce": {
                "type": "python",
                "callable": "runs.library:echo",
                "kwargs": {"got": "{{ tasks.each.result }}"},
                "depends_on": ["each"],
            },
        },
    }
    run = drive(engine, start(engine, spec))
    assert run.state == "success", run.state
    (reduce,) = instances(engine, run, "reduce")
    assert reduce.result == {"got": ["0:c", "1:a", "2:b", "3:d", "4:e"]}


def test_an_empty_list_skips_the_task_and_its_all_success_downstream(engine: Engine) -> None:
    run = drive(engine, start(engine, fan_spec(), {"files": []}))
    assert run.state == "success"
    (each,) = instances(engine, run, "each")
    assert (each.map_index, each.state) == (-1, "skipped")
    assert instances(engine, run, "after")[0].state == "skipped"


def test_a_list_longer_than_max_fails_the_task_with_a_message(engine: Engine) -> None:
    spec = fan_spec()
    spec["tasks"]["each"]["map"]["max"] = 10
    run = drive(engine, start(engine, spec, {"files": list(range(11))}))
    assert run.state == "failed"
    (each,) = instances(engine, run, "each")
    assert each.state == "failed"
    with engine.scope():
        (attempt,) = TaskAttempt.objects.filter(task_instance=each)
    assert "11 elements, more than 10 (the spec's map.max)" in attempt.error
    assert instances(engine, run, "after")[0].state == "upstream_failed"


def test_the_tenants_policy_caps_the_length_too(engine: Engine) -> None:
    Tenant.objects.filter(pk=engine.tenant.pk).update(policy={"max_map_length": 5})
    run = drive(engine, start(engine, fan_spec(), {"files": list(range(6))}))
    (each,) = instances(engine, run, "each")
    with engine.scope():
        (attempt,) = TaskAttempt.objects.filter(task_instance=each)
    assert "more than 5 (the tenant's max_map_length)" in attempt.error


def test_something_that_is_not_a_list_fails_the_task(engine: Engine) -> None:
    spec = fan_spec()
    spec["tasks"]["each"]["map"]["over"] = "{{ params.files | length }}"
    run = drive(engine, start(engine, spec, {"files": [1, 2]}))
    (each,) = instances(engine, run, "each")
    with engine.scope():
        (attempt,) = TaskAttempt.objects.filter(task_instance=each)
    assert "rendered to int, expected a list" in attempt.error
    assert run.state == "failed"


def test_one_failed_index_fails_the_group_and_a_retry_reruns_only_that_index(
    engine: Engine,
) -> None:
    spec = {
        "name": "partly",
        "params": LIST_PARAM,
        "tasks": {
            "each": {
                "type": "shell",
                "command": ["sh", "-c", "test {{ n }} -ne 2 || test -e {{ params.flag }}"],
                "map": {"over": "{{ params.files }}", "as": "n"},
            },
            "after": {"type": "noop", "depends_on": ["each"]},
            "always": {"type": "noop", "depends_on": ["each"], "trigger_rule": "all_done"},
        },
    }
    spec["params"] = {**LIST_PARAM, "flag": {"type": "string", "default": "/nonexistent"}}
    run = drive(engine, start(engine, spec, {"files": [0, 1, 2, 3]}))
    assert run.state == "failed"
    each = instances(engine, run, "each")
    assert [ti.state for ti in each] == ["success", "success", "failed", "success"]
    assert instances(engine, run, "after")[0].state == "upstream_failed"
    assert instances(engine, run, "always")[0].state == "success"
    first_tries = {ti.map_index: ti.try_number for ti in each}

    operations.retry(run.pk)
    run = drive(engine, run)
    each = instances(engine, run, "each")
    assert len(each) == 4  # not fanned out again
    assert {ti.map_index: ti.try_number for ti in each} == {**first_tries, 2: 2}
    assert each[2].state == "failed"  # the flag file still does not exist


def test_clearing_one_index_runs_only_it_and_then_the_downstream_again(engine: Engine) -> None:
    run = drive(engine, start(engine, fan_spec(), {"files": ["a", "b", "c"]}))
    assert run.state == "success"
    operations.clear(run.pk, "each", downstream=True, map_index=1)
    each = instances(engine, run, "each")
    assert [ti.state for ti in each] == ["success", "pending", "success"] or [
        ti.state for ti in each
    ] == ["success", "queued", "success"]
    run = drive(engine, run)
    assert run.state == "success"
    each = instances(engine, run, "each")
    assert [ti.try_number for ti in each] == [1, 2, 1]
    (after,) = instances(engine, run, "after")
    assert after.try_number == 2


def test_clearing_the_whole_task_fans_out_again_over_the_list_of_now(engine: Engine) -> None:
    run = drive(engine, start(engine, fan_spec(), {"files": ["a", "b", "c"]}))
    operations.clear(run.pk, "each", downstream=True)
    run = drive(engine, run)
    assert run.state == "success"
    each = instances(engine, run, "each")
    assert [(ti.map_index, ti.map_value, ti.state) for ti in each] == [
        (0, "a", "success"),
        (1, "b", "success"),
        (2, "c", "success"),
    ]


def test_a_mapped_root_of_a_literal_list_starts_with_the_run(engine: Engine) -> None:
    spec = {
        "name": "literal",
        "tasks": {"each": {"type": "noop", "map": {"over": [1, 2, 3]}}},
    }
    run = drive(engine, start(engine, spec))
    assert run.state == "success"
    assert [ti.map_value for ti in instances(engine, run, "each")] == [1, 2, 3]


def test_the_documented_example_runs_as_docs_mapping_md_says(engine: Engine) -> None:
    text = (Path(settings.BASE_DIR) / "docs" / "mapping.md").read_text()
    spec = yaml.safe_load(re.search(r"```yaml\n(.*?)```", text, re.S).group(1))  # type: ignore[union-attr]
    run = drive(engine, start(engine, spec))
    assert run.state == "success"
    (report,) = instances(engine, run, "report")
    assert report.result == {
        "loaded": ["loading a.csv (0)", "loading b.csv (1)", "loading c.csv (2)"]
    }
