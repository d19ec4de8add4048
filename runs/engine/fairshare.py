"""Fair share of the workers between tenants (docs/runs.md, "Fair share").

The broker is first come, first served: a tenant that queues 5,000 tries puts every other
tenant's next try behind them. So the engine never lets a tenant have more in flight
(queued or running) than its cap, and keeps the rest `scheduled` in the database, where
priority orders them; freed room goes to whoever is below their share.

Costs are counted in units: a try of a type that takes no time (INLINE_TYPES, several per
message) costs 1, any other try a worker slot, `SLOT_UNITS`. A queue's budget is twice its
workers' slots (one running, one waiting in the broker for each slot), in units. The
planner (`plan`) divides each busy queue's budget between the tenants that want more than
their share, in proportion to their policy's `share` (default 1), water-filling: a tenant
that needs less than its share keeps its share as room to grow, and the others divide what
it leaves. A tenant with no cap planned yet may use the whole budget; the planner runs when
a dispatch finds its tenant at its cap, and with every reconcile.

Nothing here runs on an idle system's path but one in-process dictionary look-up: the caps
and the budget are read from the cache at most every CACHE_SECONDS per process."""

from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict
from typing import Any

from django.core.cache import cache
from django.db import connection, transaction
from django.db.models import Count, IntegerField, Max, Min, Q, Sum
from django.db.models.expressions import RawSQL
from django.utils import timezone

from orchestrator import metrics
from orchestrator.models import Tenant
from orchestrator.tenancy import fair_share
from runs.engine.messaging import BATCH_MAX, INLINE_TYPES, queue_for
from runs.models import TaskInstance, WorkflowRun

__all__ = [
    "CACHE_SECONDS",
    "SLOT_UNITS",
    "WAIT_REASON",
    "budgets",
    "cap_for",
    "cost",
    "cost_sql",
    "fill",
    "fill_after_commit",
    "look_again",
    "note_capped",
    "plan",
    "waiting",
    "water_fill",
]

logger = logging.getLogger(__name__)
TI = TaskInstance.State
SLOT_UNITS = BATCH_MAX  # a worker slot, in units: a message of inline tries fills one
CACHE_SECONDS = 0.25
CAPS_KEY, WAITING_KEY, PLANNED_KEY = "orc:fair:caps", "orc:fair:waiting", "orc:fair:planned"
CAPS_TTL = 30  # seconds a plan holds without a new one: then every tenant has the budget
PLAN_EVERY = 1  # seconds: at most this often on demand (the reconciler plans anyway)
WAIT_REASON = "waiting for a worker: the tenant has its fair share in flight"
FILL_RUNS = 20  # runs a fill dispatches at most, highest priority first


def cost_sql(column: str = "task_type") -> str:
    """The units of a try, as SQL over its type column (inline types: 1, others a slot)."""
    inline = ", ".join(f"'{t}'" for t in sorted(INLINE_TYPES))
    return f"CASE WHEN {column} IN ({inline}) THEN 1 ELSE {SLOT_UNITS} END"


def cost(task_type: str) -> int:
    """The units of a try of this type."""
    return 1 if task_type in INLINE_TYPES else SLOT_UNITS


def _cost() -> RawSQL:
    """`cost_sql` for the ORM (a query over task instances alone: the column is theirs)."""
    return RawSQL(cost_sql(), [], output_field=IntegerField())  # noqa: S611 (constants only)


# --- the shared store ---------------------------------------------------------------------
# The plan lives in the cache (Redis in production). The engine must go on when it is away:
# every look that fails is "no plan" (nothing capped), and the next look waits a while.

STORE_RETRY_SECONDS = 5.0


def _read(*keys: str) -> dict[str, Any]:
    try:
        found: dict[str, Any] = cache.get_many(list(keys))
    except Exception as exc:  # the cache's Redis is away: no plan, for a while
        logger.warning("fair share: the plan is unreadable (%s); nothing is capped", exc)
        _local["at"] = time.monotonic() + STORE_RETRY_SECONDS
        raise _StoreAway from exc
    return found


def _write(key: str, value: Any) -> None:
    try:
        cache.set(key, value, CAPS_TTL)
    except Exception as exc:
        logger.warning("fair share: could not write %s (%s)", key, exc)
        raise _StoreAway from exc


class _StoreAway(Exception):
    """The cache could not be read or written."""


# --- what dispatch reads ------------------------------------------------------------------

_local: dict[str, Any] = {"at": -1.0, "caps": {}, "budgets": {}, "waiting": frozenset()}


