"""SLA checks: the reconciler calls `check` every couple of seconds, across all tenants.
Each miss is recorded once as an SlaMiss (its `key` is unique per tenant; a second checker
running at the same moment loses the insert and records nothing) and, in the same
transaction, written to the outbox as an `sla.missed` event, which notifications route, and
to the audit log as a system action (DESIGN.md section 4).

What counts as a miss:

- run_duration (workflow `sla: {run_duration: N}`, of the run's pinned version): due N
  after the run was queued, i.e. triggered (`queued_at`, the instant of `created_at`; time
  spent queued counts), or re-queued by a retry or clear that reopened it after it had
  ended (so reopening a run finished in time yesterday does not make it late at once). A
  miss when the run is unfinished at that instant, and also when it ended after it before
  a check saw it running (a 3 s run with a 1 s SLA, checked every 2 s). Key "run:<run id>":
  a run's lateness is recorded once, also when a reopened run is late again.
- task duration (task `sla: {duration: N}`, of the run's pinned version): due N after the
  instance's first try started: the earliest `TaskAttempt.started_at` since the instance
  was created or last reset by a clear or run retry (`TaskInstance.started_at` is
  rewritten by every try, so it cannot say when the first began). Retries, lost tries and
  a sensor's rescheduled checks do not restart the clock; a clear or run retry does. A miss
  when the instance is unfinished at that instant, or ended after it. An instance that has
  not started a try is not late by this SLA (skipped, upstream failed, or waiting in a
  queue: the run's run_duration covers that). Key "task:<task instance id>".
- deadline (workflow `sla: {deadline: "HH:MM"}`, of the workflow's current version; the
  spec requires a schedule): D is the most recent instant at or before now that is HH:MM
  in the schedule's timezone (a wall time the clocks skip is shifted forward by the gap,
  as cron firings are: workflows.cron). If the schedule fires on D's local day at or
  before D (`workflows.scheduling.first_fire`, so its start and end hold), the day owes a
  run: it is a miss unless a run of one of the day's firings up to D succeeded with
  `ended_at` <= D; also when there is no such run at all (the beat was down). Which run
  belongs to a day: each firing closes its data interval (workflows.cron), and its run's
  logical date is the interval's *start*: the run fired at 02:00 on 2 March has logical
  date 1 March and `data_interval_end` 02:00 on 2 March. So a day's runs are those whose
  `data_interval_end` (the fire time) falls on that local day, made by the scheduler or by
  a backfill (one run per interval is unique, so after a backfill the scheduler makes
  none); runs triggered by hand have no interval and do not count. Paused and deleted
  workflows and archived tenants owe nothing, nor do firings before the workflow existed,
  before its schedule last (re)started (an apply changing cron, timezone, start or end
  restarts it from then: workflows.scheduling.sync_schedule) or before it was last
  unpaused. Key "deadline:<workflow id>:<D in UTC, ISO 8601>".

What is looked at, so that a check stays cheap: the runs still unfinished and those that
ended in the last LOOKBACK (with their task instances, for versions with task SLAs), and
the schedules of live workflows whose current spec has a deadline, while that deadline is
at most LOOKBACK old. Whether a day met its deadline is settled at D, so nothing is
backfilled: what a checker stopped for longer than LOOKBACK missed is not recorded later.

The event's data: {"tenant": slug, "workflow": name, "sla": {"kind": "run_duration" |
"deadline" | "task_duration", "sla": what was asked (e.g. "run_duration: 1h",
"duration: 10m", "deadline: 06:00 (Europe/Berlin)"), "due_at": ISO 8601}, "run":
runs.engine.events.run_summary of the run or null, "task_id" (the task kind only),
"url": the run's link or null}. For a deadline, "run" is the newest run of the day's
firings up to D, if any (failed, or still unfinished)."""

from __future__ import annotations

import datetime as dt
import functools
import logging
import zoneinfo
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from django.db import IntegrityError, transaction
from django.db.models import Q
from django.utils import timezone

from notifications.models import SlaMiss
from orchestrator import audit
from orchestrator.actors import Actor
from orchestrator.models import Tenant
from runs.engine.events import emit, run_link, run_summary
from runs.graph import graph_for
from runs.models import Event, TaskAttempt, TaskInstance, WorkflowRun
from workflows import scheduling
from workflows.durations import format_duration
from workflows.models import Schedule, Workflow, WorkflowVersion

__all__ = ["LOOKBACK", "check"]

logger = logging.getLogger(__name__)

