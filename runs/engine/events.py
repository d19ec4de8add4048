"""The outbox: the engine records what happened (a run ended, a task failed or will be
retried) as an `Event` row in the transaction that made it happen, and never calls a
transport. Consumers registered with `on_events` (notifications) are handed the new
events' ids after commit; what a crash lost there, the reconciler's repairs route later.

An event is published as a CloudEvent 1.0 (`cloudevent`): `id` is the row's uid,
`source` the workflow, `subject` the run (and task), `data` the payload written here.
docs/notifications.md documents every payload with examples."""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.db import transaction
from django.urls import reverse

from runs.graph import VersionGraph
from runs.models import Event, TaskAttempt, TaskInstance, TaskLog, WorkflowRun

__all__ = [
    "FAILED_TASKS_SHOWN",
    "cloudevent",
    "emit",
    "first_lines",
    "log_tail",
    "on_events",
    "run_ended",
    "run_link",
    "run_summary",
    "task_failed",
]

TI = TaskInstance.State
RUN = WorkflowRun.State
FAILED_TASKS_SHOWN = 10  # a run.failed event lists at most this many failed tasks

_consumers: list[Callable[[list[int]], Any]] = []


def on_events(consumer: Callable[[list[int]], Any]) -> Callable[[], None]:
    """Call `consumer` with the ids of new events after the commit that wrote them
    (robustly: an error is logged, and the repairs route what was missed). Returns a
    function that stops it."""
    _consumers.append(consumer)
    return lambda: _consumers.remove(consumer)


def emit(
    *,
    tenant_id: int,
    type: str,
    data: dict[str, Any],
    workflow_id: int | None = None,
    run_id: int | None = None,
    task_id: str = "",
    subject: str = "",
    source: str = "",
    external_id: str = "",
    time: dt.datetime | None = None,
) -> Event:
    """Write one event in the current transaction; consumers hear of it after commit.
    `subject` and `source` replace the CloudEvent's derived ones (a published event's,
    a dataset update's); `external_id` is a published event's own id."""
    event = Event.objects.dangerously_unscoped().create(
        tenant_id=tenant_id,
        type=type,
        data=data,
        workflow_id=workflow_id,
        run_id=run_id,
        task_id=task_id,
        subject=subject,
        source=source,
        external_id=external_id,
        **({"time": time} if time is not None else {}),
    )
    for consumer in _consumers:
        transaction.on_commit(functools.partial(consumer, [event.pk]), robust=True)
    return event


def run_link(tenant: str, run_id: int) -> str:
    """Where a person reads the run: PUBLIC_URL plus the run's page in the portal."""
    return settings.PUBLIC_URL.rstrip("/") + reverse("portal:run", args=[tenant, run_id])


def _iso(value: dt.datetime | None) -> str | None:
    return value.isoformat() if value is not None else None


def first_lines(text: str, lines: int = 5, chars: int = 1000) -> str:
    """The start of an error, for a message: a few lines, capped."""
    head = "\n".join(text.strip().splitlines()[:lines])
    return head if len(head) <= chars else head[: chars - 1] + "…"


def log_tail(attempt_id: int, lines: int = 8, chars: int = 1500) -> str:
    """The end of an attempt's log (masked when written), where a failing command or a
    Python traceback says what went wrong: a shell or python task's `error` is only its
    exit code."""
    chunks = list(
        TaskLog.objects.dangerously_unscoped()
        .filter(attempt_id=attempt_id)
        .order_by("-offset")
        .values_list("data", flat=True)[:2]
    )
    text = b"".join(bytes(chunk) for chunk in reversed(chunks)).decode("utf-8", "replace")
    tail = "\n".join(text.rstrip().splitlines()[-lines:])
    return tail if len(tail) <= chars else "…" + tail[-(chars - 1) :]


def run_summary(run: WorkflowRun, state: str | None = None, ended_at: Any = None) -> dict[str, Any]:
    """The run as events describe it (`state` and `ended_at` as just written, when the row
    in hand predates the update)."""
    ended_at = ended_at if ended_at is not None else run.ended_at
    duration = (
        round((ended_at - run.started_at).total_seconds(), 3)
        if ended_at is not None and run.started_at is not None
        else None
    )
    return {
        "id": run.pk,
        "state": state or run.state,
        "trigger_source": run.trigger_source,
        "logical_date": _iso(run.logical_date),
        "created_at": _iso(run.created_at),
        "started_at": _iso(run.started_at),
        "ended_at": _iso(ended_at),
        "duration_seconds": duration,
    }


