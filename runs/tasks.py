"""Celery tasks: thin wrappers that look up ids and call the engine."""

from __future__ import annotations

from celery import shared_task

from runs import executor, reconciler

__all__ = ["execute_task_instance", "reconcile"]


@shared_task(name="runs.execute", ignore_result=True)
def execute_task_instance(ti_id: int, try_number: int) -> str | None:
    return executor.execute(ti_id, try_number)


@shared_task(name="runs.reconcile", ignore_result=True)
def reconcile() -> dict[str, int]:
    return reconciler.reconcile()
