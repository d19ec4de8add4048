"""Retention (docs/retention.md): the housekeeping job that deletes what has aged out of
each live tenant's retention (its policy's `retention_days`, else the platform's
RETENTION_DAYS_DEFAULT, at most RETENTION_DAYS_MAX):

- finished runs that ended before the cutoff, with their task instances (and results),
  tries, logs, lineage events and idempotency keys. A queued or running run is never
  touched, nor a run of a backfill still running or paused. Rows of other tables that
  point at a deleted run keep their own history with the run left out (events, dataset
  updates, SLA misses, webhook deliveries: `on_delete=SET_NULL` on their models);
- events (the outbox) written before the cutoff once both consumers have taken them
  (`routed_at`, `dispatched_at`), except those another app holds (notifications: an
  event with a delivery still to send); their notification deliveries go with them;
- the rows of tables other apps register (webhook deliveries) older than the cutoff.

Each batch is one short transaction of at most BATCH_SIZE rows of the table it deletes
from, taken in id order with FOR UPDATE SKIP LOCKED (a run someone is clearing at that
moment waits for the next pass) and audited in that transaction as a system action. The
audit log itself is never deleted (its table refuses it: orchestrator/dbtriggers.py)."""

from __future__ import annotations

import datetime as dt
import logging
import time
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from django.db import models, transaction
from django.utils import timezone

from orchestrator import audit, metrics
from orchestrator.actors import Actor
from orchestrator.models import Tenant
from orchestrator.tenancy import retention_days
from runs.models import (
    Backfill,
    Event,
    IdempotencyKey,
    LineageEvent,
    TaskAttempt,
    TaskInstance,
    TaskLog,
    WorkflowRun,
)

__all__ = [
    "BATCH_SIZE",
    "PAUSE_RATIO",
    "TenantPurge",
    "purge",
    "purge_tenant",
    "register_event_hold",
    "register_purge",
    "registrations",
]

logger = logging.getLogger(__name__)

BATCH_SIZE = 500  # runs (or events, or rows of a registered table) per transaction
# ... and the runs of one batch have at most this many task instances between them (one
# run more only when the first alone has more), so a batch of wide runs stays short too.
TASK_ROWS_PER_BATCH = 5000
# After each batch the pass rests twice as long as the batch took, so that on a
# busy machine it takes at most a share of a core from the engine (docs/performance.md).
PAUSE_RATIO = 2.0

# What the counts are called (the deletion collector's model labels).
NAMES = {
    WorkflowRun._meta.label: "runs",
    TaskInstance._meta.label: "task_instances",
    TaskAttempt._meta.label: "attempts",
    TaskLog._meta.label: "task_logs",
    LineageEvent._meta.label: "lineage_events",
    IdempotencyKey._meta.label: "idempotency_keys",
    Event._meta.label: "events",
}
# A backfill that may still read or rerun its runs.
LIVE_BACKFILLS = (Backfill.State.RUNNING, Backfill.State.PAUSED)


@dataclass(frozen=True)
class Registered:
    model: type[models.Model]  # tenant-owned
    time_field: str  # rows whose value is before the cutoff are deleted


# Tables of the apps above `runs`, registered in their AppConfig.ready (name -> table).
_purges: dict[str, Registered] = {}
# Events another app still needs (name -> a queryset of their ids), kept past the cutoff.
_holds: dict[str, Callable[[], models.QuerySet[Any]]] = {}


def register_purge(name: str, model: type[models.Model], time_field: str) -> None:
    """Delete `model`'s rows whose `time_field` is before the tenant's cutoff, counted
    under `name` (e.g. events registers its webhook deliveries by `received_at`)."""
    _purges[name] = Registered(model, time_field)


def register_event_hold(name: str, held: Callable[[], models.QuerySet[Any]]) -> None:
    """Keep the events whose ids `held()` returns (a values queryset of event ids) past
    the cutoff, e.g. notifications: the events with a delivery still pending."""
    _holds[name] = held


def registrations() -> dict[str, list[str]]:
    """What other apps registered: the tables purged by age, the holds on events."""
    return {"purges": sorted(_purges), "event_holds": sorted(_holds)}


@dataclass
class TenantPurge:
    """What one pass deleted in one tenant (or would delete, in a dry run)."""

    tenant: str
    days: int  # 0: kept forever
    cutoff: dt.datetime | None
    counts: Counter[str] = field(default_factory=Counter)
    batches: int = 0

    @property
    def total(self) -> int:
        return sum(self.counts.values())


def purge(
    *,
    actor: Actor | None = None,
    tenants: Iterable[Tenant] | None = None,
    dry_run: bool = False,
    batch_size: int = BATCH_SIZE,
    now: dt.datetime | None = None,
) -> list[TenantPurge]:
    """One pass over every live tenant (or `tenants`). A tenant whose pass fails (a
    deadlock with someone clearing an old run, say) is logged and left to the next pass;
    the batches it committed stay deleted."""
    actor = actor or Actor.system()
    now = now or timezone.now()
    chosen = list(tenants) if tenants is not None else list(Tenant.objects.active())
    done = []
    for tenant in chosen:
        try:
            done.append(
                purge_tenant(tenant, actor=actor, dry_run=dry_run, batch_size=batch_size, now=now)
            )
        except Exception:  # one tenant must not stop the others
            logger.exception("retention of tenant %s failed", tenant.slug)
    return done


