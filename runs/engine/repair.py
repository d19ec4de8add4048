"""The repairs (the reconciler): a periodic job that only repairs, never drives the hot
path. Safe to run twice at once: every step is a compare-and-set that only one caller wins.
Other parts of `runs` add steps of their own with `register_repair` (the backfill feeder)."""

from __future__ import annotations

import datetime as dt
import functools
import logging
from collections.abc import Callable

from amqp.exceptions import ChannelError
from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from orchestrator import metrics
from orchestrator.celery import app
from orchestrator.fastsql import statement
from orchestrator.models import Tenant
from runs.engine import holding
from runs.engine.admission import start_queued_runs
from runs.engine.finish import finish
from runs.engine.messaging import queue_for, send
from runs.engine.progress import (
    active_runs_needing_attention,
    dispatch_runs,
    requeue_retries,
    time_out_run,
    unstick,
)
from runs.graph import graph_for
from runs.models import TaskAttempt, TaskInstance, WorkflowRun
from runs.tasktypes.contract import Outcome

__all__ = ["broker_backlog", "reconcile", "register_repair"]

logger = logging.getLogger(__name__)
TI = TaskInstance.State


def expire_leases() -> int:
    """Attempts whose worker stopped heartbeating (died, or lost the database)."""
    now = timezone.now()
    expired = (
        TaskAttempt.objects.dangerously_unscoped()
        .filter(state=TaskAttempt.State.RUNNING, lease_expires_at__lt=now)
        .values_list("id", flat=True)
    )
    count = 0
    for attempt_id in list(expired):
        outcome = Outcome(
            "failed",
            error="lease expired: the worker stopped heartbeating (it died or lost its "
            "database connection); the try is failed and run again "
            f"(up to {settings.TASK_LOST_TRY_LIMIT} lost tries per task do not use up "
            "its retries)",
            lost=True,
        )
        if finish(attempt_id, outcome) is not None:
            count += 1
    return count


TIMEOUT_GRACE_SECONDS = 30


def enforce_timeouts() -> int:
    """Backstop for a worker that is alive but no longer enforcing a task's timeout (its
    own loop kills the process group at the timeout): fail attempts running well past it.
    The worker's heartbeat then finds its lease gone and stops the task."""
    now = timezone.now()
    running = (
        TaskAttempt.objects.dangerously_unscoped()
        .filter(state=TaskAttempt.State.RUNNING)
        .values_list("id", "started_at", "task_instance__task_id", "task_instance__run__version_id")
    )
    count = 0
    for attempt_id, started_at, task_id, version_id in list(running):
        timeout = graph_for(version_id).effective(task_id).timeout
        if timeout is None or now - started_at < dt.timedelta(
            seconds=timeout + TIMEOUT_GRACE_SECONDS
        ):
            continue
        outcome = Outcome(
            "failed",
            error=f"timed out after {timeout}s (enforced by "
            "the reconciler: the worker did not stop the task)",
        )
        if finish(attempt_id, outcome) is not None:
            count += 1
    return count


def time_out_runs() -> int:
    """Runs past their workflow's `timeout`: failed, what is left cancelled."""
    now = timezone.now()
    count = 0
    running = (
        WorkflowRun.objects.dangerously_unscoped()
        .filter(state=WorkflowRun.State.RUNNING, started_at__isnull=False)
        .values_list("id", "started_at", "version_id")
    )
    for run_id, started_at, version_id in list(running):
        timeout = graph_for(version_id).spec.timeout
        if timeout is not None and started_at and now - started_at >= dt.timedelta(seconds=timeout):
            count += time_out_run(run_id, timeout)
    return count


def broker_backlog(queue: str | None = None) -> int:
    """Messages waiting in `queue` (None: the shared task queue; 0 when it does not exist
    yet)."""
    queue = queue or settings.CELERY_TASK_DEFAULT_QUEUE
    # kombu's virtual transports (redis, memory) answer `_size`; queue_declare(passive=True)
    # misses queues under a global key prefix on redis.
    with app.connection_for_read() as conn:
        try:
            return int(conn.default_channel._size(queue))  # type: ignore[attr-defined]
        except (ChannelError, AttributeError, KeyError):
            return 0


