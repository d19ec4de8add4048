"""SLA checks: the reconciler calls `check` every couple of seconds, across all tenants. Each
miss is recorded once as an SlaMiss (its `key` is unique per tenant) and, in the same
transaction, written to the outbox as an `sla.missed` event, which notifications route.

What counts as a miss:
- run_duration (workflow `sla: {run_duration: N}`, of the run's pinned version): due at
  the run's `created_at` + N (time spent queued counts). A miss when the run is unfinished
  at that instant, and also when it finished after it before a check saw it running.
  Key "run:<run id>".
- task duration (task `sla: {duration: N}`): due N after the task instance's first try
  started, i.e. the earliest `TaskAttempt.started_at` of the instance (`TaskInstance.
  started_at` is rewritten by every try, so it cannot say when the first began; a sensor's
  rescheduled checks are attempts too, so its wait counts from its first check). A miss
  when the instance is unfinished at that instant, or finished (`ended_at`) after it. An
  instance that never started a try (skipped, upstream failed) has no SLA.
  Key "task:<task instance id>".
- deadline (workflow `sla: {deadline: "HH:MM"}`, of the workflow's current version; the
  spec requires a schedule): D is the most recent instant at or before now that is HH:MM
  local time in the schedule's timezone (a wall time the clocks skip is shifted forward by
  the gap, as cron firings are: workflows.cron). If the schedule fires on D's local day at
  or before D (`workflows.scheduling.first_fire`, so the schedule's start and end hold)
  and that firing is not before the workflow was created, the day owes a run: it is a miss
  unless a scheduled run for a firing on that day, at or before D, succeeded with
  `ended_at` <= D; also when there is no such run at all (the beat was down). Runs made by
  a backfill for such a firing count too: a run per interval is unique, so after a
  backfill the scheduler makes none. Paused and deleted workflows and archived tenants owe
  nothing; only the most recent D is checked (no backfilling of old days).
  Key "deadline:<workflow id>:<D in UTC, ISO 8601>".

The cost of a check is bounded by the runs still unfinished and those that ended in the
last LOOKBACK (and their task instances, for versions with task SLAs), plus the schedules
of live workflows whose current spec has a deadline (and one indexed run query each).

The event's data: {"tenant": slug, "workflow": name, "sla": {"kind", "sla" (what was
asked, e.g. "run_duration: 1h"), "due_at" (ISO 8601)}, "run": run_summary or None,
"task_id": the task's id ("" unless kind is task_duration), "url": the run's link or
None}. For a deadline, "run" is the day's newest scheduled run, if any."""

from __future__ import annotations

import datetime as dt
import logging
import zoneinfo
from collections import defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import Min, Q
from django.utils import timezone

from notifications.models import SlaMiss
from orchestrator.context import tenant_scope
from orchestrator.models import Tenant
from runs.engine.events import emit, run_link, run_summary
from runs.graph import graph_for
from runs.models import Event, TaskInstance, WorkflowRun
from workflows import cron, scheduling
from workflows.durations import format_duration
from workflows.models import Schedule, Workflow

__all__ = ["LOOKBACK", "check"]

logger = logging.getLogger(__name__)

# A run (or task) that ended late within this window before a check is still caught: the
# reconciler may have been down, or the lateness fell between two checks.
LOOKBACK = dt.timedelta(minutes=10)
_MICROSECOND = dt.timedelta(microseconds=1)
RUN = WorkflowRun.State
_UNFINISHED_RUN = (RUN.QUEUED, RUN.RUNNING)
_DAY_RUN_SOURCES = (WorkflowRun.Source.SCHEDULE, WorkflowRun.Source.BACKFILL)


@dataclass(frozen=True)
class Miss:
    tenant_id: int
    key: str
    kind: str
    workflow_id: int
    run_id: int | None
    task_id: str
    sla: str
    due_at: dt.datetime


def check(*, now: dt.datetime | None = None) -> int:
    """Record every SLA miss not yet recorded (each once); the number recorded."""
    now = now or timezone.now()
    found = [*_run_misses(now), *_deadline_misses(now)]
    recorded = 0
    for miss in _not_recorded(found):
        try:
            recorded += _record(miss)
        except Exception:  # one miss's trouble must not hold up the others (or the reconciler)
            logger.exception("SLA miss %s of tenant %s: recording failed", miss.key, miss.tenant_id)
    return recorded


# --- runs and tasks ------------------------------------------------------------------------


def _late(due: dt.datetime, ended_at: dt.datetime | None, finished: bool, now: dt.datetime) -> bool:
    """Unfinished at `due`, or finished after it."""
    if finished:
        return ended_at is not None and ended_at > due
    return now >= due


