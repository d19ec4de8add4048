"""Moving a run forward: deciding pending tasks by their trigger rules, queueing what may
run (within max_active_tasks, highest priority first), and settling the run when nothing
is left. Every transaction that moves tasks of a run locks the run row first
(`lock_run`), so finishing a task, deciding its downstream and dispatching new ones happen
one transaction at a time per run: joins are race-free (no lost wake-ups under READ
COMMITTED) and max_active_tasks stays exact.

What must follow a run's end (starting the runs that waited for its slot, feeding its
backfill) is registered with `on_run_ended`, and runs after commit."""

from __future__ import annotations

import datetime as dt
import functools
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Count, Q
from django.db.transaction import TransactionManagementError
from django.utils import timezone

from orchestrator import fastsql, metrics
from orchestrator.fastsql import Columns, attach, quote, statement
from orchestrator.models import Tenant
from runs.engine import events, fairshare, lineage, mapping, slots
from runs.engine.messaging import queue_for, send_queued
from runs.graph import VersionGraph, graph_for
from runs.models import TaskAttempt, TaskInstance, WorkflowRun
from runs.trigger_rules import Counts, evaluate, group_states

__all__ = [
    "EndedRun",
    "active_runs_needing_attention",
    "advance",
    "dispatch",
    "dispatch_runs",
    "downstream_pending",
    "lock_run",
    "on_run_ended",
    "requeue_retries",
    "stop_run",
    "time_out_run",
    "unmoved_by_success",
    "unstick",
]

TI = TaskInstance.State
RUN = WorkflowRun.State
UNFINISHED_RUN = (RUN.QUEUED, RUN.RUNNING)


@dataclass(frozen=True)
class EndedRun:
    """A run that has just ended, as the hooks of `on_run_ended` get it."""

    id: int
    workflow_id: int
    tenant_id: int
    backfill_id: int | None


_run_ended: list[Callable[[EndedRun], Any]] = []


def on_run_ended(hook: Callable[[EndedRun], Any]) -> None:
    """Call `hook` after the commit of every transaction that ends a run (robustly: an error
    is logged, and the repairs catch up)."""
    _run_ended.append(hook)


def measure_try_end(
    tenant_id: int, task_type: str, started_at: dt.datetime, state: str, now: dt.datetime
) -> None:
    """A try's end and its duration, in the metrics (after the commit)."""
    metrics.inc("orc_task_attempts_finished", tenant=tenant_id, task_type=task_type, state=state)
    metrics.observe(
        "orc_task_duration_seconds",
        (now - started_at).total_seconds(),
        tenant=tenant_id,
        task_type=task_type,
    )


def measure_cancelled(running: Any, now: dt.datetime) -> None:
    """Tries stopped as cancelled (a run's cancel or timeout, a task marked by hand), in
    the metrics, as `finish` counts the others; read only when metrics are on."""
    if not settings.METRICS_ENABLED:
        return
    for tenant_id, task_type, started_at in running.values_list(
        "tenant_id", "task_instance__task_type", "started_at"
    ):
        measure_try_end(tenant_id, task_type, started_at, TaskAttempt.State.CANCELLED, now)


def _ended(run: WorkflowRun) -> None:
    ended = EndedRun(run.pk, run.workflow_id, run.tenant_id, run.backfill_id)
    for hook in _run_ended:
        transaction.on_commit(functools.partial(hook, ended), robust=True)


_RUN = Columns(WorkflowRun)
_TENANT = Columns(Tenant)


@functools.cache
def _lock_run_sql(vendor: str) -> str:
    # SQLite has no row locks: one writer at a time already (BEGIN IMMEDIATE).
    lock = f" FOR NO KEY UPDATE OF {quote('r')}" if vendor == "postgresql" else ""
    return (
        f"SELECT {_RUN.select('r')}, {_TENANT.select('t')} FROM {_RUN.table} {quote('r')} "  # noqa: S608
        f"JOIN {_TENANT.table} {quote('t')} ON {quote('t')}.{quote('id')} = "
        f"{quote('r')}.{quote('tenant_id')} WHERE {quote('r')}.{quote('id')} = %s{lock}"
    )


