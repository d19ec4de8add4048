"""Helpers of the events tests: run a spec's runs in this process (no workers), and
dispatch what the outbox holds as the events dispatcher's Celery task would."""

from __future__ import annotations

from typing import Any

from events.dispatch import dispatch
from runs import engine as engine_module
from runs import worker
from runs.models import Event, TaskInstance, WorkflowRun
from runs.services import trigger_run
from tests.runs.engine.helpers import Engine

__all__ = ["dispatch_pending", "drain", "run_once"]


def drain(engine: Engine, run: WorkflowRun) -> WorkflowRun:
    """Run the run's tries here until it ends (sensors' checks made due by the
    reconciler)."""
    for _ in range(100):
        with engine.scope():
            queued = list(TaskInstance.objects.filter(run=run, state="queued"))
        for ti in queued:
            worker.execute(ti.pk, ti.try_number)
        engine_module.reconcile()
        run.refresh_from_db()
        if run.state in WorkflowRun.FINISHED:
            return run
    raise AssertionError(f"run {run.pk} did not end: {run.state}")


def run_once(engine: Engine, workflow: Any, params: dict[str, Any] | None = None) -> WorkflowRun:
    with engine.scope():
        run = trigger_run(actor=engine.actor, workflow=workflow, params=params or {}).run
    return drain(engine, run)


def dispatch_pending() -> int:
    """Dispatch every event not dispatched yet; returns the runs started."""
    ids = list(
        Event.objects.dangerously_unscoped()
        .filter(dispatched_at__isnull=True)
        .order_by("id")
        .values_list("id", flat=True)
    )
    return dispatch(ids)
