"""Celery tasks of notifications, on their own queue (`notifications`): thin wrappers that
call the consumer and the sender. Their names are part of the wire format: never rename."""

from __future__ import annotations

from celery import shared_task

from notifications import delivery, routing

__all__ = ["deliver", "route"]


@shared_task(name="notifications.route", ignore_result=True)
def route(event_ids: list[int]) -> int:
    """Route new events to their channels (sent by the outbox consumer after commit)."""
    return routing.route(int(i) for i in event_ids)


@shared_task(name="notifications.deliver", ignore_result=True)
def deliver(delivery_id: int) -> str | None:
    return delivery.deliver(int(delivery_id))
