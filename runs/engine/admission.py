"""Admission: may a run start now? One rule (`free_slots`) for both ways a run starts: a
trigger's fast path, which inserts its run `running` and checks the room afterwards
(`room_for_new_run`), and `start_queued_runs`, which starts waiting runs oldest first. A
workflow has its max_active_runs slots (a backfill's runs have their backfill's own), and
a tenant its max_concurrent_runs quota across all its workflows. Locks are taken in one
order everywhere: the tenant row, then the workflow row, then the run."""

from __future__ import annotations

import functools
import threading
from dataclasses import dataclass
from typing import Any

from django.db import connection, transaction
from django.db.models import Count, Min, Q
from django.utils import timezone

from orchestrator.fastsql import Columns, execute_in_one_trip, quote, statement
from orchestrator.models import Tenant
from orchestrator.tenancy import tenant_quota
from runs.engine import fairshare
from runs.engine.messaging import queue_for
from runs.engine.progress import advance, lock_run
from runs.graph import graph_for
from runs.models import TaskInstance, WorkflowRun
from workflows.models import Workflow

__all__ = [
    "WAKE_WORKFLOWS",
    "Room",
    "free_slots",
    "room_for_new_run",
    "start_queued_runs",
    "start_run",
    "start_waiting_runs",
]

TI = TaskInstance.State
RUN = WorkflowRun.State

# Set while `start_waiting_runs` looks, so that the looks it makes do not schedule more.
_looking = threading.local()


def free_slots(
    *, workflow_limit: int, workflow_running: int, quota: int, tenant_running: int
) -> int:
    """The rule that admits a run: how many more runs may start, given the workflow's
    max_active_runs (`workflow_limit`) and its running runs outside backfills, and the
    tenant's max_concurrent_runs `quota` and its running runs."""
    return max(0, min(workflow_limit - workflow_running, quota - tenant_running))


def _workflow_limit(version_id: int | None) -> int:
    """The workflow's max_active_runs, as its current version says (1 without one)."""
    return graph_for(version_id).spec.max_active_runs if version_id else 1


_TENANT = Columns(Tenant, only=["quotas", "policy"])


@functools.cache
def _room_sql(vendor: str) -> tuple[list[str], str]:
    """The statements of `room_for_new_run`, written once: the tenant's and the workflow's row
    locks (none on SQLite), then the read."""
    tenant_table, workflow_table = quote(Tenant._meta.db_table), quote(Workflow._meta.db_table)
    run_table = quote(WorkflowRun._meta.db_table)
    ti_table = quote(TaskInstance._meta.db_table)
    locks = []
    if connection.features.has_select_for_no_key_update:
        locks = [
            f"SELECT 1 FROM {table} WHERE id = %s FOR NO KEY UPDATE"  # noqa: S608
            for table in (tenant_table, workflow_table)
        ]
    room = (
        f"SELECT {_TENANT.select('t')}, w.current_version_id, "  # noqa: S608
        f"(SELECT COUNT(*) FROM {run_table} WHERE workflow_id = %s AND state = %s "
        f"AND backfill_id IS NULL), (SELECT COUNT(*) FROM {run_table} WHERE tenant_id = %s "
        f"AND state = %s), EXISTS (SELECT 1 FROM {run_table} WHERE workflow_id = %s "
        f"AND state = %s), (SELECT COALESCE(SUM({fairshare.cost_sql()}), 0) FROM {ti_table} "
        f"WHERE tenant_id = %s AND state IN (%s, %s)) FROM {tenant_table} t, {workflow_table} w "
        "WHERE t.id = %s AND w.id = %s"
    )
    return locks, room


@dataclass(frozen=True)
class Room:
    """What admission found for a new run (`room_for_new_run`)."""

    admitted: bool  # a run slot of its workflow and its tenant, and no run waiting ahead
    queue: str  # the Celery queue of the tenant's tries
    busy_units: int  # what the tenant has in flight, its new run's first wave included


