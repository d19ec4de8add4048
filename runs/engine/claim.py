"""Claiming tries: a worker takes a queued try with a compare-and-set UPDATE (a duplicate
message, a stale try or a cancelled instance claims nothing), records its attempt with a
lease, and renews the lease while the task runs."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.utils import timezone

from orchestrator import fastsql, metrics
from orchestrator.fastsql import Columns, Insert, quote, statement
from runs.engine import lineage
from runs.engine.messaging import INLINE_TYPES
from runs.models import TaskAttempt, TaskInstance

__all__ = ["claim", "claim_many", "renew_lease"]

TI = TaskInstance.State


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


# What the claim's RETURNING hands back of each instance, in the model's field order (as
# Columns.build wants): enough for `finish` to record a try without reading it again.
_CLAIMED = Columns(
    TaskInstance,
    only=(
        "tenant_id",
        "run_id",
        "task_id",
        "map_index",
        "task_type",
        "state",
        "try_number",
        "max_tries",
        "lost_tries",
        "queued_at",
        "started_at",
    ),
)
_RETURNING = ", ".join(quote(str(f.column)) for f in _CLAIMED.fields)


@statement("claim_tries")
def claim_many(
    tries: list[tuple[int, int]],
    *,
    worker: str,
    pid: int,
    token: str,
    any_type: bool = False,
) -> list[TaskAttempt]:
    """Claim tries and record their attempts (one statement on PostgreSQL, else an update
    and an insert in a transaction); tries no longer queued (or, unless `any_type`, not of
    INLINE_TYPES) are left out. A retry after a lost answer returns the attempts the first
    call created under `token`."""
    now = timezone.now()
    pairs = ", ".join(["(%s, %s)"] * len(tries))
    types = sorted(INLINE_TYPES)
    only_inline = "" if any_type else f" AND task_type IN ({', '.join(['%s'] * len(types))})"
    update = (
        f"UPDATE {TaskInstance._meta.db_table} SET state = %s, started_at = %s "  # noqa: S608
        f"WHERE (id, try_number) IN ({pairs}) AND state = %s{only_inline} "
        f"RETURNING {_RETURNING}"
    )
    params: list[Any] = [
        TI.RUNNING,
        now,
        *[v for t in tries for v in t],
        TI.QUEUED,
        *([] if any_type else types),
    ]
    lease = now + dt.timedelta(seconds=settings.TASK_LEASE_SECONDS)

    def attempt(ti: TaskInstance) -> TaskAttempt:
        return TaskAttempt(
            tenant_id=ti.tenant_id,
            task_instance=ti,  # as claimed: `finish` needs no fresh read of it
            try_number=ti.try_number,
            worker=worker,
            pid=pid,
            claim_token=token,
            started_at=now,
            lease_expires_at=lease,
        )

    if _in_one_statement():
        with connection.cursor() as cursor:
            attempts = _claim_and_record(cursor, update, params, attempt)
    else:
        with transaction.atomic(), connection.cursor() as cursor:
            cursor.execute(update, params)
            claimed = [_CLAIMED.build(row) for row in cursor.fetchall()]
            attempts = TaskAttempt.objects.dangerously_unscoped().bulk_create(
                [attempt(ti) for ti in claimed]
            )
            lineage.started(attempts, [ti.task_type for ti in claimed])
    if not attempts:
        if not token:
            return []
        return list(
            TaskAttempt.objects.dangerously_unscoped().filter(
                claim_token=token,
                state=TaskAttempt.State.RUNNING,
                task_instance_id__in=[ti_id for ti_id, _ in tries],
            )
        )
    for ti in (a.task_instance for a in attempts):
        tenant_id, task_type = ti.tenant_id, ti.task_type
        metrics.inc("orc_task_attempts_started", tenant=tenant_id, task_type=task_type)
        if ti.queued_at is not None:
            metrics.observe(
                "orc_task_queued_seconds",
                max(0.0, (now - ti.queued_at).total_seconds()),
                tenant=tenant_id,
                task_type=task_type,
            )
    return attempts


# The attempt's columns the claimed instance gives (the others are the same for every try).
_FROM_CLAIMED = {"tenant_id": "tenant_id", "task_instance_id": "id", "try_number": "try_number"}
_ATTEMPT = Insert(TaskAttempt)


def _in_one_statement() -> bool:
    """PostgreSQL claims and records in one statement. In two, in a transaction: on other
    databases, inside a caller's transaction (which one statement would not commit), and
    when the claim also writes OpenLineage's START events."""
    return (
        connection.vendor == "postgresql"
        and not connection.in_atomic_block
        and not settings.OPENLINEAGE_ENABLED
    )


def _claim_and_record(
    cursor: Any,
    update: str,
    params: list[Any],
    attempt: Callable[[TaskInstance], TaskAttempt],
) -> list[TaskAttempt]:
    """The claim's UPDATE and the attempts' INSERT in one statement (one round trip and
    no transaction of its own: PostgreSQL runs a statement and its CTEs atomically), the
    attempts built as `bulk_create` would have left them."""
    template = attempt(TaskInstance(tenant_id=0, try_number=0))
    columns, values, constants = [], [], []
    for field in _ATTEMPT.fields:
        columns.append(quote(str(field.column)))
        if field.attname in _FROM_CLAIMED:
            values.append(f"claimed.{quote(_FROM_CLAIMED[field.attname])}")
        else:
            values.append("%s")
            constants.append(field.get_db_prep_save(field.pre_save(template, add=True), connection))
    made = quote(TaskAttempt._meta.db_table)
    fastsql.run(
        cursor,
        f"WITH claimed AS ({update}), made AS (INSERT INTO {made} ({', '.join(columns)}) "  # noqa: S608
        f"SELECT {', '.join(values)} FROM claimed RETURNING id, task_instance_id) "
        f"SELECT made.id, {', '.join(f'claimed.{c}' for c in _RETURNING.split(', '))} "
        "FROM claimed JOIN made ON made.task_instance_id = claimed.id",
        [*params, *constants],
    )
    attempts = []
    for row in cursor.fetchall():
        made_attempt = attempt(_CLAIMED.build(row, 1))
        Insert.saved(made_attempt, row[0])
        attempts.append(made_attempt)
    return attempts


def renew_lease(attempt_id: int) -> bool:
    """Extend the lease; False when the attempt is no longer running (cancelled, expired)."""
    expires = timezone.now() + dt.timedelta(seconds=settings.TASK_LEASE_SECONDS)
    return (
        TaskAttempt.objects.dangerously_unscoped()
        .filter(pk=attempt_id, state=TaskAttempt.State.RUNNING)
        .update(lease_expires_at=expires)
        == 1
    )
