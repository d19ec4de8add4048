"""The run and task state machines. Every transition is a compare-and-set UPDATE on the
state (and the try number), so a duplicate message, a second reconciler or a late worker
can never run a try twice or revive a finished instance.

Concurrency: every transaction that moves tasks of a run forward locks the run row first
(`_lock_run`). Finishing a task, deciding its downstream tasks and dispatching new ones
therefore happen one transaction at a time per run, which makes joins race-free (no lost
wake-ups under READ COMMITTED) and keeps max_active_tasks exact. Messages are sent only
after commit (`transaction.on_commit`): the database is the truth, the broker a doorbell.
"""

from __future__ import annotations

import datetime as dt
import functools
import logging
import random
import threading
from collections import Counter
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Count, F, Min, Q
from django.db.models.functions import Coalesce
from django.utils import timezone

from orchestrator.models import Tenant
from orchestrator.rows import Columns, Insert, execute_in_one_trip, quote
from orchestrator.tenancy import task_queue
from runs.graph import VersionGraph, graph_for
from runs.models import TaskAttempt, TaskInstance, WorkflowRun
from runs.trigger_rules import Counts, decide
from workflows.models import Workflow

__all__ = [
    "Created",
    "Outcome",
    "claim",
    "create_and_start_run",
    "create_run",
    "dispatch",
    "finish",
    "keeping_next",
    "queue_for",
    "release_kept",
    "retry_delay",
    "send",
    "start_queued_runs",
    "start_waiting_runs",
    "take_kept",
]

logger = logging.getLogger(__name__)
TI = TaskInstance.State
RUN = WorkflowRun.State

# Instances cross tenants in the engine by design: it acts for every tenant.
tis = TaskInstance.objects.dangerously_unscoped
runs = WorkflowRun.objects.dangerously_unscoped
attempts = TaskAttempt.objects.dangerously_unscoped


@dataclass(frozen=True)
class Outcome:
    """How an attempt ended, as the executor saw it."""

    state: str  # success | failed | skipped
    error: str = ""
    exit_code: int | None = None
    result: Any = None
    rendered: dict[str, Any] = field(default_factory=dict)
    lost: bool = False  # the worker died (lease expired): not the task's own failure
    retryable: bool = True  # False: fail now, whatever retries are left
    # A sensor not satisfied yet (state `rescheduled`): check again at this time.
    reschedule_at: dt.datetime | None = None
    uses: dict[str, list[str]] = field(default_factory=dict)  # connections, secrets, variables


# --- queues: the shared pool of workers, or a tenant's own ----------------------------------


def queue_for(policy: dict[str, Any]) -> str:
    """The Celery queue of a tenant's tries: the one its policy's `task_queue` names (its
    dedicated pool of workers), else the shared one. Read when a try is queued, so a
    policy change applies to every try queued after it commits."""
    return task_queue(policy) or str(settings.CELERY_TASK_DEFAULT_QUEUE)


# --- continuation: the worker that dispatches the next task may run it itself ------------

_local = threading.local()


@contextmanager
def keeping_next() -> Iterator[None]:
    """While active (in this thread), `dispatch` keeps back one of the tries it queues,
    the highest in priority, instead of sending its message: the caller runs it next, in
    this process, saving the broker's round trip (a chain's handoff). `take_kept` hands
    it over once the transaction has committed, if it belongs to the caller's queue. A try
    kept by a process that then dies is `queued` without a message, which the reconciler
    re-sends like any lost message."""
    _local.keep, _local.kept = True, None
    try:
        yield
    except BaseException:
        _local.kept = None  # rolled back: the kept try was never queued
        raise
    finally:
        _local.keep = False


def take_kept(queue: str | None = None) -> tuple[int, int] | None:
    """The try kept back under `keeping_next` (instance id, try number), for the caller to
    run next; None when there is none. `queue`: the queue the caller's message came from.
    A kept try of another queue (its tenant's pool is another one) is sent to its own
    queue instead, and None returned: through continuation a worker runs only what its
    queues would have brought it. None: the caller got no message (it runs tries
    in-process), nothing to check."""
    kept: tuple[int, int, str] | None = getattr(_local, "kept", None)
    _local.kept = None
    if kept is None:
        return None
    ti_id, try_number, kept_queue = kept
    if queue is not None and queue != kept_queue:
        send((ti_id, try_number), queue=kept_queue)
        return None
    return ti_id, try_number


