"""A run goes through real workers: ordering, results passed downstream, final states."""

from __future__ import annotations

import itertools

import pytest

from runs.models import TaskInstance, WorkflowRun
from runs.services import trigger_run
from tests.runs.engine.helpers import Engine
from tests.workers import wait_for

pytestmark = pytest.mark.slow


def finished(run: WorkflowRun) -> bool:
    run.refresh_from_db()
    return run.state in WorkflowRun.FINISHED


def test_it_runs_a_workflow_to_success_in_dependency_order(engine: Engine) -> None:
    workflow = engine.apply(
        {
            "name": "etl",
            "params": {"who": {"type": "string", "default": "world"}},
            "tasks": {
                "start": {"type": "noop"},
                "hello": {
                    "type": "shell",
                    "command": ["sh", "-c", 'echo "{\\"n\\": 41}"'],
                    "depends_on": ["start"],
                },
                "add": {
                    "type": "python",
                    "callable": "runs.library:add",
                    "kwargs": {"a": "{{ tasks.hello.result.n }}", "b": 1},
                    "depends_on": ["hello"],
                },
                "greet": {
                    "type": "shell",
                    "command": ["echo", "hi {{ params.who }}"],
                    "depends_on": ["add"],
                },
            },
        }
    )
    with engine.scope():
        run = trigger_run(actor=engine.actor, workflow=workflow, params={"who": "you"}).run
    wait_for(lambda: finished(run), 30, "the run to finish", engine.workers)
    assert run.state == "success"
    with engine.scope():
        tis = {t.task_id: t for t in TaskInstance.objects.filter(run=run)}
    assert {t: ti.state for t, ti in tis.items()} == dict.fromkeys(tis, "success")
    assert tis["hello"].result == {"n": 41}
    assert tis["add"].result == 42
    assert tis["greet"].result == "hi you"
    order = ["start", "hello", "add", "greet"]
    for up, down in itertools.pairwise(order):
        assert tis[up].ended_at <= tis[down].started_at
