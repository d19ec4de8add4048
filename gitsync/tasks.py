"""Celery tasks of git sync: thin wrappers that call gitsync.services. Their names are part
of the wire format: never rename. Routed to the housekeeping queue (settings)."""

from __future__ import annotations

from celery import shared_task

from gitsync.models import GitSource
from gitsync.services import queue_due_sources, sync_source
from orchestrator.actors import Actor
from orchestrator.context import tenant_scope
from orchestrator.errors import NotFound

__all__ = ["sync", "sync_due"]


@shared_task(name="gitsync.sync", ignore_result=True)
def sync(source_id: int) -> str:
    """Sync one source (queued by its push webhook or the schedule): ok, failed, skipped,
    or gone (deleted, or its tenant archived, since it was queued)."""
    source = (
        GitSource.objects.dangerously_unscoped()
        .select_related("tenant")
        .filter(pk=source_id, tenant__archived_at__isnull=True)
        .first()
    )
    if source is None:
        return "gone"
    with tenant_scope([source.tenant_id]):
        try:
            return sync_source(actor=Actor.system(name=source.actor_name), source=source).status
        except NotFound:  # deleted while its repository was being cloned
            return "gone"


@shared_task(name="gitsync.sync_due", ignore_result=True)
def sync_due() -> int:
    """The schedule's tick (every minute): queue the sources whose interval elapsed."""
    return queue_due_sources()
