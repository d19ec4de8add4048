"""Read queries of runs. Callers are inside the tenant's scope."""

from __future__ import annotations

import codecs
import datetime as dt
from typing import Any

from django.conf import settings
from django.db.models import Count, QuerySet

from orchestrator.errors import NotFound
from runs.models import TaskAttempt, TaskInstance, TaskLog, WorkflowRun

__all__ = [
    "LOG_PAGE_MAX",
    "get_run",
    "get_task_instance",
    "read_log",
    "run_list",
    "task_summary",
]


def run_list(
    *,
    workflow: str | None = None,
    state: str | None = None,
    created_after: dt.datetime | None = None,
    created_before: dt.datetime | None = None,
    trigger_source: str | None = None,
    triggered_by: str | None = None,
) -> QuerySet[WorkflowRun]:
    qs = WorkflowRun.objects.select_related("workflow", "version", "triggered_by")
    if trigger_source:
        qs = qs.filter(trigger_source=trigger_source)
    if triggered_by:
        qs = qs.filter(triggered_by__username=triggered_by)
    if workflow:
        qs = qs.filter(workflow__name=workflow, workflow__deleted_at__isnull=True)
    if state:
        qs = qs.filter(state=state)
    if created_after:
        qs = qs.filter(created_at__gte=created_after)
    if created_before:
        qs = qs.filter(created_at__lt=created_before)
    return qs


def get_run(run_id: str | int) -> WorkflowRun:
    run = run_list().filter(pk=int(run_id)).first() if str(run_id).isdigit() else None
    if run is None:
        raise NotFound(f"run {run_id!r} not found")
    return run


def task_summary(run: WorkflowRun) -> dict[str, int]:
    rows = TaskInstance.objects.filter(run=run).values("state").annotate(n=Count("id"))
    return {row["state"]: row["n"] for row in rows}


def get_task_instance(run: WorkflowRun, task_id: str) -> TaskInstance:
    ti = TaskInstance.objects.filter(run=run, task_id=task_id, map_index=-1).first()
    if ti is None:
        raise NotFound(f"run {run.pk} has no task {task_id!r}")
    return ti


LOG_PAGE_MAX = 1024 * 1024


def read_log(
    ti: TaskInstance, *, try_number: int | None, offset: int, limit: int
) -> dict[str, Any]:
    """Bytes [offset, offset + limit) of one attempt's log, cut back to a whole UTF-8
    character (a first character longer than `limit` comes whole), so a client that asks
    again from `next_offset` gets every byte once."""
    attempts = TaskAttempt.objects.filter(task_instance=ti)
    attempt = (
        attempts.filter(try_number=try_number).first()
        if try_number is not None
        else attempts.order_by("-try_number").first()
    )
    if attempt is None:
        if try_number is not None:
            raise NotFound(f"task {ti.task_id!r} has no try {try_number}")
        return {
            "try_number": None,
            "offset": offset,
            "next_offset": offset,
            "text": "",
            "running": ti.state not in TaskInstance.FINISHED,
            "total_bytes": 0,
            "cap_bytes": settings.TASK_LOG_MAX_BYTES,
        }
    end = offset + limit
    logs = TaskLog.objects.filter(attempt=attempt)
    first = logs.filter(offset__lte=offset).order_by("-offset").first()
    chunks = ([first] if first else []) + list(
        logs.filter(offset__gt=offset, offset__lt=end + _CHARACTER_REST).order_by("offset")
    )
    data = b""
    start = chunks[0].offset if chunks else offset
    for chunk in chunks:
        data += bytes(chunk.data)
    data = data[offset - start : end + _CHARACTER_REST - start]
    running = attempt.state == TaskAttempt.State.RUNNING
    # Fewer bytes than asked for (with the look-ahead): the log ends within this page.
    complete = not running and len(data) < limit + _CHARACTER_REST
    text, used = _whole_characters(data, limit, complete=complete)
    return {
        "try_number": attempt.try_number,
        "offset": offset,
        "next_offset": offset + used,
        "text": text,
        "running": running,
        "total_bytes": attempt.log_bytes,
        "cap_bytes": settings.TASK_LOG_MAX_BYTES,
    }


# Bytes read past the limit: the rest of a character the limit cuts (UTF-8: up to 4 bytes).
_CHARACTER_REST = 3


def _whole_characters(data: bytes, limit: int, *, complete: bool) -> tuple[str, int]:
    """Decode the first `limit` bytes of `data` (which holds up to 3 more). A character cut
    by the limit is left for the next page, unless it is the page's first: then it comes
    whole, or a reader asking for fewer bytes than one character would never advance. Bad
    bytes read as U+FFFD, and so does a character cut by the end of a `complete` log."""
    decoder = codecs.getincrementaldecoder("utf-8")("replace")
    used = min(limit, len(data))
    text = decoder.decode(data[:used], final=complete and used == len(data))
    while not text and used < len(data):
        used += 1
        text = decoder.decode(data[used - 1 : used], final=complete and used == len(data))
    held: bytes = decoder.getstate()[0]
    return text, used - len(held)
