"""Finishing tries: how an attempt ended (an `Outcome`) becomes its instance's new state
(success, failed, a retry after a backoff, a sensor's next check, a lost try given back),
and the run moves on from there. Every step is a compare-and-set, so a late worker or a
second reconciler never settles a try twice."""

from __future__ import annotations

import datetime as dt
import random
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import connection, transaction
from django.db.models import Model
from django.utils import timezone

from orchestrator import fastsql, metrics
from orchestrator.fastsql import quote, statement
from runs.engine import datasets, events, lineage, mapping
from runs.engine.progress import (
    advance,
    dispatch,
    downstream_pending,
    lock_run,
    measure_try_end,
    unmoved_by_success,
)
from runs.graph import graph_for
from runs.models import TaskAttempt, TaskInstance
from runs.tasktypes.contract import Outcome

__all__ = ["finish", "finish_inline", "retry_delay"]

TI = TaskInstance.State


def finish_inline(attempt_ids: list[int]) -> int:
    """Record a batch of INLINE_TYPES attempts as successful and move their runs on: per
    run, one lock, one update of the attempts and one of the instances, one pass over the
    downstream. Returns how many were recorded (attempts settled elsewhere are skipped)."""
    now = timezone.now()
    done = 0
    with transaction.atomic():
        rows = list(
            TaskAttempt.objects.dangerously_unscoped()
            .filter(pk__in=attempt_ids)
            .values_list(
                "id",
                "task_instance_id",
                "try_number",
                "task_instance__run_id",
                "tenant_id",
                "task_instance__task_type",
                "started_at",
            )
        )
        by_run: dict[int, list[tuple[int, int, int]]] = {}
        measured = {row[0]: row[4:] for row in rows}
        for attempt_id, ti_id, try_number, run_id, *_ in rows:
            by_run.setdefault(run_id, []).append((attempt_id, ti_id, try_number))
        for run_id in sorted(by_run):  # one lock order: no deadlock between two batches
            run = lock_run(run_id)
            items = by_run[run_id]
            live = set(
                TaskAttempt.objects.dangerously_unscoped()
                .filter(pk__in=[a for a, _, _ in items], state=TaskAttempt.State.RUNNING)
                .values_list("id", flat=True)
            )
            items = [item for item in items if item[0] in live]
            if not items:
                continue
            TaskAttempt.objects.dangerously_unscoped().filter(pk__in=live).update(
                state=TaskAttempt.State.SUCCESS, ended_at=now
            )
            lineage.ended(
                TaskAttempt.State.SUCCESS,
                TaskAttempt.objects.dangerously_unscoped().filter(pk__in=live),
                now,
            )
            for attempt_id in live:
                measure_try_end(*measured[attempt_id], TaskAttempt.State.SUCCESS, now)
            tries = {ti_id: try_number for _, ti_id, try_number in items}
            running = (
                TaskInstance.objects.dangerously_unscoped()
                .filter(pk__in=list(tries), state=TI.RUNNING)
                .values_list("id", "task_id", "try_number", "map_index")
            )
            finished = [
                (ti_id, task_id, map_index)
                for ti_id, task_id, try_number, map_index in running
                if tries[ti_id] == try_number
            ]
            TaskInstance.objects.dangerously_unscoped().filter(
                pk__in=[ti_id for ti_id, _, _ in finished], state=TI.RUNNING
            ).update(state=TI.SUCCESS, ended_at=now, next_attempt_at=None, result=None)
            done += len(finished)
            graph = graph_for(run.version_id)
            datasets.record_outlets(run, graph, {t: None for _, t, _ in finished}, now)
            # A mapped task moves its downstream once its last instance has finished.
            known = {task_id: str(TI.SUCCESS) for _, task_id, index in finished if index < 0}
            for task_id in {task_id for _, task_id, index in finished if index >= 0}:
                if (group := mapping.finished_group(run.pk, task_id)) is not None:
                    known[task_id] = group
            candidates = downstream_pending(run, graph, list(known))
            if all(state == TI.SUCCESS for state in known.values()):
                candidates = [c for c in candidates if not unmoved_by_success(c, graph)]
            advance(run, graph, candidates, known=known)
    return done


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
            attempt = (
                TaskAttempt.objects.dangerously_unscoped()
                .select_related("task_instance")
                .get(pk=attempt_id)
            )
        run = lock_run(attempt.task_instance.run_id)
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
            changes["wait_started_at"] = Unless(attempt.started_at)
        elif not outcome.lost:  # a lost try goes on waiting where it was
            changes["wait_started_at"] = None
        if new not in (TI.UP_FOR_RETRY, TI.SCHEDULED):
            changes["ended_at"] = now
        if outcome.state == TI.SUCCESS:
            changes["result"] = outcome.result
        ended = {
            "state": outcome.state,
            "ended_at": now,
            "exit_code": outcome.exit_code,
            "error": outcome.error[:10000],
            "rendered": outcome.rendered,
            "uses": outcome.uses,
        }
        settled, moved_on = record_end(attempt_id, ended, ti.pk, attempt.try_number, changes)
        if not settled:
            return None
        lineage.ended(outcome.state, [attempt], now)
        measure_try_end(
            attempt.tenant_id,
            attempt.task_instance.task_type,
            attempt.started_at,
            outcome.state,
            now,
        )
        if outcome.lost:
            metrics.inc("orc_task_lost_tries", tenant=attempt.tenant_id)
        if not moved_on:
            return None
        if new == TI.SUCCESS:
            datasets.record_outlets(run, graph, {ti.task_id: outcome.result}, now)
        if outcome.state == TI.FAILED and not (outcome.lost and new == TI.UP_FOR_RETRY):
            events.task_failed(
                run,
                graph,
                ti,
                attempt_id=attempt_id,
                error=outcome.error,
                exit_code=outcome.exit_code,
                next_try_at=next_at if new == TI.UP_FOR_RETRY else None,
            )
        if new in (TI.UP_FOR_RETRY, TI.SCHEDULED):
            dispatch(run, graph)  # its slot is free until the retry or the next check is due
            return new
        moved = new
        if ti.map_index >= 0:
            # One instance of a mapped task: its downstream moves when the group has ended.
            group = mapping.finished_group(run.pk, ti.task_id)
            if group is None:
                dispatch(run, graph)  # its slot is free for a sibling
                return new
            moved = group
        candidates = downstream_pending(run, graph, [ti.task_id])
        if moved == TI.SUCCESS:
            candidates = [c for c in candidates if not unmoved_by_success(c, graph)]
        advance(run, graph, candidates, known={ti.task_id: moved})
        return new


