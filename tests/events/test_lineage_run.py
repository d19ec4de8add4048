"""What a run read and produced (events.lineage.run_lineage): for each task's inlet, the
dataset's latest update before the task started; the updates that triggered a dataset
run; the updates its tasks' outlets recorded. And what a workflow reads and writes."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from django.utils import timezone

from events.lineage import RunLineage, run_has_lineage, run_lineage, workflow_lineage
from orchestrator.actors import Actor
from orchestrator.context import tenant_scope
from runs.models import DatasetUpdate, TaskInstance, WorkflowRun
from runs.services import trigger_run
from tests.events.lineage_support import REPORT_FILE, apply, apply_chain, record_update
from tests.events.support import dispatch_pending, drain
from tests.harness import Team
from tests.runs.engine.helpers import Engine
from tests.runs.run_states import started_run
from workflows.models import Workflow


def triggered(team: Team, workflow: Workflow, **kwargs: Any) -> WorkflowRun:
    with tenant_scope([team.tenant]):
        return trigger_run(actor=Actor.cli(), workflow=workflow, params={}, **kwargs).run


def started(run: WorkflowRun, task_id: str, at: dt.datetime) -> None:
    TaskInstance.objects.dangerously_unscoped().filter(run=run, task_id=task_id).update(
        started_at=at
    )


def lineage_of(team: Team, run: WorkflowRun) -> RunLineage:
    with tenant_scope([team.tenant]):
        return run_lineage(run)


@pytest.mark.django_db
def test_it_reads_the_version_each_inlet_had_when_its_task_started(team: Team) -> None:
    workflows = apply_chain(team)
    now = timezone.now()
    old = record_update(team, "warehouse.orders", task_id="tidy", at=now - dt.timedelta(hours=2))
    read = record_update(team, "warehouse.orders", task_id="tidy", at=now - dt.timedelta(hours=1))
    record_update(team, "warehouse.orders", task_id="tidy", at=now + dt.timedelta(hours=1))
    run = triggered(team, workflows["report"])
    started(run, "build", now)
    found = lineage_of(team, run)
    [version] = found.read
    assert (version.task_id, version.role, version.tenant, version.dataset) == (
        "build",
        "inlet",
        "acme",
        "warehouse.orders",
    )
    assert version.update is not None
    assert version.update.id == read.pk != old.pk
    assert found.produced == []


@pytest.mark.django_db
def test_it_reads_nothing_before_a_task_starts_or_an_earlier_version(team: Team) -> None:
    workflows = apply_chain(team)
    record_update(team, "warehouse.orders", task_id="tidy")
    run = triggered(team, workflows["report"])
    assert [v.update for v in lineage_of(team, run).read] == [None]  # not started yet
    started(run, "build", timezone.now() - dt.timedelta(days=1))
    assert [v.update for v in lineage_of(team, run).read] == [None]  # only a later update


@pytest.mark.django_db
def test_it_lists_what_the_run_produced_and_what_triggered_it(team: Team) -> None:
    workflows = apply_chain(team)
    trigger = record_update(team, "raw.orders", workflow=workflows["extract"], task_id="pull")
    run = triggered(
        team, workflows["clean"], source=WorkflowRun.Source.DATASET, dataset_update_ids=[trigger.pk]
    )
    produced = record_update(
        team, "warehouse.orders", run=run, task_id="tidy", metadata={"rows": 42}
    )
    found = lineage_of(team, run)
    assert [(v.role, v.task_id, v.update.id if v.update else None) for v in found.read] == [
        ("inlet", "tidy", None),  # tidy has not started
        ("trigger", None, trigger.pk),
    ]
    [made] = found.produced
    assert (made.id, made.dataset, made.task_id, made.run_id, made.workflow, made.metadata) == (
        produced.pk,
        "warehouse.orders",
        "tidy",
        run.pk,
        "clean",
        {"rows": 42},
    )


@pytest.mark.django_db
def test_it_costs_no_query_for_a_run_without_datasets(
    team: Team, django_assert_num_queries: Any
) -> None:
    run = started_run(team)
    with tenant_scope([team.tenant]):
        run_has_lineage(run)  # the version's graph is read once per process
        assert not run_has_lineage(run)
        with django_assert_num_queries(0):
            assert run_lineage(run, tenant=team.tenant) == RunLineage(run.pk, [], [])


@pytest.mark.django_db
def test_it_lists_a_workflows_reads_and_writes_by_task(team: Team) -> None:
    workflows = apply_chain(team)
    with tenant_scope([team.tenant]):
        found = workflow_lineage(workflows["report"])
        clean = workflow_lineage(workflows["clean"])
    assert found.workflow == "report"
    assert [(u.task_id, u.role, u.dataset, u.visible) for u in found.reads] == [
        ("build", "inlet", "warehouse.orders", True),
        ("wait", "sensor", "warehouse.orders", True),
    ]
    assert [(u.task_id, u.role, u.tenant, u.dataset) for u in found.writes] == [
        ("build", "outlet", "acme", REPORT_FILE)
    ]
    assert [(u.task_id, u.role) for u in clean.reads] == [(None, "schedule"), ("tidy", "inlet")]


@pytest.mark.django_db
def test_it_reads_the_inlets_of_the_runs_own_version(team: Team) -> None:
    """A run reads what its own version declared, whatever the workflow is now."""
    workflows = apply_chain(team)
    update = record_update(team, "warehouse.orders", at=timezone.now() - dt.timedelta(hours=1))
    run = triggered(team, workflows["report"])
    started(run, "build", timezone.now())
    apply(team, {"name": "report", "tasks": {"build": {"type": "noop"}}})
    assert [v.update.id for v in lineage_of(team, run).read if v.update] == [update.pk]


# --- with the engine -----------------------------------------------------------------------


@pytest.mark.django_db(transaction=True)
def test_it_shows_what_the_engine_recorded_for_a_dataset_run(settings: Any) -> None:
    settings.TASK_CONTINUE_SECONDS = 0
    engine = Engine(workers=None)
    extract = engine.apply(
        {"name": "extract", "tasks": {"pull": {"type": "noop", "outlets": ["raw.orders"]}}}
    )
    engine.apply(
        {
            "name": "clean",
            "schedule": {"datasets": ["raw.orders"]},
            "tasks": {
                "tidy": {"type": "noop", "inlets": ["raw.orders"], "outlets": ["warehouse.orders"]}
            },
        }
    )
    with engine.scope():
        first = trigger_run(actor=engine.actor, workflow=extract, params={}).run
    assert drain(engine, first).state == "success"
    assert dispatch_pending() == 1
    with engine.scope():
        run = WorkflowRun.objects.get(workflow__name="clean")
    assert drain(engine, run).state == "success"
    wrote = DatasetUpdate.objects.dangerously_unscoped()
    raw = wrote.get(dataset__name="raw.orders")
    with engine.scope():
        found = run_lineage(run)
    assert [(v.role, v.task_id, v.update.id if v.update else None) for v in found.read] == [
        ("inlet", "tidy", raw.pk),
        ("trigger", None, raw.pk),
    ]
    assert [(u.dataset, u.task_id, u.run_id) for u in found.produced] == [
        ("warehouse.orders", "tidy", run.pk)
    ]
