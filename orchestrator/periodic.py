"""The platform's periodic jobs in django-celery-beat's tables (runs/periodic.py,
gitsync/periodic.py), where staff see and tune them in the admin: each created when
missing (after migrate), never overwritten."""

from __future__ import annotations

__all__ = ["ensure_job"]


def ensure_job(
    name: str,
    *,
    queue: str,
    expire_seconds: int,
    description: str,
    every_seconds: int | None = None,
    crontab: dict[str, str] | None = None,
) -> bool:
    """The beat entry `name` (running the Celery task of the same name) every
    `every_seconds`, or on `crontab` (its CrontabSchedule fields), unless it exists; True
    if it was made (the beats are then told to reload their schedule)."""
    from django_celery_beat.models import (
        CrontabSchedule,
        IntervalSchedule,
        PeriodicTask,
        PeriodicTasks,
    )

    when: dict[str, object]
    if crontab is not None:
        when = {"crontab": CrontabSchedule.objects.get_or_create(**crontab)[0]}
    else:
        interval = IntervalSchedule.objects.get_or_create(
            every=every_seconds, period=IntervalSchedule.SECONDS
        )[0]
        when = {"interval": interval}
    _, created = PeriodicTask.objects.get_or_create(
        name=name,
        defaults={
            "task": name,
            "queue": queue,
            "expire_seconds": expire_seconds,
            "description": description,
            **when,
        },
    )
    if created:
        PeriodicTasks.update_changed()
    return bool(created)