@dataclass(frozen=True)
class Unless:
    """A column's new value unless it has one already (`COALESCE(column, value)`)."""

    value: Any


@statement("finish_try")
def record_end(
    attempt_id: int,
    ended: dict[str, Any],
    ti_id: int,
    try_number: int,
    changes: dict[str, Any],
) -> tuple[bool, bool]:
    """The attempt's end (`ended`, if it is still running) and its instance's new state
    (`changes`, if it still runs that try and the attempt was settled here): two
    compare-and-sets. Returns (attempt settled, instance moved). On PostgreSQL in one
    statement (the second a CTE that sees the first's RETURNING), a prepared one; values
    as the fields would save them."""
    attempt_set, attempt_params = _assignments(TaskAttempt, ended)
    ti_set, ti_params = _assignments(TaskInstance, changes)
    attempts, instances = quote(TaskAttempt._meta.db_table), quote(TaskInstance._meta.db_table)
    settle = (
        f"UPDATE {attempts} SET {attempt_set} WHERE {quote('id')} = %s "  # noqa: S608
        f"AND {quote('state')} = %s"
    )
    settle_params = [*attempt_params, attempt_id, TaskAttempt.State.RUNNING]
    move = (
        f"UPDATE {instances} SET {ti_set} WHERE {quote('id')} = %s "  # noqa: S608
        f"AND {quote('state')} = %s AND {quote('try_number')} = %s"
    )
    move_params = [*ti_params, ti_id, TI.RUNNING, try_number]
    with connection.cursor() as cursor:
        if connection.vendor == "postgresql":
            fastsql.run(
                cursor,
                f"WITH settled AS ({settle} RETURNING 1), moved AS ({move} "  # noqa: S608
                "AND EXISTS (SELECT 1 FROM settled) RETURNING 1) "
                "SELECT (SELECT COUNT(*) FROM settled), (SELECT COUNT(*) FROM moved)",
                [*settle_params, *move_params],
            )
            settled, moved = cursor.fetchone()
            return settled == 1, moved == 1
        cursor.execute(settle, settle_params)
        if cursor.rowcount != 1:
            return False, False
        cursor.execute(move, move_params)
        return True, cursor.rowcount == 1


def _assignments(model: type[Model], values: dict[str, Any]) -> tuple[str, list[Any]]:
    """`col = %s, ...` and the parameters, each value as its field prepares it for saving."""
    sql, params = [], []
    for name, value in values.items():
        field = model._meta.get_field(name)
        column = quote(str(field.column))  # type: ignore[union-attr]
        if isinstance(value, Unless):
            sql.append(f"{column} = COALESCE({column}, %s)")
            value = value.value
        else:
            sql.append(f"{column} = %s")
        params.append(field.get_db_prep_save(value, connection))  # type: ignore[union-attr]
    return ", ".join(sql), params
