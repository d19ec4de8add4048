"""A workflow scheduled on datasets runs once every one of them was updated since its last
dataset run (Airflow's semantics): a two-dataset schedule fires only once both were
updated, once per pair of updates (an input updated twice in between counts once, and
both updates are listed on the run), and never twice for one pair, also when the two
updates are dispatched at the same moment on PostgreSQL."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from django.db import connection

from events.dispatch import dispatch_one
from events.models import DatasetQueue
from orchestrator.context import tenant_scope
from runs.models import DatasetUpdate, Event, WorkflowRun
from tests.events.support import dispatch_pending, drain, run_once
from tests.runs.engine.helpers import Engine

pytestmark = pytest.mark.django_db(transaction=True)


def producer(name: str, dataset: str) -> dict[str, Any]:
    return {"name": name, "tasks": {"write": {"type": "noop", "outlets": [dataset]}}}


CONSUMER = {
    "name": "report",
    "schedule": {"datasets": ["warehouse.sales", "warehouse.stock"]},
    "tasks": {
        "build": {
            "type": "python",
            "callable": "runs.library:echo",
            "kwargs": {"value": "{{ event.data.updates | map(attribute='dataset') | list }}"},
        }
    },
}


@pytest.fixture
def engine(transactional_db: None, settings: Any) -> Engine:
    settings.TASK_CONTINUE_SECONDS = 0
    return Engine(workers=None)


def dataset_runs(engine: Engine) -> list[WorkflowRun]:
    with engine.scope():
        return list(
            WorkflowRun.objects.filter(workflow__name="report")
            .order_by("id")
            .prefetch_related("dataset_updates__dataset")
        )


def test_it_fires_only_once_both_datasets_were_updated(engine: Engine) -> None:
    sales = engine.apply(producer("sales", "warehouse.sales"))
    stock = engine.apply(producer("stock", "warehouse.stock"))
    engine.apply(CONSUMER)

    run_once(engine, sales)
    assert dispatch_pending() == 0
    run_once(engine, sales)  # the same input again: still waiting for the other
    assert dispatch_pending() == 0
    assert dataset_runs(engine) == []

    run_once(engine, stock)
    assert dispatch_pending() == 1
    [run] = dataset_runs(engine)
    assert run.trigger_source == "dataset"
    consumed = sorted((u.dataset.name, u.run.workflow.name) for u in run.dataset_updates.all())
    assert consumed == [
        ("warehouse.sales", "sales"),
        ("warehouse.sales", "sales"),
        ("warehouse.stock", "stock"),
    ]
    assert run.event is not None
    assert run.event["type"] == "datasets.updated"
    assert [u["dataset"] for u in run.event["data"]["updates"]] == [
        "warehouse.sales",
        "warehouse.sales",
        "warehouse.stock",
    ]
    drain(engine, run)
    assert run.state == "success"
    with engine.scope():
        result = run.task_instances.get(task_id="build").result
    assert "warehouse.stock" in str(result)
    with tenant_scope([engine.tenant]):
        assert DatasetQueue.objects.count() == 0  # consumed


def test_it_fires_once_per_pair_of_updates(engine: Engine) -> None:
    sales = engine.apply(producer("sales", "warehouse.sales"))
    stock = engine.apply(producer("stock", "warehouse.stock"))
    engine.apply(CONSUMER)
    fired = []
    for workflow in (sales, stock, stock, sales, sales, stock):
        run_once(engine, workflow)
        fired.append(dispatch_pending())
    assert fired == [0, 1, 0, 1, 0, 1]
    assert len(dataset_runs(engine)) == 3


def test_a_paused_consumer_keeps_its_queue_and_fires_when_unpaused(engine: Engine) -> None:
    from workflows.services import set_paused

    sales = engine.apply(producer("sales", "warehouse.sales"))
    stock = engine.apply(producer("stock", "warehouse.stock"))
    report = engine.apply(CONSUMER)
    with engine.scope():
        set_paused(actor=engine.actor, workflow=report, paused=True)
    run_once(engine, sales)
    run_once(engine, stock)
    assert dispatch_pending() == 0
    with engine.scope():
        set_paused(actor=engine.actor, workflow=report, paused=False)
    from events.dispatch import evaluate_waiting_schedules

    assert evaluate_waiting_schedules() == 1
    assert len(dataset_runs(engine)) == 1


def dispatch_together(event_id: int, barrier: threading.Barrier, started: list[int]) -> None:
    try:
        barrier.wait()
        started.append(dispatch_one(event_id))
    finally:
        connection.close()


def test_two_updates_dispatched_at_once_make_one_run(engine: Engine) -> None:
    if connection.vendor != "postgresql":
        pytest.skip("SQLite serialises writes: the race needs PostgreSQL")
    sales = engine.apply(producer("sales", "warehouse.sales"))
    stock = engine.apply(producer("stock", "warehouse.stock"))
    engine.apply(CONSUMER)
    for _ in range(5):
        run_once(engine, sales)
        run_once(engine, stock)
        ids = list(
            Event.objects.dangerously_unscoped()
            .filter(dispatched_at__isnull=True, type="dataset.updated")
            .values_list("id", flat=True)
        )
        assert len(ids) == 2
        barrier = threading.Barrier(2)
        started: list[int] = []
        threads = [
            threading.Thread(target=dispatch_together, args=(i, barrier, started)) for i in ids
        ]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join()
        assert sorted(started) == [0, 1]
    assert len(dataset_runs(engine)) == 5


def test_an_update_records_the_run_task_logical_date_and_metadata(engine: Engine) -> None:
    writer = engine.apply(
        {
            "name": "loader",
            "tasks": {
                "load": {
                    "type": "python",
                    "callable": "runs.library:echo",
                    "kwargs": {"datasets": {"warehouse.sales": {"rows": 120}}},
                    "outlets": ["warehouse.sales", "warehouse.audit"],
                }
            },
        }
    )
    run = run_once(engine, writer)
    with engine.scope():
        updates = {
            u.dataset.name: u for u in DatasetUpdate.objects.select_related("dataset", "run")
        }
    assert set(updates) == {"warehouse.sales", "warehouse.audit"}
    sales = updates["warehouse.sales"]
    assert (sales.run, sales.task_id, sales.logical_date) == (run, "load", run.logical_date)
    assert sales.metadata == {"rows": 120}
    assert updates["warehouse.audit"].metadata == {}
    events = Event.objects.dangerously_unscoped().filter(type="dataset.updated")
    assert sorted(e.subject for e in events) == ["warehouse.audit", "warehouse.sales"]


def test_a_failed_task_records_no_update(engine: Engine) -> None:
    writer = engine.apply(
        {
            "name": "loader",
            "tasks": {
                "load": {
                    "type": "python",
                    "callable": "runs.library:fail",
                    "outlets": ["warehouse.sales"],
                }
            },
        }
    )
    run = run_once(engine, writer)
    assert run.state == "failed"
    assert not DatasetUpdate.objects.dangerously_unscoped().exists()