@statement("lock_run")
def lock_run(run_id: int) -> WorkflowRun:
    """The run, locked, with its tenant (not locked) read in the same statement: `dispatch`
    sends to the queue the tenant's policy names at this moment. What
    `select_for_update(of=("self",), no_key=True).select_related("tenant")` would read,
    written once (every task step takes this lock). Inside a transaction only."""
    if connection.vendor == "postgresql" and not connection.in_atomic_block:
        raise TransactionManagementError("lock_run is used inside a transaction only")
    with connection.cursor() as cursor:
        fastsql.run(cursor, _lock_run_sql(connection.vendor), [run_id])
        row = cursor.fetchone()
    if row is None:
        raise WorkflowRun.DoesNotExist(f"no run {run_id}")
    run = _RUN.build(row)
    attach(run, "tenant", _TENANT.build(row, len(_RUN)))
    return run


def _finish_run_if_done(run: WorkflowRun, graph: VersionGraph) -> bool:
    """Settle the run once every instance has finished: failed if any failed or
    upstream_failed without allow_failure, else success."""
    if (
        TaskInstance.objects.dangerously_unscoped()
        .filter(run=run)
        .exclude(state__in=TaskInstance.FINISHED)
        .exists()
    ):
        return False
    failing = TaskInstance.objects.dangerously_unscoped().filter(
        run=run, state__in=[TI.FAILED, TI.UPSTREAM_FAILED]
    )
    fails = any(not graph.task(t).allow_failure for t in failing.values_list("task_id", flat=True))
    state = RUN.FAILED if fails else RUN.SUCCESS
    now = timezone.now()
    if (
        WorkflowRun.objects.dangerously_unscoped()
        .filter(pk=run.pk, state=RUN.RUNNING)
        .update(state=state, ended_at=now)
    ):
        events.run_ended(run, graph, state, now)
        metrics.inc("orc_runs_finished", tenant=run.tenant_id, state=state)
        _ended(run)
        return True
    return False


def stop_run(run: WorkflowRun, final: str, reason: str) -> None:
    """End the (locked) run: unfinished instances `cancelled`, running attempts `cancelled`
    (their workers see the lease gone at the next heartbeat and kill the process group)."""
    now = timezone.now()
    stopped = (
        WorkflowRun.objects.dangerously_unscoped()
        .filter(pk=run.pk, state__in=UNFINISHED_RUN)
        .update(state=final, ended_at=now)
    )
    running = TaskAttempt.objects.dangerously_unscoped().filter(
        task_instance__run=run, state=TaskAttempt.State.RUNNING
    )
    lineage.ended(TaskAttempt.State.CANCELLED, running, now)  # before they stop running
    measure_cancelled(running, now)
    running.update(state=TaskAttempt.State.CANCELLED, ended_at=now, error=reason)
    TaskInstance.objects.dangerously_unscoped().filter(run=run).exclude(
        state__in=TaskInstance.FINISHED
    ).update(state=TI.CANCELLED, ended_at=now, next_attempt_at=None, wait_started_at=None)
    if graph_for(run.version_id).constrained:
        slots.wake(run.tenant_id)  # the pool and key slots its tries held are free
    if stopped:
        events.run_ended(run, graph_for(run.version_id), final, now, reason)
        metrics.inc("orc_runs_finished", tenant=run.tenant_id, state=final)
    _ended(run)


def time_out_run(run_id: int, timeout: int) -> bool:
    """Fail a running run that exceeded the workflow's run `timeout`, cancelling the rest."""
    with transaction.atomic():
        run = lock_run(run_id)
        if run.state != RUN.RUNNING:
            return False
        stop_run(run, RUN.FAILED, f"the run exceeded its timeout of {timeout}s")
        return True


# --- task instances ----------------------------------------------------------------------


