"""Creating runs: a queued run with all its task instances (`create_run`), or, on a
trigger's fast path, a run inserted `running` with its first wave queued, kept so when
admission finds room for it (`create_and_start_run`)."""

from __future__ import annotations

import datetime as dt
from collections import Counter
from collections.abc import Iterable
from dataclasses import dataclass
from typing import Any

from django.db import connection, transaction
from django.utils import timezone

from orchestrator import metrics, tracing
from orchestrator.fastsql import Insert, statement
from runs.engine import fairshare, holding
from runs.engine.admission import Room, room_for_new_run, start_queued_runs
from runs.engine.messaging import send_queued
from runs.graph import VersionGraph, graph_for
from runs.models import TaskInstance, WorkflowRun
from workflows.models import Workflow

__all__ = ["Created", "create_and_start_run", "create_run"]

TI = TaskInstance.State
RUN = WorkflowRun.State


def create_run(
    *,
    workflow: Workflow,
    params: dict[str, Any],
    source: str,
    user_id: int | None,
    logical_date: dt.datetime | None = None,
    interval: tuple[dt.datetime, dt.datetime] | None = None,
) -> WorkflowRun:
    """A queued run of the workflow's current version, with all its task instances."""
    run = _insert_run(workflow, params, source, user_id, RUN.QUEUED, logical_date, interval)
    TaskInstance.objects.dangerously_unscoped().bulk_create(
        _instances(run, graph_for(run.version_id))
    )
    return run


@statement("run_insert")
def _insert_run(
    workflow: Workflow,
    params: dict[str, Any],
    source: str,
    user_id: int | None,
    state: str,
    logical_date: dt.datetime | None = None,
    interval: tuple[dt.datetime, dt.datetime] | None = None,
    event: dict[str, Any] | None = None,
) -> WorkflowRun:
    assert workflow.current_version_id is not None
    now = timezone.now()
    traceparent, run_span = tracing.start_run(workflow.name, workflow.tenant_id, source)
    run = WorkflowRun(
        tenant_id=workflow.tenant_id,
        workflow=workflow,
        version_id=workflow.current_version_id,
        params=params,
        state=state,
        logical_date=logical_date or now,
        trigger_source=source,
        triggered_by_id=user_id,
        queued_at=now,
        started_at=now if state == RUN.RUNNING else None,
        data_interval_start=interval[0] if interval else None,
        data_interval_end=interval[1] if interval else None,
        event=event,
        trace_context=traceparent,
    )
    # What WorkflowRun.objects.create() would send, written once (every trigger inserts a
    # run).
    with connection.cursor() as cursor:
        cursor.execute(_RUN.sql, _RUN.values(run))
        (pk,) = cursor.fetchone()
    _RUN.saved(run, pk)
    if run_span is not None:
        run_span.set_attribute("orc.run", pk)
        run_span.end()
    metrics.inc("orc_runs_created", tenant=run.tenant_id, source=source)
    return run


_RUN = Insert(WorkflowRun)


def _instances(
    run: WorkflowRun, graph: VersionGraph, queued: Iterable[str] = (), scheduled: Iterable[str] = ()
) -> list[TaskInstance]:
    """The run's task instances: `pending`, but those named `queued` (first try) or
    `scheduled`."""
    states = {**dict.fromkeys(scheduled, TI.SCHEDULED), **dict.fromkeys(queued, TI.QUEUED)}
    instances = []
    for task_id, task in graph.spec.tasks.items():
        effective = graph.effective(task_id)
        state = states.get(task_id, TI.PENDING)
        instances.append(
            TaskInstance(
                tenant_id=run.tenant_id,
                run=run,
                task_id=task_id,
                task_type=task.type,  # type: ignore[attr-defined]
                state=state,
                try_number=1 if state == TI.QUEUED else 0,
                queued_at=run.started_at if state == TI.QUEUED else None,
                max_tries=effective.retries + 1,
                priority=effective.priority,
                pending_upstreams=len(graph.upstream[task_id]),
                pool=task.pool or "",
                pool_slots=task.pool_slots or 1,
            )
        )
    return instances


@dataclass(frozen=True)
class Created:
    run: WorkflowRun
    # Task instance count per state as this transaction left them, when known without a
    # query (the run started at once).
    tasks: dict[str, int] | None