BROKER_MARKER = "orchestrator.broker-marker"


def broker_lost_data() -> bool:
    """True when the broker has lost its data since the last look: restarted without
    persistence, flushed, or its keys evicted. A marker key left on the previous look is
    then gone. (The first look on a new broker says True too, which costs only duplicate
    messages that the claim turns away.) Only for Redis; other brokers keep their queues."""
    with app.connection_for_write() as conn:
        client = getattr(conn.default_channel, "client", None)
        if client is None or not hasattr(client, "sadd"):
            return False
        # SADD answers whether the member was new, atomically: of two reconcilers looking
        # at once, one sees the loss. (The broker's key prefix applies to it.)
        return bool(client.sadd(BROKER_MARKER, "present"))


def resend_lost_messages() -> int:
    """Re-send the message of instances queued too long: it was lost (a broker restart or
    flush, a crash between commit and send). Sent with the same try number, so if the
    first message turns up after all, the second claim finds nothing to do; and to the
    queue the tenant's policy names now (`queue_for`), so a try whose message went
    to a pool since removed from the policy is picked up by the pool that replaced it.

    When the broker has visibly lost its data, every queued instance is re-sent at once.
    Otherwise an instance may also wait simply because the workers of its queue are busy
    with a backlog, and re-sending would only double that backlog: so, queue by queue,
    while the queue holds messages only instances queued longer than
    QUEUED_RESEND_MAX_SECONDS are re-sent; the others once the queue has drained and they
    are still waiting (QUEUED_RESEND_AFTER_SECONDS). A backlog in one pool's queue does
    not hold back the re-sends of another."""
    lost = broker_lost_data()
    if lost:
        logger.warning("the broker lost its messages: re-sending every queued task")
    after = dt.timedelta(seconds=settings.QUEUED_RESEND_AFTER_SECONDS)
    most = dt.timedelta(seconds=settings.QUEUED_RESEND_MAX_SECONDS)
    now = timezone.now()
    resent = 0
    for queue, tenant_ids in _queues_of_queued(now if lost else now - min(after, most)).items():
        if lost:
            resent += _resend(queue, tenant_ids, now, now, None)
        elif broker_backlog(queue) > 0:
            resent += _resend(queue, tenant_ids, now, now - most, 1000)
        else:
            resent += _resend(queue, tenant_ids, now, now - after, 1000)
    return resent


def _queues_of_queued(cutoff: dt.datetime) -> dict[str, list[int]]:
    """The queues of instances queued at or before `cutoff` (by their tenants' policies),
    each with the ids of those tenants."""
    queued = (
        TaskInstance.objects.dangerously_unscoped()
        .filter(state=TI.QUEUED, queued_at__lte=cutoff)
        .order_by()
        .values("tenant_id")
    )
    queues: dict[str, list[int]] = {}
    for tenant_id, policy in Tenant.objects.filter(pk__in=queued).values_list("pk", "policy"):
        queues.setdefault(queue_for(policy), []).append(tenant_id)
    return queues


@statement("resend_queued")
def _resend(
    queue: str, tenant_ids: list[int], now: dt.datetime, cutoff: dt.datetime, limit: int | None
) -> int:
    """Re-send, to `queue`, the tenants' instances queued at or before `cutoff`."""
    table = TaskInstance._meta.db_table
    tenants = ", ".join(["%s"] * len(tenant_ids))
    # One statement stamps and returns the rows: a second reconciler running at once waits
    # for these row locks, then finds them re-stamped and leaves them alone.
    with transaction.atomic(), connection.cursor() as cursor:
        cursor.execute(
            f"UPDATE {table} SET queued_at = %s WHERE id IN ("  # noqa: S608
            f"SELECT id FROM {table} WHERE state = %s AND queued_at <= %s "
            f"AND tenant_id IN ({tenants}) ORDER BY id{' LIMIT %s' if limit else ''}) "
            "AND state = %s AND queued_at <= %s RETURNING id, try_number",
            [
                now,
                TI.QUEUED,
                cutoff,
                *tenant_ids,
                *([limit] if limit else []),
                TI.QUEUED,
                cutoff,
            ],
        )
        tries = [(int(ti_id), int(try_number)) for ti_id, try_number in cursor.fetchall()]
        send(*tries, queue=queue)
    return len(tries)


