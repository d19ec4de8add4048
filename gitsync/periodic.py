"""The schedule of git sources: one django-celery-beat entry, every minute, that queues
the syncs whose interval has elapsed. Created when missing (after migrate), never
overwritten: staff tune it in the admin."""

from __future__ import annotations

from typing import Any

from orchestrator.periodic import ensure_job

__all__ = ["ensure_periodic_task"]


def ensure_periodic_task(**kwargs: Any) -> None:
    ensure_job(
        "gitsync.sync_due",
        every_seconds=60,
        queue="housekeeping",
        # The next minute's tick queues what this one would have.
        expire_seconds=50,
        description="GitOps pull mode: queues the syncs of git sources whose interval has "
        "elapsed (docs/gitops.md).",
    )
