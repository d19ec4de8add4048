"""Celery tasks of events: thin wrappers that call the dispatcher. Their names are part
of the wire format: never rename."""

from __future__ import annotations

from celery import shared_task

from events import dispatch as dispatcher

__all__ = ["dispatch"]


@shared_task(name="events.dispatch", ignore_result=True)
def dispatch(event_ids: list[int]) -> int:
    """Start the runs new events trigger (sent by the outbox consumer after commit)."""
    return dispatcher.dispatch(int(i) for i in event_ids)
