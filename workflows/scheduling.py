"""Schedules: each scheduled workflow's next firing kept in the database, and which of its
intervals are due (DESIGN.md section 6, "Schedules"; the rules of time are in
workflows.cron, the one cron engine). The scheduler tick that fires them into runs is
`runs.scheduling`.

Catch-up: a firing older than SCHEDULE_MISFIRE_GRACE_SECONDS when the tick sees it was
missed (downtime, a pause). Firings within the grace always run. Of the missed ones,
`none` runs nothing, `latest` runs the newest (unless a firing on time runs anyway: it is
newer), `all` runs every one, oldest first, but at most the tenant's `max_catchup_runs`:
the newest of them, because the newest data is the most wanted and the oldest can still be
backfilled. Runs are queued, so max_active_runs still applies.

Applying a spec with a new cron, timezone, start or end restarts the schedule from now
(a changed schedule owes nothing for the past); pausing stops it, unpausing resumes it from
where it stopped, and what was missed meanwhile follows the catch-up policy.

Locks, in the platform's order: tenant, workflow, then the schedule row and runs."""

from __future__ import annotations

import datetime as dt
import logging
import zoneinfo

from django.conf import settings
from django.utils import timezone

from orchestrator.errors import NotFound
from orchestrator.models import Tenant
from orchestrator.tenancy import tenant_quota
from workflows import cron, spec
from workflows.models import Schedule, Workflow

__all__ = [
    "due_intervals",
    "first_fire",
    "get_schedule",
    "interval_of",
    "schedule_of",
    "set_schedule_paused",
    "stop_schedule",
    "sync_schedule",
    "upcoming",
]

logger = logging.getLogger(__name__)
_MICROSECOND = dt.timedelta(microseconds=1)


# --- the schedule's position -------------------------------------------------------------


def _bound(value: dt.date | None, timezone_name: str) -> dt.datetime | None:
    """A spec's start or end as an instant: a date is midnight, a naive date-time is
    wall-clock time, both in the schedule's timezone."""
    if value is None:
        return None
    zone = zoneinfo.ZoneInfo(timezone_name)
    if isinstance(value, dt.datetime):
        return value if value.tzinfo is not None else value.replace(tzinfo=zone)
    return dt.datetime.combine(value, dt.time(), zone)


def first_fire(schedule: Schedule, after: dt.datetime) -> dt.datetime | None:
    """The first firing strictly after `after` whose interval the schedule covers (its
    logical date between start and end), or None once past the end."""
    fire = cron.next_fire(schedule.cron, schedule.timezone, after)
    if schedule.start is not None:
        first_start = cron.next_fire(
            schedule.cron, schedule.timezone, schedule.start - _MICROSECOND
        )
        fire = max(fire, cron.next_fire(schedule.cron, schedule.timezone, first_start))
    if schedule.end is not None and interval_of(schedule, fire)[0] > schedule.end:
        return None
    return fire


def interval_of(schedule: Schedule, fire: dt.datetime) -> cron.Interval:
    return cron.interval_ending(schedule.cron, schedule.timezone, fire)


def _reposition(schedule: Schedule, paused: bool) -> None:
    schedule.next_run_at = None if paused else first_fire(schedule, schedule.handled_until)


def sync_schedule(
    *, workflow: Workflow, wanted: spec.Schedule | None, now: dt.datetime | None = None
) -> Schedule | None:
    """Make the workflow's schedule match its spec's, at once (called by apply, in its
    transaction). A new cron, timezone, start or end restarts it from `now`."""
    current = Schedule.objects.dangerously_unscoped().filter(workflow=workflow).first()
    if wanted is None:
        if current is not None:
            current.delete()
        return None
    fields = {
        "cron": wanted.cron,
        "timezone": wanted.timezone,
        "catchup": wanted.catchup,
        "start": _bound(wanted.start, wanted.timezone),
        "end": _bound(wanted.end, wanted.timezone),
    }
    if current is None:
        current = Schedule(tenant_id=workflow.tenant_id, workflow=workflow)
    restart = current.pk is None or any(
        getattr(current, name) != fields[name] for name in ("cron", "timezone", "start", "end")
    )
    for name, value in fields.items():
        setattr(current, name, value)
    if restart:
        current.handled_until = now or timezone.now()
    _reposition(current, workflow.paused)
    current.save()
    return current


