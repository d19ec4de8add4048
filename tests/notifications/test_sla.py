"""SLA checks for run and task durations, driven by calling `sla.check` as the reconciler
does: runs are triggered through the services and their tries claimed and finished by the
engine; time is moved by setting their times in the past. Each miss is recorded once, with
an `sla.missed` event carrying the documented payload and an audit entry. (The tests run
in one transaction that never commits, so nothing is routed or sent.)"""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from django.db.models import F

from notifications import sla
from notifications.models import SlaMiss
from orchestrator.actors import Actor
from orchestrator.context import tenant_scope
from orchestrator.errors import Invalid
from orchestrator.models import AuditEvent
from runs import engine
from runs.models import Event, TaskAttempt, TaskInstance, WorkflowRun
from runs.services import clear_task, trigger_run
from runs.tasktypes.contract import Outcome
from tests.harness import Team, make_team
from workflows.models import Workflow
from workflows.services import apply_workflow
from workflows.validation import validate_spec

pytestmark = pytest.mark.django_db

ONE_TASK = {"a": {"type": "noop"}}


@pytest.fixture
def team(db: None, settings: Any) -> Team:
    settings.PUBLIC_URL = "https://orc.example.com/"
    return make_team("acme", roles=[])


def workflow(team: Team, name: str = "nightly", **spec: Any) -> Workflow:
    spec.setdefault("tasks", ONE_TASK)
    with tenant_scope([team.tenant]):
        return apply_workflow(
            actor=Actor.cli(), tenant=team.tenant, data={"name": name, **spec}
        ).workflow


def trigger(team: Team, wf: Workflow) -> WorkflowRun:
    with tenant_scope([team.tenant]):
        return trigger_run(actor=Actor.cli(), workflow=wf).run


def back(run: WorkflowRun, seconds: float) -> None:
    """Move the run, its task instances and their tries `seconds` into the past."""
    delta = dt.timedelta(seconds=seconds)
    WorkflowRun.objects.dangerously_unscoped().filter(pk=run.pk).update(
        created_at=F("created_at") - delta,
        queued_at=F("queued_at") - delta,
        started_at=F("started_at") - delta,
        ended_at=F("ended_at") - delta,
    )
    TaskInstance.objects.dangerously_unscoped().filter(run=run).update(
        queued_at=F("queued_at") - delta,
        started_at=F("started_at") - delta,
        ended_at=F("ended_at") - delta,
    )
    TaskAttempt.objects.dangerously_unscoped().filter(task_instance__run=run).update(
        started_at=F("started_at") - delta, ended_at=F("ended_at") - delta
    )
    run.refresh_from_db()


def instance(run: WorkflowRun, task_id: str = "a") -> TaskInstance:
    return TaskInstance.objects.dangerously_unscoped().get(run=run, task_id=task_id)


def start(run: WorkflowRun, task_id: str = "a") -> TaskAttempt:
    """Claim the task's queued try, as a worker would."""
    ti = instance(run, task_id)
    assert ti.state == "queued", ti.state
    attempt = engine.claim(ti.pk, ti.try_number, worker="test", pid=1)
    assert attempt is not None
    return attempt


def end(attempt: TaskAttempt, state: str = "success") -> None:
    assert engine.finish(attempt.pk, Outcome(state, error="" if state == "success" else "boom"))


def run_to_end(run: WorkflowRun) -> WorkflowRun:
    for _ in range(20):
        queued = TaskInstance.objects.dangerously_unscoped().filter(run=run, state="queued")
        for ti in queued:
            end(start(run, ti.task_id))
        run.refresh_from_db()
        if run.state in WorkflowRun.FINISHED:
            return run
    raise AssertionError(f"run {run.pk} did not end: {run.state}")


def misses(team: Team) -> list[SlaMiss]:
    return list(SlaMiss.objects.dangerously_unscoped().filter(tenant=team.tenant).order_by("id"))


def sla_events(team: Team) -> list[Event]:
    return list(
        Event.objects.dangerously_unscoped()
        .filter(tenant=team.tenant, type="sla.missed")
        .order_by("id")
    )


# --- run_duration --------------------------------------------------------------------------


def test_it_records_a_run_still_unfinished_after_its_run_duration(team: Team) -> None:
    wf = workflow(team, sla={"run_duration": "1m"})
    run = trigger(team, wf)
    back(run, 61)
    assert sla.check() == 1
    [miss] = misses(team)
    assert miss.kind == "run_duration"
    assert miss.key == f"run:{run.pk}"
    assert (miss.workflow_id, miss.run_id, miss.task_id) == (wf.pk, run.pk, "")
    assert miss.sla == "run_duration: 1m"
    assert run.queued_at is not None
    assert miss.due_at == run.queued_at + dt.timedelta(minutes=1)