def advance(
    run: WorkflowRun,
    graph: VersionGraph,
    candidates: Iterable[TaskInstance],
    known: dict[str, str] | None = None,
) -> None:
    """Decide pending candidates by their trigger rules, wave by wave: what settles
    (skipped, upstream_failed) is counted off its downstream, which forms the next wave.
    Then dispatch what is ready and settle the run if nothing is left. The run is locked,
    so no pending instance changes under our feet. `known`: states this transaction has
    just written (task id -> state), which need not be read back."""
    wave = list(candidates)
    known = dict(known or {})
    ready: list[int] = []  # may run: queued by dispatch, or `scheduled` if no slot is free
    held: list[int] = []  # may run once slots.allocate finds them a pool or key slot
    while wave:
        # The counters say which upstreams may have finished; read only those states.
        needed = {
            up
            for ti in wave
            if ti.pending_upstreams < len(graph.upstream[ti.task_id])
            for up in graph.upstream[ti.task_id]
            if up not in known
        }
        states = dict(known)
        if needed:
            # A mapped upstream counts as its group (mapping.group_state).
            states.update(
                group_states(
                    TaskInstance.objects.dangerously_unscoped()
                    .filter(run=run, task_id__in=needed)
                    .values_list("task_id", "state")
                )
            )
        verdicts: dict[str, list[TaskInstance]] = {"run": [], "skip": [], "upstream_failed": []}
        for ti in wave:
            ups = graph.upstream[ti.task_id]
            counts = Counts.of(len(ups), (states[u] for u in ups if u in states))
            decision = evaluate(graph.task(ti.task_id).trigger_rule, counts)
            if decision != "wait":
                verdicts[decision].append(ti)
        settled: list[str] = []
        for ti in verdicts["run"]:
            # Those that take shared slots wait for them (slots.hold); a mapped one fans out.
            to = held if ti.task_id in graph.constrained else ready
            if ti.task_id in graph.mapped and ti.map_index < 0:
                expansion = mapping.expand(run, graph, ti)
                to += expansion.ready
                if expansion.settled is not None:
                    settled.append(ti.task_id)
                    known[ti.task_id] = expansion.settled
            else:
                to.append(ti.pk)
        for decision, new in (("skip", TI.SKIPPED), ("upstream_failed", TI.UPSTREAM_FAILED)):
            if verdicts[decision]:
                TaskInstance.objects.dangerously_unscoped().filter(
                    pk__in=[t.pk for t in verdicts[decision]], state=TI.PENDING
                ).update(state=new, ended_at=timezone.now())
                settled += [t.task_id for t in verdicts[decision]]
                known.update((t.task_id, new) for t in verdicts[decision])
        # Still `pending` in the table, a ready instance is decided once only.
        decided = set(ready) | set(held)
        wave = [t for t in downstream_pending(run, graph, settled) if t.pk not in decided]
    slots.hold(run, graph, held)
    if not dispatch(run, graph, ready):  # something queued: the run is not done
        _finish_run_if_done(run, graph)


@statement("downstream_countdown")
def downstream_pending(
    run: WorkflowRun, graph: VersionGraph, finished: list[str]
) -> list[TaskInstance]:
    """Count the finished tasks off their downstream instances (one statement per distinct
    count: a join that 50 finished upstreams feed is decremented once, by 50); return those
    still pending."""
    decrements: dict[str, int] = {}
    for task_id in finished:
        for down in graph.downstream[task_id]:
            decrements[down] = decrements.get(down, 0) + 1
    if not decrements:
        return []
    by_amount: dict[int, list[str]] = {}
    for down, amount in decrements.items():
        by_amount.setdefault(amount, []).append(down)
    table = TaskInstance._meta.db_table
    # GREATEST is MAX with several arguments in SQLite; both return the updated rows.
    floor = "GREATEST" if connection.vendor == "postgresql" else "MAX"
    fields = _DOWNSTREAM_FIELDS
    rows = []
    with connection.cursor() as cursor:
        for amount, downs in by_amount.items():
            fastsql.run(
                cursor,
                f"UPDATE {table} SET pending_upstreams = {floor}(pending_upstreams - %s, 0) "  # noqa: S608
                f"WHERE run_id = %s AND task_id IN ({', '.join(['%s'] * len(downs))}) "
                f"RETURNING {', '.join(fields)}",
                [amount, run.pk, *downs],
            )
            rows += cursor.fetchall()
    # Instances with these fields loaded (any other is read if used).
    state = fields.index("state")
    return [
        TaskInstance.from_db(connection.alias, fields, row)
        for row in sorted(rows)
        if row[state] == TI.PENDING
    ]


# What deciding a downstream instance reads, in the model's field order (as from_db wants).
_DOWNSTREAM_FIELDS = [
    f.attname
    for f in TaskInstance._meta.concrete_fields
    if f.attname in {"id", "task_id", "map_index", "state", "pending_upstreams"}
]


# Rules that neither run nor settle a task on one more upstream success while other
# upstreams are unfinished: they wait for all upstreams, and settle early only on a failure
# or a skip, which is evaluated when it comes. (An all_success task that saw a skip waits
# for its last upstream: that one is evaluated whatever its state, pending_upstreams
# being 0 then.)
_WAIT_FOR_ALL = frozenset(
    {
        "all_success",
        "all_done",
        "all_done_min_one_success",
        "none_failed",
        "none_failed_min_one_success",
        "none_skipped",
        "one_failed",
    }
)


