"""The `sla.deadline` check: on a day the schedule fires by the deadline, a run of that
day's firings must have succeeded by then; also a miss when the beat was stopped and no run
exists. Time is passed in (`now`), on the day after today, so that the workflows made now
already existed; runs are made by the scheduler tick at that day's firing."""

from __future__ import annotations

import datetime as dt
import zoneinfo
from typing import Any

import pytest
from django.utils import timezone

from notifications import sla
from notifications.models import SlaMiss
from orchestrator.actors import Actor
from orchestrator.context import tenant_scope
from runs import scheduling
from runs.models import Event, WorkflowRun
from runs.services import trigger_run
from tests.harness import Team, make_team
from workflows.models import Schedule, Workflow
from workflows.services import apply_workflow, delete_workflow, set_paused

pytestmark = pytest.mark.django_db

UTC = dt.UTC
DAY = (timezone.now() + dt.timedelta(days=1)).date()  # tomorrow: after every workflow made


def at(hour: int, minute: int = 0, second: int = 0, zone: dt.tzinfo = UTC) -> dt.datetime:
    return dt.datetime.combine(DAY, dt.time(hour, minute, second), zone)


@pytest.fixture
def team(db: None, settings: Any) -> Team:
    settings.PUBLIC_URL = "https://orc.example.com/"
    return make_team("acme", roles=[])


def daily(
    team: Team, deadline: str = "06:00", cron: str = "0 2 * * *", tz: str = "UTC", **spec: Any
) -> Workflow:
    data = {
        "name": "daily-sales",
        "schedule": {"cron": cron, "timezone": tz, "catchup": "latest"},
        "sla": {"deadline": deadline},
        "tasks": {"load": {"type": "noop"}},
        **spec,
    }
    with tenant_scope([team.tenant]):
        return apply_workflow(actor=Actor.cli(), tenant=team.tenant, data=data).workflow


def fire(now: dt.datetime) -> WorkflowRun:
    """The scheduler tick at `now` makes the firing's run."""
    assert scheduling.tick(now=now) == 1
    run = WorkflowRun.objects.dangerously_unscoped().order_by("-id").first()
    assert run is not None
    return run


def ended(run: WorkflowRun, state: str, at: dt.datetime) -> WorkflowRun:
    WorkflowRun.objects.dangerously_unscoped().filter(pk=run.pk).update(state=state, ended_at=at)
    run.refresh_from_db()
    return run


def misses(team: Team) -> list[SlaMiss]:
    return list(SlaMiss.objects.dangerously_unscoped().filter(tenant=team.tenant).order_by("id"))


def test_no_run_at_all_is_a_miss_when_the_beat_was_stopped(team: Team) -> None:
    wf = daily(team)
    # No tick ran at 02:00: the beat was down.
    assert sla.check(now=at(5, 59, 59)) == 0  # not due yet
    assert sla.check(now=at(6, 0, 2)) == 1
    [miss] = misses(team)
    assert miss.kind == "deadline"
    assert miss.key == f"deadline:{wf.pk}:{at(6).isoformat()}"
    assert (miss.workflow_id, miss.run_id, miss.task_id) == (wf.pk, None, "")
    assert miss.sla == "deadline: 06:00 (UTC)"
    assert miss.due_at == at(6)
    event = Event.objects.dangerously_unscoped().get(type="sla.missed")
    assert miss.event_id == event.pk
    assert (event.workflow_id, event.run_id, event.task_id) == (wf.pk, None, "")
    assert event.data == {
        "tenant": "acme",
        "workflow": "daily-sales",
        "sla": {"kind": "deadline", "sla": "deadline: 06:00 (UTC)", "due_at": at(6).isoformat()},
        "run": None,
        "url": None,
    }
    assert sla.check(now=at(6, 0, 4)) == 0  # recorded once
    assert len(misses(team)) == 1


def test_the_days_scheduled_run_succeeding_before_the_deadline_is_no_miss(team: Team) -> None:
    daily(team)
    run = fire(at(2, 0, 1))
    # Its interval ends at the firing (02:00 that day); its logical date is the day before.
    assert (run.data_interval_end, run.logical_date) == (at(2), at(2) - dt.timedelta(days=1))
    ended(run, "success", at(3))
    assert sla.check(now=at(6, 0, 2)) == 0
    assert misses(team) == []


