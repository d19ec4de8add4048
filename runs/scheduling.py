"""The scheduler tick (a django-celery-beat job, every second): fires every due schedule
into runs. It claims each due schedule with a compare-and-set on `next_run_at` and creates
its runs in the same transaction; the unique (workflow, logical date) of scheduled runs
makes a repeated tick or a second beat harmless. Which intervals are due, and the catch-up
rules, are the schedule's own (`workflows.scheduling`).

Locks, in the platform's order: tenant, workflow, then the schedule row and runs."""

from __future__ import annotations

import datetime as dt
import logging

from django.db import IntegrityError, transaction
from django.utils import timezone

from orchestrator import audit, metrics
from orchestrator.actors import Actor
from orchestrator.errors import Invalid
from orchestrator.models import Tenant
from runs.engine import create_run, start_queued_runs
from runs.models import WorkflowRun
from runs.services import resolve_params
from workflows import cron, scheduling
from workflows.models import Schedule, Workflow

__all__ = ["TICK_BATCH", "tick"]

logger = logging.getLogger(__name__)
TICK_BATCH = 500  # schedules per tick; the rest wait a second for the next one


def tick(now: dt.datetime | None = None) -> int:
    """Fire every due schedule; the number of runs created."""
    now = now or timezone.now()
    due = (
        Schedule.objects.dangerously_unscoped()
        .filter(
            next_run_at__lte=now,
            workflow__paused=False,
            workflow__deleted_at__isnull=True,
            tenant__archived_at__isnull=True,
            tenant__suspended_at__isnull=True,
        )
        .order_by("next_run_at")
        .values_list("pk", "next_run_at")[:TICK_BATCH]
    )
    made = 0
    metrics.inc("orc_scheduler_ticks")
    for pk, claimed in due:
        assert claimed is not None  # filtered on
        try:
            made += _fire(pk, claimed, now)
        except Exception:  # one schedule's trouble must not hold up everyone else's
            logger.exception("schedule %s: firing failed; the next tick tries again", pk)
    return made


def _fire(schedule_id: int, claimed: dt.datetime, now: dt.datetime) -> int:
    with transaction.atomic():
        ids = (
            Schedule.objects.dangerously_unscoped()
            .values_list("tenant_id", "workflow_id")
            .get(pk=schedule_id)
        )
        tenant = Tenant.objects.select_for_update(no_key=True).get(pk=ids[0])
        workflow = (
            Workflow.objects.dangerously_unscoped().select_for_update(no_key=True).get(pk=ids[1])
        )
        schedule = Schedule.objects.dangerously_unscoped().get(pk=schedule_id)
        if schedule.next_run_at != claimed:
            return 0  # another tick got it first, or a pause, an apply or a delete moved it
        if workflow.paused or workflow.deleted_at or tenant.archived_at or tenant.suspended_at:
            return 0
        if workflow.current_version_id is None:
            return 0
        intervals, newest = scheduling.due_intervals(schedule, tenant, now)
        claim = Schedule.objects.dangerously_unscoped().filter(pk=schedule_id, next_run_at=claimed)
        following = scheduling.first_fire(schedule, newest)
        if (
            claim.update(next_run_at=following, handled_until=newest, updated_at=timezone.now())
            != 1
        ):
            return 0  # another tick got it first
        made = [run for interval in intervals if (run := _create_run(workflow, interval))]
        metrics.observe("orc_scheduler_lag_seconds", max(0.0, (now - claimed).total_seconds()))
        if made:
            metrics.inc("orc_scheduler_firings", len(made), tenant=tenant.pk)
            Schedule.objects.dangerously_unscoped().filter(pk=schedule_id).update(
                last_logical_date=made[-1].logical_date
            )
            start_queued_runs(workflow.pk)
            for run in made:
                _audit(tenant, workflow, run)
        return len(made)


def _create_run(workflow: Workflow, interval: cron.Interval) -> WorkflowRun | None:
    """A queued run of the interval; None when it exists already (a second beat, a
    backfill) or cannot be made (a required param without a default)."""
    try:
        params = resolve_params(workflow, {})
    except Invalid as exc:
        logger.warning("workflow %s: no scheduled run for %s: %s", workflow.pk, interval[0], exc)
        return None
    try:
        with transaction.atomic():  # a savepoint: a duplicate leaves the tick's work intact
            return create_run(
                workflow=workflow,
                params=params,
                source=WorkflowRun.Source.SCHEDULE,
                user_id=None,
                logical_date=interval[0],
                interval=interval,
            )
    except IntegrityError:
        return None


def _audit(tenant: Tenant, workflow: Workflow, run: WorkflowRun) -> None:
    """Like a run triggered through the API, with the system as the actor."""
    run.refresh_from_db(fields=["state"])
    assert workflow.current_version is not None
    audit.record(
        actor=Actor.system(),
        action="run.trigger",
        tenant=tenant,
        obj=run,
        object_repr=f"{workflow.name} run {run.pk}",
        after={
            "workflow": workflow.name,
            "version": workflow.current_version.number,
            "params": run.params,
            "state": run.state,
        },
        extra={
            "trigger_source": run.trigger_source,
            "logical_date": run.logical_date.isoformat(),
            "data_interval": [
                run.data_interval_start.isoformat() if run.data_interval_start else None,
                run.data_interval_end.isoformat() if run.data_interval_end else None,
            ],
        },
    )
