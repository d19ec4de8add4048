"""The platform's periodic jobs (the reconciler, the scheduler tick, retention), kept in
django-celery-beat's tables so staff can see and tune them in the admin. Created when
missing (after migrate); never overwritten."""

from __future__ import annotations

from typing import Any

from django.conf import settings

from orchestrator.periodic import ensure_job

__all__ = ["ensure_periodic_tasks"]


def ensure_periodic_tasks(**kwargs: Any) -> None:
    ensure_job(
        "runs.reconcile",
        every_seconds=settings.RECONCILE_INTERVAL_SECONDS,
        queue="housekeeping",
        # A tick that waited behind busy workers is stale: the next one does its work.
        expire_seconds=max(10, 5 * settings.RECONCILE_INTERVAL_SECONDS),
        description="Repairs runs: expired leases, lost messages, due retries, stuck runs, "
        "queued runs waiting for a slot.",
    )
    ensure_job(
        "workflows.schedule_tick",
        every_seconds=1,
        queue="housekeeping",
        # Each tick does all that is due, so a late one is only in the way of the next.
        expire_seconds=5,
        description="The scheduler: creates the runs of due schedules (catch-up included). "
        "Two beats or a repeated tick make no duplicate runs.",
    )
    ensure_job(
        "runs.retention",
        crontab={
            "minute": "30",
            "hour": "3",
            "day_of_week": "*",
            "day_of_month": "*",
            "month_of_year": "*",
            "timezone": "UTC",
        },
        queue="housekeeping",
        # A pass that waited this long is overtaken by the next day's.
        expire_seconds=12 * 3600,
        description="Retention (docs/retention.md): deletes finished runs, their tasks, tries "
        "and logs, and old events past each tenant's retention, in small batches. Never the "
        "audit log.",
    )
