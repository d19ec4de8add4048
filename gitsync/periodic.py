"""The schedule of git sources: one django-celery-beat entry, every minute, that queues
the syncs whose interval has elapsed. Created when missing (after migrate), never
overwritten: staff tune it in the admin."""

from __future__ import annotations

from typing import Any

__all__ = ["ensure_periodic_task"]


def ensure_periodic_task(**kwargs: Any) -> None:
    from django_celery_beat.models import IntervalSchedule, PeriodicTask, PeriodicTasks

    minute, _ = IntervalSchedule.objects.get_or_create(every=60, period=IntervalSchedule.SECONDS)
    _, created = PeriodicTask.objects.get_or_create(
        name="gitsync.sync_due",
        defaults={
            "task": "gitsync.sync_due",
            "interval": minute,
            "queue": "housekeeping",
            # The next minute's tick queues what this one would have.
            "expire_seconds": 50,
            "description": "GitOps pull mode: queues the syncs of git sources whose "
            "interval has elapsed (docs/gitops.md).",
        },
    )
    if created:
        PeriodicTasks.update_changed()
