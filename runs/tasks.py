"""Celery tasks: thin wrappers that look up ids and call the engine."""

from __future__ import annotations

from celery import shared_task

from runs import executor, reconciler

__all__ = ["execute_batch", "execute_task_instance", "reconcile"]


@shared_task(name="runs.execute", ignore_result=True)
def execute_task_instance(ti_id: int, try_number: int) -> str | None:
    return executor.execute(ti_id, try_number)


@shared_task(name="runs.execute_batch", ignore_result=True)
def execute_batch(tries: list[list[int]]) -> int:
    """Several tries of tasks that take no time (noop), claimed and recorded together."""
    return executor.execute_batch([(int(t[0]), int(t[1])) for t in tries])


@shared_task(name="runs.reconcile", ignore_result=True)
def reconcile() -> dict[str, int]:
    return reconciler.reconcile()