def _fresh() -> dict[str, Any]:
    """The plan as last written (caps, budgets, tenants with fair-waiting tries), read from
    the cache at most every CACHE_SECONDS."""
    now = time.monotonic()
    if now - _local["at"] >= CACHE_SECONDS:
        try:
            found = _read(CAPS_KEY, WAITING_KEY)
            plan_ = found.get(CAPS_KEY) or {}
            _local.update(
                at=now,
                caps=plan_.get("caps", {}),
                budgets=plan_.get("budgets") or budgets(),
                waiting=frozenset(found.get(WAITING_KEY) or ()),
            )
        except _StoreAway:
            _local.update(caps={}, budgets={}, waiting=frozenset())
    return _local


def look_again() -> None:
    """Read the plan from the cache at the next look (a test's or a new plan's)."""
    _local["at"] = -1.0


def cap_for(tenant_id: int, queue: str) -> int | None:
    """Units the tenant may have in flight on `queue` now; None: no limit (no worker has
    reported its slots for that queue, so there is nothing to share)."""
    state = _fresh()
    budget = state["budgets"].get(queue)
    if not budget:
        return None
    cap = state["caps"].get(str(tenant_id))
    return budget if cap is None else int(cap)


def waiting(tenant_id: int) -> bool:
    """Whether the tenant has tries held back by its cap (as of the last look)."""
    return tenant_id in _fresh()["waiting"]


def budgets() -> dict[str, int]:
    """Each queue's budget in units: twice the slots of the workers that consume it, as
    their heartbeats report them. Raises _StoreAway when they cannot be read."""
    slots: dict[str, int] = defaultdict(int)
    try:
        capacity = metrics.worker_capacity()
    except Exception as exc:  # the metrics' Redis is away: nothing known, nothing capped
        logger.warning("fair share: the workers' slots are unreadable (%s)", exc)
        _local["at"] = time.monotonic() + STORE_RETRY_SECONDS
        raise _StoreAway from exc
    for worker_slots, queues in capacity.values():
        for queue in queues:
            slots[queue] += worker_slots
    return {queue: 2 * n * SLOT_UNITS for queue, n in slots.items() if n > 0}


def note_capped(tenant_id: int) -> None:
    """A dispatch left ready tries of the tenant `scheduled` because of its cap: mark the
    tenant as waiting (so its ends fill its other runs) and plan soon."""
    if tenant_id not in _local["waiting"]:
        try:
            current = set(_read(WAITING_KEY).get(WAITING_KEY) or ())
            current.add(tenant_id)
            _write(WAITING_KEY, sorted(current))
        except _StoreAway:
            return  # the reconciler's plan finds the waiting tries in the database
        _local["waiting"] = frozenset(current)
    transaction.on_commit(plan_soon, robust=True)


def plan_soon() -> None:
    """`plan`, unless one was made in the last second (by any process)."""
    try:
        due = cache.add(PLANNED_KEY, 1, timeout=PLAN_EVERY)
    except Exception as exc:
        logger.warning("fair share: not planning now (%s)", exc)
        return
    if due:
        plan()


# --- the plan ------------------------------------------------------------------------------


def water_fill(budget: int, demand: dict[int, int], shares: dict[int, int]) -> dict[int, int]:
    """Divide `budget` units between tenants wanting `demand` units, in proportion to their
    `shares`: one that wants less than its share keeps its share (room to grow) and leaves
    the rest to the others; each gets at least one unit. Pure."""
    caps: dict[int, int] = {}
    left, open_ = float(budget), {t for t, d in demand.items() if d > 0}
    while open_:
        total = sum(shares[t] for t in open_)
        fair = {t: left * shares[t] / total for t in open_}
        satisfied = {t for t in open_ if demand[t] <= fair[t]}
        if not satisfied:
            caps.update({t: max(1, int(fair[t])) for t in open_})
            break
        for t in satisfied:
            caps[t] = max(1, int(fair[t]))
            left -= demand[t]
        open_ -= satisfied
    return caps


def plan() -> int:
    """Work out every tenant's cap from what it has in flight and waiting, write the plan,
    and fill the runs of the tenants whose cap now leaves them room. Returns how many tries
    the fills queued (none while the cache is away: then nothing is capped either)."""
    try:
        return _plan()
    except _StoreAway:
        return 0