def resend_held_tries() -> int:
    """Re-send the tries that a worker had taken but not claimed when it died (a
    prefetched message, the next try of a chain it kept): within a lease of its last beat,
    whatever the depth of the queue (holding.py). At the front of the queue, where the
    worker took them from; with the same try number, so a message that turns up after all
    claims nothing. What the broker itself lost is left to `resend_lost_messages`."""
    resent = 0
    for name, tries in holding.dead_holders():
        resent += _resend_first(tries)
        holding.forget(name)
    if resent:
        logger.warning("re-sent %d tries held by workers that stopped beating", resent)
    return resent


def _resend_first(tries: list[tuple[int, int]]) -> int:
    """Re-stamp the tries still queued (so the drained-queue re-send does not follow at
    once) and send them first in their tenants' queues, after commit."""
    if not tries:
        return 0
    wanted = set(tries)
    queue_of: dict[tuple[int, int], str] = {}
    with transaction.atomic():
        queued = (
            TaskInstance.objects.dangerously_unscoped()
            .filter(pk__in={ti_id for ti_id, _ in wanted}, state=TI.QUEUED)
            .values_list("id", "try_number", "tenant__policy")
        )
        for ti_id, try_number, policy in queued:
            if (ti_id, try_number) in wanted:
                queue_of[(ti_id, try_number)] = queue_for(policy)
        TaskInstance.objects.dangerously_unscoped().filter(
            pk__in=[ti_id for ti_id, _ in queue_of], state=TI.QUEUED
        ).update(queued_at=timezone.now())
        for queue in set(queue_of.values()):
            mine = [t for t, q in queue_of.items() if q == queue]
            transaction.on_commit(functools.partial(holding.send_first, mine, queue))
    return len(queue_of)


def schedule_due_retries() -> int:
    due = (
        TaskInstance.objects.dangerously_unscoped()
        .filter(state=TI.UP_FOR_RETRY, next_attempt_at__lte=timezone.now())
        .values_list("id", flat=True)
    )
    return requeue_retries(list(due[:1000]))


def dispatch_due_checks() -> int:
    """Sensors waiting in `scheduled` whose next check is due: dispatch their runs."""
    due = (
        TaskInstance.objects.dangerously_unscoped()
        .filter(state=TI.SCHEDULED, next_attempt_at__lte=timezone.now())
        .order_by()
        .values_list("run_id", flat=True)
        .distinct()
    )
    return dispatch_runs(list(due[:1000]))


def repair_runs() -> int:
    """Running runs that nothing moves any more; queued runs that could start."""
    stuck = active_runs_needing_attention()
    for run_id in stuck:
        unstick(run_id)
    workflows = set(
        WorkflowRun.objects.dangerously_unscoped()
        .filter(state=WorkflowRun.State.QUEUED)
        .values_list("workflow_id", flat=True)
    )
    for workflow_id in workflows:
        start_queued_runs(workflow_id)
    return len(stuck)


# Steps that other parts of `runs` add (name -> step returning how much it did).
_repairs: dict[str, Callable[[], int]] = {}


def register_repair(name: str, step: Callable[[], int]) -> None:
    """Run `step` at the end of every reconcile, its count reported under `name`."""
    _repairs[name] = step


def reconcile() -> dict[str, int]:
    done = {
        "expired_leases": expire_leases(),
        "timed_out": enforce_timeouts(),
        "timed_out_runs": time_out_runs(),
        "resent_held": resend_held_tries(),
        "resent_messages": resend_lost_messages(),
        "due_retries": schedule_due_retries(),
        "due_checks": dispatch_due_checks(),
        "repaired_runs": repair_runs(),
    }
    done.update((name, step()) for name, step in _repairs.items())
    metrics.inc("orc_reconciler_runs")
    for action, count in done.items():
        if count:
            metrics.inc("orc_reconciler_actions", count, action=action)
    if any(done.values()):
        logger.info("reconciler: %s", done)
    return done
