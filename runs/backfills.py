"""Backfills: a run for every interval of a workflow's schedule in a range of logical dates,
fed a few at a time so that they never swamp live work (docs/scheduling.md, "Backfills").

- The intervals are the cron engine's (workflows.cron.intervals_between): the same logical
  dates and data intervals the scheduler gives. Only closed intervals (their end is past)
  are run.
- An interval that already has a run (scheduled, or an earlier backfill's: the ones
  `run_unique_interval` covers; a manual run with the same logical date does not count) is
  skipped or rerun as `reprocess` says (`decide`).
- `feed` keeps up to the backfill's max_active_runs of its runs queued or running; the
  engine gives backfill runs slots of their own (runs.engine.start_queued_runs), so a
  scheduled run never waits for one. It runs when a backfill is created or resumed, when
  one of its runs ends, and on each reconcile.

Locks: tenant, workflow, backfill, run, then the audit chain head."""

from __future__ import annotations

import datetime as dt
import itertools
import zoneinfo
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Count, Q, QuerySet
from django.utils import timezone
from django.utils.dateparse import parse_datetime

from orchestrator import audit
from orchestrator.actors import Actor
from orchestrator.errors import Conflict, FieldError, Invalid, NotFound
from orchestrator.integers import ascii_int
from orchestrator.models import Tenant
from orchestrator.policy import authorize
from orchestrator.tenancy import tenant_quota
from runs import engine, operations
from runs.graph import graph_for
from runs.models import Backfill, WorkflowRun
from runs.services import resolve_params
from workflows import cron
from workflows.models import Workflow

__all__ = [
    "PlannedInterval",
    "backfill_list",
    "cancel_backfill",
    "create_backfill",
    "feed",
    "feed_ended_run",
    "feed_running",
    "get_backfill",
    "interval_action",
    "pause_backfill",
    "plan_backfill",
    "progress",
    "resume_backfill",
]

RUN = WorkflowRun.State
STATE = Backfill.State
REPROCESS = Backfill.Reprocess
ACTIVE = (RUN.QUEUED, RUN.RUNNING)
# The sources whose runs own their interval (the partial unique constraint
# run_unique_interval): a manual run with the same logical date is not the interval's run.
INTERVAL_SOURCES = (WorkflowRun.Source.SCHEDULE, WorkflowRun.Source.BACKFILL)


@dataclass(frozen=True)
class PlannedInterval:
    """One interval of a backfill, and what the backfill would do with it now."""

    data_interval_start: dt.datetime  # also the logical date
    data_interval_end: dt.datetime
    action: str  # create | rerun | skip
    run_id: int | None  # the interval's existing run

    @property
    def logical_date(self) -> dt.datetime:
        return self.data_interval_start


def interval_action(existing_state: str | None, reprocess: str) -> str:
    """What a backfill does with an interval whose run is in this state (None: no run).
    A queued or running run is never touched; `failed` reruns failed and cancelled runs
    (neither produced the interval's data), `all` reruns any that has ended."""
    if existing_state is None:
        return "create"
    if existing_state in ACTIVE or reprocess == REPROCESS.NONE:
        return "skip"
    if reprocess == REPROCESS.FAILED:
        return "rerun" if existing_state in (RUN.FAILED, RUN.CANCELLED) else "skip"
    return "rerun"


# --- planning ----------------------------------------------------------------------------

BOUND_HELP = (
    "expected a date (2026-01-31) or an ISO 8601 time (2026-01-31T02:00:00+01:00); "
    "without an offset it is in the workflow's timezone"
)


def _parse_bound(raw: Any) -> dt.date | None:
    """A date, or a datetime (naive or aware), from an API value; None when neither."""
    if isinstance(raw, dt.date):  # a datetime is a date too
        return raw
    if not isinstance(raw, str):
        return None
    try:
        return dt.date.fromisoformat(raw) if len(raw) == 10 else parse_datetime(raw)
    except ValueError:  # well-formed but impossible, such as 2026-02-30
        return None