def create_and_start_run(
    *,
    workflow: Workflow,
    params: dict[str, Any],
    source: str,
    user_id: int | None,
    event: dict[str, Any] | None = None,
) -> Created:
    """`create_run` then `start_queued_runs`, in fewer statements when nothing stands in
    the new run's way. The run is inserted `running` with its first wave `queued`, exactly
    as starting it would leave them (`start_run`, `dispatch`); then, with the tenant and
    workflow rows locked, it stays so if the workflow and the tenant have a run slot for
    it and no run of the workflow waits ahead of it (queued, or a backfill's), and its
    messages go out after commit. Otherwise it is put back to `queued` and started (or
    not) as any queued run. Inserting before locking keeps the locks, which every trigger
    of the tenant waits for, to the room check, the audit and the commit."""
    assert workflow.current_version_id is not None
    graph = graph_for(workflow.current_version_id)
    if not graph.starts_plainly:
        # Its first wave fans out or waits for shared slots: started as a queued run is.
        with transaction.atomic(savepoint=False):
            run = _insert_run(workflow, params, source, user_id, RUN.QUEUED, event=event)
            TaskInstance.objects.dangerously_unscoped().bulk_create(_instances(run, graph))
            if run.pk in start_queued_runs(workflow.pk, workflow.tenant_id):
                run.refresh_from_db(fields=["state", "started_at"])
            return Created(run, None)
    with transaction.atomic(savepoint=False):
        run, instances = _create_started(workflow, graph, params, source, user_id, event)
        room = room_for_new_run(run)
        if room.admitted:
            queued = _within_cap(run, [ti for ti in instances if ti.try_number], room)
            if _ahead_of_the_backlog(run, queued, room):
                tries = [(ti.pk, ti.try_number) for ti in queued]
                transaction.on_commit(lambda: holding.send_first(tries, room.queue))
            else:
                send_queued([(ti.pk, ti.try_number, ti.task_type, room.queue) for ti in queued])
            return Created(run, dict(Counter(str(ti.state) for ti in instances)))
        _unstart(run)
        if run.pk in start_queued_runs(workflow.pk, workflow.tenant_id):
            run.refresh_from_db(fields=["state", "started_at"])
        return Created(run, None)


# A tenant with nothing in flight sends a first wave of at most this many tries to the
# front of its queue (fair share: it is below its share, whoever floods the queue).
FRONT_OF_QUEUE_MAX = 8


def _ahead_of_the_backlog(run: WorkflowRun, queued: list[TaskInstance], room: Room) -> bool:
    """Whether the new run's first wave goes to the front of the queue: fair share is on
    (the workers reported their slots), and it is all its tenant has in flight, and small.
    Another tenant's backlog, however long, then delays it by one message per worker at
    most, not by the whole backlog; its next tries follow on the same worker (continuation)."""
    if not queued or len(queued) > FRONT_OF_QUEUE_MAX:
        return False
    if fairshare.cap_for(run.tenant_id, room.queue) is None:
        return False
    return room.busy_units == sum(fairshare.cost(ti.task_type) for ti in queued)


def _within_cap(run: WorkflowRun, queued: list[TaskInstance], room: Room) -> list[TaskInstance]:
    """The first wave's tries that fit the tenant's fair-share cap (all, with no cap), in
    their order; the others back to `scheduled`, saying why (runs.engine.fairshare)."""
    cap = fairshare.cap_for(run.tenant_id, room.queue)
    if cap is None or room.busy_units <= cap:
        return queued
    units = room.busy_units - sum(fairshare.cost(ti.task_type) for ti in queued)
    kept: list[TaskInstance] = []
    for ti in queued:
        units += fairshare.cost(ti.task_type)
        if units > cap:
            break
        kept.append(ti)
    held = queued[len(kept) :]
    TaskInstance.objects.dangerously_unscoped().filter(pk__in=[ti.pk for ti in held]).update(
        state=TI.SCHEDULED, try_number=0, queued_at=None, wait_reason=fairshare.WAIT_REASON
    )
    for ti in held:
        ti.state, ti.try_number, ti.queued_at = TI.SCHEDULED, 0, None
    fairshare.note_capped(run.tenant_id)
    return kept


def _create_started(
    workflow: Workflow,
    graph: VersionGraph,
    params: dict[str, Any],
    source: str,
    user_id: int | None,
    event: dict[str, Any] | None = None,
) -> tuple[WorkflowRun, list[TaskInstance]]:
    """The run `running`, its first wave `queued` (up to max_active_tasks, by priority, as
    dispatch takes them; the rest `scheduled`). Returns the run and its instances, the
    queued ones first, highest priority first (the order their messages go out in)."""
    run = _insert_run(workflow, params, source, user_id, RUN.RUNNING, event=event)
    first_wave, slots = graph.first_wave, graph.spec.max_active_tasks
    instances = TaskInstance.objects.dangerously_unscoped().bulk_create(
        _instances(run, graph, queued=first_wave[:slots], scheduled=first_wave[slots:])
    )
    order = {task_id: index for index, task_id in enumerate(first_wave[:slots])}
    return run, sorted(instances, key=lambda ti: order.get(ti.task_id, len(order)))


def _unstart(run: WorkflowRun) -> None:
    """Back to what create_run makes: the run `queued`, every instance `pending`."""
    WorkflowRun.objects.dangerously_unscoped().filter(pk=run.pk).update(
        state=RUN.QUEUED, started_at=None
    )
    TaskInstance.objects.dangerously_unscoped().filter(run=run).exclude(state=TI.PENDING).update(
        state=TI.PENDING, try_number=0, queued_at=None
    )
    run.state, run.started_at = RUN.QUEUED, None
