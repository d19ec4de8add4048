"""Celery tasks: thin wrappers that look up ids and call the engine. Their names are part
of the wire format (messages already queued must still run): never rename one."""

from __future__ import annotations

from typing import Any

from celery import Task, shared_task

from runs import engine, retention, scheduling, worker

__all__ = [
    "execute_batch",
    "execute_task_instance",
    "purge_aged",
    "reconcile",
    "schedule_tick",
]


def _delivered_from(task: Task[Any, Any]) -> str:
    """The queue the message came from: its routing key, which is the queue's name for every
    queue the engine sends to (Celery binds a queue it creates under its own name, and the
    shared one under CELERY_TASK_DEFAULT_ROUTING_KEY, which defaults to its name). "" when
    unknown: then no try is run on through continuation (each goes to its queue)."""
    return str((task.request.delivery_info or {}).get("routing_key") or "")


@shared_task(name="runs.execute", bind=True, ignore_result=True)
def execute_task_instance(self: Task[Any, Any], ti_id: int, try_number: int) -> str | None:
    return worker.execute(ti_id, try_number, queue=_delivered_from(self))


@shared_task(name="runs.execute_batch", bind=True, ignore_result=True)
def execute_batch(self: Task[Any, Any], tries: list[list[int]]) -> int:
    """Several tries of tasks that take no time (noop), claimed and recorded together."""
    return worker.execute_batch(
        [(int(t[0]), int(t[1])) for t in tries], queue=_delivered_from(self)
    )


@shared_task(name="runs.reconcile", ignore_result=True)
def reconcile() -> dict[str, int]:
    return engine.reconcile()


@shared_task(name="runs.retention", ignore_result=True)
def purge_aged() -> dict[str, int]:
    """The daily retention pass (docs/retention.md): rows deleted, per tenant."""
    return {done.tenant: done.total for done in retention.purge()}


# Named for the app that once held it: beat entries and queued messages carry the name.
@shared_task(name="workflows.schedule_tick", ignore_result=True)
def schedule_tick() -> int:
    """The scheduler tick (a django-celery-beat entry, every second)."""
    return scheduling.tick()