def release_kept() -> None:
    """Send the kept try's message, to its queue: the caller will not run it."""
    kept: tuple[int, int, str] | None = getattr(_local, "kept", None)
    _local.kept = None
    if kept is not None:
        send((kept[0], kept[1]), queue=kept[2])


def send(*tries: tuple[int, int], queue: str | None = None) -> None:
    """Ring the doorbell for (instance id, try number) pairs on `queue` (None: the shared
    one), after commit: a worker consuming it will claim each try. One producer
    connection serves the whole batch."""
    if tries:
        _publish_after_commit(
            "runs.execute", list(tries), queue or str(settings.CELERY_TASK_DEFAULT_QUEUE)
        )


def _publish_after_commit(task_name: str, calls: list[tuple[Any, ...]], queue: str) -> None:
    """Send one message per argument tuple to `queue` once the transaction commits. If the
    broker is away the state is committed all the same: warn, and let the reconciler
    re-send."""

    def publish() -> None:
        from orchestrator.celery import app
        from runs import tasks  # noqa: F401 (registers the tasks with our app)

        # The task as our app knows it: a shared_task proxy follows whichever Celery app
        # is current in this process.
        task = app.tasks[task_name]
        try:
            with app.producer_or_acquire() as producer:
                for args in calls:
                    task.apply_async(args, producer=producer, queue=queue)
        except Exception as exc:
            logger.warning(
                "could not send %d task message(s) to queue %s, the reconciler will "
                "re-send them: %s",
                len(calls),
                queue,
                exc,
            )

    transaction.on_commit(publish)


# Task types that take no time on a worker: their tries travel and are claimed and recorded
# in batches (DESIGN.md section 6: one message may carry several ready instances).
INLINE_TYPES = frozenset({"noop"})
BATCH_MAX = 50