def _plan() -> int:
    found = budgets()
    now = timezone.now()
    rows = (
        TaskInstance.objects.dangerously_unscoped()
        .filter(
            Q(state__in=[TI.QUEUED, TI.RUNNING])
            | Q(state=TI.SCHEDULED, pool="", concurrency_key="")
            & (Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now))
        )
        .values("tenant_id")
        .annotate(
            busy=Sum(_cost(), filter=Q(state__in=[TI.QUEUED, TI.RUNNING])),
            want=Sum(_cost()),
            held=Count("pk", filter=Q(state=TI.SCHEDULED, wait_reason=WAIT_REASON)),
        )
        .order_by()
        .values_list("tenant_id", "busy", "want", "held")
    )
    demand = {tenant_id: int(want or 0) for tenant_id, _, want, _ in rows}
    busy = {tenant_id: int(b or 0) for tenant_id, b, _, _ in rows}
    # The database's word on who has tries held back by its cap, beside the cache's marks:
    # a mark lost (two processes racing, the cache flushed) leaves no tenant waiting.
    held = {tenant_id for tenant_id, _, _, count in rows if count}
    policies = dict(Tenant.objects.filter(pk__in=list(demand)).values_list("pk", "policy"))
    by_queue: dict[str, list[int]] = defaultdict(list)
    for tenant_id in demand:
        by_queue[queue_for(policies.get(tenant_id) or {})].append(tenant_id)
    caps: dict[int, int] = {}
    for queue, tenants in by_queue.items():
        budget = found.get(queue)
        if budget and sum(demand[t] for t in tenants) > budget and len(tenants) > 1:
            shares = {t: fair_share(policies.get(t) or {}) for t in tenants}
            caps.update(water_fill(budget, {t: demand[t] for t in tenants}, shares))
    stored = _read(CAPS_KEY, WAITING_KEY)
    previous = {int(k): v for k, v in ((stored.get(CAPS_KEY) or {}).get("caps") or {}).items()}
    _write(
        CAPS_KEY,
        {"at": time.time(), "caps": {str(t): c for t, c in caps.items()}, "budgets": found},
    )
    look_again()
    # Whoever may now have more in flight than before: fill its waiting runs.
    queued = 0
    for tenant_id in sorted({int(t) for t in stored.get(WAITING_KEY) or ()} | held):
        before, after = previous.get(tenant_id), caps.get(tenant_id)
        if after is None or before is None or after > before or busy.get(tenant_id, 0) == 0:
            queued += fill(tenant_id)
    return queued


_filling = threading.local()


def fill_after_commit(tenant_id: int) -> None:
    """`fill` the tenant once this transaction commits (once per transaction; never from
    inside a fill, whose own dispatches would ask again)."""
    if getattr(_filling, "active", False):
        return
    hooks: list[tuple[Any, Any, Any]] = getattr(connection, "run_on_commit", [])
    if any(getattr(hook, "orc_fills", None) == tenant_id for _, hook, _ in hooks):
        return

    def fill_now() -> None:
        fill(tenant_id)

    fill_now.orc_fills = tenant_id  # type: ignore[attr-defined]
    transaction.on_commit(fill_now, robust=True)


def fill(tenant_id: int) -> int:
    """Dispatch the tenant's runs that have tries held back by its cap, highest priority
    first, until one queues nothing (the cap is reached again). Forget the tenant's
    waiting mark when none is left."""
    _filling.active = True
    try:
        return _fill(tenant_id)
    finally:
        _filling.active = False


def _fill(tenant_id: int) -> int:
    from runs.engine.progress import dispatch, lock_run  # progress dispatches through here

    now = timezone.now()
    runs = list(
        TaskInstance.objects.dangerously_unscoped()
        .filter(tenant_id=tenant_id, state=TI.SCHEDULED, wait_reason=WAIT_REASON)
        .filter(Q(next_attempt_at__isnull=True) | Q(next_attempt_at__lte=now))
        .values("run_id")
        .annotate(top=Max("priority"), first=Min("id"), n=Count("id"))
        .order_by("-top", "first")
        .values_list("run_id", flat=True)[:FILL_RUNS]
    )
    if not runs:
        _forget(tenant_id)
        return 0
    queued = 0
    for run_id in runs:
        with transaction.atomic():
            run = lock_run(run_id)
            if run.state != WorkflowRun.State.RUNNING:
                continue
            sent = dispatch(run)
        queued += len(sent)
        if not sent:
            break
    return queued


def _forget(tenant_id: int) -> None:
    try:
        current = set(_read(WAITING_KEY).get(WAITING_KEY) or ())
        if tenant_id in current:
            current.discard(tenant_id)
            _write(WAITING_KEY, sorted(current))
    except _StoreAway:
        return
    _local["waiting"] = frozenset(current)
