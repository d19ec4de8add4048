"""With OpenLineage configured, every task attempt becomes an OpenLineage run: START when
it is claimed and COMPLETE when it succeeds (or is skipped), named after its tenant,
workflow and task, with the workflow run as its parent and its `inlets` and `outlets` as
inputs and outputs; the events reach the endpoint (a stand-in for Marquez) after commit,
each valid against the OpenLineage schema."""

from __future__ import annotations

import uuid
from typing import Any

import pytest
from django.db import transaction

from runs import engine as engine_module
from runs import worker
from runs.models import LineageEvent, TaskAttempt, TaskInstance
from runs.services import trigger_run
from tests.events.openlineage_support import by_job, enable, events_of, receiver, send_all
from tests.events.support import drain
from tests.notifications.servers import HttpReceiver
from tests.runs.engine.helpers import Engine

__all__ = ["receiver"]

pytestmark = pytest.mark.django_db(transaction=True)

SALES = {
    "name": "sales",
    "tasks": {
        "extract": {
            "type": "noop",
            "inlets": ["raw.orders", {"tenant": "globex", "name": "crm.customers"}],
            "outlets": ["staging.orders"],
        },
        "load": {
            "type": "python",
            "callable": "runs.library:echo",
            "depends_on": ["extract"],
            "inlets": ["staging.orders"],
            "outlets": ["warehouse.orders", "warehouse.totals"],
        },
        "maybe": {"type": "python", "callable": "runs.library:skip", "depends_on": ["load"]},
    },
}


def datasets(items: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(item["namespace"], item["name"]) for item in items]


@pytest.fixture
def engine(transactional_db: None, settings: Any, receiver: HttpReceiver) -> Engine:
    settings.TASK_CONTINUE_SECONDS = 0
    enable(settings, receiver.url(""))
    return Engine(workers=None)


def test_it_sends_start_and_complete_for_each_task(engine: Engine, receiver: HttpReceiver) -> None:
    workflow = engine.apply(SALES)
    with engine.scope():
        run = trigger_run(actor=engine.actor, workflow=workflow).run
    assert drain(engine, run).state == "success"
    assert send_all() == 6
    events = events_of(receiver.wait(6))
    assert by_job(events) == {
        "sales.extract": ["START", "COMPLETE"],
        "sales.load": ["START", "COMPLETE"],
        "sales.maybe": ["START", "COMPLETE"],  # skipped: the attempt completed
    }
    assert {e["job"]["namespace"] for e in events} == {"orchestrator/eng"}
    assert {e["producer"] for e in events} == {"urn:orchestrator:0.1.0"}
    extract = [e for e in events if e["job"]["name"] == "sales.extract"]
    load = [e for e in events if e["job"]["name"] == "sales.load"]
    for event in extract:
        assert datasets(event["inputs"]) == [
            ("orchestrator://eng", "raw.orders"),
            ("orchestrator://globex", "crm.customers"),  # in its owner's namespace
        ]
        assert datasets(event["outputs"]) == [("orchestrator://eng", "staging.orders")]
    assert datasets(load[0]["inputs"]) == [("orchestrator://eng", "staging.orders")]
    assert datasets(load[0]["outputs"]) == [
        ("orchestrator://eng", "warehouse.orders"),
        ("orchestrator://eng", "warehouse.totals"),
    ]
    assert datasets(events[-1]["inputs"]) == datasets(events[-1]["outputs"]) == []  # maybe
    # One OpenLineage run per attempt (START and its end share it), under one parent: the
    # workflow run, as a job of its own in the same namespace.
    assert len({e["run"]["runId"] for e in extract}) == 1
    assert len({e["run"]["runId"] for e in events}) == 3
    parents = [e["run"]["facets"]["parent"] for e in events]
    assert {p["job"]["name"] for p in parents} == {"sales"}
    assert {p["job"]["namespace"] for p in parents} == {"orchestrator/eng"}
    assert len({p["run"]["runId"] for p in parents}) == 1
    assert "errorMessage" not in extract[1]["run"]["facets"]
    # The event times are the attempt's start and end.
    with engine.scope():
        attempt = TaskAttempt.objects.get(task_instance__run=run, task_instance__task_id="load")
    assert load[0]["eventTime"] == attempt.started_at.isoformat()
    assert load[1]["eventTime"] == attempt.ended_at.isoformat()
    # Every row sent once, recorded so.
    rows = LineageEvent.objects.dangerously_unscoped()
    assert set(rows.values_list("status", "attempts")) == {("sent", 1)}
    assert send_all() == 0


def test_the_run_ids_are_uuid7_and_stable(engine: Engine, receiver: HttpReceiver) -> None:
    workflow = engine.apply({"name": "one", "tasks": {"a": {"type": "noop"}}})
    with engine.scope():
        run = trigger_run(actor=engine.actor, workflow=workflow).run
    drain(engine, run)
    send_all()
    start, complete = events_of(receiver.wait(2))
    assert start["run"]["runId"] == complete["run"]["runId"]
    assert uuid.UUID(start["run"]["runId"]).version == 7
    # Sent again (a lapsed claim), the event names the same run.
    LineageEvent.objects.dangerously_unscoped().update(status="pending", next_attempt_at=None)
    send_all()
    again = events_of(receiver.wait(4))[2:]
    assert [e["run"]["runId"] for e in again] == [start["run"]["runId"]] * 2
    assert again[0]["run"]["facets"]["parent"] == start["run"]["facets"]["parent"]


def test_an_inline_batch_completes_each_task(engine: Engine, receiver: HttpReceiver) -> None:
    fan = {f"n{i}": {"type": "noop", "outlets": [f"part.{i}"]} for i in range(3)}
    workflow = engine.apply({"name": "fan", "tasks": fan})
    with engine.scope():
        run = trigger_run(actor=engine.actor, workflow=workflow).run
        tries = list(
            TaskInstance.objects.filter(run=run, state="queued").values_list("id", "try_number")
        )
    assert worker.execute_batch(tries) == 3  # one claim, one finish for all three
    send_all()
    events = events_of(receiver.wait(6))
    assert by_job(events) == {f"fan.n{i}": ["START", "COMPLETE"] for i in range(3)}
    assert sorted({datasets(e["outputs"])[0][1] for e in events}) == ["part.0", "part.1", "part.2"]


def test_the_sender_hears_of_new_events_only_after_commit(engine: Engine) -> None:
    heard: list[list[int]] = []
    stop = engine_module.on_lineage(heard.append)
    try:
        workflow = engine.apply({"name": "one", "tasks": {"a": {"type": "noop"}}})
        with engine.scope():
            run = trigger_run(actor=engine.actor, workflow=workflow).run
            ti = TaskInstance.objects.get(run=run)
        with transaction.atomic():
            attempt = engine_module.claim(ti.pk, 1, worker="w", pid=1)
            assert attempt is not None
            assert heard == []
        assert heard == [[attempt.pk]]
    finally:
        stop()
    [row] = LineageEvent.objects.dangerously_unscoped().all()
    assert (row.kind, row.attempt_id, row.tenant_id) == ("START", attempt.pk, engine.tenant.pk)
    assert row.time == attempt.started_at