def _run_misses(now: dt.datetime) -> list[Miss]:
    runs = list(
        WorkflowRun.objects.dangerously_unscoped()
        .filter(Q(state__in=_UNFINISHED_RUN) | Q(ended_at__gte=now - LOOKBACK))
        .values_list(
            "id", "tenant_id", "workflow_id", "version_id", "state", "created_at", "ended_at"
        )
    )
    misses: list[Miss] = []
    with_task_slas: dict[int, tuple[int, int]] = {}  # run id -> (version id, workflow id)
    for run_id, tenant_id, workflow_id, version_id, state, created_at, ended_at in runs:
        spec = graph_for(version_id).spec
        if spec.sla is not None and spec.sla.run_duration is not None:
            due = created_at + dt.timedelta(seconds=spec.sla.run_duration)
            if _late(due, ended_at, state not in _UNFINISHED_RUN, now):
                misses.append(
                    Miss(
                        tenant_id=tenant_id,
                        key=f"run:{run_id}",
                        kind=SlaMiss.Kind.RUN_DURATION.value,
                        workflow_id=workflow_id,
                        run_id=run_id,
                        task_id="",
                        sla=f"run_duration: {format_duration(spec.sla.run_duration)}",
                        due_at=due,
                    )
                )
        if _task_slas(version_id):
            with_task_slas[run_id] = (version_id, workflow_id)
    if with_task_slas:
        misses.extend(_task_misses(with_task_slas, now))
    return misses


def _task_slas(version_id: int) -> dict[str, int]:
    """The version's task SLAs: task id -> seconds."""
    tasks = graph_for(version_id).spec.tasks
    return {tid: task.sla.duration for tid, task in tasks.items() if task.sla is not None}


def _task_misses(runs: dict[int, tuple[int, int]], now: dt.datetime) -> list[Miss]:
    rows = (
        TaskInstance.objects.dangerously_unscoped()
        .filter(run_id__in=list(runs))
        .annotate(first_start=Min("attempts__started_at"))
        .filter(first_start__isnull=False)
        .values_list("id", "tenant_id", "run_id", "task_id", "state", "ended_at", "first_start")
    )
    misses: list[Miss] = []
    for ti_id, tenant_id, run_id, task_id, state, ended_at, first_start in rows:
        version_id, workflow_id = runs[run_id]
        seconds = _task_slas(version_id).get(task_id)
        if seconds is None:
            continue
        due = first_start + dt.timedelta(seconds=seconds)
        if _late(due, ended_at, state in TaskInstance.FINISHED, now):
            misses.append(
                Miss(
                    tenant_id=tenant_id,
                    key=f"task:{ti_id}",
                    kind=SlaMiss.Kind.TASK_DURATION.value,
                    workflow_id=workflow_id,
                    run_id=run_id,
                    task_id=task_id,
                    sla=f"duration: {format_duration(seconds)}",
                    due_at=due,
                )
            )
    return misses


# --- deadlines -----------------------------------------------------------------------------


def _wall_instant(day: dt.date, at: dt.time, zone: zoneinfo.ZoneInfo) -> dt.datetime:
    """The instant of a local wall time, as workflows.cron reads one: the first of two
    when the clocks fall back, shifted forward by the gap when they skip it (fold=0)."""
    return dt.datetime.combine(day, at).replace(tzinfo=zone, fold=0).astimezone(dt.UTC)


def _latest_deadline(deadline: str, zone: zoneinfo.ZoneInfo, now: dt.datetime) -> dt.datetime:
    """The most recent instant <= now that is `deadline` ("HH:MM") local time."""
    at = dt.time.fromisoformat(deadline)
    today = now.astimezone(zone).date()
    # A skipped wall time shifted forward may land after now although its day is today;
    # walking back a day or two always finds one at or before now.
    for back in range(3):
        instant = _wall_instant(today - dt.timedelta(days=back), at, zone)
        if instant <= now:
            return instant
    raise AssertionError("unreachable: a day back is always in the past")


def _deadline_misses(now: dt.datetime) -> list[Miss]:
    schedules = (
        Schedule.objects.dangerously_unscoped()
        .filter(
            workflow__paused=False,
            workflow__deleted_at__isnull=True,
            tenant__archived_at__isnull=True,
            # Canonical specs leave defaults out: the key is there only when one is set.
            workflow__current_version__spec__sla__has_key="deadline",
        )
        .select_related("workflow")
    )
    misses: list[Miss] = []
    for schedule in schedules:
        miss = _deadline_miss(schedule, schedule.workflow, now)
        if miss is not None:
            misses.append(miss)
    return misses


