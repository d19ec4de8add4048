"""Runs put in the states an operation acts on, without workers: a run triggered through
the services, then its instances, attempts and logs set with plain UPDATEs and INSERTs, as
the engine and the executor would have left them.

The workflow: `extract` feeds `side` and `transform` (one retry); `transform` -> `load` ->
`report`. In a test transaction nothing executes: messages go out on commit only."""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.utils import timezone

from orchestrator.actors import Actor
from orchestrator.context import tenant_scope
from runs.models import TaskAttempt, TaskInstance, TaskLog, WorkflowRun
from runs.services import trigger_run
from tests.harness import Team
from workflows.services import apply_workflow

# Tests look across tenants: every use says so.
unscoped_runs = WorkflowRun.objects.dangerously_unscoped
unscoped_instances = TaskInstance.objects.dangerously_unscoped
unscoped_attempts = TaskAttempt.objects.dangerously_unscoped

__all__ = [
    "SPEC",
    "attempt_rows",
    "failed_run",
    "instance_rows",
    "name_failures_by_try",
    "put",
    "run_row",
    "running_run",
    "started_run",
    "states",
    "succeeded_run",
    "write_log",
]

SPEC: dict[str, Any] = {
    "name": "etl",
    "tasks": {
        "extract": {"type": "noop"},
        "side": {"type": "noop", "depends_on": ["extract"]},
        "transform": {
            "type": "shell",
            "command": ["true"],
            "retries": 1,
            "depends_on": ["extract"],
        },
        "load": {"type": "noop", "depends_on": ["transform"]},
        "report": {"type": "noop", "depends_on": ["load"]},
    },
}

# How the last attempt of an instance in this state ended (earlier tries failed).
_LAST_ATTEMPT = {
    "running": "running",
    "success": "success",
    "failed": "failed",
    "skipped": "skipped",
    "cancelled": "cancelled",
    "up_for_retry": "failed",
}
_UNFINISHED_RUN = ("queued", "running")


def started_run(team: Team, spec: dict[str, Any] = SPEC) -> WorkflowRun:
    """A run just triggered: its roots queued (try 1), the rest pending."""
    with tenant_scope([team.tenant]):
        workflow = apply_workflow(actor=Actor.cli(), tenant=team.tenant, data=spec).workflow
        return trigger_run(actor=Actor.cli(), workflow=workflow, params={}).run


def put(run: WorkflowRun, task_id: str, state: str, tries: int | None = None) -> None:
    """Set one instance to `state` after `tries` tries (default: 1 when it ran, else 0),
    with one attempt per try that a worker claimed (a `queued` try is not claimed yet)."""
    if tries is None:
        tries = 1 if state in _LAST_ATTEMPT or state == "queued" else 0
    ti = unscoped_instances().get(run=run, task_id=task_id)
    now = timezone.now()
    unscoped_instances().filter(pk=ti.pk).update(
        state=state,
        try_number=tries,
        max_tries=max(ti.max_tries, tries),
        pending_upstreams=ti.pending_upstreams if state == "pending" else 0,
        queued_at=now if tries else None,
        started_at=now if state in _LAST_ATTEMPT else None,
        ended_at=now if state in TaskInstance.FINISHED else None,
        result={"rows": 3} if state == "success" else None,
    )
    claimed = tries if state in _LAST_ATTEMPT else tries - 1
    for number in range(1, claimed + 1):
        last = _LAST_ATTEMPT[state] if number == tries else "failed"
        unscoped_attempts().create(
            tenant_id=run.tenant_id,
            task_instance=ti,
            try_number=number,
            state=last,
            worker="worker-1",
            pid=1000 + number,
            started_at=now - dt.timedelta(minutes=10 - number),
            ended_at=None if last == "running" else now,
            lease_expires_at=now + dt.timedelta(seconds=30) if last == "running" else None,
            exit_code={"success": 0, "failed": 1}.get(last),
            error="exit code 1" if last == "failed" else "",
        )


def _set_run(run: WorkflowRun, state: str) -> None:
    unscoped_runs().filter(pk=run.pk).update(
        state=state, ended_at=None if state in _UNFINISHED_RUN else timezone.now()
    )
    run.refresh_from_db()


def running_run(team: Team) -> WorkflowRun:
    """extract succeeded; side queued; transform running (try 1); load and report pending."""
    run = started_run(team)
    put(run, "extract", "success")
    put(run, "side", "queued")
    put(run, "transform", "running")
    unscoped_instances().filter(run=run, task_id="load").update(pending_upstreams=1)
    return run


def failed_run(team: Team) -> WorkflowRun:
    """A failed run: extract and side succeeded, transform failed both of its tries, load
    and report upstream_failed."""
    run = started_run(team)
    put(run, "extract", "success")
    put(run, "side", "success")
    put(run, "transform", "failed", tries=2)
    put(run, "load", "upstream_failed")
    put(run, "report", "upstream_failed")
    _set_run(run, "failed")
    return run


def name_failures_by_try(run: WorkflowRun) -> None:
    """Each failed attempt's error says its try ("try 2: exit code 1"): which one a view
    shows can then be told."""
    for attempt in unscoped_attempts().filter(task_instance__run=run, state="failed"):
        attempt.error = f"try {attempt.try_number}: exit code 1"
        attempt.save(update_fields=["error"])


def succeeded_run(team: Team) -> WorkflowRun:
    run = started_run(team)
    for task_id in SPEC["tasks"]:
        put(run, task_id, "success")
    _set_run(run, "success")
    return run


def write_log(attempt: TaskAttempt, *chunks: bytes) -> None:
    """The attempt's log as the executor flushes it: consecutive chunks, then log_bytes."""
    offset = attempt.log_bytes
    for data in chunks:
        TaskLog.objects.dangerously_unscoped().create(
            tenant_id=attempt.tenant_id, attempt=attempt, offset=offset, data=data
        )
        offset += len(data)
    unscoped_attempts().filter(pk=attempt.pk).update(log_bytes=offset)
    attempt.log_bytes = offset


# --- reading back --------------------------------------------------------------------


def states(run: WorkflowRun) -> dict[str, tuple[str, int]]:
    """Each instance's (state, try number)."""
    return {ti.task_id: (ti.state, ti.try_number) for ti in unscoped_instances().filter(run=run)}


def instance_rows(run: WorkflowRun, *task_ids: str) -> dict[str, dict[str, Any]]:
    rows = unscoped_instances().filter(run=run, task_id__in=task_ids or SPEC["tasks"]).values()
    return {row["task_id"]: dict(row) for row in rows}


def attempt_rows(run: WorkflowRun) -> list[dict[str, Any]]:
    return [
        dict(row)
        for row in unscoped_attempts().filter(task_instance__run=run).order_by("pk").values()
    ]


def run_row(run: WorkflowRun) -> dict[str, Any]:
    return dict(unscoped_runs().filter(pk=run.pk).values().get())
