"""A trigger starts its run in the same transaction when nothing stands in its way
(engine.create_and_start_run): it must leave exactly what creating the run queued and
then starting it would, and must never start a run that the general path would queue."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import transaction

from orchestrator.models import Tenant
from runs import engine as engine_module
from runs.engine import creation, messaging, progress
from runs.models import TaskInstance, WorkflowRun
from runs.selectors import task_summary
from runs.services import trigger_run
from tests.runs.engine.helpers import Engine

WAVES: dict[str, Any] = {
    "name": "waves",
    "max_active_tasks": 2,
    "tasks": {
        "low": {"type": "noop", "priority": 1},
        "high": {"type": "noop", "priority": 5},
        "also": {"type": "shell", "command": ["true"]},
        "after": {"type": "noop", "depends_on": ["low"]},
        "anyway": {"type": "noop", "depends_on": ["after"], "trigger_rule": "always"},
    },
}


@pytest.fixture
def engine(transactional_db: None) -> Engine:
    return Engine(workers=None)


@pytest.fixture
def sent(monkeypatch: pytest.MonkeyPatch) -> list[tuple[int, int]]:
    """The tries whose messages went out (after commit), in order."""
    tries: list[tuple[int, int]] = []
    real = messaging.send_queued

    def spy(rows: list[tuple[Any, ...]], keepable: Any = None) -> list[tuple[int, int]]:
        queued = real(rows, keepable)
        transaction.on_commit(lambda: tries.extend(queued))
        return queued

    for module in (creation, progress):  # where the engine sends what it queued
        monkeypatch.setattr(module, "send_queued", spy)
    return tries


def _instances(run: WorkflowRun) -> dict[str, tuple[str, int, bool]]:
    rows = TaskInstance.objects.dangerously_unscoped().filter(run=run)
    return {ti.task_id: (ti.state, ti.try_number, ti.queued_at is not None) for ti in rows}


def _run(run: WorkflowRun) -> WorkflowRun:
    return WorkflowRun.objects.dangerously_unscoped().get(pk=run.pk)


def _trigger(engine: Engine, workflow: Any) -> WorkflowRun:
    with engine.scope():
        triggered = trigger_run(actor=engine.actor, workflow=workflow)
        # The counts a response shows without a query are those in the database.
        assert triggered.tasks in (None, task_summary(triggered.run))
        return triggered.run


def test_it_starts_the_run_as_creating_and_starting_it_would(
    engine: Engine, sent: list[tuple[int, int]]
) -> None:
    workflow = engine.apply(WAVES)
    fast = _trigger(engine, workflow)
    with engine.scope(), transaction.atomic():  # the general path, for comparison
        general = engine_module.create_run(
            workflow=workflow, params={}, source="api", user_id=engine.user.pk
        )
        assert engine_module.start_queued_runs(workflow.pk, workflow.tenant_id) == [general.pk]
    assert (
        _instances(fast)
        == _instances(general)
        == {
            "high": ("queued", 1, True),  # the first wave by priority, two slots
            "low": ("queued", 1, True),
            "also": ("scheduled", 0, False),  # ready, no slot free
            "after": ("pending", 0, False),
            "anyway": ("scheduled", 0, False),  # `always` runs whatever its upstreams
        }
    )
    assert fast.state == _run(fast).state == _run(general).state == "running"
    with engine.scope():
        assert trigger_run(actor=engine.actor, workflow=workflow).tasks == {
            "queued": 2,
            "scheduled": 2,
            "pending": 1,
        }
    assert fast.started_at == _run(fast).started_at is not None
    ids = {ti.task_id: ti.pk for ti in TaskInstance.objects.dangerously_unscoped().filter(run=fast)}
    assert sent[:2] == [(ids["high"], 1), (ids["low"], 1)]  # highest priority first


def test_the_new_run_counts_itself_against_max_active_runs(
    engine: Engine, sent: list[tuple[int, int]]
) -> None:
    workflow = engine.apply({**WAVES, "max_active_runs": 2})
    first, second, third = (_trigger(engine, workflow) for _ in range(3))
    assert [_run(r).state for r in (first, second, third)] == ["running", "running", "queued"]
    assert third.state == "queued"
    assert third.started_at is None
    assert set(_instances(third).values()) == {("pending", 0, False)}  # as create_run left it
    third_tis = set(
        TaskInstance.objects.dangerously_unscoped().filter(run=third).values_list("pk", flat=True)
    )
    assert len(sent) == 4
    assert not third_tis.intersection(t for t, _ in sent)


def test_it_does_not_start_ahead_of_a_run_already_queued(engine: Engine) -> None:
    workflow = engine.apply({**WAVES, "max_active_runs": 1})
    first, waiting = _trigger(engine, workflow), _trigger(engine, workflow)
    assert _run(waiting).state == "queued"
    # The first run ends, and the look that would start the queued one has not run yet.
    WorkflowRun.objects.dangerously_unscoped().filter(pk=first.pk).update(state="success")
    late = _trigger(engine, workflow)
    assert (_run(waiting).state, _run(late).state) == ("running", "queued")
    assert late.state == "queued"


def test_it_keeps_to_the_tenants_quota(engine: Engine) -> None:
    Tenant.objects.filter(pk=engine.tenant.pk).update(
        quotas={"max_concurrent_runs": 1, "max_tasks_per_workflow": 100}
    )
    one = engine.apply({**WAVES, "name": "one"})
    other = engine.apply({**WAVES, "name": "other"})
    running, held = _trigger(engine, one), _trigger(engine, other)
    assert (_run(running).state, _run(held).state) == ("running", "queued")
    assert set(_instances(held).values()) == {("pending", 0, False)}
