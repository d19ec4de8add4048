"""Pools and the task instances that name them, in the states a usage count reads, set with
plain UPDATEs as the engine would have left them (no worker runs here)."""

from __future__ import annotations

from orchestrator.actors import Actor
from runs.models import Pool, TaskInstance, WorkflowRun
from runs.pools import create_pool
from tests.harness import Team
from tests.runs.run_states import started_run

__all__ = ["a_pool", "busy_run", "name_pool"]


def a_pool(team: Team, name: str = "warehouse", slots: int = 4, description: str = "") -> Pool:
    return create_pool(
        actor=Actor.cli(), tenant=team.tenant, name=name, slots=slots, description=description
    )


def name_pool(run: WorkflowRun, task_id: str, pool: str, state: str, slots: int = 1) -> None:
    """The run's instance of `task_id` names `pool`, takes `slots` of it and is in `state`."""
    TaskInstance.objects.dangerously_unscoped().filter(run=run, task_id=task_id).update(
        pool=pool, pool_slots=slots, state=state
    )


def busy_run(team: Team, pool: str = "warehouse") -> WorkflowRun:
    """A run whose instances name `pool`: extract running (2 slots), side queued (1 slot),
    transform scheduled (waiting, 3 slots), load pending, report succeeded: 3 slots in use,
    1 running, 1 queued, 1 waiting (pending and finished instances take nothing)."""
    run = started_run(team)
    name_pool(run, "extract", pool, "running", slots=2)
    name_pool(run, "side", pool, "queued")
    name_pool(run, "transform", pool, "scheduled", slots=3)
    name_pool(run, "load", pool, "pending")
    name_pool(run, "report", pool, "success", slots=5)
    return run
