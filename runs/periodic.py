"""The platform's periodic jobs (the reconciler, the scheduler tick, retention), kept in
django-celery-beat's tables so staff can see and tune them in the admin. Created when
missing (after migrate); never overwritten."""

from __future__ import annotations

from typing import Any

from django.conf import settings

__all__ = ["ensure_periodic_tasks"]


def ensure_periodic_tasks(**kwargs: Any) -> None:
    from django_celery_beat.models import (
        CrontabSchedule,
        IntervalSchedule,
        PeriodicTask,
        PeriodicTasks,
    )

    every, _ = IntervalSchedule.objects.get_or_create(
        every=settings.RECONCILE_INTERVAL_SECONDS, period=IntervalSchedule.SECONDS
    )
    _, created = PeriodicTask.objects.get_or_create(
        name="runs.reconcile",
        defaults={
            "task": "runs.reconcile",
            "interval": every,
            "queue": "housekeeping",
            # A tick that waited behind busy workers is stale: the next one does its work.
            "expire_seconds": max(10, 5 * settings.RECONCILE_INTERVAL_SECONDS),
            "description": "Repairs runs: expired leases, lost messages, due retries, "
            "stuck runs, queued runs waiting for a slot.",
        },
    )
    second, _ = IntervalSchedule.objects.get_or_create(every=1, period=IntervalSchedule.SECONDS)
    _, tick_created = PeriodicTask.objects.get_or_create(
        name="workflows.schedule_tick",
        defaults={
            "task": "workflows.schedule_tick",
            "interval": second,
            "queue": "housekeeping",
            # Each tick does all that is due, so a late one is only in the way of the next.
            "expire_seconds": 5,
            "description": "The scheduler: creates the runs of due schedules (catch-up "
            "included). Two beats or a repeated tick make no duplicate runs.",
        },
    )
    nightly, _ = CrontabSchedule.objects.get_or_create(
        minute="30",
        hour="3",
        day_of_week="*",
        day_of_month="*",
        month_of_year="*",
        timezone="UTC",
    )
    _, retention_created = PeriodicTask.objects.get_or_create(
        name="runs.retention",
        defaults={
            "task": "runs.retention",
            "crontab": nightly,
            "queue": "housekeeping",
            # A pass that waited this long is overtaken by the next day's.
            "expire_seconds": 12 * 3600,
            "description": "Retention (docs/retention.md): deletes finished runs, their "
            "tasks, tries and logs, and old events past each tenant's retention, in small "
            "batches. Never the audit log.",
        },
    )
    if created or tick_created or retention_created:
        PeriodicTasks.update_changed()
