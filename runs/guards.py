"""What the engine tells other apps before they change workflows."""

from __future__ import annotations

from runs.models import WorkflowRun
from workflows.models import Workflow


def active_runs(workflow: Workflow) -> str | None:
    """A workflow with queued or running runs is not deleted without `force`."""
    count = (
        WorkflowRun.objects.dangerously_unscoped()
        .filter(workflow=workflow, state__in=[WorkflowRun.State.QUEUED, WorkflowRun.State.RUNNING])
        .count()
    )
    return f"{count} run{'s are' if count != 1 else ' is'} active" if count else None