def _deadline_miss(schedule: Schedule, workflow: Workflow, now: dt.datetime) -> Miss | None:
    assert workflow.current_version_id is not None  # filtered on
    sla = graph_for(workflow.current_version_id).spec.sla
    if sla is None or sla.deadline is None:
        return None
    zone = zoneinfo.ZoneInfo(schedule.timezone)
    deadline = _latest_deadline(sla.deadline, zone, now)
    if deadline < workflow.created_at:
        return None
    key = f"deadline:{workflow.pk}:{deadline.astimezone(dt.UTC).isoformat()}"
    if (
        SlaMiss.objects.dangerously_unscoped()
        .filter(tenant_id=workflow.tenant_id, key=key)
        .exists()
    ):
        return None  # recorded already: no need to look at the day's runs again
    day = deadline.astimezone(zone).date()
    day_start = _wall_instant(day, dt.time(), zone)
    # The schedule cannot have fired before the workflow existed.
    first = scheduling.first_fire(schedule, max(day_start, workflow.created_at) - _MICROSECOND)
    if first is None or first > deadline:
        return None  # the schedule owes nothing on that day by then
    day_runs = WorkflowRun.objects.dangerously_unscoped().filter(
        workflow_id=workflow.pk,
        trigger_source__in=_DAY_RUN_SOURCES,
        # The runs of the day's firings up to D: their logical dates (interval starts) lie
        # in [the firing before the first, D), which the unique interval index serves.
        logical_date__gte=cron.previous_fire(schedule.cron, schedule.timezone, first),
        logical_date__lt=deadline,
        data_interval_end__gte=day_start,
        data_interval_end__lte=deadline,
    )
    if day_runs.filter(state=RUN.SUCCESS, ended_at__lte=deadline).exists():
        return None
    newest = day_runs.order_by("-logical_date").values_list("id", flat=True).first()
    return Miss(
        tenant_id=workflow.tenant_id,
        key=key,
        kind=SlaMiss.Kind.DEADLINE.value,
        workflow_id=workflow.pk,
        run_id=newest,
        task_id="",
        sla=f"deadline: {sla.deadline}",
        due_at=deadline.astimezone(zone),
    )


# --- recording -----------------------------------------------------------------------------


def _not_recorded(misses: Iterable[Miss]) -> list[Miss]:
    """The misses without an SlaMiss yet: one query by (tenant, key), the unique index.
    Late runs stay candidates until they are LOOKBACK past their end, so most are known."""
    keys: dict[int, list[str]] = defaultdict(list)
    for miss in misses:
        keys[miss.tenant_id].append(miss.key)
    if not keys:
        return []
    where = Q()
    for tenant_id, tenant_keys in keys.items():
        where |= Q(tenant_id=tenant_id, key__in=tenant_keys)
    known = set(
        SlaMiss.objects.dangerously_unscoped().filter(where).values_list("tenant_id", "key")
    )
    return [miss for miss in misses if (miss.tenant_id, miss.key) not in known]


def _record(miss: Miss) -> int:
    """Record one miss and its event in one transaction; 0 when a concurrent check (or an
    earlier one) recorded it first."""
    with transaction.atomic(), tenant_scope([miss.tenant_id]):
        try:
            with transaction.atomic():  # a savepoint: the loser of a race leaves cleanly
                row = SlaMiss.objects.dangerously_unscoped().create(
                    tenant_id=miss.tenant_id,
                    key=miss.key,
                    kind=miss.kind,
                    workflow_id=miss.workflow_id,
                    run_id=miss.run_id,
                    task_id=miss.task_id,
                    sla=miss.sla,
                    due_at=miss.due_at,
                )
        except IntegrityError:
            return 0
        event = emit(
            tenant_id=miss.tenant_id,
            type=Event.Type.SLA_MISSED.value,
            workflow_id=miss.workflow_id,
            run_id=miss.run_id,
            task_id=miss.task_id,
            data=_data(miss),
        )
        SlaMiss.objects.dangerously_unscoped().filter(pk=row.pk).update(event=event)
    return 1


def _data(miss: Miss) -> dict[str, Any]:
    slug = Tenant.objects.values_list("slug", flat=True).get(pk=miss.tenant_id)
    name = (
        Workflow.objects.dangerously_unscoped()
        .values_list("name", flat=True)
        .get(pk=miss.workflow_id)
    )
    run = (
        WorkflowRun.objects.dangerously_unscoped().get(pk=miss.run_id)
        if miss.run_id is not None
        else None
    )
    return {
        "tenant": slug,
        "workflow": name,
        "sla": {"kind": miss.kind, "sla": miss.sla, "due_at": miss.due_at.isoformat()},
        "run": run_summary(run) if run is not None else None,
        "task_id": miss.task_id,
        "url": run_link(slug, run.pk) if run is not None else None,
    }
