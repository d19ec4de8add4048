"""A failing attempt ends its OpenLineage run with FAIL and the attempt's (masked) error,
the end of its log as the stack trace; a try that will be retried fails too, and its
retry is a run of its own. A try lost with its worker fails the same way."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from runs import engine as engine_module
from runs.models import TaskAttempt, TaskInstance
from runs.services import trigger_run
from tests.events.openlineage_support import by_job, enable, events_of, receiver, send_all
from tests.events.support import drain
from tests.notifications.servers import HttpReceiver
from tests.runs.engine.helpers import Engine

__all__ = ["receiver"]

pytestmark = pytest.mark.django_db(transaction=True)

FLAKY = {
    "name": "flaky",
    "tasks": {
        "load": {
            "type": "python",
            "callable": "runs.library:fail",
            "kwargs": {"message": "no such table: sales"},
            "retries": 1,
            "retry_delay": 0,
            "outlets": ["warehouse.sales"],
        },
    },
}


@pytest.fixture
def engine(transactional_db: None, settings: Any, receiver: HttpReceiver) -> Engine:
    settings.TASK_CONTINUE_SECONDS = 0
    enable(settings, receiver.url(""))
    return Engine(workers=None)


def test_each_failed_try_is_a_failed_run_with_its_error(
    engine: Engine, receiver: HttpReceiver
) -> None:
    workflow = engine.apply(FLAKY)
    with engine.scope():
        run = trigger_run(actor=engine.actor, workflow=workflow).run
    assert drain(engine, run).state == "failed"
    send_all()
    events = events_of(receiver.wait(4))
    assert by_job(events) == {"flaky.load": ["START", "FAIL", "START", "FAIL"]}
    first, second = events[:2], events[2:]
    assert first[0]["run"]["runId"] == first[1]["run"]["runId"]
    assert second[0]["run"]["runId"] == second[1]["run"]["runId"]
    assert first[0]["run"]["runId"] != second[0]["run"]["runId"]  # the retry: a new run
    for failed in (first[1], second[1]):
        error = failed["run"]["facets"]["errorMessage"]
        assert error["message"] == "exit code 1"
        assert error["programmingLanguage"] == "python"
        assert error["stackTrace"].endswith("RuntimeError: no such table: sales")
        # What the task was to write is still named (it wrote nothing: no update).
        assert [d["name"] for d in failed["outputs"]] == ["warehouse.sales"]
    assert "errorMessage" not in first[0]["run"]["facets"]


def test_a_lost_try_fails(engine: Engine, receiver: HttpReceiver) -> None:
    workflow = engine.apply({"name": "one", "tasks": {"a": {"type": "noop"}}})
    with engine.scope():
        run = trigger_run(actor=engine.actor, workflow=workflow).run
        ti = TaskInstance.objects.get(run=run)
    attempt = engine_module.claim(ti.pk, 1, worker="dead", pid=1)
    assert attempt is not None
    TaskAttempt.objects.dangerously_unscoped().filter(pk=attempt.pk).update(
        lease_expires_at=attempt.started_at - dt.timedelta(seconds=1)
    )
    assert engine_module.reconcile()["expired_leases"] == 1
    send_all()
    start, fail = events_of(receiver.wait(2))
    assert (start["eventType"], fail["eventType"]) == ("START", "FAIL")
    assert fail["run"]["facets"]["errorMessage"]["message"].startswith("lease expired")