# A run (or task) that ended late within this window before a check is still caught (the
# lateness fell between two checks, or the reconciler was down), and a deadline is checked
# until it is this old.
LOOKBACK = dt.timedelta(minutes=10)
_MICROSECOND = dt.timedelta(microseconds=1)
RUN = WorkflowRun.State
_UNFINISHED_RUN = (RUN.QUEUED, RUN.RUNNING)
_DAY_RUN_SOURCES = (WorkflowRun.Source.SCHEDULE, WorkflowRun.Source.BACKFILL)
# The schedule fields whose change restarts a schedule (workflows.scheduling.sync_schedule).
_RESTARTING_FIELDS = ("cron", "timezone", "start", "end")


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


@dataclass(frozen=True)
class RunRow:
    """What the checks read of a run."""

    id: int
    tenant_id: int
    workflow_id: int
    version_id: int
    state: str
    created_at: dt.datetime
    queued_at: dt.datetime | None
    ended_at: dt.datetime | None

    @property
    def finished(self) -> bool:
        return self.state not in _UNFINISHED_RUN


def check(*, now: dt.datetime | None = None) -> int:
    """Record every SLA miss not yet recorded (each once); the number recorded."""
    now = now or timezone.now()
    runs = _runs_to_check(now)
    found = [*_run_misses(runs, now), *_task_misses(runs, now), *_deadline_misses(now)]
    recorded = 0
    for miss in found:
        try:
            recorded += _record(miss)
        except Exception:  # one miss's trouble must not hold up the others (or the reconciler)
            logger.exception("SLA miss %s of tenant %s: recording failed", miss.key, miss.tenant_id)
    return recorded


def _late(due: dt.datetime, finished: bool, ended_at: dt.datetime | None, now: dt.datetime) -> bool:
    """Unfinished at `due`: still unfinished now that it is due, or ended after it."""
    if finished:
        return ended_at is not None and ended_at > due
    return now >= due


# --- runs ----------------------------------------------------------------------------------


def _runs_to_check(now: dt.datetime) -> list[RunRow]:
    rows = (
        WorkflowRun.objects.dangerously_unscoped()
        .filter(Q(state__in=_UNFINISHED_RUN) | Q(ended_at__gte=now - LOOKBACK))
        .values_list(
            "id",
            "tenant_id",
            "workflow_id",
            "version_id",
            "state",
            "created_at",
            "queued_at",
            "ended_at",
        )
    )
    return [RunRow(*row) for row in rows]


def _run_misses(runs: list[RunRow], now: dt.datetime) -> list[Miss]:
    misses: list[Miss] = []
    for run in runs:
        sla = graph_for(run.version_id).spec.sla
        if sla is None or sla.run_duration is None:
            continue
        due = (run.queued_at or run.created_at) + dt.timedelta(seconds=sla.run_duration)
        if _late(due, run.finished, run.ended_at, now):
            misses.append(
                Miss(
                    tenant_id=run.tenant_id,
                    key=f"run:{run.id}",
                    kind=SlaMiss.Kind.RUN_DURATION.value,
                    workflow_id=run.workflow_id,
                    run_id=run.id,
                    task_id="",
                    sla=f"run_duration: {format_duration(sla.run_duration)}",
                    due_at=due,
                )
            )
    # A late run stays a candidate until it is LOOKBACK past its end: most are known.
    return _not_recorded(misses)


# --- tasks ---------------------------------------------------------------------------------


@functools.lru_cache(maxsize=1024)
def _task_slas(version_id: int) -> Mapping[str, int]:
    """The version's task SLAs: task id -> seconds (cached: a version never changes, and
    every unfinished run asks on every check)."""
    tasks = graph_for(version_id).spec.tasks
    return MappingProxyType(
        {tid: task.sla.duration for tid, task in tasks.items() if task.sla is not None}
    )


