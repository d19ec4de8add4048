"""Celery tasks of workflows: the scheduler tick (a django-celery-beat entry, every second)."""

from __future__ import annotations

from celery import shared_task

from workflows import scheduling

__all__ = ["schedule_tick"]


@shared_task(name="workflows.schedule_tick", ignore_result=True)
def schedule_tick() -> int:
    return scheduling.tick()
