"""OpenLineage's outbox: when OpenLineage is configured (OPENLINEAGE_ENABLED), the engine
writes a `LineageEvent` row per attempt and run event (START when a try is claimed,
COMPLETE, FAIL or ABORT when it ends) in the transaction of the change, and hands the
attempts' ids to the consumers registered with `on_lineage` after commit (the sender in
events.openlineage). When it is not configured, nothing here costs a query.

A sensor's (`wait_for`) check that says "not yet" ends its attempt `rescheduled`: neither
a completion nor a failure. So a sensor's attempt writes no START when it is claimed; it
writes START (at its start time) together with its end, and a rescheduled check writes
nothing at all. Every START sent is thus closed by exactly one COMPLETE, FAIL or ABORT
(docs/lineage.md, "OpenLineage")."""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Callable, Iterable, Sequence
from typing import Any

from django.conf import settings
from django.db import transaction
from django.db.models import QuerySet

from runs.models import LineageEvent, TaskAttempt

__all__ = ["KIND_OF_END", "SENSOR_TYPES", "ended", "on_lineage", "started"]

KIND = LineageEvent.Kind
ATTEMPT = TaskAttempt.State
# The task types whose attempts may end `rescheduled`: their START waits for their end.
SENSOR_TYPES = frozenset({"wait_for"})
# How an attempt's state ends its OpenLineage run; `rescheduled` ends none (see above).
KIND_OF_END: dict[str, str] = {
    ATTEMPT.SUCCESS: KIND.COMPLETE,
    ATTEMPT.SKIPPED: KIND.COMPLETE,
    ATTEMPT.FAILED: KIND.FAIL,
    ATTEMPT.CANCELLED: KIND.ABORT,
}

_consumers: list[Callable[[list[int]], Any]] = []


def on_lineage(consumer: Callable[[list[int]], Any]) -> Callable[[], None]:
    """Call `consumer` with the ids of the attempts that have new lineage events, after
    the commit that wrote them (robustly: an error is logged, and the sender's repair
    sends what was missed). Returns a function that stops it."""
    _consumers.append(consumer)
    return lambda: _consumers.remove(consumer)


def started(attempts: Sequence[TaskAttempt], task_types: Sequence[str]) -> None:
    """START for newly claimed attempts (`task_types`: their tasks' types, in order),
    but for sensors'."""
    if not settings.OPENLINEAGE_ENABLED:
        return
    _write(
        [
            LineageEvent(tenant_id=a.tenant_id, attempt_id=a.pk, kind=KIND.START, time=a.started_at)
            for a, task_type in zip(attempts, task_types, strict=True)
            if task_type not in SENSOR_TYPES
        ]
    )


def ended(
    state: str, attempts: Iterable[TaskAttempt] | QuerySet[TaskAttempt], time: dt.datetime
) -> None:
    """The end of attempts that ended `state` at `time` (a queryset is read only when
    OpenLineage is on, so pass one that still finds them), with their START where the
    claim wrote none (a sensor's: see the module's docstring)."""
    kind = KIND_OF_END.get(state)
    if kind is None or not settings.OPENLINEAGE_ENABLED:
        return
    if isinstance(attempts, QuerySet):
        attempts = attempts.only("id", "tenant_id", "started_at")
    rows: list[LineageEvent] = []
    for a in attempts:
        rows.append(
            LineageEvent(tenant_id=a.tenant_id, attempt_id=a.pk, kind=KIND.START, time=a.started_at)
        )
        rows.append(LineageEvent(tenant_id=a.tenant_id, attempt_id=a.pk, kind=kind, time=time))
    _write(rows)


def _write(rows: list[LineageEvent]) -> None:
    """One insert; a row already there (the claim's START, a second settling) is kept."""
    if not rows:
        return
    LineageEvent.objects.dangerously_unscoped().bulk_create(rows, ignore_conflicts=True)
    ids = sorted({row.attempt_id for row in rows})
    for consumer in _consumers:
        transaction.on_commit(functools.partial(consumer, ids), robust=True)