def send_batches(tries: list[tuple[int, int]], queue: str) -> None:
    """Like `send`, for tries of INLINE_TYPES: several per message, in enough messages to
    keep a few workers busy (1000 tries: 20 messages of 50)."""
    if len(tries) <= 1:
        send(*tries, queue=queue)
        return
    size = max(1, min(BATCH_MAX, -(-len(tries) // 8)))
    chunks = [tries[i : i + size] for i in range(0, len(tries), size)]
    _publish_after_commit(
        "runs.execute_batch", [([list(t) for t in chunk],) for chunk in chunks], queue
    )


# --- runs --------------------------------------------------------------------------------


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
    tis().bulk_create(_instances(run, graph_for(run.version_id)))
    return run


def _insert_run(
    workflow: Workflow,
    params: dict[str, Any],
    source: str,
    user_id: int | None,
    state: str,
    logical_date: dt.datetime | None = None,
    interval: tuple[dt.datetime, dt.datetime] | None = None,
) -> WorkflowRun:
    assert workflow.current_version_id is not None
    now = timezone.now()
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
    )
    # What runs().create() sends, written once (every trigger inserts a run).
    with connection.cursor() as cursor:
        cursor.execute(_RUN.sql, _RUN.values(run))
        (pk,) = cursor.fetchone()
    _RUN.saved(run, pk)
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
    *, workflow: Workflow, params: dict[str, Any], source: str, user_id: int | None
) -> Created:
    """`create_run` then `start_queued_runs`, in fewer statements when nothing stands in
    the new run's way. The run is inserted `running` with its first wave `queued`, exactly
    as starting it would leave them (`_start_run`, `dispatch`); then, with the tenant and
    workflow rows locked, it stays so if the workflow and the tenant have a run slot for
    it and no run of the workflow waits ahead of it (queued, or a backfill's), and its
    messages go out after commit. Otherwise it is put back to `queued` and started (or
    not) as any queued run. Inserting before locking keeps the locks, which every trigger
    of the tenant waits for, to the room check, the audit and the commit."""
    assert workflow.current_version_id is not None
    graph = graph_for(workflow.current_version_id)
    with transaction.atomic(savepoint=False):
        run, instances = _create_started(workflow, graph, params, source, user_id)
        room, queue = _room_for(run)
        if room:
            _send_queued(
                [(ti.pk, ti.try_number, ti.task_type, queue) for ti in instances if ti.try_number]
            )
            return Created(run, dict(Counter(str(ti.state) for ti in instances)))
        _unstart(run)
        if run.pk in start_queued_runs(workflow.pk, workflow.tenant_id):
            run.refresh_from_db(fields=["state", "started_at"])
        return Created(run, None)


def _create_started(
    workflow: Workflow,
    graph: VersionGraph,
    params: dict[str, Any],
    source: str,
    user_id: int | None,
) -> tuple[WorkflowRun, list[TaskInstance]]:
    """The run `running`, its first wave `queued` (up to max_active_tasks, by priority, as
    dispatch takes them; the rest `scheduled`). Returns the run and its instances, the
    queued ones first, highest priority first (the order their messages go out in)."""
    run = _insert_run(workflow, params, source, user_id, RUN.RUNNING)
    first_wave, slots = graph.first_wave, graph.spec.max_active_tasks
    instances = tis().bulk_create(
        _instances(run, graph, queued=first_wave[:slots], scheduled=first_wave[slots:])
    )
    order = {task_id: index for index, task_id in enumerate(first_wave[:slots])}
    return run, sorted(instances, key=lambda ti: order.get(ti.task_id, len(order)))


def _unstart(run: WorkflowRun) -> None:
    """Back to what create_run makes: the run `queued`, every instance `pending`."""
    runs().filter(pk=run.pk).update(state=RUN.QUEUED, started_at=None)
    tis().filter(run=run).exclude(state=TI.PENDING).update(
        state=TI.PENDING, try_number=0, queued_at=None
    )
    run.state, run.started_at = RUN.QUEUED, None


_TENANT = Columns(Tenant, only=["quotas", "policy"])


@functools.cache
def _room_sql(vendor: str) -> tuple[list[str], str]:
    """The statements of `_room_for`, written once: the tenant's and the workflow's row
    locks (none on SQLite), then the read."""
    tenant_table, workflow_table = quote(Tenant._meta.db_table), quote(Workflow._meta.db_table)
    run_table = quote(WorkflowRun._meta.db_table)
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
        f"AND state = %s) FROM {tenant_table} t, {workflow_table} w "
        "WHERE t.id = %s AND w.id = %s"
    )
    return locks, room