def test_the_event_carries_the_documented_payload_and_the_miss_points_at_it(team: Team) -> None:
    wf = workflow(team, sla={"run_duration": "1m"})
    run = trigger(team, wf)
    back(run, 120)
    sla.check()
    [miss], [event] = misses(team), sla_events(team)
    assert miss.event_id == event.pk
    assert (event.workflow_id, event.run_id, event.task_id) == (wf.pk, run.pk, "")
    assert event.routed_at is None
    assert run.queued_at is not None
    assert event.data == {
        "tenant": "acme",
        "workflow": "nightly",
        "sla": {
            "kind": "run_duration",
            "sla": "run_duration: 1m",
            "due_at": (run.queued_at + dt.timedelta(minutes=1)).isoformat(),
        },
        "run": {
            "id": run.pk,
            "state": "running",
            "trigger_source": run.trigger_source,
            "logical_date": run.logical_date.isoformat(),
            "created_at": run.created_at.isoformat(),
            "started_at": run.started_at.isoformat() if run.started_at else None,
            "ended_at": None,
            "duration_seconds": None,
        },
        "url": f"https://orc.example.com/t/acme/runs/{run.pk}/",
    }


def test_it_records_a_run_that_ended_late_before_a_check_saw_it(team: Team) -> None:
    # A run triggered 3 s ago with a 1 s SLA, ended just now: no check saw it running late.
    wf = workflow(team, sla={"run_duration": 1})
    run = trigger(team, wf)
    back(run, 3)
    run = run_to_end(run)
    assert run.state == "success"
    assert run.ended_at is not None
    assert sla.check() == 1
    [miss] = misses(team)
    assert (miss.kind, miss.run_id) == ("run_duration", run.pk)
    [event] = sla_events(team)
    assert event.data["run"]["state"] == "success"
    assert event.data["run"]["ended_at"] == run.ended_at.isoformat()


def test_a_run_that_ended_in_time_is_not_a_miss(team: Team) -> None:
    wf = workflow(team, sla={"run_duration": "1h"})
    done = run_to_end(trigger(team, wf))
    back(done, 59 * 60)  # triggered 59 minutes ago, ended a minute later
    running = trigger(team, wf)
    back(running, 59 * 60)  # not due for another minute
    assert sla.check() == 0
    assert misses(team) == []
    assert sla_events(team) == []


def test_each_miss_is_recorded_once_across_checks(team: Team) -> None:
    wf = workflow(team, sla={"run_duration": "1m"})
    run = trigger(team, wf)
    back(run, 120)
    assert sla.check() == 1
    assert sla.check() == 0
    run_to_end(run)  # ended late: still the same miss
    assert sla.check() == 0
    assert len(misses(team)) == 1
    assert len(sla_events(team)) == 1


def test_a_miss_is_audited_as_a_system_action(team: Team) -> None:
    wf = workflow(team, sla={"run_duration": "1m"})
    back(trigger(team, wf), 120)
    sla.check()
    [miss] = misses(team)
    entry = AuditEvent.objects.dangerously_unscoped().get(action="sla_miss.create")
    assert (entry.tenant_id, entry.source, entry.actor_id) == (team.tenant.pk, "system", None)
    assert entry.object_id == str(miss.pk)
    assert entry.changes["after"]["sla"] == "run_duration: 1m"


def test_a_run_reopened_by_a_clear_counts_from_its_clear(team: Team) -> None:
    wf = workflow(team, sla={"run_duration": "1h"})
    run = run_to_end(trigger(team, wf))
    back(run, 3 * 3600)  # ran in time, three hours ago
    with tenant_scope([team.tenant]):
        clear_task(actor=Actor.cli(), run=run, task_id="a", downstream=False)
    run.refresh_from_db()
    assert run.state in ("queued", "running")
    assert sla.check() == 0
    back(run, 3601)  # the rerun is an hour old now
    assert sla.check() == 1


def test_runs_without_an_sla_and_other_tenants_runs_are_left_alone(team: Team) -> None:
    other = make_team("other", roles=[])
    back(trigger(team, workflow(team)), 3600)
    late = trigger(other, workflow(other, sla={"run_duration": "1m"}))
    back(late, 120)
    assert sla.check() == 1
    assert misses(team) == []
    [miss] = SlaMiss.objects.dangerously_unscoped().filter(tenant=other.tenant)
    assert miss.run_id == late.pk
    assert miss.event is not None
    assert miss.event.tenant_id == other.tenant.pk
    assert miss.event.data["tenant"] == "other"