def test_a_run_succeeding_after_the_deadline_or_failing_is_a_miss_naming_it(team: Team) -> None:
    wf = daily(team)
    run = ended(fire(at(2, 0, 1)), "success", at(6, 0, 1))
    assert sla.check(now=at(6, 0, 2)) == 1
    [miss] = misses(team)
    assert miss.run_id == run.pk
    event = Event.objects.dangerously_unscoped().get(type="sla.missed")
    assert event.run_id == run.pk
    assert event.data["run"]["id"] == run.pk
    assert event.data["run"]["state"] == "success"
    assert event.data["url"] == f"https://orc.example.com/t/acme/runs/{run.pk}/"
    # A failed run is a miss too.
    other = make_team("other", roles=[])
    failed_wf = daily(other)
    failed = ended(fire(at(2, 0, 1)), "failed", at(2, 30))
    assert failed.workflow_id == failed_wf.pk != wf.pk
    assert sla.check(now=at(6, 0, 3)) == 1
    assert SlaMiss.objects.dangerously_unscoped().get(tenant=other.tenant).run_id == failed.pk


def test_a_run_triggered_by_hand_does_not_meet_the_deadline(team: Team) -> None:
    wf = daily(team)
    with tenant_scope([team.tenant]):
        manual = trigger_run(actor=Actor.cli(), workflow=wf).run
    ended(manual, "success", at(3))
    assert sla.check(now=at(6, 0, 2)) == 1


def test_the_deadline_is_in_the_schedules_timezone(team: Team) -> None:
    berlin = zoneinfo.ZoneInfo("Europe/Berlin")
    daily(team, tz="Europe/Berlin")
    deadline = at(6, zone=berlin)
    assert sla.check(now=deadline - dt.timedelta(seconds=1)) == 0
    assert sla.check(now=deadline + dt.timedelta(seconds=1)) == 1
    [miss] = misses(team)
    assert miss.due_at == deadline
    assert miss.sla == "deadline: 06:00 (Europe/Berlin)"
    event = Event.objects.dangerously_unscoped().get(type="sla.missed")
    assert event.data["sla"]["due_at"] == deadline.isoformat()  # in the schedule's timezone


def test_a_day_the_schedule_does_not_fire_by_the_deadline_owes_nothing(team: Team) -> None:
    daily(team, cron="0 8 * * *")  # fires after the deadline
    assert sla.check(now=at(6, 0, 2)) == 0
    assert misses(team) == []


def test_paused_and_deleted_workflows_owe_nothing(team: Team) -> None:
    paused = daily(team)
    with tenant_scope([team.tenant]):
        set_paused(actor=Actor.cli(), workflow=paused, paused=True)
    other = make_team("other", roles=[])
    deleted = daily(other)
    with tenant_scope([other.tenant]):
        delete_workflow(actor=Actor.cli(), workflow=deleted)
    assert sla.check(now=at(6, 0, 2)) == 0
    assert not SlaMiss.objects.dangerously_unscoped().exists()


def test_firings_before_the_workflow_existed_or_while_it_was_paused_owe_nothing(
    team: Team,
) -> None:
    young = daily(team)
    # As if it had been created at 03:00 that day, after the day's 02:00 firing.
    Workflow.objects.dangerously_unscoped().filter(pk=young.pk).update(created_at=at(3))
    other = make_team("other", roles=[])
    resumed = daily(other)
    # Unpaused at 04:00: the 02:00 firing fell while it was paused.
    Schedule.objects.dangerously_unscoped().filter(workflow=resumed).update(resumed_at=at(4))
    assert sla.check(now=at(6, 0, 2)) == 0
    assert not SlaMiss.objects.dangerously_unscoped().exists()


def test_only_the_latest_deadline_is_checked_while_it_is_recent(team: Team) -> None:
    daily(team)
    # The checker was stopped over the deadline for longer than LOOKBACK: that day is not
    # backfilled.
    assert sla.check(now=at(6) + sla.LOOKBACK + dt.timedelta(seconds=1)) == 0
    assert misses(team) == []