def _room_for(run: WorkflowRun) -> tuple[bool, str]:
    """Lock the tenant and workflow rows (in that order, as start_queued_runs does). With
    the new `running` run counted, is the workflow within its max_active_runs and the
    tenant within its quota, and no run of the workflow queued ahead of it? And the queue
    of the run's tries, by the tenant's policy as read under its lock (`queue_for`).

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
                run.workflow_id,
            ],
        )
    )
    with connection.cursor() as cursor:
        execute_in_one_trip(cursor, statements)
        row = cursor.fetchone()
    tenant = _TENANT.build(row)
    version_id, active, tenant_running, waiting = row[len(_TENANT) :]
    limit = graph_for(version_id).spec.max_active_runs if version_id else 1
    quota = int(tenant.quotas.get("max_concurrent_runs", 10**9))
    has_room = not waiting and active <= limit and tenant_running <= quota
    return has_room, queue_for(tenant.policy)


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
        limit = (
            graph_for(workflow.current_version_id).spec.max_active_runs
            if workflow.current_version_id
            else 1
        )
        # One statement, as before backfills: the backfill path costs more only when used.
        live = runs().filter(workflow_id=workflow_id, state__in=[RUN.RUNNING, RUN.QUEUED])
        counts = live.aggregate(
            active=Count("id", filter=Q(state=RUN.RUNNING, backfill__isnull=True)),
            backfill_waiting=Count("id", filter=Q(state=RUN.QUEUED, backfill__isnull=False)),
        )
        quota = int(tenant.quotas.get("max_concurrent_runs", 10**9))
        tenant_room = quota - runs().filter(tenant_id=tenant_id, state=RUN.RUNNING).count()
        free = min(limit - counts["active"], tenant_room)
        queued = runs().filter(workflow_id=workflow_id, state=RUN.QUEUED, backfill__isnull=True)
        free = max(0, free)
        # One more than there is room for: whether any run is left waiting.
        candidates = list(queued.order_by("id").values_list("id", flat=True)[: free + 1])
        started = [run_id for run_id in candidates[:free] if _start_run(run_id)]
        left_waiting = len(candidates) > free
        if counts["backfill_waiting"]:
            # Other workflows' waiting runs come first too: a backfill's next run must not
            # take the tenant's last slot from them.
            others = runs().filter(tenant_id=tenant_id, state=RUN.QUEUED, backfill__isnull=True)
            room = tenant_room - len(started) - others.count()
            backfill_started = _start_backfill_runs(workflow_id, room)
            started += backfill_started
            left_waiting = left_waiting or len(backfill_started) < counts["backfill_waiting"]
        # (Not from a look itself: inside a test's atomic block that would look forever.)
        if left_waiting and in_caller_transaction and not getattr(_local, "looking", False):
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
    queued = runs().filter(state=RUN.QUEUED)
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
    _local.looking = True
    try:
        for other in sorted(oldest_first, key=lambda w: w != workflow_id):  # its own first
            made = start_queued_runs(other, tenant_id)
            started += made
            if not made and other != workflow_id:
                break  # most likely no room left in the tenant: let the rest wait
    finally:
        _local.looking = False
    return started


def _start_backfill_runs(workflow_id: int, tenant_room: int) -> list[int]:
    """Queued backfill runs, oldest first, each within its backfill's max_active_runs."""
    if tenant_room <= 0:
        return []
    waiting = list(
        runs()
        .filter(workflow_id=workflow_id, state=RUN.QUEUED, backfill__isnull=False)
        .order_by("id")
        .values_list("id", "backfill_id", "backfill__max_active_runs")
    )
    active = dict(
        runs()
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
        if active.get(backfill_id, 0) < slots and _start_run(run_id):
            active[backfill_id] = active.get(backfill_id, 0) + 1
            started.append(run_id)
    return started


def _start_run(run_id: int) -> bool:
    """Queued -> running (compare-and-set), then every pending instance is decided: roots
    run, and `always` runs whatever its upstreams."""
    if (
        runs()
        .filter(pk=run_id, state=RUN.QUEUED)
        .update(state=RUN.RUNNING, started_at=timezone.now())
        != 1
    ):
        return False
    run = _lock_run(run_id)
    _advance(run, graph_for(run.version_id), tis().filter(run=run, state=TI.PENDING).order_by("id"))
    return True


def _lock_run(run_id: int) -> WorkflowRun:
    """The run, locked, with its tenant (not locked) read in the same statement: `dispatch`
    sends to the queue the tenant's policy names at this moment."""
    return (
        runs().select_for_update(of=("self",), no_key=True).select_related("tenant").get(pk=run_id)
    )


def _finish_run_if_done(run: WorkflowRun, graph: VersionGraph) -> bool:
    """Settle the run once every instance has finished: failed if any failed or
    upstream_failed without allow_failure, else success."""
    if tis().filter(run=run).exclude(state__in=TaskInstance.FINISHED).exists():
        return False
    failing = tis().filter(run=run, state__in=[TI.FAILED, TI.UPSTREAM_FAILED])
    fails = any(not graph.task(t).allow_failure for t in failing.values_list("task_id", flat=True))
    state = RUN.FAILED if fails else RUN.SUCCESS
    if runs().filter(pk=run.pk, state=RUN.RUNNING).update(state=state, ended_at=timezone.now()):
        workflow_id, tenant_id = run.workflow_id, run.tenant_id
        # Robust: the reconciler starts queued runs too, should this fail.
        transaction.on_commit(lambda: start_waiting_runs(workflow_id, tenant_id), robust=True)
        if run.backfill_id is not None:  # its slot is free: the backfill's next interval
            from runs.backfills import feed  # (which builds on this module)

            backfill_id = run.backfill_id
            transaction.on_commit(lambda: feed(backfill_id), robust=True)
        return True
    return False


# --- task instances ----------------------------------------------------------------------


def _advance(
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
            states.update(tis().filter(run=run, task_id__in=needed).values_list("task_id", "state"))
        verdicts: dict[str, list[TaskInstance]] = {"run": [], "skip": [], "upstream_failed": []}
        for ti in wave:
            ups = graph.upstream[ti.task_id]
            counts = Counts.of(len(ups), (states[u] for u in ups if u in states))
            decision = decide(graph.task(ti.task_id).trigger_rule, counts)
            if decision != "wait":
                verdicts[decision].append(ti)
        ready += [t.pk for t in verdicts["run"]]
        settled: list[str] = []
        for decision, new in (("skip", TI.SKIPPED), ("upstream_failed", TI.UPSTREAM_FAILED)):
            if verdicts[decision]:
                tis().filter(pk__in=[t.pk for t in verdicts[decision]], state=TI.PENDING).update(
                    state=new, ended_at=timezone.now()
                )
                settled += [t.task_id for t in verdicts[decision]]
                known.update((t.task_id, new) for t in verdicts[decision])
        # Still `pending` in the table, a ready instance is decided once only.
        decided = set(ready)
        wave = [t for t in _downstream_pending(run, graph, settled) if t.pk not in decided]
    if not dispatch(run, graph, ready):  # something queued: the run is not done
        _finish_run_if_done(run, graph)


def _downstream_pending(
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
            cursor.execute(
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
    if f.attname in {"id", "task_id", "state", "pending_upstreams"}
]


# Rules that neither run nor settle a task on one more upstream success while other
# upstreams are unfinished: they wait for all upstreams, and settle early only on a failure
# or a skip (which would already have settled a still-pending task).
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


def _unmoved_by_success(ti: TaskInstance, graph: VersionGraph) -> bool:
    """True when an upstream's success cannot change this instance yet: spares a join of
    N upstreams from reading N states on each of its N upstream completions."""
    return ti.pending_upstreams > 0 and graph.task(ti.task_id).trigger_rule in _WAIT_FOR_ALL


def dispatch(
    run: WorkflowRun, graph: VersionGraph | None = None, ready: list[int] | None = None
) -> list[tuple[int, int]]:
    """Queue scheduled instances, highest priority first, up to max_active_tasks; their
    messages go out after commit. The run row must be locked by the caller. `ready`:
    pending instances that their trigger rules just let run. They compete for the slots
    with the scheduled ones, and those that get none become `scheduled`."""
    ready = ready or []
    rows = (
        _queue(run, graph or graph_for(run.version_id), ready) if run.state == RUN.RUNNING else []
    )
    left = set(ready).difference(int(r[0]) for r in rows)
    if left:
        tis().filter(pk__in=left, state=TI.PENDING).update(state=TI.SCHEDULED)
    if not rows:
        return []
    # The tenant came with the run's lock (`_lock_run`): its policy as of now.
    queue = queue_for(run.tenant.policy)
    return _send_queued([(r[0], r[1], r[2], queue) for r in rows])


def _send_queued(rows: list[tuple[Any, ...]]) -> list[tuple[int, int]]:
    """Messages for tries just queued: rows (id, try number, type, queue), highest priority
    first, each to its queue. Keeps one back for the caller under `keeping_next`."""
    queued = [(int(r[0]), int(r[1])) for r in rows]
    to_send = rows
    if rows and getattr(_local, "keep", False) and getattr(_local, "kept", None) is None:
        _local.kept = (*queued[0], str(rows[0][3]))  # the highest priority
        to_send = rows[1:]
    for queue in dict.fromkeys(str(r[3]) for r in to_send):
        tries = [r for r in to_send if r[3] == queue]
        send(*[(int(r[0]), int(r[1])) for r in tries if r[2] not in INLINE_TYPES], queue=queue)
        send_batches([(int(r[0]), int(r[1])) for r in tries if r[2] in INLINE_TYPES], queue)
    return queued


def _queue(run: WorkflowRun, graph: VersionGraph, ready: list[int]) -> list[tuple[Any, ...]]:
    """One statement: the free slots (max_active_tasks less what is queued or running), the
    highest-priority scheduled (or ready) instances that fit, and their move to `queued`.
    Rows (id, try number, type, priority), highest priority first."""
    table = TaskInstance._meta.db_table
    now = timezone.now()
    in_ready = f"id IN ({', '.join(['%s'] * len(ready))})" if ready else "FALSE"
    waiting = (
        f"((state = %s AND (next_attempt_at IS NULL OR next_attempt_at <= %s)) "
        f"OR (state = %s AND {in_ready}))"
    )
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {table} SET state = %s, try_number = try_number + 1, queued_at = %s, "  # noqa: S608
            f"next_attempt_at = NULL WHERE id IN (SELECT id FROM {table} WHERE run_id = %s "
            f"AND {waiting} "
            "ORDER BY priority DESC, id LIMIT (SELECT CASE WHEN n > 0 THEN n ELSE 0 END FROM "
            f"(SELECT %s - COUNT(*) AS n FROM {table} WHERE run_id = %s AND state IN (%s, %s)) "
            "free)) AND state IN (%s, %s) RETURNING id, try_number, task_type, priority",
            [
                TI.QUEUED,
                now,
                run.pk,
                TI.SCHEDULED,
                now,  # a sensor waits in `scheduled` until its next check is due
                TI.PENDING,
                *ready,
                graph.spec.max_active_tasks,
                run.pk,
                TI.QUEUED,
                TI.RUNNING,
                TI.SCHEDULED,
                TI.PENDING,
            ],
        )
        # Highest priority first: the order the messages go out in.
        return sorted(cursor.fetchall(), key=lambda r: (-int(r[3]), int(r[0])))


def claim(
    ti_id: int, try_number: int, *, worker: str, pid: int, token: str = ""
) -> TaskAttempt | None:
    """Take a queued try for this worker; None when it is not (or no longer) ours to run:
    a duplicate message, a stale try, a cancelled instance.

    `token` makes a retried claim safe: when the database committed the first call but its
    answer was lost, the retry finds the instance running and returns the attempt that the
    first call created under the same token (instead of leaving the try to lapse)."""
    claimed = claim_many([(ti_id, try_number)], worker=worker, pid=pid, token=token, any_type=True)
    return claimed[0] if claimed else None


def claim_many(
    tries: list[tuple[int, int]],
    *,
    worker: str,
    pid: int,
    token: str,
    any_type: bool = False,
) -> list[TaskAttempt]:
    """Claim tries in one statement and one insert; tries no longer queued (or, unless
    `any_type`, not of INLINE_TYPES) are left out. A retry after a lost answer returns the
    attempts the first call created under `token`."""
    now = timezone.now()
    pairs = ", ".join(["(%s, %s)"] * len(tries))
    types = sorted(INLINE_TYPES)
    only_inline = "" if any_type else f" AND task_type IN ({', '.join(['%s'] * len(types))})"
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {TaskInstance._meta.db_table} SET state = %s, started_at = %s "  # noqa: S608
            f"WHERE (id, try_number) IN ({pairs}) AND state = %s{only_inline} "
            "RETURNING id, tenant_id, try_number",
            [
                TI.RUNNING,
                now,
                *[v for t in tries for v in t],
                TI.QUEUED,
                *([] if any_type else types),
            ],
        )
        rows = cursor.fetchall()
        if not rows:
            if not token:
                return []
            return list(
                attempts().filter(
                    claim_token=token,
                    state=TaskAttempt.State.RUNNING,
                    task_instance_id__in=[ti_id for ti_id, _ in tries],
                )
            )
        lease = now + dt.timedelta(seconds=settings.TASK_LEASE_SECONDS)
        return attempts().bulk_create(
            [
                TaskAttempt(
                    tenant_id=tenant_id,
                    task_instance_id=ti_id,
                    try_number=try_number,
                    worker=worker,
                    pid=pid,
                    claim_token=token,
                    started_at=now,
                    lease_expires_at=lease,
                )
                for ti_id, tenant_id, try_number in rows
            ]
        )


def finish_inline(attempt_ids: list[int]) -> int:
    """Record a batch of INLINE_TYPES attempts as successful and move their runs on: per
    run, one lock, one update of the attempts and one of the instances, one pass over the
    downstream. Returns how many were recorded (attempts settled elsewhere are skipped)."""
    now = timezone.now()
    done = 0
    with transaction.atomic():
        rows = list(
            attempts()
            .filter(pk__in=attempt_ids)
            .values_list("id", "task_instance_id", "try_number", "task_instance__run_id")
        )
        by_run: dict[int, list[tuple[int, int, int]]] = {}
        for attempt_id, ti_id, try_number, run_id in rows:
            by_run.setdefault(run_id, []).append((attempt_id, ti_id, try_number))
        for run_id in sorted(by_run):  # one lock order: no deadlock between two batches
            run = _lock_run(run_id)
            items = by_run[run_id]
            live = set(
                attempts()
                .filter(pk__in=[a for a, _, _ in items], state=TaskAttempt.State.RUNNING)
                .values_list("id", flat=True)
            )
            items = [item for item in items if item[0] in live]
            if not items:
                continue
            attempts().filter(pk__in=live).update(state=TaskAttempt.State.SUCCESS, ended_at=now)
            tries = {ti_id: try_number for _, ti_id, try_number in items}
            finished = [
                task_id
                for ti_id, task_id, try_number in tis()
                .filter(pk__in=list(tries), state=TI.RUNNING)
                .values_list("id", "task_id", "try_number")
                if tries[ti_id] == try_number
            ]
            tis().filter(run=run, task_id__in=finished, state=TI.RUNNING).update(
                state=TI.SUCCESS, ended_at=now, next_attempt_at=None, result=None
            )
            done += len(finished)
            graph = graph_for(run.version_id)
            candidates = _downstream_pending(run, graph, finished)
            _advance(
                run,
                graph,
                [c for c in candidates if not _unmoved_by_success(c, graph)],
                known=dict.fromkeys(finished, TI.SUCCESS),
            )
    return done


def renew_lease(attempt_id: int) -> bool:
    """Extend the lease; False when the attempt is no longer running (cancelled, expired)."""
    expires = timezone.now() + dt.timedelta(seconds=settings.TASK_LEASE_SECONDS)
    return (
        attempts()
        .filter(pk=attempt_id, state=TaskAttempt.State.RUNNING)
        .update(lease_expires_at=expires)
        == 1
    )


def retry_delay(*, delay: int, backoff: float, cap: int, try_number: int) -> float:
    """Seconds before the next try: delay * backoff^(try-1), jittered by up to 10% when
    backing off exponentially (so retries of many tasks spread out), never above the cap."""
    seconds = delay * backoff ** max(0, try_number - 1)
    if backoff > 1:
        seconds *= random.uniform(0.9, 1.1)  # noqa: S311 (not cryptographic)
    return float(min(seconds, cap))


def finish(attempt_id: int, outcome: Outcome, claimed: TaskAttempt | None = None) -> str | None:
    """Record how an attempt ended and move the run on. Returns the instance's new state,
    or None when the attempt had already been settled elsewhere (nothing changes).

    `claimed`: the attempt as its worker claimed it, with its instance as read after the
    claim (`task_instance`), which spares reading both again. They are as good as a fresh
    read for the reason given below."""
    now = timezone.now()
    with transaction.atomic():
        if claimed is not None and claimed.pk == attempt_id:
            attempt = claimed
        else:
            attempt = attempts().select_related("task_instance").get(pk=attempt_id)
        run = _lock_run(attempt.task_instance.run_id)
        if (
            attempts()
            .filter(pk=attempt_id, state=TaskAttempt.State.RUNNING)
            .update(
                state=outcome.state,
                ended_at=now,
                exit_code=outcome.exit_code,
                error=outcome.error[:10000],
                rendered=outcome.rendered,
                uses=outcome.uses,
            )
            != 1
        ):
            return None
        # Read before the run lock (or before the task ran), and still right: a running
        # instance's try number, max_tries and lost_tries change only under that lock, in a
        # transaction that would have settled this attempt first (the compare-and-sets
        # below would fail).
        ti = attempt.task_instance
        graph = graph_for(run.version_id)
        new, next_at = outcome.state, None
        changes: dict[str, Any] = {}
        if outcome.state == TaskAttempt.State.RESCHEDULED:
            # A sensor's check said "not yet": its slot is given back until the next check,
            # which does not use up a try.
            changes = {"max_tries": ti.max_tries + 1}
            new, next_at = TI.SCHEDULED, outcome.reschedule_at
        elif outcome.lost and ti.lost_tries < settings.TASK_LOST_TRY_LIMIT:
            # A lost try is given back: one more try, at once.
            changes = {"max_tries": ti.max_tries + 1, "lost_tries": ti.lost_tries + 1}
            new, next_at = TI.UP_FOR_RETRY, now
        elif outcome.state == TI.FAILED and outcome.retryable and ti.try_number < ti.max_tries:
            eff = graph.effective(ti.task_id)
            new = TI.UP_FOR_RETRY
            next_at = now + dt.timedelta(
                seconds=retry_delay(
                    delay=eff.retry_delay,
                    backoff=eff.retry_backoff,
                    cap=eff.max_retry_delay,
                    try_number=ti.try_number,
                )
            )
        changes.update(state=new, next_attempt_at=next_at)
        if outcome.state == TaskAttempt.State.RESCHEDULED:
            changes["wait_started_at"] = Coalesce(F("wait_started_at"), attempt.started_at)
        elif not outcome.lost:  # a lost try goes on waiting where it was
            changes["wait_started_at"] = None
        if new not in (TI.UP_FOR_RETRY, TI.SCHEDULED):
            changes["ended_at"] = now
        if outcome.state == TI.SUCCESS:
            changes["result"] = outcome.result
        if (
            tis()
            .filter(pk=ti.pk, state=TI.RUNNING, try_number=attempt.try_number)
            .update(**changes)
            != 1
        ):
            return None
        if new in (TI.UP_FOR_RETRY, TI.SCHEDULED):
            dispatch(run, graph)  # its slot is free until the retry or the next check is due
            return new
        candidates = _downstream_pending(run, graph, [ti.task_id])
        if new == TI.SUCCESS:
            candidates = [c for c in candidates if not _unmoved_by_success(c, graph)]
        _advance(run, graph, candidates, known={ti.task_id: new})
        return new


def schedule_due_retries(ti_ids: Iterable[int]) -> int:
    """Move due retries back to `scheduled` and dispatch them."""
    moved = 0
    for run_id, ids in _by_run(ti_ids).items():
        with transaction.atomic():
            run = _lock_run(run_id)
            moved += (
                tis()
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
            queued += len(dispatch(_lock_run(run_id)))
    return queued


def _by_run(ti_ids: Iterable[int]) -> dict[int, list[int]]:
    grouped: dict[int, list[int]] = {}
    for ti_id, run_id in tis().filter(pk__in=list(ti_ids)).values_list("id", "run_id"):
        grouped.setdefault(run_id, []).append(ti_id)
    return grouped


def unstick(run_id: int) -> None:
    """Re-evaluate a running run from the database alone: pending instances whose rules
    can be decided, scheduled ones not dispatched, a run whose instances all finished."""
    with transaction.atomic():
        run = _lock_run(run_id)
        if run.state != RUN.RUNNING:
            return
        _advance(
            run, graph_for(run.version_id), tis().filter(run=run, state=TI.PENDING).order_by("id")
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
        runs()
        .filter(state=RUN.RUNNING)
        .annotate(busy=busy, waiting=waiting, unfinished=unfinished)
        .filter(Q(busy=0, waiting__gt=0) | Q(unfinished=0))
        .values_list("id", flat=True)
    )
