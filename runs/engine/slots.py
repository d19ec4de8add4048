"""Shared slots: pools and concurrency keys (docs/pools.md). A task that names a `pool`
takes `pool_slots` of the tenant's pool while it is queued or running; a task with
`concurrency: {key, limit}` counts against its rendered key's limit in the same states.
Such instances are never queued by their run's own dispatch: they wait `scheduled` (with a
`wait_reason`) and `allocate` queues them, for the whole tenant at once, highest priority
first, while the slots allow.

Slots are not counted up and down: what a pool has taken is read from the states of the
instances that hold it, under a per-tenant lock, so a slot is freed exactly when its try
ends, however it ends (success, failure, retry, timeout, cancel, a lost worker), and never
twice. `allocate` runs after the commit of every transaction that may have freed or asked
for a slot, and the reconciler runs it for every tenant with waiting instances."""

from __future__ import annotations

import logging
from collections import Counter
from collections.abc import Iterable
from typing import Any

from django.db import connection, transaction
from django.db.models import Q, Sum
from django.utils import timezone
from jinja2 import TemplateError

from orchestrator.models import Tenant
from runs.engine import mapping
from runs.engine.messaging import queue_for, send_queued
from runs.graph import VersionGraph, graph_for
from runs.models import Pool, TaskInstance, WorkflowRun
from workflows.templating import render_value

__all__ = ["ALLOCATE_BATCH", "allocate", "allocate_waiting", "hold", "wake"]

logger = logging.getLogger(__name__)
TI = TaskInstance.State
HOLDING = (TI.QUEUED, TI.RUNNING)
ALLOCATE_BATCH = 1000  # waiting instances looked at per pass, highest priority first
KEY_MAX = 200
_LOCK_SPACE = 0x6F72_6301  # "orc" + 1: the advisory locks' first key


def hold(run: WorkflowRun, graph: VersionGraph, ti_ids: list[int]) -> None:
    """Ready instances of constrained tasks: their concurrency keys rendered, `scheduled`
    until `allocate` finds them a slot (after this transaction commits)."""
    if not ti_ids:
        return
    rows = list(
        TaskInstance.objects.dangerously_unscoped()
        .filter(pk__in=ti_ids, state=TI.PENDING)
        .values_list("id", "task_id", "map_index", "map_value")
    )
    keyed = {task_id for _, task_id, _, _ in rows if graph.task(task_id).concurrency}
    results = mapping.results_of(run, graph, _read_by(graph, keyed)) if keyed else {}
    context = mapping.engine_context(run, graph, results) if keyed else {}
    by_key: dict[str, list[int]] = {}
    for ti_id, task_id, map_index, map_value in rows:
        key = ""
        if task_id in keyed:
            key = _render_key(graph, task_id, map_index, map_value, context)
        by_key.setdefault(key, []).append(ti_id)
    for key, ids in by_key.items():
        TaskInstance.objects.dangerously_unscoped().filter(pk__in=ids, state=TI.PENDING).update(
            state=TI.SCHEDULED, concurrency_key=key, wait_reason="waiting for a slot"
        )
    wake(run.tenant_id)


def _read_by(graph: VersionGraph, task_ids: set[str]) -> set[str]:
    return {up for t in task_ids if graph.reads_results(t) for up in graph.upstream[t]}


def _render_key(
    graph: VersionGraph,
    task_id: str,
    map_index: int,
    map_value: Any,
    context: dict[str, Any],
) -> str:
    spec = graph.task(task_id)
    assert spec.concurrency is not None
    names = dict(context)
    if spec.map is not None:
        names.update({"map_index": map_index, spec.map.as_: map_value})
    try:
        key = str(render_value(spec.concurrency.key, names, native=False))
    except TemplateError as exc:
        # Validated at apply time; what remains is data (a missing result key): one key for
        # the task, so the limit still holds, and a log line that says why.
        logger.warning("concurrency key of %s did not render: %s", task_id, exc)
        key = f"{task_id}: {exc}"
    return (key or "(empty)")[:KEY_MAX]


def wake(tenant_id: int) -> None:
    """Run `allocate` for the tenant once this transaction commits (once per transaction
    however often it is asked; at once outside a transaction)."""
    if any(getattr(hook, "orc_allocates", None) == tenant_id for _, hook, _ in _hooks()):
        return

    def allocate_after_commit() -> None:
        allocate(tenant_id)

    allocate_after_commit.orc_allocates = tenant_id  # type: ignore[attr-defined]
    transaction.on_commit(allocate_after_commit, robust=True)


def _hooks() -> list[tuple[Any, Any, Any]]:
    """The open transaction's after-commit hooks (Django keeps them on the connection)."""
    hooks: list[tuple[Any, Any, Any]] = getattr(connection, "run_on_commit", [])
    return hooks


def _lock_tenant(tenant_id: int) -> None:
    """One allocation per tenant at a time (PostgreSQL: a transaction-level advisory lock;
    SQLite's writers already take turns)."""
    if connection.vendor == "postgresql":
        with connection.cursor() as cursor:
            cursor.execute("SELECT pg_advisory_xact_lock(%s, %s)", [_LOCK_SPACE, tenant_id])


