"""Events and datasets on real workers: a producer's outlet updates a dataset, the
events dispatcher (a Celery task on the housekeeping queue, after commit) starts the
workflow scheduled on it, and that run's success starts a workflow subscribed to its
`run.succeeded`: a chain of three workflows with no trigger but the first."""

from __future__ import annotations

from typing import Any

import pytest

from runs.models import WorkflowRun
from tests.runs.engine.helpers import Engine, run_to_end
from tests.workers import wait_for

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

PRODUCER = {"name": "ingest", "tasks": {"load": {"type": "noop", "outlets": ["lake.orders"]}}}
CONSUMER = {
    "name": "transform",
    "schedule": {"datasets": ["lake.orders"]},
    "tasks": {"shape": {"type": "noop"}},
}
FOLLOWER = {
    "name": "publish",
    "triggers": [{"event": {"type": "run.succeeded", "workflow": "transform"}}],
    "tasks": {"send": {"type": "noop"}},
}


def runs_of(engine: Engine, name: str) -> list[WorkflowRun]:
    with engine.scope():
        return list(WorkflowRun.objects.filter(workflow__name=name).order_by("id"))


def test_a_dataset_and_an_event_chain_three_workflows(engine: Engine, settings: Any) -> None:
    engine.apply(CONSUMER)
    engine.apply(FOLLOWER)
    assert run_to_end(engine, PRODUCER).state == "success"

    def chained() -> bool:
        published = runs_of(engine, "publish")
        return bool(published) and published[0].state in WorkflowRun.FINISHED

    wait_for(chained, 60, "the chain to reach publish", engine.workers)
    [transform] = runs_of(engine, "transform")
    [publish] = runs_of(engine, "publish")
    assert (transform.trigger_source, transform.state) == ("dataset", "success")
    assert (publish.trigger_source, publish.state) == ("event", "success")
    assert publish.event is not None
    assert publish.event["subject"] == f"runs/{transform.pk}"
