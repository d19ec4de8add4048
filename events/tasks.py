"""Celery tasks of events: thin wrappers that call the dispatcher. Their names are part
of the wire format: never rename."""

from __future__ import annotations

from celery import shared_task

from events import dispatch as dispatcher
from events import openlineage

__all__ = ["dispatch", "send_lineage"]


@shared_task(name="events.dispatch", ignore_result=True)
def dispatch(event_ids: list[int]) -> int:
    """Start the runs new events trigger (sent by the outbox consumer after commit)."""
    return dispatcher.dispatch(int(i) for i in event_ids)


@shared_task(name="events.send_lineage", ignore_result=True)
def send_lineage(attempt_ids: list[int]) -> int:
    """Send the attempts' new OpenLineage events (sent by the engine after commit)."""
    return openlineage.send(int(i) for i in attempt_ids)
