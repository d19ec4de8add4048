"""Small helpers for engine tests: `Engine` (a tenant with an owner, on real workers or
none) and ways to run a spec and read its outcome back."""

from __future__ import annotations

from typing import Any

from django.contrib.auth.models import User

from orchestrator import services
from orchestrator.actors import Actor
from orchestrator.context import tenant_scope
from runs.models import TaskAttempt, TaskInstance, WorkflowRun
from runs.services import trigger_run
from tests.workers import Workers, wait_for
from workflows.services import apply_workflow

__all__ = ["Engine", "attempts_of", "run_to_end", "states"]


class Engine:
    """A tenant with an owner, and helpers to apply specs and read runs back."""

    def __init__(self, workers: Workers | None) -> None:
        self.workers = workers
        self.user = User.objects.create_user("owner")
        self.tenant = services.create_tenant(
            actor=Actor.cli(),
            slug="eng",
            name="Engine",
            owner=self.user,
            quotas={"max_tasks_per_workflow": 2000, "max_concurrent_runs": 500},
        )
        self.actor = Actor(user=self.user, source="api")

    def apply(self, spec: dict[str, Any]) -> Any:
        with tenant_scope([self.tenant]):
            return apply_workflow(actor=self.actor, tenant=self.tenant, data=spec).workflow

    def scope(self) -> Any:
        return tenant_scope([self.tenant])


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
