"""A sensor's check that says "not yet" ends its attempt `rescheduled`: neither complete
nor failed, so it sends nothing, and a sensor's START waits for the check that ends the
wait. Each START sent is closed once."""

from __future__ import annotations

from typing import Any

import pytest

from runs import engine as engine_module
from runs import worker
from runs.models import LineageEvent, TaskAttempt, TaskInstance, WorkflowRun
from runs.services import trigger_run
from tests.events.openlineage_support import by_job, enable, events_of, receiver, send_all
from tests.events.support import drain
from tests.notifications.servers import HttpReceiver
from tests.runs.engine.helpers import Engine

__all__ = ["receiver"]

pytestmark = pytest.mark.django_db(transaction=True)

WAITER = {
    "name": "waiter",
    "tasks": {
        "wait": {
            "type": "wait_for",
            "kind": "dataset",
            "dataset": "warehouse.sales",
            "poke_interval": 1,
            "inlets": ["warehouse.sales"],
        },
    },
}
WRITER = {"name": "sales", "tasks": {"write": {"type": "noop", "outlets": ["warehouse.sales"]}}}


@pytest.fixture
def engine(transactional_db: None, settings: Any, receiver: HttpReceiver) -> Engine:
    settings.TASK_CONTINUE_SECONDS = 0
    enable(settings, receiver.url(""))
    return Engine(workers=None)


def check(engine: Engine, run: WorkflowRun) -> str:
    """Run the sensor's next check now; returns its instance's state after it."""
    with engine.scope():
        TaskInstance.objects.filter(run=run, state="scheduled").update(next_attempt_at=None)
    engine_module.reconcile()
    with engine.scope():
        ti = TaskInstance.objects.get(run=run)
    assert ti.state == "queued"
    return str(worker.execute(ti.pk, ti.try_number))


def test_only_the_check_that_ends_the_wait_is_sent(engine: Engine, receiver: HttpReceiver) -> None:
    workflow = engine.apply(WAITER)
    with engine.scope():
        run = trigger_run(actor=engine.actor, workflow=workflow).run
        ti = TaskInstance.objects.get(run=run)
    assert worker.execute(ti.pk, 1) == "scheduled"  # not yet
    assert check(engine, run) == "scheduled"  # not yet
    assert LineageEvent.objects.dangerously_unscoped().count() == 0
    writer = engine.apply(WRITER)
    with engine.scope():
        drain(engine, trigger_run(actor=engine.actor, workflow=writer).run)
    assert check(engine, run) == "success"
    send_all()
    events = events_of(receiver.wait(4))
    assert by_job(events) == {
        "sales.write": ["START", "COMPLETE"],
        "waiter.wait": ["START", "COMPLETE"],
    }
    with engine.scope():
        last = TaskAttempt.objects.filter(task_instance__run=run).order_by("try_number").last()
    assert last is not None
    assert last.try_number == 3
    start, complete = events[2:]
    assert start["eventTime"] == last.started_at.isoformat()
    assert complete["eventTime"] == last.ended_at.isoformat()
    assert [d["name"] for d in start["inputs"]] == ["warehouse.sales"]
