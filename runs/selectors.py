"""Read queries of runs. Callers are inside the tenant's scope."""

from __future__ import annotations

import datetime as dt

from django.db.models import Count, QuerySet

from orchestrator.errors import NotFound
from runs.models import TaskInstance, WorkflowRun

__all__ = ["get_run", "get_task_instance", "run_list", "task_summary"]


def run_list(
    *,
    workflow: str | None = None,
    state: str | None = None,
    created_after: dt.datetime | None = None,
    created_before: dt.datetime | None = None,
) -> QuerySet[WorkflowRun]:
    qs = WorkflowRun.objects.select_related("workflow", "version", "triggered_by")
    if workflow:
        qs = qs.filter(workflow__name=workflow, workflow__deleted_at__isnull=True)
    if state:
        qs = qs.filter(state=state)
    if created_after:
        qs = qs.filter(created_at__gte=created_after)
    if created_before:
        qs = qs.filter(created_at__lt=created_before)
    return qs


def get_run(run_id: str | int) -> WorkflowRun:
    run = run_list().filter(pk=int(run_id)).first() if str(run_id).isdigit() else None
    if run is None:
        raise NotFound(f"run {run_id!r} not found")
    return run


def task_summary(run: WorkflowRun) -> dict[str, int]:
    rows = TaskInstance.objects.filter(run=run).values("state").annotate(n=Count("id"))
    return {row["state"]: row["n"] for row in rows}


def get_task_instance(run: WorkflowRun, task_id: str) -> TaskInstance:
    ti = TaskInstance.objects.filter(run=run, task_id=task_id, map_index=-1).first()
    if ti is None:
        raise NotFound(f"run {run.pk} has no task {task_id!r}")
    return ti