@statement("run_admission")
def room_for_new_run(run: WorkflowRun) -> Room:
    """Lock the tenant and workflow rows (in that order, as start_queued_runs does). With
    the new `running` run counted, is the workflow within its max_active_runs and the
    tenant within its quota, and no run of the workflow queued ahead of it? And the queue
    of the run's tries, by the tenant's policy as read under its lock (`queue_for`), and
    what the tenant has in flight in fair share's units (runs.engine.fairshare).

    One round trip: on PostgreSQL the two locking statements travel with the reading one
    in a single query string (`execute_in_one_trip`). Each statement takes its own
    snapshot, so the counts see every run committed before the locks were granted.
    (SQLite has no row locks: its writers take turns on the database.)"""
    locks, room = _room_sql(connection.vendor)
    statements: list[tuple[str, list[Any]]] = []
    if locks:  # tenant first, then workflow
        statements = [(locks[0], [run.tenant_id]), (locks[1], [run.workflow_id])]
    statements.append(
        (
            room,
            [
                run.workflow_id,
                RUN.RUNNING,
                run.tenant_id,
                RUN.RUNNING,
                run.workflow_id,
                RUN.QUEUED,
                run.tenant_id,
                TI.QUEUED,
                TI.RUNNING,
                run.tenant_id,
                run.workflow_id,
            ],
        )
    )
    with connection.cursor() as cursor:
        execute_in_one_trip(cursor, statements)
        row = cursor.fetchone()
    tenant = _TENANT.build(row)
    version_id, active, tenant_running, waiting, busy = row[len(_TENANT) :]
    limit = _workflow_limit(version_id)
    # The new run is counted in both: is there a slot for it, the others left out?
    slots = free_slots(
        workflow_limit=limit,
        workflow_running=active - 1,
        quota=tenant_quota(tenant.quotas, "max_concurrent_runs"),
        tenant_running=tenant_running - 1,
    )
    return Room(not waiting and slots >= 1, queue_for(tenant.policy), int(busy))


def start_queued_runs(workflow_id: int, tenant_id: int | None = None) -> list[int]:
    """Start queued runs, oldest first, while the workflow has free run slots
    (max_active_runs) and the tenant too (its max_concurrent_runs quota). Backfill runs
    have slots of their own (their backfill's max_active_runs): they never count against
    the workflow's, so a backfill never delays a scheduled or manual run; the tenant's
    quota covers both, other runs first. The tenant row is locked first (as applying a
    spec does), then the workflow row. Inside a caller's transaction (a trigger, the
    scheduler tick) it adds no savepoint: an error fails the caller's transaction anyway.

    A run that ends starts its workflow's queued runs only if it sees one
    (`start_waiting_runs`), which it cannot while the transaction that queued it is still
    open. So a caller's transaction that leaves a run queued looks again once it has
    committed: whichever of the two commits last then sees the other's work."""
    in_caller_transaction = connection.in_atomic_block
    with transaction.atomic(savepoint=False):
        if tenant_id is None:
            tenant_id = (
                Workflow.objects.dangerously_unscoped()
                .values_list("tenant_id", flat=True)
                .get(pk=workflow_id)
            )
        # NO KEY UPDATE, as every serialising lock here: foreign keys are checked at commit
        # with a KEY SHARE lock on the row they point to, which FOR UPDATE would block,
        # deadlocking with a transaction that locked a workflow first and then audits.
        tenant = Tenant.objects.select_for_update(no_key=True).get(pk=tenant_id)
        workflow = (
            Workflow.objects.dangerously_unscoped()
            .select_for_update(no_key=True)
            .get(pk=workflow_id)
        )
        limit = _workflow_limit(workflow.current_version_id)
        # One statement, as before backfills: the backfill path costs more only when used.
        live = WorkflowRun.objects.dangerously_unscoped().filter(
            workflow_id=workflow_id, state__in=[RUN.RUNNING, RUN.QUEUED]
        )
        counts = live.aggregate(
            active=Count("id", filter=Q(state=RUN.RUNNING, backfill__isnull=True)),
            backfill_waiting=Count("id", filter=Q(state=RUN.QUEUED, backfill__isnull=False)),
        )
        quota = tenant_quota(tenant.quotas, "max_concurrent_runs")
        tenant_running = (
            WorkflowRun.objects.dangerously_unscoped()
            .filter(tenant_id=tenant_id, state=RUN.RUNNING)
            .count()
        )
        free = free_slots(
            workflow_limit=limit,
            workflow_running=counts["active"],
            quota=quota,
            tenant_running=tenant_running,
        )
        tenant_room = quota - tenant_running
        queued = WorkflowRun.objects.dangerously_unscoped().filter(
            workflow_id=workflow_id, state=RUN.QUEUED, backfill__isnull=True
        )
        # One more than there is room for: whether any run is left waiting.
        candidates = list(queued.order_by("id").values_list("id", flat=True)[: free + 1])
        started = [run_id for run_id in candidates[:free] if start_run(run_id)]
        left_waiting = len(candidates) > free
        if counts["backfill_waiting"]:
            # Other workflows' waiting runs come first too: a backfill's next run must not
            # take the tenant's last slot from them.
            others = WorkflowRun.objects.dangerously_unscoped().filter(
                tenant_id=tenant_id, state=RUN.QUEUED, backfill__isnull=True
            )
            room = tenant_room - len(started) - others.count()
            backfill_started = _start_backfill_runs(workflow_id, room)
            started += backfill_started
            left_waiting = left_waiting or len(backfill_started) < counts["backfill_waiting"]
        # (Not from a look itself: inside a test's atomic block that would look forever.)
        if left_waiting and in_caller_transaction and not getattr(_looking, "active", False):
            transaction.on_commit(lambda: start_waiting_runs(workflow_id), robust=True)
        return started


