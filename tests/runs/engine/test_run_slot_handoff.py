"""A run slot handed from a run that ends to a run that is queued at the same moment.

A run that ends starts its workflow's queued runs only when it sees one, and a run queued
by a transaction that has not committed yet cannot be seen. The queuing transaction
therefore looks again after its commit. These tests hold a trigger's transaction open
across the end of the run in the slot, on real PostgreSQL transactions, and check that
the queued run starts without waiting for the reconciler."""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

import pytest
from django.db import connection, transaction

from orchestrator.models import Tenant
from runs import backfills, worker
from runs import engine as engine_module
from runs.models import TaskInstance, WorkflowRun
from runs.services import trigger_run
from tests.runs.engine.helpers import Engine

ONE_AT_A_TIME: dict[str, Any] = {
    "name": "serial",
    "max_active_runs": 1,
    "tasks": {"only": {"type": "noop"}},
}


@pytest.fixture
def engine(transactional_db: None, settings: Any) -> Engine:
    settings.TASK_CONTINUE_SECONDS = 0
    return Engine(workers=None)


def _run_task(engine: Engine, run: WorkflowRun) -> None:
    with engine.scope():
        ti = TaskInstance.objects.get(run=run)
    assert worker._execute_one(ti.pk, ti.try_number) == "success"


def _one_run_at_a_time_in_the_tenant(engine: Engine) -> None:
    Tenant.objects.filter(pk=engine.tenant.pk).update(
        quotas={"max_concurrent_runs": 1, "max_tasks_per_workflow": 100}
    )


def _state(run: WorkflowRun) -> str:
    return WorkflowRun.objects.dangerously_unscoped().get(pk=run.pk).state


class _OpenTrigger(threading.Thread):
    """Makes a run (by default a trigger) in a transaction that stays open until `commit`
    is set."""

    def __init__(
        self, engine: Engine, workflow: Any, make: Callable[[], WorkflowRun] | None = None
    ) -> None:
        super().__init__(daemon=True)
        self.engine, self.workflow = engine, workflow
        self.make = make or (lambda: trigger_run(actor=engine.actor, workflow=workflow).run)
        self.queued = threading.Event()
        self.commit = threading.Event()
        self.made: WorkflowRun | None = None
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            with transaction.atomic(), self.engine.scope():
                self.made = self.make()
                self.queued.set()
                assert self.commit.wait(30)
        except BaseException as exc:  # reported by the test
            self.error = exc
            self.queued.set()
        finally:
            connection.close()


def test_a_run_queued_while_the_slot_frees_starts_when_its_trigger_commits(
    engine: Engine,
) -> None:
    workflow = engine.apply(ONE_AT_A_TIME)
    with engine.scope():
        first = trigger_run(actor=engine.actor, workflow=workflow).run
    assert first.state == "running"

    trigger = _OpenTrigger(engine, workflow)
    trigger.start()
    assert trigger.queued.wait(30)
    assert trigger.error is None
    assert trigger.made is not None
    assert trigger.made.state == "queued"  # the slot was taken when it counted

    _run_task(engine, first)  # the first run ends and commits; it cannot see the second
    assert _state(first) == "success"
    # The second run is not visible yet, so the end of the first could not start it.
    assert not WorkflowRun.objects.dangerously_unscoped().filter(pk=trigger.made.pk).exists()

    trigger.commit.set()
    trigger.join(30)
    assert trigger.error is None
    # Started by the trigger's own look after its commit, not by a reconciler.
    assert _state(trigger.made) == "running"
    with engine.scope():
        assert TaskInstance.objects.get(run=trigger.made).state == "queued"


def test_a_run_that_ends_starts_a_queued_run_it_can_see(engine: Engine) -> None:
    workflow = engine.apply(ONE_AT_A_TIME)
    with engine.scope():
        first = trigger_run(actor=engine.actor, workflow=workflow).run
        second = trigger_run(actor=engine.actor, workflow=workflow).run
    assert (first.state, second.state) == ("running", "queued")
    _run_task(engine, first)
    assert _state(first) == "success"
    assert _state(second) == "running"


def test_a_run_still_without_a_slot_after_its_commit_stays_queued(engine: Engine) -> None:
    """The look after the commit starts nothing while the slot is still taken."""
    workflow = engine.apply(ONE_AT_A_TIME)
    with engine.scope():
        first = trigger_run(actor=engine.actor, workflow=workflow).run
        second = trigger_run(actor=engine.actor, workflow=workflow).run
    assert (_state(first), _state(second)) == ("running", "queued")
    assert engine_module.start_waiting_runs(workflow.pk) == []
    assert _state(second) == "queued"


def test_a_backfill_run_queued_while_the_slot_frees_starts_when_its_backfill_commits(
    engine: Engine,
) -> None:
    """The same with the tenant's last slot and a backfill's first run."""
    _one_run_at_a_time_in_the_tenant(engine)
    workflow = engine.apply(
        {
            "name": "daily",
            "schedule": {"cron": "0 2 * * *", "timezone": "UTC"},
            "max_active_runs": 5,
            "tasks": {"only": {"type": "noop"}},
        }
    )
    with engine.scope():
        first = trigger_run(actor=engine.actor, workflow=workflow).run
    assert first.state == "running"

    def backfill_run() -> WorkflowRun:
        backfill = backfills.create_backfill(
            actor=engine.actor,
            workflow=workflow,
            start="2026-01-01",
            end="2026-01-01",
            max_active_runs=1,
        )
        return WorkflowRun.objects.get(backfill=backfill)

    opened = _OpenTrigger(engine, workflow, backfill_run)
    opened.start()
    assert opened.queued.wait(30)
    assert opened.error is None
    assert opened.made is not None
    assert opened.made.state == "queued"  # the tenant's only slot was taken

    _run_task(engine, first)
    assert _state(first) == "success"
    opened.commit.set()
    opened.join(30)
    assert opened.error is None
    assert _state(opened.made) == "running"


def test_looking_again_ends_when_commit_hooks_run_inside_a_transaction(
    db: None, settings: Any, django_capture_on_commit_callbacks: Any
) -> None:
    """Tests run commit hooks inside their transaction: a look after the commit that
    still finds no slot must not register another look."""
    engine = Engine(workers=None)
    workflow = engine.apply(ONE_AT_A_TIME)
    with engine.scope(), django_capture_on_commit_callbacks(execute=True) as hooks:
        first = trigger_run(actor=engine.actor, workflow=workflow).run
        second = trigger_run(actor=engine.actor, workflow=workflow).run
    assert len(hooks) < 10
    assert (_state(first), _state(second)) == ("running", "queued")


def test_a_run_waiting_for_the_tenants_quota_starts_when_another_workflows_run_ends(
    engine: Engine,
) -> None:
    _one_run_at_a_time_in_the_tenant(engine)
    first_workflow = engine.apply({**ONE_AT_A_TIME, "name": "first"})
    other_workflow = engine.apply({**ONE_AT_A_TIME, "name": "other"})
    with engine.scope():
        first = trigger_run(actor=engine.actor, workflow=first_workflow).run
        waiting = trigger_run(actor=engine.actor, workflow=other_workflow).run
    assert (first.state, waiting.state) == ("running", "queued")  # the tenant's one slot
    _run_task(engine, first)
    assert _state(first) == "success"
    assert _state(waiting) == "running"  # at once, not at the reconciler's next pass
