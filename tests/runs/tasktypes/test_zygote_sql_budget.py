"""A python task of a team package, once its zygote is warm, costs the worker the SQL of
any other task's chain step: the package pinned in the version, its environment and its
zygote are found without a query. tests/runs/engine/test_engine_sql_budget.py pins a chain
step (CHAIN_STEP, measured on noop tasks; a task that runs code also reads its instance and
run: TASK_STEP); a step whose templates name its upstream's result reads it besides, one
statement more, for shell and python tasks alike."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from orchestrator.context import tenant_scope
from runs import worker
from runs.models import TaskInstance
from runs.packages import upload_package
from runs.services import trigger_run
from runs.tasktypes.zygotes import ZYGOTES
from tests.runs.engine.helpers import Engine
from tests.runs.engine.test_engine_sql_budget import CHAIN_STEP
from tests.teamcode_support import use_package_index, wheel_bytes

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the suite runs as root in CI")

SOURCE = {"budget_pkg/__init__.py": "def step(n=0):\n    return n + 1\n"}
# A task that runs code reads its instance and run (a chain's noop is spared that read).
TASK_STEP = CHAIN_STEP + 1
RENDERED_STEP = TASK_STEP + 1  # and the upstream's result read for the template


@pytest.fixture
def engine(transactional_db: None, settings: Any, tmp_path: Path) -> Iterator[Engine]:
    use_package_index(settings, tmp_path)
    settings.TASK_CONTINUE_SECONDS = 0  # one task per execute, not the chain after it
    yield Engine(workers=None)
    ZYGOTES.stop()


def _chain(engine: Engine, spec: dict[str, Any]) -> Any:
    workflow = engine.apply(spec)
    with engine.scope():
        return trigger_run(actor=engine.actor, workflow=workflow).run


def _queued(engine: Engine, run: Any) -> TaskInstance:
    with engine.scope():
        return TaskInstance.objects.get(run=run, state="queued")


def _statements(ti: TaskInstance) -> list[str]:
    """One task's life: claim, run, finish, dispatch the next."""
    with CaptureQueriesContext(connection) as captured:
        assert worker._execute_one(ti.pk, ti.try_number) == "success"
    return [q["sql"] for q in captured.captured_queries if q["sql"] not in {"BEGIN", "COMMIT"}]


def _steps(engine: Engine, run: Any) -> tuple[list[str], list[str]]:
    """The statements of the chain's second task (templated) and third (not): the first
    one warms the graph cache (and, for python, builds the environment and the zygote)."""
    worker.execute(_queued(engine, run).pk, 1)
    templated = _statements(_queued(engine, run))
    plain = _statements(_queued(engine, run))
    return templated, plain


def test_a_python_step_of_a_package_costs_what_a_shell_step_costs(engine: Engine) -> None:
    filename, data = wheel_bytes("budget-pkg", "1.0", SOURCE)
    with tenant_scope([engine.tenant]):
        upload_package(actor=engine.actor, tenant=engine.tenant, filename=filename, data=data)
    step = {"type": "python", "callable": "budget_pkg:step"}
    python = _chain(
        engine,
        {
            "name": "py-chain",
            "code": {"package": "budget-pkg"},
            "tasks": {
                "a": {**step, "kwargs": {"n": 1}},
                "b": {**step, "depends_on": ["a"], "kwargs": {"n": "{{ tasks.a.result }}"}},
                "c": {**step, "depends_on": ["b"], "kwargs": {"n": 10}},
                "d": {**step, "depends_on": ["c"]},
            },
        },
    )
    python_templated, python_plain = _steps(engine, python)

    quiet = {"type": "shell", "command": ["true"]}  # no output: no log to write
    shell = _chain(
        engine,
        {
            "name": "sh-chain",
            "tasks": {
                "a": quiet,
                "b": {**quiet, "depends_on": ["a"], "env": {"N": "{{ tasks.a.result }}"}},
                "c": {**quiet, "depends_on": ["b"]},
                "d": {**quiet, "depends_on": ["c"]},
            },
        },
    )
    shell_templated, shell_plain = _steps(engine, shell)

    def shown(*lists: list[str]) -> str:
        return "\n\n".join("\n".join(statements) for statements in lists)

    assert len(python_plain) == len(shell_plain) == TASK_STEP, shown(python_plain, shell_plain)
    assert len(python_templated) == len(shell_templated) == RENDERED_STEP, shown(
        python_templated, shell_templated
    )
    assert not [s for s in python_templated + python_plain if "workflows_codepackage" in s]
    with engine.scope():
        results = dict(TaskInstance.objects.filter(run=python).values_list("task_id", "result"))
        d_state = TaskInstance.objects.get(run=python, task_id="d").state
    assert (results["a"], results["b"], results["c"], d_state) == (2, 3, 11, "queued")