def unmoved_by_success(ti: TaskInstance, graph: VersionGraph) -> bool:
    """True when an upstream's success cannot change this instance yet: spares a join of
    N upstreams from reading N states on each of its N upstream completions."""
    return ti.pending_upstreams > 0 and graph.task(ti.task_id).trigger_rule in _WAIT_FOR_ALL


def dispatch(
    run: WorkflowRun, graph: VersionGraph | None = None, ready: list[int] | None = None
) -> list[tuple[int, int]]:
    """Queue scheduled instances, highest priority first, up to max_active_tasks and the
    tenant's fair-share cap (runs.engine.fairshare); their messages go out after commit.
    The run row must be locked by the caller. `ready`: pending instances that their trigger
    rules just let run. They compete for the slots with the scheduled ones, and those that
    get none become `scheduled` (with the reason when it is the cap)."""
    ready = ready or []
    graph = graph or graph_for(run.version_id)
    # The tenant came with the run's lock (`lock_run`): its policy as of now.
    queue = queue_for(run.tenant.policy)
    cap = fairshare.cap_for(run.tenant_id, queue)
    rows = _queue(run, graph, ready, cap) if run.state == RUN.RUNNING else []
    if graph.constrained and run.state == RUN.RUNNING:
        slots.wake(run.tenant_id)  # a slot this transaction freed may be someone's turn
    left = sorted(set(ready).difference(int(r[0]) for r in rows))
    if left and _hold(run, left, cap):
        fairshare.note_capped(run.tenant_id)
    elif not rows and cap is not None and fairshare.waiting(run.tenant_id):
        fairshare.fill_after_commit(run.tenant_id)  # room this end freed, for its other runs
    if not rows:
        return []
    # Only a try this end made ready may be kept for the caller to run next.
    return send_queued([(r[0], r[1], r[2], queue) for r in rows], keepable=set(ready))


def _hold(run: WorkflowRun, left: list[int], cap: int | None) -> bool:
    """Ready instances that got no slot: `scheduled`. With a cap, those it kept out say so;
    True when there are any."""
    pending = TaskInstance.objects.dangerously_unscoped().filter(pk__in=left, state=TI.PENDING)
    if cap is None:
        pending.update(state=TI.SCHEDULED)
        return False
    table = TaskInstance._meta.db_table
    cost = fairshare.cost_sql()
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {table} SET state = %s, wait_reason = CASE WHEN %s - (SELECT "  # noqa: S608
            f"COALESCE(SUM({cost}), 0) FROM {table} WHERE tenant_id = %s AND state IN (%s, %s)) "
            f"< {cost} THEN %s ELSE '' END WHERE id IN ({', '.join(['%s'] * len(left))}) "
            "AND state = %s RETURNING wait_reason",
            [
                TI.SCHEDULED,
                cap,
                run.tenant_id,
                TI.QUEUED,
                TI.RUNNING,
                fairshare.WAIT_REASON,
                *left,
                TI.PENDING,
            ],
        )
        return any(reason for (reason,) in cursor.fetchall())