def _instant(value: dt.date, zone: zoneinfo.ZoneInfo, *, end: bool) -> dt.datetime:
    """A bound as a UTC instant. A date is its whole day in the workflow's timezone (its
    first instant as a start, its last as an end); a naive time is local wall-clock time."""
    if not isinstance(value, dt.datetime):
        day = value + dt.timedelta(days=1) if end else value
        midnight = dt.datetime.combine(day, dt.time(), tzinfo=zone).astimezone(dt.UTC)
        return midnight - dt.timedelta(microseconds=1) if end else midnight
    if value.tzinfo is None:
        value = value.replace(tzinfo=zone, fold=0)
    return value.astimezone(dt.UTC)


@dataclass(frozen=True)
class _Request:
    workflow: Workflow
    intervals: list[cron.Interval]  # in the order they are fed
    reprocess: str
    max_active_runs: int
    reverse: bool
    params: dict[str, Any]
    start: dt.datetime
    end: dt.datetime


def _validated(
    workflow: Workflow,
    start: Any,
    end: Any,
    reprocess: str,
    max_active_runs: int | None,
    reverse: bool,
    now: dt.datetime,
    params: Any = None,
) -> _Request:
    """Every check at once; errors name the field and what would be accepted."""
    if workflow.deleted_at is not None or workflow.current_version_id is None:
        raise Conflict(f"workflow {workflow.name!r} has no version to run")
    spec = graph_for(workflow.current_version_id).spec
    if spec.cron_schedule is None:
        raise Invalid(
            [
                (
                    "schedule",
                    f"workflow {workflow.name!r} has no cron schedule: a backfill runs the "
                    "intervals of its schedule.cron; add a schedule to the spec first",
                )
            ]
        )
    errors: list[FieldError] = []
    bounds = {"start": _parse_bound(start), "end": _parse_bound(end)}
    errors += [(name, BOUND_HELP) for name, value in bounds.items() if value is None]
    if reprocess not in REPROCESS.values:
        errors.append(("reprocess", f"accepted: {', '.join(REPROCESS.values)}"))
    quota = tenant_quota(workflow.tenant.quotas, "max_concurrent_runs")
    slots = spec.max_active_runs if max_active_runs is None else max_active_runs
    if isinstance(slots, bool) or not isinstance(slots, int) or not 1 <= slots <= quota:
        errors.append(
            ("max_active_runs", f"expected an integer from 1 to {quota} (the tenant's quota)")
        )
    try:  # every run of the backfill gets these (the defaults, then what was given)
        values = resolve_params(workflow, {} if params is None else params)
    except Invalid as exc:
        errors += exc.errors
        values = {}
    if errors:
        raise Invalid(errors)
    schedule = spec.cron_schedule
    assert schedule is not None  # refused above otherwise
    assert schedule.cron is not None
    zone = zoneinfo.ZoneInfo(schedule.timezone)
    start_bound, end_bound = bounds["start"], bounds["end"]
    assert start_bound is not None
    assert end_bound is not None
    first = _instant(start_bound, zone, end=False)
    last = _instant(end_bound, zone, end=True)
    if last < first:
        raise Invalid([("end", f"must not be before start ({first.isoformat()})")])
    intervals = _closed_intervals(schedule.cron, schedule.timezone, first, last, now)
    if reverse:
        intervals.reverse()
    return _Request(workflow, intervals, reprocess, slots, reverse, values, first, last)


def _closed_intervals(
    cron_expr: str, tz: str, start: dt.datetime, end: dt.datetime, now: dt.datetime
) -> list[cron.Interval]:
    """The intervals with a logical date in [start, end] whose end has passed, oldest first,
    at most BACKFILL_MAX_INTERVALS (checked before they are all computed)."""
    cap = int(settings.BACKFILL_MAX_INTERVALS)
    end = min(end, now)  # an interval that starts later cannot have ended
    beyond = next(itertools.islice(cron.fire_times(cron_expr, tz, start - _TICK), cap, None))
    if beyond <= end:
        raise Invalid(
            [
                (
                    "end",
                    f"the range holds more than {cap} intervals of {cron_expr!r}: "
                    "split it into several backfills",
                )
            ]
        )
    if end < start:
        found: list[cron.Interval] = []
    else:
        found = [i for i in cron.intervals_between(cron_expr, tz, start, end) if i[1] <= now]
    if not found:
        raise Invalid(
            [
                (
                    "start",
                    f"no complete interval of {cron_expr!r} ({tz}) has a logical date "
                    "between start and end: widen the range, or wait for the interval to end",
                )
            ]
        )
    return found


_TICK = dt.timedelta(microseconds=1)


