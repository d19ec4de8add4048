"""Runs with a mapped task, put in their states without workers: a run triggered through
the services, then the mapped task's instances written as the engine's expansion leaves
them (the map_index -1 row becomes index 0, the others are inserted with their element in
`map_value`), with attempts and logs as the executor would have left them.

The workflow: `list_files` -> `process` (mapped over list_files' result) -> `report`."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from typing import Any

from django.utils import timezone

from runs.models import TaskAttempt, TaskInstance, TaskLog, WorkflowRun
from tests.harness import Team
from tests.runs.run_states import started_run

__all__ = ["MAPPED_SPEC", "expand", "mapped_run", "unscoped_instances", "write_log"]

# Tests look across tenants: every use says so.
unscoped_instances = TaskInstance.objects.dangerously_unscoped

MAPPED_SPEC: dict[str, Any] = {
    "name": "fan",
    "tasks": {
        "list_files": {"type": "noop"},
        "process": {
            "type": "noop",
            "depends_on": ["list_files"],
            "map": {"over": "{{ tasks.list_files.result }}", "as": "file"},
        },
        "report": {"type": "noop", "depends_on": ["process"]},
    },
}

_ATTEMPT_OF = {"success": "success", "failed": "failed", "running": "running"}


def expand(run: WorkflowRun, task_id: str, states: Sequence[str]) -> list[TaskInstance]:
    """The task's -1 instance turned into len(states) instances, index i in states[i], each
    with one attempt when it ran (a failed one: two tries), its element "file-<i>.csv"."""
    first = unscoped_instances().get(run=run, task_id=task_id, map_index=-1)
    now = timezone.now()
    rows = []
    for index, state in enumerate(states):
        ran = state in _ATTEMPT_OF
        tries = 2 if state == "failed" else int(ran)
        values = {
            "map_index": index,
            "map_value": f"file-{index}.csv",
            "state": state,
            "try_number": tries,
            "max_tries": max(tries, 1),
            "pending_upstreams": 0,
            "queued_at": now - dt.timedelta(minutes=5) if ran else None,
            "started_at": now - dt.timedelta(minutes=4, seconds=-index) if ran else None,
            "ended_at": now - dt.timedelta(seconds=60 - index)
            if state in ("success", "failed")
            else None,
            "result": {"rows": index} if state == "success" else None,
        }
        if index == 0:
            unscoped_instances().filter(pk=first.pk).update(**values)
            ti = unscoped_instances().get(pk=first.pk)
        else:
            ti = unscoped_instances().create(
                tenant_id=run.tenant_id,
                run=run,
                task_id=task_id,
                task_type=first.task_type,
                **values,
            )
        for number in range(1, tries + 1):
            last = _ATTEMPT_OF[state] if number == tries else "failed"
            TaskAttempt.objects.dangerously_unscoped().create(
                tenant_id=run.tenant_id,
                task_instance=ti,
                try_number=number,
                state=last,
                worker="worker-1",
                pid=2000 + index,
                started_at=now - dt.timedelta(minutes=4, seconds=-index),
                ended_at=None if last == "running" else now - dt.timedelta(seconds=60 - index),
                exit_code={"success": 0, "failed": 1}.get(last),
                error="exit code 1" if last == "failed" else "",
            )
        rows.append(ti)
    return rows


def mapped_run(team: Team, states: Sequence[str]) -> WorkflowRun:
    """A run of MAPPED_SPEC: list_files succeeded, process expanded into `states`, report
    pending."""
    run = started_run(team, MAPPED_SPEC)
    now = timezone.now()
    unscoped_instances().filter(run=run, task_id="list_files").update(
        state="success",
        try_number=1,
        queued_at=now - dt.timedelta(minutes=6),
        started_at=now - dt.timedelta(minutes=6),
        ended_at=now - dt.timedelta(minutes=5),
        result=[f"file-{i}.csv" for i in range(len(states))],
    )
    expand(run, "process", states)
    return run


def write_log(run: WorkflowRun, task_id: str, map_index: int, data: bytes) -> None:
    """The latest try of one instance logged `data`."""
    attempt = (
        TaskAttempt.objects.dangerously_unscoped()
        .filter(task_instance__run=run, task_instance__task_id=task_id)
        .filter(task_instance__map_index=map_index)
        .order_by("-try_number")
        .first()
    )
    assert attempt is not None
    TaskLog.objects.dangerously_unscoped().create(
        tenant_id=run.tenant_id, attempt=attempt, offset=0, data=data
    )
    TaskAttempt.objects.dangerously_unscoped().filter(pk=attempt.pk).update(log_bytes=len(data))