@statement("queue_ready")
def _queue(
    run: WorkflowRun, graph: VersionGraph, ready: list[int], cap: int | None = None
) -> list[tuple[Any, ...]]:
    """One statement: the free slots (max_active_tasks less what is queued or running), the
    highest-priority scheduled (or ready) instances that fit, and their move to `queued`.
    With a fair-share `cap` (units), only as many as the tenant's room under it: the
    candidates' running sum of units must stay within it. Rows (id, try number, type,
    priority), highest priority first."""
    table = TaskInstance._meta.db_table
    now = timezone.now()
    in_ready = f"id IN ({', '.join(['%s'] * len(ready))})" if ready else "FALSE"
    # Instances that take shared slots are queued by slots.allocate, not here.
    constrained = sorted(graph.constrained)
    plain = f" AND task_id NOT IN ({', '.join(['%s'] * len(constrained))})" if constrained else ""
    waiting = (
        f"((state = %s AND (next_attempt_at IS NULL OR next_attempt_at <= %s){plain}) "
        f"OR (state = %s AND {in_ready}))"
    )
    free = (
        "(SELECT CASE WHEN n > 0 THEN n ELSE 0 END FROM "  # noqa: S608
        f"(SELECT %s - COUNT(*) AS n FROM {table} WHERE run_id = %s AND state IN (%s, %s)) free)"
    )
    params: list[Any] = [
        run.pk,
        TI.SCHEDULED,
        now,  # a sensor waits in `scheduled` until its next check is due
        *constrained,
        TI.PENDING,
        *ready,
        graph.spec.max_active_tasks,
        run.pk,
        TI.QUEUED,
        TI.RUNNING,
    ]
    if cap is None:
        chosen = (
            f"SELECT id FROM {table} WHERE run_id = %s AND {waiting} "  # noqa: S608
            f"ORDER BY priority DESC, id LIMIT {free}"
        )
    else:
        cost = fairshare.cost_sql()
        chosen = (
            f"SELECT id FROM (SELECT id, SUM({cost}) OVER (ORDER BY priority DESC, id "  # noqa: S608
            f"ROWS UNBOUNDED PRECEDING) AS units FROM {table} WHERE run_id = %s AND {waiting} "
            f"ORDER BY priority DESC, id LIMIT {free}) ranked WHERE units <= %s - (SELECT "
            f"COALESCE(SUM({cost}), 0) FROM {table} WHERE tenant_id = %s AND state IN (%s, %s))"
        )
        params += [cap, run.tenant_id, TI.QUEUED, TI.RUNNING]
    with connection.cursor() as cursor:
        fastsql.run(
            cursor,
            f"UPDATE {table} SET state = %s, try_number = try_number + 1, queued_at = %s, "  # noqa: S608
            f"next_attempt_at = NULL, wait_reason = '' WHERE id IN ({chosen}) "
            "AND state IN (%s, %s) RETURNING id, try_number, task_type, priority",
            [TI.QUEUED, now, *params, TI.SCHEDULED, TI.PENDING],
        )
        # Highest priority first: the order the messages go out in.
        return sorted(cursor.fetchall(), key=lambda r: (-int(r[3]), int(r[0])))


def requeue_retries(ti_ids: Iterable[int]) -> int:
    """Move due retries back to `scheduled` and dispatch them."""
    moved = 0
    for run_id, ids in _by_run(ti_ids).items():
        with transaction.atomic():
            run = lock_run(run_id)
            moved += (
                TaskInstance.objects.dangerously_unscoped()
                .filter(pk__in=ids, state=TI.UP_FOR_RETRY)
                .update(state=TI.SCHEDULED, next_attempt_at=None)
            )
            dispatch(run)
    return moved


def dispatch_runs(run_ids: Iterable[int]) -> int:
    """Dispatch each run (what became due without an event: a sensor's next check)."""
    queued = 0
    for run_id in run_ids:
        with transaction.atomic():
            queued += len(dispatch(lock_run(run_id)))
    return queued


def _by_run(ti_ids: Iterable[int]) -> dict[int, list[int]]:
    grouped: dict[int, list[int]] = {}
    for ti_id, run_id in (
        TaskInstance.objects.dangerously_unscoped()
        .filter(pk__in=list(ti_ids))
        .values_list("id", "run_id")
    ):
        grouped.setdefault(run_id, []).append(ti_id)
    return grouped


def unstick(run_id: int) -> None:
    """Re-evaluate a running run from the database alone: pending instances whose rules
    can be decided, scheduled ones not dispatched, a run whose instances all finished."""
    with transaction.atomic():
        run = lock_run(run_id)
        if run.state != RUN.RUNNING:
            return
        advance(
            run,
            graph_for(run.version_id),
            TaskInstance.objects.dangerously_unscoped()
            .filter(run=run, state=TI.PENDING)
            .order_by("id"),
        )


def active_runs_needing_attention() -> list[int]:
    """Running runs with pending or scheduled instances but nothing queued or running."""
    busy = Count(
        "task_instances",
        filter=Q(task_instances__state__in=[TI.QUEUED, TI.RUNNING, TI.UP_FOR_RETRY]),
    )
    # A sensor waiting for its next check (scheduled, due later) is not stuck.
    waiting = Count(
        "task_instances",
        filter=Q(task_instances__state__in=[TI.PENDING, TI.SCHEDULED])
        & ~Q(task_instances__next_attempt_at__gt=timezone.now()),
    )
    unfinished = Count(
        "task_instances", filter=~Q(task_instances__state__in=list(TaskInstance.FINISHED))
    )
    return list(
        WorkflowRun.objects.dangerously_unscoped()
        .filter(state=RUN.RUNNING)
        .annotate(busy=busy, waiting=waiting, unfinished=unfinished)
        .filter(Q(busy=0, waiting__gt=0) | Q(unfinished=0))
        .values_list("id", flat=True)
    )