def _failed_tasks(run: WorkflowRun) -> list[dict[str, Any]]:
    """The failed tasks' last tries, with the start of their (already masked) errors."""
    shown: dict[str, dict[str, Any]] = {}
    rows = (
        TaskAttempt.objects.dangerously_unscoped()
        .filter(task_instance__run=run, task_instance__state=TI.FAILED)
        .order_by("task_instance_id", "-try_number")
        .values_list("task_instance__task_id", "try_number", "error", "exit_code", "id")
    )
    for task_id, try_number, error, exit_code, attempt_id in rows:
        if task_id in shown:
            continue
        if len(shown) == FAILED_TASKS_SHOWN:
            break
        shown[task_id] = {
            "task_id": task_id,
            "try_number": try_number,
            "exit_code": exit_code,
            "error": first_lines(error),
            "log_tail": log_tail(attempt_id),
        }
    return list(shown.values())


def _recovered(run: WorkflowRun) -> bool:
    """The workflow's last run before this one that ended failed or succeeded, failed.
    Two index lookups (workflow, state, id) instead of a sort of its whole history."""
    earlier = WorkflowRun.objects.dangerously_unscoped().filter(
        workflow_id=run.workflow_id, id__lt=run.pk
    )
    last_failed = earlier.filter(state=RUN.FAILED).order_by("-id").values_list("id").first()
    if last_failed is None:
        return False
    last_success = earlier.filter(state=RUN.SUCCESS).order_by("-id").values_list("id").first()
    return last_success is None or last_success[0] < last_failed[0]


def run_ended(
    run: WorkflowRun, graph: VersionGraph, state: str, ended_at: dt.datetime, reason: str = ""
) -> None:
    """The events of a run's end: run.succeeded (and run.recovered after a failed run),
    run.failed (with its failed tasks) or run.cancelled. The run was read with its tenant."""
    tenant = run.tenant.slug
    data: dict[str, Any] = {
        "tenant": tenant,
        "workflow": graph.spec.name,
        "run": run_summary(run, state, ended_at),
        "url": run_link(tenant, run.pk),
    }
    if state == RUN.FAILED:
        data["failed_tasks"] = _failed_tasks(run)
    if reason:
        data["reason"] = reason
    types: list[str] = [
        {
            RUN.SUCCESS.value: Event.Type.RUN_SUCCEEDED.value,
            RUN.FAILED.value: Event.Type.RUN_FAILED.value,
            RUN.CANCELLED.value: Event.Type.RUN_CANCELLED.value,
        }[str(state)]
    ]
    if state == RUN.SUCCESS and _recovered(run):
        types.append(Event.Type.RUN_RECOVERED)
    for kind in types:
        emit(
            tenant_id=run.tenant_id,
            type=kind,
            data=data,
            workflow_id=run.workflow_id,
            run_id=run.pk,
        )


def task_failed(
    run: WorkflowRun,
    graph: VersionGraph,
    ti: TaskInstance,
    *,
    attempt_id: int,
    error: str,
    exit_code: int | None,
    next_try_at: dt.datetime | None,
) -> None:
    """task.retrying when another try is due at `next_try_at`, else task.failed."""
    tenant = run.tenant.slug
    emit(
        tenant_id=run.tenant_id,
        type=Event.Type.TASK_RETRYING if next_try_at else Event.Type.TASK_FAILED,
        data={
            "tenant": tenant,
            "workflow": graph.spec.name,
            "run": {"id": run.pk, "logical_date": _iso(run.logical_date)},
            "task": {
                "task_id": ti.task_id,
                "try_number": ti.try_number,
                "max_tries": ti.max_tries,
                "exit_code": exit_code,
                "error": first_lines(error),
                "log_tail": log_tail(attempt_id),
                "next_try_at": _iso(next_try_at),
            },
            "url": run_link(tenant, run.pk),
        },
        workflow_id=run.workflow_id,
        run_id=run.pk,
        task_id=ti.task_id,
    )


def cloudevent(event: Event, tenant: str) -> dict[str, Any]:
    """The event as a CloudEvent 1.0 in structured JSON form (tenant: its slug)."""
    data = event.data
    workflow = data.get("workflow") if isinstance(data, dict) else None
    subject = f"runs/{event.run_id}" if event.run_id else ""
    if event.task_id and subject:
        subject += f"/tasks/{event.task_id}"
    subject = event.subject or subject
    source = event.source or (f"/tenants/{tenant}" + (f"/workflows/{workflow}" if workflow else ""))
    envelope: dict[str, Any] = {
        "specversion": "1.0",
        "id": str(event.uid),
        "source": source,
        "type": event.type,
        "time": _iso(event.time),
        "datacontenttype": "application/json",
        "tenant": tenant,
        "data": data,
    }
    if subject:
        envelope["subject"] = subject
    return envelope