def _task_misses(runs: list[RunRow], now: dt.datetime) -> list[Miss]:
    with_slas = {run.id: run for run in runs if _task_slas(run.version_id)}
    if not with_slas:
        return []
    task_ids = {tid for run in with_slas.values() for tid in _task_slas(run.version_id)}
    candidates: list[tuple[TaskInstance, RunRow, int]] = []
    for ti in (
        TaskInstance.objects.dangerously_unscoped()
        .filter(run_id__in=list(with_slas), task_id__in=task_ids, try_number__gt=0)
        .only("id", "run_id", "task_id", "state", "max_tries", "lost_tries", "ended_at")
    ):
        run = with_slas[ti.run_id]
        seconds = _task_slas(run.version_id).get(ti.task_id)
        # Its first try started after the run was created, so it cannot be due before.
        if seconds is not None and _late(
            run.created_at + dt.timedelta(seconds=seconds),
            ti.state in TaskInstance.FINISHED,
            ti.ended_at,
            now,
        ):
            candidates.append((ti, run, seconds))
    # Late tasks stay candidates while their run is in view: most are known already.
    known = _recorded((run.tenant_id, f"task:{ti.pk}") for ti, run, _ in candidates)
    candidates = [c for c in candidates if (c[1].tenant_id, f"task:{c[0].pk}") not in known]
    misses: list[Miss] = []
    starts = _attempt_starts([ti.pk for ti, _, _ in candidates])
    for ti, run, seconds in candidates:
        retries = graph_for(run.version_id).effective(ti.task_id).retries
        started = _first_try_started(ti, retries, starts[ti.pk])
        if started is None:
            continue
        due = started + dt.timedelta(seconds=seconds)
        if _late(due, ti.state in TaskInstance.FINISHED, ti.ended_at, now):
            misses.append(
                Miss(
                    tenant_id=run.tenant_id,
                    key=f"task:{ti.pk}",
                    kind=SlaMiss.Kind.TASK_DURATION.value,
                    workflow_id=run.workflow_id,
                    run_id=run.id,
                    task_id=ti.task_id,
                    sla=f"duration: {format_duration(seconds)}",
                    due_at=due,
                )
            )
    return misses


Attempt = tuple[int, str, dt.datetime]  # try number, state, started_at


def _attempt_starts(ti_ids: list[int]) -> dict[int, list[Attempt]]:
    found: dict[int, list[Attempt]] = defaultdict(list)
    if ti_ids:
        rows = (
            TaskAttempt.objects.dangerously_unscoped()
            .filter(task_instance_id__in=ti_ids)
            .values_list("task_instance_id", "try_number", "state", "started_at")
        )
        for ti_id, try_number, state, started_at in rows:
            found[ti_id].append((try_number, state, started_at))
    return found


def _first_try_started(
    ti: TaskInstance, retries: int, attempts: list[Attempt]
) -> dt.datetime | None:
    """When the instance's first try since it was created or last reset started (None:
    no try has started since).

    Attempts stay as history across a reset, and try numbers go on counting, so the reset
    is found from the instance's budget of tries: creating it sets max_tries to retries + 1
    (tries before it: 0), a reset (clear, run retry: runs.operations) to the last try
    number + retries + 1 with lost_tries back to 0; after that only a lost try (lost_tries
    + 1) or a sensor's rescheduled check (an attempt `rescheduled`) add a try
    (runs.engine.finish). So the tries before the reset are those numbered at most
    max_tries - retries - 1 - lost_tries - (rescheduled attempts after it), which settles
    in a few steps (it only goes down as rescheduled attempts are counted)."""
    base = ti.max_tries - retries - 1 - ti.lost_tries
    before = base
    for _ in range(len(attempts) + 1):
        rescheduled = sum(
            1
            for number, state, _ in attempts
            if number > before and state == TaskAttempt.State.RESCHEDULED
        )
        if base - rescheduled == before:
            break
        before = base - rescheduled
    return min((started for number, _, started in attempts if number > before), default=None)


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
    due: list[tuple[Schedule, str, dt.datetime, str]] = []
    for schedule in schedules:
        workflow = schedule.workflow
        assert workflow.current_version_id is not None  # filtered on
        sla = graph_for(workflow.current_version_id).spec.sla
        if sla is None or sla.deadline is None:
            continue
        deadline = _latest_deadline(sla.deadline, zoneinfo.ZoneInfo(schedule.timezone), now)
        if now - deadline <= LOOKBACK:
            key = f"deadline:{workflow.pk}:{deadline.isoformat()}"
            due.append((schedule, sla.deadline, deadline, key))
    known = _recorded((schedule.tenant_id, key) for schedule, _, _, key in due)
    misses = []
    for schedule, wanted, deadline, key in due:
        if (schedule.tenant_id, key) not in known:
            miss = _deadline_miss(schedule, wanted, deadline, key)
            if miss is not None:
                misses.append(miss)
    return misses


