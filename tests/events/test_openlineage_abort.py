"""A running attempt that is stopped (its run cancelled, or its task marked by hand) ends
its OpenLineage run with ABORT; tasks that never started send nothing."""

from __future__ import annotations

from typing import Any

import pytest

from runs import engine as engine_module
from runs.models import TaskInstance, WorkflowRun
from runs.services import cancel_run, mark_task, trigger_run
from tests.events.openlineage_support import by_job, enable, events_of, receiver, send_all
from tests.notifications.servers import HttpReceiver
from tests.runs.engine.helpers import Engine

__all__ = ["receiver"]

pytestmark = pytest.mark.django_db(transaction=True)

SLOW = {
    "name": "slow",
    "tasks": {
        "work": {"type": "python", "callable": "runs.library:sleep", "inlets": ["raw.a"]},
        "after": {"type": "noop", "depends_on": ["work"]},
    },
}


@pytest.fixture
def engine(transactional_db: None, settings: Any, receiver: HttpReceiver) -> Engine:
    enable(settings, receiver.url(""))
    return Engine(workers=None)


def running(engine: Engine) -> WorkflowRun:
    """A run whose first task a worker has claimed (and runs)."""
    workflow = engine.apply(SLOW)
    with engine.scope():
        run = trigger_run(actor=engine.actor, workflow=workflow).run
        ti = TaskInstance.objects.get(run=run, task_id="work")
    assert engine_module.claim(ti.pk, 1, worker="w", pid=1) is not None
    return run


def test_a_cancelled_run_aborts_its_running_attempts(
    engine: Engine, receiver: HttpReceiver
) -> None:
    run = running(engine)
    with engine.scope():
        cancel_run(actor=engine.actor, run=run)
    send_all()
    events = events_of(receiver.wait(2))
    assert by_job(events) == {"slow.work": ["START", "ABORT"]}  # `after` never started
    start, abort = events
    assert start["run"]["runId"] == abort["run"]["runId"]
    assert [d["name"] for d in abort["inputs"]] == ["raw.a"]
    assert "errorMessage" not in abort["run"]["facets"]


def test_a_task_marked_by_hand_aborts_its_running_attempt(
    engine: Engine, receiver: HttpReceiver
) -> None:
    run = running(engine)
    with engine.scope():
        mark_task(actor=engine.actor, run=run, task_id="work", state="success")
    send_all()
    assert by_job(events_of(receiver.wait(2))) == {"slow.work": ["START", "ABORT"]}
