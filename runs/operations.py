"""Operating runs by hand: cancel, retry, rerun, clear, mark. Each takes the run's lock,
like every other transition of its instances, so an operation and the engine's own
progress never interleave."""

from __future__ import annotations

from django.db import transaction
from django.db.models import Q
from django.utils import timezone

from orchestrator.errors import Conflict, Invalid, NotFound
from orchestrator.models import Tenant
from runs.engine import (
    advance,
    lineage,
    lock_run,
    measure_cancelled,
    start_queued_runs,
    stop_run,
)
from runs.graph import VersionGraph, graph_for
from runs.models import TaskAttempt, TaskInstance, WorkflowRun
from runs.trigger_rules import group_states
from workflows import dag
from workflows.models import Workflow

__all__ = ["cancel", "clear", "mark", "rerun", "retry"]

TI = TaskInstance.State
RUN = WorkflowRun.State
UNFINISHED_RUN = (RUN.QUEUED, RUN.RUNNING)


def _lock_for_reopen(run_id: int) -> WorkflowRun:
    """Tenant, workflow, then run: the lock order of start_queued_runs, which an operation
    that reopens an ended run calls."""
    tenant_id, workflow_id = (
        WorkflowRun.objects.dangerously_unscoped()
        .values_list("tenant_id", "workflow_id")
        .get(pk=run_id)
    )
    list(Tenant.objects.select_for_update(no_key=True).filter(pk=tenant_id).values_list("pk"))
    list(
        Workflow.objects.dangerously_unscoped()
        .select_for_update(no_key=True)
        .filter(pk=workflow_id)
        .values_list("pk")
    )
    return lock_run(run_id)


def cancel(run_id: int) -> WorkflowRun:
    with transaction.atomic():
        run = lock_run(run_id)
        if run.state not in UNFINISHED_RUN:
            raise Conflict(
                f"run {run.pk} is already {run.state}; only queued or running runs can be cancelled"
            )
        stop_run(run, RUN.CANCELLED, "cancelled by request")
    run.refresh_from_db()
    return run


def _recount_and_advance(run: WorkflowRun, graph: VersionGraph) -> None:
    """Recompute every pending instance's unfinished-upstream count from the states, reopen
    the run if it had ended, and let the rules decide what is ready."""
    states = group_states(
        TaskInstance.objects.dangerously_unscoped().filter(run=run).values_list("task_id", "state")
    )
    pending = list(TaskInstance.objects.dangerously_unscoped().filter(run=run, state=TI.PENDING))
    for ti in pending:
        ti.pending_upstreams = sum(
            1 for up in graph.upstream[ti.task_id] if states.get(up) not in TaskInstance.FINISHED
        )
    TaskInstance.objects.dangerously_unscoped().bulk_update(pending, ["pending_upstreams"])
    if run.state == RUN.QUEUED:
        return  # waiting for a run slot: its pending tasks are decided when it starts
    if run.state != RUN.RUNNING:
        # An ended run takes a run slot again like a new one: back in the queue, and started
        # now if max_active_runs and the tenant's quota allow (the caller holds the tenant,
        # workflow and run locks, in that order, as start_queued_runs takes them).
        WorkflowRun.objects.dangerously_unscoped().filter(pk=run.pk).update(
            state=RUN.QUEUED, queued_at=timezone.now(), ended_at=None
        )
        start_queued_runs(run.workflow_id)
        return
    advance(run, graph, pending)


def _collapse(run: WorkflowRun, graph: VersionGraph, task_ids: set[str]) -> None:
    """Mapped tasks run again as a whole fan out again, over their list as it will be then:
    back to the one unexpanded instance (index 0's row, with its history); the other
    indexes' rows go, with their attempts and logs."""
    mapped = graph.mapped & task_ids
    if not mapped:
        return
    instances = TaskInstance.objects.dangerously_unscoped().filter(run=run, task_id__in=mapped)
    instances.filter(map_index__gt=0).delete()
    instances.filter(map_index=0).update(map_index=-1, map_value=None)


def _reset(
    run: WorkflowRun,
    graph: VersionGraph,
    task_ids: set[str],
    instances: frozenset[int] | set[int] = frozenset(),
) -> int:
    """Back to `pending`, with a fresh budget of tries; earlier attempts stay as history.
    `task_ids` as a whole (a mapped one fans out again), and single `instances` by id (one
    index of a mapped task)."""
    _collapse(run, graph, task_ids)
    reset = []
    for ti in TaskInstance.objects.dangerously_unscoped().filter(
        Q(task_id__in=task_ids) | Q(pk__in=instances), run=run
    ):
        ti.state = TI.PENDING
        ti.max_tries = ti.try_number + graph.effective(ti.task_id).retries + 1
        ti.lost_tries = 0
        ti.next_attempt_at = ti.queued_at = ti.started_at = ti.ended_at = None
        ti.wait_started_at = None
        ti.result = None
        ti.concurrency_key = ti.wait_reason = ""
        reset.append(ti)
    TaskInstance.objects.dangerously_unscoped().bulk_update(
        reset,
        [
            "state",
            "max_tries",
            "lost_tries",
            "next_attempt_at",
            "wait_started_at",
            "queued_at",
            "started_at",
            "ended_at",
            "result",
            "concurrency_key",
            "wait_reason",
        ],
    )
    return len(reset)


