"""`wait_for` sensors. A check that says "not yet" ends the attempt `rescheduled`: the
instance goes back to `scheduled` with its next check time and holds no worker meanwhile
(the reconciler dispatches it when due). `timeout` counts from the first check of this
wait, across the rescheduled attempts, and fails the task without retries, as in Airflow."""

from __future__ import annotations

import datetime as dt
from collections.abc import Callable

from django.utils import timezone
from django.utils.dateparse import parse_date, parse_datetime

from runs.tasktypes.contract import Attempt, Outcome, TaskFailed
from runs.tasktypes.dataset_sensor import check_dataset
from runs.tasktypes.http import check_http
from runs.tasktypes.sql import check_sql

__all__ = ["run_wait_for"]

Check = Callable[[Attempt], tuple[bool, str]]


def check_time(a: Attempt) -> tuple[bool, str]:
    at = _moment(a.task["at"])
    now = timezone.now()
    if now >= at:
        return True, f"it is {now.isoformat()}, past {at.isoformat()}"
    return False, f"waiting until {at.isoformat()}"


def _moment(text: str) -> dt.datetime:
    value = parse_datetime(text.strip())
    if value is None and (day := parse_date(text.strip())) is not None:
        value = dt.datetime.combine(day, dt.time())
    if value is None:
        raise TaskFailed(
            f"at: {text!r} is not a date or time; expected ISO 8601 such as "
            "2026-01-31T06:00:00+01:00 (naive times are UTC)",
            retryable=False,
        )
    return value if timezone.is_aware(value) else value.replace(tzinfo=dt.UTC)


CHECKS: dict[str, Check] = {
    "time": check_time,
    "http": check_http,
    "sql": check_sql,
    "dataset": check_dataset,
}


def waiting_since(a: Attempt) -> dt.datetime:
    """When this wait began: the first check since the instance was last reset (kept on
    the instance by the engine), or now for the first check."""
    started: dt.datetime = a.ti.wait_started_at or timezone.now()
    return started


def run_wait_for(a: Attempt) -> Outcome:
    kind = a.task["kind"]
    if kind not in CHECKS:
        raise TaskFailed(
            f"wait_for kind {kind!r} cannot run here (runnable: {', '.join(CHECKS)})",
            retryable=False,
        )
    done, message = CHECKS[kind](a)
    a.log(message)
    if done:
        return Outcome("success")
    now = timezone.now()
    since = waiting_since(a)
    timeout = a.task.get("timeout")
    if timeout is not None and now - since >= dt.timedelta(seconds=timeout):
        return Outcome(
            "failed",
            error=f"sensor timed out after {timeout}s of waiting; last check: {message}",
            retryable=False,
        )
    next_at = now + dt.timedelta(seconds=a.task["poke_interval"])
    if kind == "time":
        next_at = min(next_at, _moment(a.task["at"]))
    if timeout is not None:
        next_at = min(next_at, since + dt.timedelta(seconds=timeout))
    a.log(f"not yet; next check at {next_at.isoformat()}")
    return Outcome("rescheduled", reschedule_at=next_at)
