"""`wait_for: {kind: dataset}` waits, without holding a worker, until the dataset has an
update recorded since its run began, then succeeds; another tenant's dataset only while
that tenant shares it."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import User

from orchestrator import grants, services
from orchestrator.actors import Actor
from orchestrator.context import tenant_scope
from runs import engine as engine_module
from runs import worker
from runs.models import TaskAttempt, TaskInstance, WorkflowRun
from runs.services import trigger_run
from tests.events.support import drain, run_once
from tests.runs.engine.helpers import Engine
from workflows.services import apply_workflow

pytestmark = pytest.mark.django_db(transaction=True)

WRITER = {"name": "sales", "tasks": {"write": {"type": "noop", "outlets": ["warehouse.sales"]}}}


def waiter(dataset: Any) -> dict[str, Any]:
    return {
        "name": "waiter",
        "tasks": {
            "wait": {
                "type": "wait_for",
                "kind": "dataset",
                "dataset": dataset,
                "poke_interval": 1,
                "timeout": 600,
            },
            "after": {"type": "noop", "depends_on": ["wait"]},
        },
    }


@pytest.fixture
def engine(transactional_db: None, settings: Any) -> Engine:
    settings.TASK_CONTINUE_SECONDS = 0
    return Engine(workers=None)


def check(engine: Engine, run: WorkflowRun) -> str:
    """Run the sensor's due check now; returns its instance's state after it."""
    with engine.scope():
        TaskInstance.objects.filter(run=run, task_id="wait", state="scheduled").update(
            next_attempt_at=None
        )
    engine_module.reconcile()
    with engine.scope():
        ti = TaskInstance.objects.get(run=run, task_id="wait")
    if ti.state == "queued":
        worker.execute(ti.pk, ti.try_number)
        ti.refresh_from_db()
    return str(ti.state)


def test_it_waits_for_an_update_then_succeeds(engine: Engine) -> None:
    run_once(engine, engine.apply(WRITER))  # an update from before the run: not enough
    waiting = engine.apply(waiter("warehouse.sales"))
    with engine.scope():
        run = trigger_run(actor=engine.actor, workflow=waiting, params={}).run
    assert check(engine, run) == "scheduled"
    assert check(engine, run) == "scheduled"
    run_once(engine, engine.apply(WRITER))
    assert check(engine, run) == "success"
    assert drain(engine, run).state == "success"
    with engine.scope():
        tries = list(
            TaskAttempt.objects.filter(task_instance__run=run, task_instance__task_id="wait")
            .order_by("id")
            .values_list("state", flat=True)
        )
    assert tries[-1] == "success"
    assert set(tries[:-1]) == {"rescheduled"}


def test_another_tenants_dataset_needs_a_grant(engine: Engine) -> None:
    other_owner = User.objects.create_user("other-owner")
    other = services.create_tenant(actor=Actor.cli(), slug="other", name="Other", owner=other_owner)
    actor = Actor(user=other_owner, source="api")
    with tenant_scope([other]):
        workflow = apply_workflow(
            actor=actor, tenant=other, data=waiter({"tenant": "eng", "name": "warehouse.sales"})
        ).workflow
        run = trigger_run(actor=actor, workflow=workflow, params={}).run
    run_once(engine, engine.apply(WRITER))
    engine_module.reconcile()
    ti = TaskInstance.objects.dangerously_unscoped().get(run=run, task_id="wait")
    worker.execute(ti.pk, ti.try_number)
    ti.refresh_from_db()
    assert ti.state == "failed"  # no grant: refused, as if the dataset did not exist
    attempt = TaskAttempt.objects.dangerously_unscoped().get(task_instance=ti)
    assert "is not shared with this tenant" in attempt.error

    with tenant_scope([engine.tenant]):
        grants.create_grant(
            actor=engine.actor,
            tenant=engine.tenant,
            grantee="other",
            kind="dataset",
            name="warehouse.sales",
        )
    with tenant_scope([other]):
        run = trigger_run(actor=actor, workflow=workflow, params={}).run
    run_once(engine, engine.apply(WRITER))
    engine_module.reconcile()
    ti = TaskInstance.objects.dangerously_unscoped().get(run=run, task_id="wait")
    worker.execute(ti.pk, ti.try_number)
    ti.refresh_from_db()
    assert ti.state == "success"