def retry(run_id: int) -> list[str]:
    """Re-run what failed: failed, upstream_failed and cancelled instances and everything
    downstream of them get new tries in the same run. Returns the cleared task ids."""
    with transaction.atomic():
        run = _lock_for_reopen(run_id)
        if run.state in UNFINISHED_RUN:
            raise Conflict(f"run {run.pk} is still {run.state}; retry it once it has ended")
        graph = graph_for(run.version_id)
        rows = list(
            TaskInstance.objects.dangerously_unscoped()
            .filter(run=run, state__in=[TI.FAILED, TI.UPSTREAM_FAILED, TI.CANCELLED])
            .values_list("id", "task_id", "map_index")
        )
        if not rows:
            raise Conflict(f"run {run.pk} has no failed or cancelled tasks to retry")
        failed = {task_id for _, task_id, _ in rows}
        # Of a fanned-out task, only the indexes that failed run again; the rest as a whole.
        indexes = {ti_id for ti_id, _, index in rows if index >= 0}
        whole = {task_id for _, task_id, index in rows if index < 0}
        cleared = failed | dag.downstream_of(graph.upstream, failed)
        _reset(run, graph, cleared - (failed - whole), indexes)
        _recount_and_advance(run, graph)
    return sorted(cleared)


def rerun(run_id: int) -> list[str]:
    """Every task of an ended run again, as if it had never run (a backfill's `all`
    reprocessing). Returns the cleared task ids."""
    with transaction.atomic():
        run = _lock_for_reopen(run_id)
        if run.state in UNFINISHED_RUN:
            raise Conflict(f"run {run.pk} is still {run.state}")
        graph = graph_for(run.version_id)
        cleared = set(graph.spec.tasks)
        _reset(run, graph, cleared)
        _recount_and_advance(run, graph)
    return sorted(cleared)


def _instances(run: WorkflowRun, task_id: str, map_index: int | None) -> list[TaskInstance]:
    """The task's instances (all of a mapped task's), or the one at `map_index`."""
    found = TaskInstance.objects.dangerously_unscoped().filter(run=run, task_id=task_id)
    if map_index is not None:
        found = found.filter(map_index=map_index)
    instances = list(found.order_by("map_index"))
    if not instances:
        at = "" if map_index is None else f" with map_index {map_index}"
        raise NotFound(f"run {run.pk} has no task {task_id!r}{at}")
    return instances


def clear(
    run_id: int, task_id: str, *, downstream: bool, map_index: int | None = None
) -> list[str]:
    """Run a finished task again (and, with `downstream`, everything after it). A mapped
    task as a whole fans out again; with `map_index`, that one instance runs again."""
    with transaction.atomic():
        run = _lock_for_reopen(run_id)
        graph = graph_for(run.version_id)
        instances = _instances(run, task_id, map_index)
        unfinished = [ti for ti in instances if ti.state not in TaskInstance.FINISHED]
        if unfinished:
            what = task_id if map_index is None else f"{task_id}[{map_index}]"
            raise Conflict(
                f"task {what!r} is {unfinished[0].state}; only a finished task can be "
                "cleared (cancel the run to stop it)"
            )
        cleared = set(dag.downstream_of(graph.upstream, [task_id])) if downstream else set()
        # Downstream instances still running are left alone: they are not finished.
        cleared = set(
            TaskInstance.objects.dangerously_unscoped()
            .filter(run=run, task_id__in=cleared, state__in=TaskInstance.FINISHED)
            .values_list("task_id", flat=True)
        )
        if map_index is None:
            _reset(run, graph, cleared | {task_id})
        else:
            _reset(run, graph, cleared, {instances[0].pk})
        _recount_and_advance(run, graph)
    return sorted(cleared | {task_id})


def mark(run_id: int, task_id: str, state: str, *, map_index: int | None = None) -> TaskInstance:
    """Set a task `success` or `failed` by hand (a mapped task: all its instances, or the
    one at `map_index`); downstream tasks then go on as if it had ended so (those the
    rules had settled without running are decided again)."""
    if state not in (TI.SUCCESS, TI.FAILED):
        raise Invalid([("state", "accepted: success, failed")])
    with transaction.atomic():
        run = _lock_for_reopen(run_id)
        graph = graph_for(run.version_id)
        instances = _instances(run, task_id, map_index)
        ti = instances[0]
        if all(i.state == state for i in instances):
            return ti
        now = timezone.now()
        running = TaskAttempt.objects.dangerously_unscoped().filter(
            task_instance__in=instances, state=TaskAttempt.State.RUNNING
        )
        lineage.ended(TaskAttempt.State.CANCELLED, running, now)  # before they stop running
        measure_cancelled(running, now)
        running.update(
            state=TaskAttempt.State.CANCELLED, ended_at=now, error=f"marked {state} by hand"
        )
        TaskInstance.objects.dangerously_unscoped().filter(pk__in=[i.pk for i in instances]).update(
            state=state, ended_at=now, next_attempt_at=None, wait_started_at=None
        )
        settled = set(
            TaskInstance.objects.dangerously_unscoped()
            .filter(
                run=run,
                task_id__in=dag.downstream_of(graph.upstream, [task_id]),
                state__in=[TI.UPSTREAM_FAILED, TI.SKIPPED],
                try_number=0,
            )
            .values_list("task_id", flat=True)
        )
        _reset(run, graph, settled)
        _recount_and_advance(run, graph)
    ti.refresh_from_db()
    return ti
