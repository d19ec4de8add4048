"""Celery tasks: thin wrappers that look up ids and call the engine. Their names are part
of the wire format (messages already queued must still run): never rename one."""

from __future__ import annotations

import threading
from typing import Any

from celery import Task, shared_task, signals

from runs import engine, retention, scheduling, worker
from runs.engine import holding
from runs.tasktypes import local

__all__ = [
    "execute_batch",
    "execute_task_instance",
    "hold_received",
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


def _tries_of(name: str, args: Any) -> list[tuple[int, int]]:
    """The (instance id, try number) pairs a message of ours carries (its wire format)."""
    if name == "runs.execute":
        return [(int(args[0]), int(args[1]))]
    if name == "runs.execute_batch":
        return [(int(t[0]), int(t[1])) for t in args[0]]
    return []


@signals.worker_init.connect
def _become_holder(sender: Any = None, **kwargs: Any) -> None:
    """In the worker's main process, before its pool forks: its children inherit the
    holder's name for the tries they keep (holding.py), and the node's name their attempts
    record as their worker."""
    nodename = str(getattr(sender, "hostname", "") or "")
    holding.become_holder(nodename or "worker")
    worker.name_worker(nodename)


@signals.worker_ready.connect
def _start_holding_beat(**kwargs: Any) -> None:
    holding.start_beating()


@signals.worker_ready.connect
def _sweep_sandbox_root(**kwargs: Any) -> None:
    """What stopped workers left in the sandbox root, removed beside the start."""
    threading.Thread(target=local.sweep_sandbox_root, name="sandbox-sweep", daemon=True).start()


@signals.task_received.connect
def hold_received(request: Any = None, **kwargs: Any) -> None:
    """A message taken by the main process, ahead of the child that will claim its tries:
    until then, only this worker knows the tries are in hand."""
    if not holding.holder():
        return
    try:
        tries = _tries_of(str(getattr(request, "name", "")), getattr(request, "args", None))
    except (TypeError, ValueError, IndexError, KeyError):
        return  # malformed: the task itself fails on it, with the error
    holding.hold(tries)


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
