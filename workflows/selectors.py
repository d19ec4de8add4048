"""Read queries of workflows. Callers are inside the tenant's scope."""

from __future__ import annotations

from django.db.models import Q, QuerySet

from orchestrator.errors import NotFound
from workflows.models import Workflow, WorkflowVersion

__all__ = ["get_version", "get_workflow", "live_workflows"]


def live_workflows(
    *, tag: str | None = None, paused: bool | None = None, search: str | None = None
) -> QuerySet[Workflow]:
    qs = Workflow.objects.filter(deleted_at__isnull=True).select_related("current_version")
    if tag:
        qs = qs.filter(tags__contains=[tag])
    if paused is not None:
        qs = qs.filter(paused=paused)
    if search:
        qs = qs.filter(Q(name__icontains=search) | Q(description__icontains=search))
    return qs


def get_workflow(name: str) -> Workflow:
    workflow = live_workflows().select_related("tenant").filter(name=name).first()
    if workflow is None:
        raise NotFound(f"workflow {name!r} not found")
    return workflow


def get_version(workflow: Workflow, number: int) -> WorkflowVersion:
    version = WorkflowVersion.objects.filter(workflow=workflow, number=number).first()
    if version is None:
        raise NotFound(f"workflow {workflow.name!r} has no version {number}")
    return version