# Workflows whose queued runs one run's end may start (the tenant's slot it freed).
WAKE_WORKFLOWS = 5


def start_waiting_runs(workflow_id: int, tenant_id: int | None = None) -> list[int]:
    """After a run ended (committed): start the queued runs it may have made room for.
    Those of its workflow first; with `tenant_id`, then those of the tenant's other
    workflows that wait for its quota, oldest first, until one starts nothing (the
    reconciler starts any others). Most ends find nothing queued, and then take no lock
    (see start_queued_runs for why that is safe)."""
    queued = WorkflowRun.objects.dangerously_unscoped().filter(state=RUN.QUEUED)
    queued = (
        queued.filter(tenant_id=tenant_id)
        if tenant_id is not None
        else queued.filter(workflow_id=workflow_id)
    )
    oldest_first = list(
        queued.values("workflow_id")
        .annotate(first=Min("id"))
        .order_by("first")
        .values_list("workflow_id", flat=True)[:WAKE_WORKFLOWS]
    )
    if not oldest_first:
        return []
    started: list[int] = []
    _looking.active = True
    try:
        for other in sorted(oldest_first, key=lambda w: w != workflow_id):  # its own first
            made = start_queued_runs(other, tenant_id)
            started += made
            if not made and other != workflow_id:
                break  # most likely no room left in the tenant: let the rest wait
    finally:
        _looking.active = False
    return started


def _start_backfill_runs(workflow_id: int, tenant_room: int) -> list[int]:
    """Queued backfill runs, oldest first, each within its backfill's max_active_runs."""
    if tenant_room <= 0:
        return []
    waiting = list(
        WorkflowRun.objects.dangerously_unscoped()
        .filter(workflow_id=workflow_id, state=RUN.QUEUED, backfill__isnull=False)
        .order_by("id")
        .values_list("id", "backfill_id", "backfill__max_active_runs")
    )
    active = dict(
        WorkflowRun.objects.dangerously_unscoped()
        .filter(state=RUN.RUNNING, backfill_id__in={b for _, b, _ in waiting})
        .order_by()
        .values("backfill_id")
        .annotate(n=Count("id"))
        .values_list("backfill_id", "n")
    )
    started: list[int] = []
    for run_id, backfill_id, slots in waiting:
        if len(started) >= tenant_room:
            break
        if active.get(backfill_id, 0) < slots and start_run(run_id):
            active[backfill_id] = active.get(backfill_id, 0) + 1
            started.append(run_id)
    return started


def start_run(run_id: int) -> bool:
    """Queued -> running (compare-and-set), then every pending instance is decided: roots
    run, and `always` runs whatever its upstreams."""
    if (
        WorkflowRun.objects.dangerously_unscoped()
        .filter(pk=run_id, state=RUN.QUEUED)
        .update(state=RUN.RUNNING, started_at=timezone.now())
        != 1
    ):
        return False
    run = lock_run(run_id)
    advance(
        run,
        graph_for(run.version_id),
        TaskInstance.objects.dangerously_unscoped()
        .filter(run=run, state=TI.PENDING)
        .order_by("id"),
    )
    return True
