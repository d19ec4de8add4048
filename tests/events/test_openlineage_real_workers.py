"""OpenLineage end to end: real worker processes, configured with OPENLINEAGE_URL as a
deployment would be, run a workflow, and every attempt's START and COMPLETE reach the
receiver (a stand-in for Marquez) once, through the sender's Celery task, valid events."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest

from runs.models import LineageEvent, WorkflowRun
from runs.periodic import ensure_periodic_tasks
from runs.services import trigger_run
from tests.events.openlineage_support import ENDPOINT, by_job, events_of
from tests.notifications.servers import HttpReceiver
from tests.runs.engine.helpers import Engine
from tests.workers import Workers, publishing_to, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

SALES = {
    "name": "sales",
    "tasks": {
        "extract": {"type": "noop", "inlets": ["raw.orders"], "outlets": ["staging.orders"]},
        "load": {
            "type": "python",
            "callable": "runs.library:echo",
            "depends_on": ["extract"],
            "inlets": ["staging.orders"],
            "outlets": ["warehouse.orders"],
        },
    },
}


@pytest.fixture(scope="module")
def receiver() -> Iterator[HttpReceiver]:
    server = HttpReceiver()
    yield server
    server.close()


@pytest.fixture(scope="module")
def workers(
    django_db_setup: None, django_db_blocker: Any, receiver: HttpReceiver
) -> Iterator[Workers]:
    with django_db_blocker.unblock():
        pool = Workers(
            count=1,
            concurrency=2,
            env={"OPENLINEAGE_URL": receiver.url(""), "OPENLINEAGE_NAMESPACE": "orc"},
        )
        pool.start()
    try:
        with publishing_to(pool):
            yield pool
    finally:
        pool.stop()


def test_each_attempt_is_started_and_completed_at_the_receiver(
    transactional_db: None, workers: Workers, receiver: HttpReceiver
) -> None:
    ensure_periodic_tasks()
    engine = Engine(workers)
    workflow = engine.apply(SALES)
    with engine.scope():
        run = trigger_run(actor=engine.actor, workflow=workflow).run

    def sent() -> bool:
        rows = LineageEvent.objects.dangerously_unscoped()
        return rows.count() == 4 and not rows.exclude(status="sent").exists()

    wait_for(sent, 60, "four lineage events sent", workers)
    run.refresh_from_db()
    assert run.state == WorkflowRun.State.SUCCESS
    posts = receiver.wait(4)
    assert len(posts) == 4  # each once
    assert {p.path for p in posts} == {ENDPOINT}
    events = events_of(posts)
    assert by_job(events) == {
        "sales.extract": ["START", "COMPLETE"],
        "sales.load": ["START", "COMPLETE"],
    }
    assert {e["job"]["namespace"] for e in events} == {"orc/eng"}
    load = [e for e in events if e["job"]["name"] == "sales.load"]
    assert [d["name"] for d in load[1]["inputs"]] == ["staging.orders"]
    assert [d["namespace"] for d in load[1]["outputs"]] == ["orc://eng"]
