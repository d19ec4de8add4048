"""A python task of a team package, once its zygote is warm, costs the worker the SQL of
any other task's chain step: the package pinned in the version, its environment and its
zygote are found without a query. tests/runs/engine/test_engine_sql_budget.py pins a chain
step (CHAIN_STEP, measured on noop tasks). A task that runs code reads its run, workflow
and tenant, unless a try of the same run read them in the last RUN_REUSE_SECONDS (a chain's
steps): TASK_STEP; a step whose templates name its upstream's result reads it besides, one
statement more, for shell and python tasks alike."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from orchestrator.context import tenant_scope
from runs import worker
from runs.models import TaskInstance
from runs.packages import upload_package
from runs.services import trigger_run
from runs.tasktypes.zygotes import ZYGOTES
from tests.runs.engine.helpers import Engine
from tests.runs.engine.test_engine_sql_budget import CHAIN_STEP, step_statements
from tests.teamcode_support import use_package_index, wheel_bytes

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the suite runs as root in CI")

SOURCE = {"budget_pkg/__init__.py": "def step(n=0):\n    return n + 1\n"}
# A task that runs code, its run read lately: what a chain's noop costs.
TASK_STEP = CHAIN_STEP
RENDERED_STEP = TASK_STEP + 1  # and the upstream's result read for the template


@pytest.fixture
def engine(
    transactional_db: None, settings: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> Iterator[Engine]:
    use_package_index(settings, tmp_path)
    settings.TASK_CONTINUE_SECONDS = 0  # one task per execute, not the chain after it
    # The first step's read of the run serves the next ones however long the python chain's
    # first step (the environment, the zygote) took.
    monkeypatch.setattr(worker, "RUN_REUSE_SECONDS", 3600.0)
    yield Engine(workers=None)
    ZYGOTES.stop()


def _chain(engine: Engine, spec: dict[str, Any]) -> Any:
    workflow = engine.apply(spec)
    with engine.scope():
        return trigger_run(actor=engine.actor, workflow=workflow).run


def _queued(engine: Engine, run: Any) -> TaskInstance:
    with engine.scope():
        return TaskInstance.objects.get(run=run, state="queued")


def _steps(engine: Engine, run: Any) -> tuple[list[str], list[str]]:
    """The statements of the chain's second task (templated) and third (not): the first
    one warms the graph cache (and, for python, builds the environment and the zygote)."""
    worker.execute(_queued(engine, run).pk, 1)
    templated = step_statements(_queued(engine, run))
    plain = step_statements(_queued(engine, run))
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


def test_a_policy_change_reaches_the_tries_that_start_after_the_reuse_window(
    engine: Engine, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run's row read for one try serves the next tries of the run for
    RUN_REUSE_SECONDS (runs/worker.py): within it a try runs on the tenant's policy as that
    read saw it, one statement fewer; past it, the run is read again with the new policy."""
    files = {"type": "shell", "command": "ulimit -n", "shell": True}
    run = _chain(
        engine,
        {
            "name": "limits",
            "tasks": {
                "a": files,
                "b": {**files, "depends_on": ["a"]},
                "c": {**files, "depends_on": ["b"]},
            },
        },
    )
    worker.execute(_queued(engine, run).pk, 1)  # a: reads the run
    with engine.scope():
        engine.tenant.policy = {"task_limits": {"open_files": 100}}
        engine.tenant.save(update_fields=["policy"])
    within = step_statements(_queued(engine, run))  # b: within the window
    monkeypatch.setattr(worker, "RUN_REUSE_SECONDS", 0.0)
    past = step_statements(_queued(engine, run))  # c: past it
    with engine.scope():
        results = dict(TaskInstance.objects.filter(run=run).values_list("task_id", "result"))
    assert results["a"] != 100
    assert (results["b"], results["c"]) == (results["a"], 100)
    read = 'FROM "runs_taskinstance" INNER JOIN "runs_workflowrun"'
    assert [any(read in s for s in step) for step in (within, past)] == [False, True]