def set_schedule_paused(
    *, workflow: Workflow, paused: bool, now: dt.datetime | None = None
) -> None:
    """Pausing stops the schedule; unpausing resumes it after the last firing handled, so
    the next tick treats the firings missed meanwhile by the catch-up policy. Every firing
    before the unpause counts as missed, however recent: it fell while paused."""
    schedule = Schedule.objects.dangerously_unscoped().filter(workflow=workflow).first()
    if schedule is not None:
        _reposition(schedule, paused)
        if not paused:
            schedule.resumed_at = now or timezone.now()
        schedule.save(update_fields=["next_run_at", "resumed_at", "updated_at"])


def stop_schedule(*, workflow: Workflow) -> None:
    """A deleted workflow fires no more (its schedule row stays, for the record)."""
    Schedule.objects.dangerously_unscoped().filter(workflow=workflow).update(
        next_run_at=None, updated_at=timezone.now()
    )


# --- reading -----------------------------------------------------------------------------


def schedule_of(workflow: Workflow) -> Schedule | None:
    return (
        Schedule.objects.dangerously_unscoped()
        .filter(workflow=workflow)
        .select_related("workflow")
        .first()
    )


def get_schedule(workflow: Workflow) -> Schedule:
    schedule = schedule_of(workflow)
    if schedule is None:
        raise NotFound(f"workflow {workflow.name!r} has no schedule (add `schedule` to its spec)")
    return schedule


def upcoming(
    schedule: Schedule, *, count: int = 10, now: dt.datetime | None = None
) -> list[dt.datetime]:
    """The next `count` firings after `now`, in the schedule's timezone (fewer when the
    schedule ends first). Paused or not: what it would fire."""
    zone = zoneinfo.ZoneInfo(schedule.timezone)
    found: list[dt.datetime] = []
    fire = first_fire(schedule, now or timezone.now())
    while fire is not None and len(found) < count:
        found.append(fire.astimezone(zone))
        fire = first_fire(schedule, fire)
    return found


# --- what is due ---------------------------------------------------------------------


def due_intervals(
    schedule: Schedule, tenant: Tenant, now: dt.datetime
) -> tuple[list[cron.Interval], dt.datetime]:
    """The intervals to run now, oldest first, and the newest firing handled (at or before
    `now`). Walks back from now, so a long outage costs no more than what will run."""
    grace = now - dt.timedelta(seconds=settings.SCHEDULE_MISFIRE_GRACE_SECONDS)
    if schedule.resumed_at is not None:
        grace = max(grace, schedule.resumed_at)  # what fell while paused was missed
    newest = cron.previous_fire(schedule.cron, schedule.timezone, now + _MICROSECOND)
    assert schedule.next_run_at is not None
    on_time: list[cron.Interval] = []
    missed: list[cron.Interval] = []
    fire = newest
    while fire >= schedule.next_run_at:
        interval = interval_of(schedule, fire)
        if schedule.end is None or interval[0] <= schedule.end:
            if fire >= grace:
                on_time.append(interval)
            elif len(missed) < _missed_limit(schedule, tenant, bool(on_time)):
                missed.append(interval)
            else:
                break
        fire = interval[0]
    return [*reversed(missed), *reversed(on_time)], newest


def _missed_limit(schedule: Schedule, tenant: Tenant, on_time: bool) -> int:
    if schedule.catchup == Schedule.Catchup.ALL:
        return tenant_quota(tenant.quotas, "max_catchup_runs")
    if schedule.catchup == Schedule.Catchup.LATEST:
        return 0 if on_time else 1
    return 0
