"""The scheduler for real: two beat processes send the tick every second to real workers;
a minutely schedule that missed its last firings (catch-up `all`) gets exactly one run per
minute, each run rendering its own `ds` and finishing."""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterator
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.utils import timezone

from orchestrator import services
from orchestrator.actors import Actor
from orchestrator.context import tenant_scope
from runs.models import TaskInstance, WorkflowRun
from runs.periodic import ensure_periodic_tasks
from tests.workers import Workers, publishing_to, wait_for
from workflows import cron
from workflows.models import Schedule
from workflows.services import apply_workflow

pytestmark = pytest.mark.slow
MINUTE = dt.timedelta(minutes=1)


@pytest.fixture(scope="module")
def two_beats(django_db_setup: None, django_db_blocker: Any) -> Iterator[Workers]:
    with django_db_blocker.unblock():
        pool = Workers(count=2, concurrency=2)
        pool.start()
        pool.start_beat()  # a second beat: every tick is sent twice
    try:
        with publishing_to(pool):
            yield pool
    finally:
        pool.stop()


def test_it_makes_one_run_per_minute_with_two_beats(
    transactional_db: None, two_beats: Workers
) -> None:
    ensure_periodic_tasks()
    owner = User.objects.create_user("owner")
    tenant = services.create_tenant(actor=Actor.cli(), slug="beat", name="Beat", owner=owner)
    spec = {
        "name": "minutely",
        "schedule": {"cron": "* * * * *", "timezone": "UTC", "catchup": "all"},
        "tasks": {"say": {"type": "shell", "command": ["echo", "{{ ds }} {{ logical_date }}"]}},
    }
    with tenant_scope([tenant]):
        workflow = apply_workflow(actor=Actor.cli(), tenant=tenant, data=spec).workflow
    # As if the platform had been down: the last three firings were missed.
    newest = cron.previous_fire("* * * * *", "UTC", timezone.now())
    Schedule.objects.dangerously_unscoped().filter(workflow=workflow).update(
        handled_until=newest - 3 * MINUTE, next_run_at=newest - 2 * MINUTE
    )
    runs = WorkflowRun.objects.dangerously_unscoped().filter(workflow=workflow)

    def all_finished() -> bool:
        states = list(runs.values_list("state", flat=True))
        return len(states) >= 3 and all(s in WorkflowRun.FINISHED for s in states)

    wait_for(all_finished, 60, "the caught-up runs to finish", two_beats)
    made = list(runs.order_by("logical_date").values_list("logical_date", flat=True))
    # One run per minute from the first missed firing on, none twice (a firing may have come
    # on time since: it is in the list too).
    start = newest - 3 * MINUTE
    assert made == [start + i * MINUTE for i in range(len(made))]
    assert len(made) in (3, 4)
    assert set(runs.filter(logical_date__lt=newest).values_list("state", flat=True)) == {"success"}
    results = TaskInstance.objects.dangerously_unscoped().filter(run__workflow=workflow)
    first = results.order_by("run__logical_date").values_list("result", flat=True).first()
    stamp = newest - 3 * MINUTE
    assert first == f"{stamp:%Y-%m-%d} {stamp}"
