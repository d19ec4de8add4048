"""The reconciler: a periodic job that only repairs, never drives the hot path. Safe to
run twice at once: every step is a compare-and-set that only one caller wins."""

from __future__ import annotations

import datetime as dt
import logging

from amqp.exceptions import ChannelError
from django.conf import settings
from django.db import transaction
from django.utils import timezone

from orchestrator.celery import app
from runs import engine, operations
from runs.graph import graph_for
from runs.models import TaskAttempt, TaskInstance, WorkflowRun

__all__ = ["reconcile"]

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
        outcome = engine.Outcome(
            "failed",
            error="lease expired: the worker stopped heartbeating (it died or lost its "
            "database connection); the try is failed and retried if tries remain",
        )
        if engine.finish(attempt_id, outcome) is not None:
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
        outcome = engine.Outcome(
            "failed",
            error=f"timed out after {timeout}s (enforced by "
            "the reconciler: the worker did not stop the task)",
        )
        if engine.finish(attempt_id, outcome) is not None:
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
            count += operations.time_out(run_id, timeout)
    return count


def broker_backlog(queue: str = "tasks") -> int:
    """Messages waiting in the task queue (0 when it does not exist yet)."""
    # kombu's virtual transports (redis, memory) answer `_size`; queue_declare(passive=True)
    # misses queues under a global key prefix on redis.
    with app.connection_for_read() as conn:
        try:
            return int(conn.default_channel._size(queue))  # type: ignore[attr-defined]
        except (ChannelError, AttributeError, KeyError):
            return 0


def resend_lost_messages() -> int:
    """Instances queued too long: their message was lost (broker restart or flush, a crash
    between commit and send). Re-sent with the same try number, so if the first message
    turns up after all, the second claim finds nothing to do.

    An instance may also wait simply because workers are busy with a backlog; re-sending
    then would only double the backlog. So while the task queue holds messages, only
    instances queued longer than QUEUED_RESEND_MAX_SECONDS are re-sent; the others are
    re-sent once the queue has drained and they are still waiting."""
    now = timezone.now()
    threshold = dt.timedelta(seconds=settings.QUEUED_RESEND_AFTER_SECONDS)
    if broker_backlog() > 0:
        threshold = dt.timedelta(seconds=settings.QUEUED_RESEND_MAX_SECONDS)
    stale = (
        TaskInstance.objects.dangerously_unscoped()
        .filter(state=TI.QUEUED, queued_at__lt=now - threshold)
        .values_list("id", "try_number", "queued_at")
    )
    count = 0
    for ti_id, try_number, queued_at in list(stale[:500]):
        with transaction.atomic():
            if (
                TaskInstance.objects.dangerously_unscoped()
                .filter(pk=ti_id, state=TI.QUEUED, try_number=try_number, queued_at=queued_at)
                .update(queued_at=now)
            ):
                engine.send((ti_id, try_number))
                count += 1
    return count


def schedule_due_retries() -> int:
    due = (
        TaskInstance.objects.dangerously_unscoped()
        .filter(state=TI.UP_FOR_RETRY, next_attempt_at__lte=timezone.now())
        .values_list("id", flat=True)
    )
    return engine.schedule_due_retries(list(due[:1000]))


def repair_runs() -> int:
    """Running runs that nothing moves any more; queued runs that could start."""
    stuck = engine.active_runs_needing_attention()
    for run_id in stuck:
        engine.unstick(run_id)
    workflows = set(
        WorkflowRun.objects.dangerously_unscoped()
        .filter(state=WorkflowRun.State.QUEUED)
        .values_list("workflow_id", flat=True)
    )
    for workflow_id in workflows:
        engine.start_queued_runs(workflow_id)
    return len(stuck)


def reconcile() -> dict[str, int]:
    done = {
        "expired_leases": expire_leases(),
        "timed_out": enforce_timeouts(),
        "timed_out_runs": time_out_runs(),
        "resent_messages": resend_lost_messages(),
        "due_retries": schedule_due_retries(),
        "repaired_runs": repair_runs(),
    }
    if any(done.values()):
        logger.info("reconciler: %s", done)
    return done