def _existing(workflow: Workflow, starts: list[dt.datetime]) -> dict[dt.datetime, tuple[int, str]]:
    rows = WorkflowRun.objects.dangerously_unscoped().filter(
        workflow=workflow, logical_date__in=starts, trigger_source__in=INTERVAL_SOURCES
    )
    return {
        when: (pk, state) for when, pk, state in rows.values_list("logical_date", "id", "state")
    }


def plan_backfill(
    *,
    actor: Actor,
    workflow: Workflow,
    start: Any,
    end: Any,
    reprocess: str = REPROCESS.NONE,
    max_active_runs: int | None = None,
    reverse: bool = False,
    params: Any = None,
    now: dt.datetime | None = None,
) -> list[PlannedInterval]:
    """A dry run: the intervals a backfill would cover and what it would do with each now.
    Nothing is stored, nothing audited."""
    authorize(actor, "backfill.operate", workflow.tenant)
    request = _validated(
        workflow, start, end, reprocess, max_active_runs, reverse, now or timezone.now(), params
    )
    existing = _existing(workflow, [s for s, _ in request.intervals])
    planned = []
    for start_at, end_at in request.intervals:
        run_id, state = existing.get(start_at, (None, None))
        planned.append(PlannedInterval(start_at, end_at, interval_action(state, reprocess), run_id))
    return planned


def create_backfill(
    *,
    actor: Actor,
    workflow: Workflow,
    start: Any,
    end: Any,
    reprocess: str = REPROCESS.NONE,
    max_active_runs: int | None = None,
    reverse: bool = False,
    params: Any = None,
    now: dt.datetime | None = None,
) -> Backfill:
    """Create a backfill and feed its first runs (up to max_active_runs, which defaults to
    the workflow's). `start` and `end` are dates or times (see `_instant`). `params` are
    every run's (checked against the workflow's params, defaults applied)."""
    authorize(actor, "backfill.operate", workflow.tenant)
    request = _validated(
        workflow, start, end, reprocess, max_active_runs, reverse, now or timezone.now(), params
    )
    with transaction.atomic():
        backfill = Backfill.objects.dangerously_unscoped().create(
            tenant_id=workflow.tenant_id,
            workflow=workflow,
            start=request.start,
            end=request.end,
            reprocess=reprocess,
            max_active_runs=request.max_active_runs,
            reverse=reverse,
            params=request.params,
            plan=[[s.isoformat(), e.isoformat()] for s, e in request.intervals],
            total=len(request.intervals),
            created_by_id=actor.user_id,
        )
        feed(backfill.pk)
        audit.record(
            actor=actor,
            action="backfill.create",
            tenant=workflow.tenant,
            obj=backfill,
            object_repr=_repr(backfill),
            after={
                "workflow": workflow.name,
                "start": request.start,
                "end": request.end,
                "reprocess": reprocess,
                "max_active_runs": request.max_active_runs,
                "reverse": reverse,
                "params": request.params,
                "intervals": len(request.intervals),
            },
        )
    backfill.refresh_from_db()
    return backfill


def _repr(backfill: Backfill) -> str:
    return f"{backfill.workflow.name} backfill {backfill.pk}"


# --- the feeder --------------------------------------------------------------------------


