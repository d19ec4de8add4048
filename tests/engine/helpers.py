"""Small helpers for engine tests."""

from __future__ import annotations

from typing import Any

from runs.models import TaskAttempt, TaskInstance, WorkflowRun
from runs.services import trigger_run
from tests.engine.conftest import Engine
from tests.workers import wait_for

__all__ = ["attempts_of", "run_to_end", "states"]


def run_to_end(
    engine: Engine, spec: dict[str, Any], timeout: float = 60, params: dict[str, Any] | None = None
) -> WorkflowRun:
    workflow = engine.apply(spec)
    with engine.scope():
        run = trigger_run(actor=engine.actor, workflow=workflow, params=params or {}).run

    def finished() -> bool:
        run.refresh_from_db()
        return run.state in WorkflowRun.FINISHED

    wait_for(finished, timeout, f"run of {spec['name']} to finish", engine.workers)
    return run


def states(engine: Engine, run: WorkflowRun) -> dict[str, str]:
    with engine.scope():
        return dict(TaskInstance.objects.filter(run=run).values_list("task_id", "state"))


def attempts_of(engine: Engine, run: WorkflowRun, task_id: str) -> list[TaskAttempt]:
    with engine.scope():
        return list(
            TaskAttempt.objects.filter(
                task_instance__run=run, task_instance__task_id=task_id
            ).order_by("try_number")
        )
