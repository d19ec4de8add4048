"""A backfill on real workers: 30 daily intervals with max_active_runs 3 never have more
than 3 runs going at once (sampled while it runs, and checked from the runs' start and end
times afterwards), all 30 finish, and a scheduled run of the same workflow (max_active_runs
1) starts at once beside them. The backfill moves on by itself: each run that ends feeds
the next interval."""

from __future__ import annotations

import datetime as dt
import time
from collections.abc import Iterator
from typing import Any

import pytest

from orchestrator.actors import Actor
from runs import backfills
from runs import engine as run_engine
from runs.models import Backfill, WorkflowRun
from runs.periodic import ensure_periodic_tasks
from tests.runs.engine.helpers import Engine
from tests.workers import Workers, publishing_to, wait_for

# Tests look across tenants: every use says so.
unscoped_runs = WorkflowRun.objects.dangerously_unscoped

pytestmark = pytest.mark.slow

SPEC: dict[str, Any] = {
    "name": "daily",
    "schedule": {"cron": "0 2 * * *", "timezone": "America/New_York"},
    "max_active_runs": 1,
    "tasks": {
        "work": {"type": "shell", "command": ["sleep", "0.2"]},
        "done": {"type": "noop", "depends_on": ["work"]},
    },
}


@pytest.fixture(scope="module")
def workers(django_db_setup: None, django_db_blocker: Any) -> Iterator[Workers]:
    """Two workers of two slots: room for the backfill's 3 runs and the scheduled one."""
    with django_db_blocker.unblock():
        pool = Workers(count=2, concurrency=2)
        pool.start()
    try:
        with publishing_to(pool):
            yield pool
    finally:
        pool.stop()


@pytest.fixture
def engine(transactional_db: None, workers: Workers) -> Engine:
    ensure_periodic_tasks()
    return Engine(workers)


def most_at_once(spans: list[tuple[Any, Any]]) -> int:
    """The largest number of [start, end) spans that overlap at one instant."""
    events = sorted([(s, 1) for s, _ in spans] + [(e, -1) for _, e in spans])  # ends first
    level = peak = 0
    for _, step in events:
        level += step
        peak = max(peak, level)
    return peak


def test_it_runs_30_intervals_3_at_a_time_beside_a_scheduled_run(engine: Engine) -> None:
    workflow = engine.apply(SPEC)
    with engine.scope():
        backfill = backfills.create_backfill(
            actor=engine.actor,
            workflow=workflow,
            start="2026-01-01",
            end="2026-01-30",
            max_active_runs=3,
        )
    assert backfill.total == 30
    # The tick's run of a later interval, made as the scheduler makes it.
    start = dt.datetime(2026, 2, 5, 7, tzinfo=dt.UTC)
    scheduled = run_engine.create_run(
        workflow=workflow,
        params={},
        source="schedule",
        user_id=None,
        logical_date=start,
        interval=(start, start + dt.timedelta(days=1)),
    )
    assert run_engine.start_queued_runs(workflow.pk) == [scheduled.pk]
    peak = 0

    def completed() -> bool:
        nonlocal peak
        going = unscoped_runs().filter(backfill=backfill, state="running").count()
        peak = max(peak, going)
        assert going <= 3
        state = Backfill.objects.dangerously_unscoped().get(pk=backfill.pk).state
        return state == "completed"

    wait_for(completed, 120, "the backfill to complete", engine.workers)
    assert peak >= 2  # it did run several at once
    made = list(unscoped_runs().filter(backfill=backfill).order_by("logical_date"))
    assert len(made) == 30
    assert {r.state for r in made} == {"success"}
    assert [r.logical_date.date() for r in made] == [dt.date(2026, 1, day) for day in range(1, 31)]
    assert most_at_once([(r.started_at, r.ended_at) for r in made]) <= 3
    scheduled.refresh_from_db()
    assert scheduled.backfill_id is None
    assert scheduled.started_at is not None
    assert made[3].started_at is not None
    assert scheduled.started_at < made[3].started_at  # it did not wait for the backfill
    wait_for(
        lambda: unscoped_runs().get(pk=scheduled.pk).state == "success",
        30,
        "the scheduled run",
    )
    backfill.refresh_from_db()
    progress = backfills.progress(backfill)
    assert progress["succeeded"] == 30
    assert progress["pending"] == 0


def test_the_reconciler_feeds_a_backfill_whose_hook_was_lost(engine: Engine) -> None:
    """A backfill left with free slots and nothing running (as after a lost on-commit
    hook) moves on at the next reconcile, which the beat runs every few seconds."""
    workflow = engine.apply(SPEC)
    with engine.scope():
        backfill = backfills.create_backfill(
            actor=engine.actor, workflow=workflow, start="2026-01-01", end="2026-01-03"
        )
        backfills.pause_backfill(actor=Actor.cli(), backfill=backfill)
    wait_for(
        lambda: (
            not unscoped_runs().filter(backfill=backfill, state__in=["queued", "running"]).exists()
        ),
        30,
        "the first run",
    )
    # Resumed behind the feeder's back: only the reconciler can move it now.
    Backfill.objects.dangerously_unscoped().filter(pk=backfill.pk).update(state="running")
    started = time.monotonic()
    wait_for(
        lambda: Backfill.objects.dangerously_unscoped().get(pk=backfill.pk).state == "completed",
        60,
        "the reconciler to complete the backfill",
        engine.workers,
    )
    assert time.monotonic() - started < 60
    assert unscoped_runs().filter(backfill=backfill, state="success").count() == 3