def feed(backfill_id: int) -> int:
    """Give a running backfill its next intervals' runs while fewer than its
    max_active_runs are queued or running, oldest first (newest first when `reverse`);
    complete it once every interval is handled and its runs have ended. Returns how many
    runs it created or reran. Safe to call at any time, twice at once too (the backfill
    row is locked)."""
    with transaction.atomic():
        tenant_id, workflow_id = (
            Backfill.objects.dangerously_unscoped()
            .values_list("tenant_id", "workflow_id")
            .get(pk=backfill_id)
        )
        suspended = (
            Tenant.objects.select_for_update(no_key=True)
            .filter(pk=tenant_id)
            .values_list("suspended_at", flat=True)
            .get()
        )
        workflow = (
            Workflow.objects.dangerously_unscoped()
            .select_for_update(no_key=True)
            .get(pk=workflow_id)
        )
        backfill = (
            Backfill.objects.dangerously_unscoped()
            .select_for_update(no_key=True)
            .get(pk=backfill_id)
        )
        if backfill.state != STATE.RUNNING or suspended is not None:
            return 0  # a suspended tenant's backfill waits: the reconciler feeds it on resume
        if workflow.deleted_at is not None or workflow.current_version_id is None:
            _end(backfill, STATE.CANCELLED)  # its workflow is gone: nothing more to run
            return 0
        active = (
            WorkflowRun.objects.dangerously_unscoped()
            .filter(backfill=backfill, state__in=ACTIVE)
            .count()
        )
        fed = 0
        while active + fed < backfill.max_active_runs and backfill.position < backfill.total:
            start, end = (dt.datetime.fromisoformat(v) for v in backfill.plan[backfill.position])
            backfill.position += 1
            action = _feed_one(backfill, workflow, start, end)
            if action == "skip":
                backfill.skipped += 1
                continue
            fed += 1
            if action == "rerun":
                backfill.rerun += 1
        Backfill.objects.dangerously_unscoped().filter(pk=backfill.pk).update(
            position=backfill.position,
            skipped=backfill.skipped,
            rerun=backfill.rerun,
            updated_at=timezone.now(),
        )
        if fed:
            engine.start_queued_runs(workflow_id)
        elif active == 0 and backfill.position >= backfill.total:
            _end(backfill, STATE.COMPLETED)
        return fed


def _end(backfill: Backfill, state: str) -> None:
    Backfill.objects.dangerously_unscoped().filter(pk=backfill.pk, state=backfill.state).update(
        state=state, ended_at=timezone.now(), updated_at=timezone.now()
    )


def _feed_one(backfill: Backfill, workflow: Workflow, start: dt.datetime, end: dt.datetime) -> str:
    """Create, rerun or skip one interval; returns which."""
    for _ in range(2):  # a second look when the scheduler made the interval's run meanwhile
        existing = (
            WorkflowRun.objects.dangerously_unscoped()
            .filter(workflow=workflow, logical_date=start, trigger_source__in=INTERVAL_SOURCES)
            .values_list("id", "state")
            .first()
        )
        action = interval_action(existing[1] if existing else None, backfill.reprocess)
        try:
            with transaction.atomic():
                if action == "create":
                    run = engine.create_run(
                        workflow=workflow,
                        params=backfill.params,
                        source=WorkflowRun.Source.BACKFILL,
                        user_id=backfill.created_by_id,
                        logical_date=start,
                        interval=(start, end),
                    )
                    WorkflowRun.objects.dangerously_unscoped().filter(pk=run.pk).update(
                        backfill=backfill
                    )
                elif action == "rerun" and existing is not None:
                    # Adopted first, so the engine starts it in the backfill's slots.
                    WorkflowRun.objects.dangerously_unscoped().filter(pk=existing[0]).update(
                        backfill=backfill
                    )
                    _rerun(existing[0], backfill.reprocess)
        except IntegrityError:
            continue
        except Conflict:  # it changed under us (e.g. nothing failed to retry after all)
            return "skip"
        return action
    return "skip"


def _rerun(run_id: int, reprocess: str) -> None:
    """`failed`: retry what failed (as the run's retry operation does); `all`: clear every
    task of the run, as if it had never run."""
    if reprocess == REPROCESS.FAILED:
        operations.retry(run_id)
    else:
        operations.rerun(run_id)


def feed_ended_run(run: engine.EndedRun) -> None:
    """A run of a backfill ended (the engine's `on_run_ended`): its slot is free for the
    backfill's next interval."""
    if run.backfill_id is not None:
        feed(run.backfill_id)


def feed_running() -> int:
    """Feed every running backfill (the reconciler's step): runs created or rerun."""
    running = Backfill.objects.dangerously_unscoped().filter(state=STATE.RUNNING).order_by("id")
    return sum(feed(backfill_id) for backfill_id in list(running.values_list("id", flat=True)))


# --- pause, resume, cancel ---------------------------------------------------------------