def _deadline_miss(schedule: Schedule, wanted: str, deadline: dt.datetime, key: str) -> Miss | None:
    """The day's miss, or None: the schedule does not fire that day by the deadline, or a
    run of the day's firings succeeded by then."""
    workflow = schedule.workflow
    zone = zoneinfo.ZoneInfo(schedule.timezone)
    day_start = _wall_instant(deadline.astimezone(zone).date(), dt.time(), zone)
    first = scheduling.first_fire(schedule, day_start - _MICROSECOND)
    if first is None or first > deadline:
        return None  # the schedule owes nothing on that day by then
    day_runs = WorkflowRun.objects.dangerously_unscoped().filter(
        workflow_id=workflow.pk,
        trigger_source__in=_DAY_RUN_SOURCES,
        # The runs of the day's firings up to D: their logical dates (interval starts) lie
        # in [the firing before the first, D), which the unique interval index serves.
        logical_date__gte=scheduling.interval_of(schedule, first)[0],
        logical_date__lt=deadline,
        data_interval_end__gte=day_start,
        data_interval_end__lte=deadline,
    )
    if day_runs.filter(state=RUN.SUCCESS, ended_at__lte=deadline).exists():
        return None
    since = _fires_since(schedule, workflow)
    if since >= first:
        later = scheduling.first_fire(schedule, since)
        if later is None or later > deadline:
            return None  # the day's firings up to D came before the schedule did
    newest = day_runs.order_by("-data_interval_end").values_list("id", flat=True).first()
    return Miss(
        tenant_id=workflow.tenant_id,
        key=key,
        kind=SlaMiss.Kind.DEADLINE.value,
        workflow_id=workflow.pk,
        run_id=newest,
        task_id="",
        sla=f"deadline: {wanted} ({schedule.timezone})",
        due_at=deadline.astimezone(zone),
    )


def _fires_since(schedule: Schedule, workflow: Workflow) -> dt.datetime:
    """Since when the schedule fires as it does now: the latest of the workflow's
    creation, its last unpause, and the creation of the oldest version in the unbroken
    line of versions up to the current one with the same cron, timezone, start and end.
    Read only when a miss is about to be recorded."""
    assert workflow.current_version_id is not None
    number = graph_for(workflow.current_version_id).number
    versions = (
        WorkflowVersion.objects.dangerously_unscoped()
        .filter(workflow=workflow, number__lte=number)
        .order_by("-number")
        .values_list("created_at", "spec__schedule")
    )
    since = workflow.created_at
    current: dict[str, Any] | None = None
    for created_at, raw in versions.iterator(chunk_size=50):
        fields = {name: (raw or {}).get(name) for name in _RESTARTING_FIELDS}
        if current is not None and fields != current:
            break
        current, since = fields, created_at
    return max(since, workflow.created_at, schedule.resumed_at or workflow.created_at)


# --- recording -----------------------------------------------------------------------------


def _recorded(candidates: Iterable[tuple[int, str]]) -> set[tuple[int, str]]:
    """Which of these (tenant id, key) pairs have an SlaMiss: one query, each tenant's keys
    looked up in the (tenant, key) unique index."""
    keys: dict[int, list[str]] = defaultdict(list)
    for tenant_id, key in candidates:
        keys[tenant_id].append(key)
    if not keys:
        return set()
    where = Q()
    for tenant_id, tenant_keys in keys.items():
        where |= Q(tenant_id=tenant_id, key__in=tenant_keys)
    return set(SlaMiss.objects.dangerously_unscoped().filter(where).values_list("tenant_id", "key"))


def _not_recorded(misses: list[Miss]) -> list[Miss]:
    known = _recorded((miss.tenant_id, miss.key) for miss in misses)
    return [miss for miss in misses if (miss.tenant_id, miss.key) not in known]


def _record(miss: Miss) -> int:
    """Record one miss, its event and its audit entry in one transaction; 0 when a
    concurrent check recorded it first."""
    with transaction.atomic():
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
        tenant = Tenant.objects.get(pk=miss.tenant_id)
        data = _data(miss, tenant.slug)
        row.event = emit(
            tenant_id=miss.tenant_id,
            type=Event.Type.SLA_MISSED.value,
            workflow_id=miss.workflow_id,
            run_id=miss.run_id,
            task_id=miss.task_id,
            data=data,
        )
        row.save(update_fields=["event"])
        audit.record(
            actor=Actor.system(),
            action="sla_miss.create",
            tenant=tenant,
            obj=row,
            object_repr=f"{data['workflow']}: {miss.sla} missed"[:200],
            after={
                "kind": miss.kind,
                "workflow": data["workflow"],
                "run": miss.run_id,
                "task_id": miss.task_id,
                "sla": miss.sla,
                "due_at": miss.due_at.isoformat(),
            },
        )
    return 1


def _data(miss: Miss, tenant: str) -> dict[str, Any]:
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
    data: dict[str, Any] = {
        "tenant": tenant,
        "workflow": name,
        "sla": {"kind": miss.kind, "sla": miss.sla, "due_at": miss.due_at.isoformat()},
        "run": run_summary(run) if run is not None else None,
    }
    if miss.task_id:
        data["task_id"] = miss.task_id
    data["url"] = run_link(tenant, run.pk) if run is not None else None
    return data