def allocate(tenant_id: int) -> int:
    """Queue the tenant's waiting constrained instances that fit, highest priority first;
    write the reason on those that do not. Returns how many were queued."""
    with transaction.atomic():
        _lock_tenant(tenant_id)
        waiting = list(
            TaskInstance.objects.dangerously_unscoped()
            .filter(tenant_id=tenant_id, state=TI.SCHEDULED, run__state=WorkflowRun.State.RUNNING)
            .filter(~Q(pool="") | ~Q(concurrency_key=""))
            .filter(Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=timezone.now()))
            .order_by("-priority", "id")
            .only(
                "id",
                "run_id",
                "task_id",
                "pool",
                "pool_slots",
                "concurrency_key",
                "wait_reason",
                "run__version_id",
            )
            .select_related("run")[:ALLOCATE_BATCH]
        )
        if not waiting:
            return 0
        chosen, reasons = _choose(tenant_id, waiting)
        for reason, ids in reasons.items():
            TaskInstance.objects.dangerously_unscoped().filter(
                pk__in=ids, state=TI.SCHEDULED
            ).update(wait_reason=reason)
        if not chosen:
            return 0
        return len(_queue(tenant_id, chosen))


def _choose(
    tenant_id: int, waiting: list[TaskInstance]
) -> tuple[list[TaskInstance], dict[str, list[int]]]:
    """Which waiting instances fit, in order, and why each other one waits."""
    holding = TaskInstance.objects.dangerously_unscoped().filter(
        tenant_id=tenant_id, state__in=HOLDING
    )
    pools = dict(
        Pool.objects.dangerously_unscoped()
        .filter(tenant_id=tenant_id, name__in={t.pool for t in waiting if t.pool})
        .values_list("name", "slots")
    )
    used_pool: Counter[str] = Counter(
        dict(
            holding.filter(pool__in=list(pools))
            .values("pool")
            .annotate(n=Sum("pool_slots"))
            .values_list("pool", "n")
        )
    )
    keys = {t.concurrency_key for t in waiting if t.concurrency_key}
    used_key: Counter[str] = Counter(
        holding.filter(concurrency_key__in=keys).values_list("concurrency_key", flat=True)
    )
    runs = {t.run_id for t in waiting}
    used_run: Counter[int] = Counter(
        TaskInstance.objects.dangerously_unscoped()
        .filter(run_id__in=runs, state__in=HOLDING)
        .values_list("run_id", flat=True)
    )
    chosen: list[TaskInstance] = []
    reasons: dict[str, list[int]] = {}
    for ti in waiting:
        graph = graph_for(ti.run.version_id)
        reason = _reason(ti, graph, pools, used_pool, used_key, used_run)
        if reason is None:
            chosen.append(ti)
            used_pool[ti.pool] += ti.pool_slots if ti.pool else 0
            used_key[ti.concurrency_key] += 1 if ti.concurrency_key else 0
            used_run[ti.run_id] += 1
        elif reason != ti.wait_reason:
            reasons.setdefault(reason, []).append(ti.pk)
    return chosen, reasons


def _reason(
    ti: TaskInstance,
    graph: VersionGraph,
    pools: dict[str, int],
    used_pool: Counter[str],
    used_key: Counter[str],
    used_run: Counter[int],
) -> str | None:
    """Why the instance cannot be queued now; None when it can."""
    if ti.pool:
        if ti.pool not in pools:
            return f"waiting for pool {ti.pool!r}, which does not exist: create it to release"
        if pools[ti.pool] == 0:
            return f"waiting for pool {ti.pool!r}, which is paused (0 slots): give it slots"
        if used_pool[ti.pool] + ti.pool_slots > pools[ti.pool]:
            return (
                f"waiting for {ti.pool_slots} slot(s) of pool {ti.pool!r} "
                f"({used_pool[ti.pool]} of {pools[ti.pool]} in use)"
            )
    concurrency = graph.task(ti.task_id).concurrency
    key = ti.concurrency_key
    if key and concurrency is not None and used_key[key] >= concurrency.limit:
        return (
            f"waiting for concurrency key {key!r} ({used_key[key]} of {concurrency.limit} running)"
        )
    if used_run[ti.run_id] >= graph.spec.max_active_tasks:
        return f"waiting for a slot of the run's max_active_tasks ({graph.spec.max_active_tasks})"
    return None


def _queue(tenant_id: int, chosen: list[TaskInstance]) -> list[tuple[int, int]]:
    """The chosen instances `queued` (compare-and-set: one cancelled meanwhile stays so),
    their messages sent after commit, to the tenant's queue."""
    ids = [ti.pk for ti in chosen]
    now = timezone.now()
    table = TaskInstance._meta.db_table
    with connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {table} SET state = %s, try_number = try_number + 1, queued_at = %s, "  # noqa: S608
            "next_attempt_at = NULL, wait_reason = '' "
            f"WHERE id IN ({', '.join(['%s'] * len(ids))}) AND state = %s "
            "RETURNING id, try_number, task_type, priority",
            [TI.QUEUED, now, *ids, TI.SCHEDULED],
        )
        rows = sorted(cursor.fetchall(), key=lambda r: (-int(r[3]), int(r[0])))
    queue = queue_for(_policy(tenant_id))
    return send_queued(
        [(r[0], r[1], r[2], queue) for r in rows], keepable=()
    )  # waited: no jumping the queue


def _policy(tenant_id: int) -> dict[str, Any]:
    policy: dict[str, Any] = Tenant.objects.values_list("policy", flat=True).get(pk=tenant_id)
    return policy


def allocate_waiting() -> int:
    """The reconciler's step: allocate for every tenant with waiting constrained instances
    (what an after-commit allocation missed: a crash between commit and call)."""
    tenants: Iterable[int] = (
        TaskInstance.objects.dangerously_unscoped()
        .filter(state=TI.SCHEDULED)
        .filter(~Q(pool="") | ~Q(concurrency_key=""))
        .values_list("tenant_id", flat=True)
        .distinct()
        .order_by()
    )
    return sum(allocate(tenant_id) for tenant_id in list(tenants))