def _transition(
    actor: Actor,
    backfill: Backfill,
    action: str,
    allowed: tuple[str, ...],
    new: str,
    done: str,
    then: Callable[[Backfill], dict[str, Any]] | None = None,
) -> Backfill:
    """Authorise, move the backfill from one of `allowed` to `new` (compare-and-set under
    its lock), run `then` in the same transaction, audit once."""
    authorize(actor, "backfill.operate", backfill.tenant)
    with transaction.atomic():
        locked = (
            Backfill.objects.dangerously_unscoped()
            .select_for_update(no_key=True)
            .get(pk=backfill.pk)
        )
        if locked.state not in allowed:
            raise Conflict(
                f"backfill {locked.pk} is {locked.state}; only a {' or '.join(allowed)} "
                f"backfill can be {done}"
            )
        now = timezone.now()
        ended = {"ended_at": now} if new == STATE.CANCELLED else {}
        Backfill.objects.dangerously_unscoped().filter(pk=locked.pk, state=locked.state).update(
            state=new, updated_at=now, **ended
        )
        extra = then(locked) if then is not None else None
        audit.record(
            actor=actor,
            action=action,
            tenant=backfill.tenant,
            obj=locked,
            object_repr=_repr(backfill),
            before={"state": locked.state},
            after={"state": new},
            extra=extra,
        )
    backfill.refresh_from_db()
    return backfill


def pause_backfill(*, actor: Actor, backfill: Backfill) -> Backfill:
    """No new runs; those already queued or running go on."""
    return _transition(actor, backfill, "backfill.pause", (STATE.RUNNING,), STATE.PAUSED, "paused")


def resume_backfill(*, actor: Actor, backfill: Backfill) -> Backfill:
    _transition(actor, backfill, "backfill.resume", (STATE.PAUSED,), STATE.RUNNING, "resumed")
    feed(backfill.pk)  # after the commit: the feeder takes the tenant's lock first
    backfill.refresh_from_db()
    return backfill


def _cancel_runs(backfill: Backfill) -> dict[str, Any]:
    cancelled = []
    for run_id in (
        WorkflowRun.objects.dangerously_unscoped()
        .filter(backfill=backfill, state__in=ACTIVE)
        .values_list("id", flat=True)
    ):
        try:
            operations.cancel(run_id)
            cancelled.append(run_id)
        except Conflict:  # it ended meanwhile
            pass
    return {"cancelled_runs": cancelled}


def cancel_backfill(*, actor: Actor, backfill: Backfill) -> Backfill:
    """No new runs, and its queued and running runs are cancelled."""
    return _transition(
        actor,
        backfill,
        "backfill.cancel",
        (STATE.RUNNING, STATE.PAUSED),
        STATE.CANCELLED,
        "cancelled",
        then=_cancel_runs,
    )


# --- reads (callers are inside the tenant's scope) ---------------------------------------

_RUN_STATES = {
    "queued": RUN.QUEUED,
    "running": RUN.RUNNING,
    "succeeded": RUN.SUCCESS,
    "failed": RUN.FAILED,
    "cancelled": RUN.CANCELLED,
}


def backfill_list(*, workflow: Workflow | None = None) -> QuerySet[Backfill]:
    """Backfills with their runs counted per state (what `progress` reads), newest first."""
    qs = Backfill.objects.select_related("workflow", "created_by").defer("plan")
    if workflow is not None:
        qs = qs.filter(workflow=workflow)
    counts = {
        f"runs_{name}": Count("runs", filter=Q(runs__state=state))
        for name, state in _RUN_STATES.items()
    }
    return qs.annotate(**counts).order_by("-id")


def get_backfill(backfill_id: str | int) -> Backfill:
    pk = ascii_int(backfill_id)
    found = backfill_list().filter(pk=pk).first() if pk is not None else None
    if found is None:
        raise NotFound(f"backfill {backfill_id!r} not found")
    return found


def progress(backfill: Backfill) -> dict[str, int]:
    """Intervals: total, pending (not reached yet), created, rerun, skipped; and the
    backfill's runs by state: queued, running, succeeded, failed, cancelled."""
    if hasattr(backfill, "runs_queued"):
        counts = {name: getattr(backfill, f"runs_{name}") for name in _RUN_STATES}
    else:
        rows = (
            WorkflowRun.objects.dangerously_unscoped()
            .filter(backfill=backfill)
            .values("state")
            .annotate(n=Count("id"))
            .order_by()
        )
        by_state = {row["state"]: row["n"] for row in rows}
        counts = {name: by_state.get(state, 0) for name, state in _RUN_STATES.items()}
    return {
        "total": backfill.total,
        "pending": backfill.total - backfill.position,
        "created": backfill.position - backfill.skipped - backfill.rerun,
        "rerun": backfill.rerun,
        "skipped": backfill.skipped,
        **counts,
    }