# --- task duration -------------------------------------------------------------------------


TASK_SLA = {"a": {"type": "noop", "sla": {"duration": "1m"}}, "b": {"type": "noop"}}


def test_it_records_a_task_still_unfinished_after_its_duration(team: Team) -> None:
    wf = workflow(team, tasks=TASK_SLA)
    run = trigger(team, wf)
    attempt = start(run)
    start(run, "b")
    back(run, 61)
    assert sla.check() == 1  # b has no SLA
    ti = instance(run)
    [miss] = misses(team)
    assert (miss.kind, miss.key, miss.task_id, miss.run_id) == (
        "task_duration",
        f"task:{ti.pk}",
        "a",
        run.pk,
    )
    assert miss.sla == "duration: 1m"
    attempt.refresh_from_db()
    assert miss.due_at == attempt.started_at + dt.timedelta(minutes=1)
    [event] = sla_events(team)
    assert event.task_id == "a"
    assert event.data["task_id"] == "a"
    assert event.data["sla"] == {
        "kind": "task_duration",
        "sla": "duration: 1m",
        "due_at": miss.due_at.isoformat(),
    }
    assert event.data["run"]["id"] == run.pk
    assert event.data["url"].endswith(f"/runs/{run.pk}/")
    assert sla.check() == 0


def test_a_task_counts_from_its_first_try_across_retries(team: Team) -> None:
    tasks = {"a": {"type": "noop", "retries": 2, "retry_delay": 0, "sla": {"duration": "5m"}}}
    run = trigger(team, workflow(team, tasks=tasks))
    first = start(run)
    end(first, "failed")
    back(run, 4 * 60)  # the first try began four minutes ago
    engine.reconcile()  # the retry is due: queued again
    second = start(run)
    assert second.try_number == 2
    assert sla.check() == 0  # a minute left, counted from the first try
    back(run, 61)
    assert sla.check() == 1
    first.refresh_from_db()
    [miss] = misses(team)
    assert miss.due_at == first.started_at + dt.timedelta(minutes=5)


def test_it_records_a_task_that_ended_late_before_a_check_saw_it(team: Team) -> None:
    run = trigger(team, workflow(team, tasks=TASK_SLA))
    attempt = start(run)
    back(run, 90)
    end(attempt)
    assert instance(run).state == "success"
    assert sla.check() == 1
    [miss] = misses(team)
    assert (miss.kind, miss.task_id) == ("task_duration", "a")


def test_a_task_that_ended_in_time_or_never_started_is_not_a_miss(team: Team) -> None:
    tasks = {
        "a": {"type": "noop", "sla": {"duration": "1m"}},
        "b": {"type": "noop", "depends_on": ["a"], "sla": {"duration": "1m"}},
    }
    run = trigger(team, workflow(team, tasks=tasks))
    end(start(run))
    back(run, 3600)  # a ran at once an hour ago; b is queued but never started
    assert instance(run, "b").state == "queued"
    assert sla.check() == 0


def test_a_cleared_task_counts_from_its_new_first_try(team: Team) -> None:
    run = trigger(team, workflow(team, tasks=TASK_SLA))
    end(start(run))
    end(start(run, "b"))
    run = run_to_end(run)
    back(run, 3600)  # ran in time an hour ago
    with tenant_scope([team.tenant]):
        clear_task(actor=Actor.cli(), run=run, task_id="a", downstream=False)
    attempt = start(run)
    assert attempt.try_number == 2
    assert sla.check() == 0  # its new first try started just now
    back(run, 61)
    assert sla.check() == 1
    attempt.refresh_from_db()
    [miss] = misses(team)
    assert miss.due_at == attempt.started_at + dt.timedelta(minutes=1)


# --- the spec ------------------------------------------------------------------------------


def test_the_spec_refuses_a_deadline_without_a_schedule() -> None:
    with pytest.raises(Invalid) as caught:
        validate_spec({"name": "wf", "tasks": ONE_TASK, "sla": {"deadline": "06:00"}})
    [(path, message)] = caught.value.errors
    assert path == "sla.deadline"
    assert "needs a cron schedule" in message
    # With a schedule, it is accepted.
    validate_spec(
        {
            "name": "wf",
            "tasks": ONE_TASK,
            "schedule": {"cron": "0 2 * * *"},
            "sla": {"deadline": "06:00"},
        }
    )