def purge_tenant(
    tenant: Tenant,
    *,
    actor: Actor,
    dry_run: bool = False,
    batch_size: int = BATCH_SIZE,
    now: dt.datetime | None = None,
) -> TenantPurge:
    days = retention_days(tenant.policy)
    cutoff = (now or timezone.now()) - dt.timedelta(days=days) if days else None
    done = TenantPurge(tenant.slug, days, cutoff)
    if cutoff is None:
        return done
    if dry_run:
        done.counts.update(_would_delete(tenant, cutoff))
        return done
    steps: list[tuple[str, Callable[[], models.QuerySet[Any]]]] = [
        ("runs", lambda: _old_runs(tenant, cutoff)),
        ("events", lambda: _old_events(tenant, cutoff)),
    ]
    steps += [(name, _registered(name, tenant, cutoff)) for name in _purges]
    for name, rows in steps:
        while True:
            started = time.monotonic()
            counts = _delete_batch(tenant, actor, name, rows(), batch_size, cutoff)
            if counts is None:
                break
            done.counts.update(counts)
            done.batches += 1
            time.sleep((time.monotonic() - started) * PAUSE_RATIO)
    if done.total:
        logger.info("retention: tenant %s, before %s: %s", tenant.slug, cutoff, dict(done.counts))
    return done


def _old_runs(tenant: Tenant, cutoff: dt.datetime) -> models.QuerySet[WorkflowRun]:
    live_backfills = Backfill._base_manager.filter(tenant=tenant, state__in=LIVE_BACKFILLS)
    return (
        WorkflowRun._base_manager.filter(
            tenant=tenant, state__in=WorkflowRun.FINISHED, ended_at__lt=cutoff
        )
        .exclude(backfill_id__in=live_backfills.values("id"))
        .order_by("id")
    )


def _old_events(tenant: Tenant, cutoff: dt.datetime) -> models.QuerySet[Event]:
    events = Event._base_manager.filter(
        tenant=tenant,
        time__lt=cutoff,
        routed_at__isnull=False,
        dispatched_at__isnull=False,
    )
    for held in _holds.values():
        events = events.exclude(pk__in=held())
    return events.order_by("id")


def _registered(
    name: str, tenant: Tenant, cutoff: dt.datetime
) -> Callable[[], models.QuerySet[Any]]:
    table = _purges[name]

    def rows() -> models.QuerySet[Any]:
        return table.model._base_manager.filter(
            tenant=tenant, **{f"{table.time_field}__lt": cutoff}
        ).order_by("id")

    return rows


def _delete_batch(
    tenant: Tenant,
    actor: Actor,
    name: str,
    rows: models.QuerySet[Any],
    batch_size: int,
    cutoff: dt.datetime,
) -> Counter[str] | None:
    """Delete the first `batch_size` of `rows` not locked by someone else, with what
    cascades from them, in one transaction; None when there was nothing to delete."""
    with transaction.atomic():
        ids = list(
            rows.select_for_update(skip_locked=True, of=("self",)).values_list("id", flat=True)[
                :batch_size
            ]
        )
        if not ids:
            return None
        if rows.model is WorkflowRun:
            ids = _fitting(ids)
        # Only the ids are read: the collector follows every relation (cascades, SET_NULL)
        # declared on the models, those of other apps included.
        _, per_model = rows.model._base_manager.filter(pk__in=ids).only("id").delete()
        counts = Counter(
            {_count_name(label, name, rows.model): n for label, n in per_model.items() if n}
        )
        for table, deleted in counts.items():
            metrics.inc("orc_retention_deleted", deleted, table=table)
        audit.record(
            actor=actor,
            action="retention.delete",
            tenant=tenant,
            object_type=rows.model._meta.model_name or "",
            object_id="",
            object_repr=f"{len(ids)} {name} before {cutoff:%Y-%m-%d %H:%M} UTC",
            extra={
                "cutoff": cutoff.isoformat(),
                "first_id": ids[0],
                "last_id": ids[-1],
                "deleted": dict(sorted(counts.items())),
            },
        )
    return counts


def _fitting(run_ids: list[int]) -> list[int]:
    """The first runs whose task instances fit TASK_ROWS_PER_BATCH (at least one)."""
    sizes = dict(
        TaskInstance._base_manager.filter(run_id__in=run_ids)
        .values_list("run_id")
        .annotate(n=models.Count("id"))
        .order_by()
    )
    kept: list[int] = []
    rows = 0
    for run_id in run_ids:
        rows += sizes.get(run_id, 0)
        if kept and rows > TASK_ROWS_PER_BATCH:
            break
        kept.append(run_id)
    return kept


def _count_name(label: str, name: str, model: type[models.Model]) -> str:
    if label == model._meta.label:
        return name
    return NAMES.get(label, label)


def _would_delete(tenant: Tenant, cutoff: dt.datetime) -> Counter[str]:
    """A dry run's counts: the rows of the tables above, nothing locked or deleted (rows
    that cascade from other apps' tables, such as an event's deliveries, are not
    counted)."""
    runs = _old_runs(tenant, cutoff).order_by().values("id")
    tis = TaskInstance._base_manager.filter(run_id__in=runs)
    attempts = TaskAttempt._base_manager.filter(task_instance__run_id__in=runs)
    counts: Counter[str] = Counter(
        {
            "runs": runs.count(),
            "task_instances": tis.count(),
            "attempts": attempts.count(),
            "task_logs": TaskLog._base_manager.filter(attempt__in=attempts.values("id")).count(),
            "lineage_events": LineageEvent._base_manager.filter(
                attempt__in=attempts.values("id")
            ).count(),
            "idempotency_keys": IdempotencyKey._base_manager.filter(run_id__in=runs).count(),
            "events": _old_events(tenant, cutoff).count(),
        }
    )
    for name in _purges:
        counts[name] = _registered(name, tenant, cutoff)().count()
    return counts
