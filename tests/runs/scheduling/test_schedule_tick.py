"""The scheduler tick on PostgreSQL: each firing makes one run, with its logical date and
data interval; a tick processed twice, a replayed position and two ticks racing still make
one run per interval; paused, deleted and archived workflows fire nothing; start and end
bound the intervals; the tick's beat entry exists. Time is passed in (`now`)."""

from __future__ import annotations

import datetime as dt
import threading
from typing import Any

import pytest
from django.db import connection
from django_celery_beat.models import PeriodicTask

from orchestrator.actors import Actor
from orchestrator.context import tenant_scope
from orchestrator.models import AuditEvent, Tenant
from runs import scheduling
from runs.models import WorkflowRun
from runs.periodic import ensure_periodic_tasks
from tests.harness import Team, make_team
from workflows.models import Schedule, Workflow
from workflows.services import apply_workflow, delete_workflow, set_paused

UTC = dt.UTC
T0 = dt.datetime(2026, 3, 2, 9, 30, tzinfo=UTC)


def at(hour: int, minute: int = 0, second: int = 0, day: int = 2) -> dt.datetime:
    return dt.datetime(2026, 3, day, hour, minute, second, tzinfo=UTC)


def spec(name: str = "hourly", **schedule: Any) -> dict[str, Any]:
    return {
        "name": name,
        "schedule": {"cron": "0 * * * *", "timezone": "UTC", "catchup": "all", **schedule},
        "tasks": {"only": {"type": "noop"}},
    }


def apply(team: Team, data: dict[str, Any], now: dt.datetime = T0) -> Workflow:
    with tenant_scope([team.tenant]):
        return apply_workflow(actor=Actor.cli(), tenant=team.tenant, data=data, now=now).workflow


def intervals(
    workflow: Workflow,
) -> list[tuple[dt.datetime, dt.datetime | None, dt.datetime | None]]:
    rows = WorkflowRun.objects.dangerously_unscoped().filter(workflow=workflow)
    return list(
        rows.order_by("logical_date").values_list(
            "logical_date", "data_interval_start", "data_interval_end"
        )
    )


def schedule_of(workflow: Workflow) -> Schedule:
    return Schedule.objects.dangerously_unscoped().get(workflow=workflow)


def test_it_keeps_the_next_fire_time_in_the_database(team: Team) -> None:
    workflow = apply(team, spec())
    schedule = schedule_of(workflow)
    assert (schedule.next_run_at, schedule.handled_until) == (at(10), T0)
    assert (schedule.cron, schedule.timezone, schedule.catchup) == ("0 * * * *", "UTC", "all")


def test_it_makes_one_run_per_firing_with_its_logical_date_and_interval(team: Team) -> None:
    workflow = apply(team, spec())
    assert scheduling.tick(now=at(9, 59, 59)) == 0
    assert scheduling.tick(now=at(10, 0, 1)) == 1
    assert scheduling.tick(now=at(11, 0, 0)) == 1
    assert intervals(workflow) == [(at(9), at(9), at(10)), (at(10), at(10), at(11))]
    run = WorkflowRun.objects.dangerously_unscoped().filter(workflow=workflow).first()
    assert run is not None
    assert (run.trigger_source, run.triggered_by_id, run.state) == ("schedule", None, "running")
    assert schedule_of(workflow).next_run_at == at(12)
    assert schedule_of(workflow).last_logical_date == at(10)


def test_it_audits_each_scheduled_run_as_the_system(team: Team) -> None:
    workflow = apply(team, spec())
    scheduling.tick(now=at(10, 0, 1))
    event = AuditEvent.objects.dangerously_unscoped().filter(action="run.trigger").get()
    assert (event.tenant_id, event.source, event.actor_id) == (team.tenant.pk, "system", None)
    assert event.changes["after"]["workflow"] == workflow.name
    assert event.changes["extra"]["logical_date"] == at(9).isoformat()


def test_it_makes_one_run_when_a_tick_is_processed_twice(team: Team) -> None:
    workflow = apply(team, spec())
    assert scheduling.tick(now=at(10, 0, 1)) == 1
    assert scheduling.tick(now=at(10, 0, 1)) == 0
    # The same firing claimed again (a stale position replayed): the unique interval holds
    # and the tick goes on to the next firing.
    Schedule.objects.dangerously_unscoped().filter(workflow=workflow).update(
        next_run_at=at(10), handled_until=T0
    )
    assert scheduling.tick(now=at(11, 0, 1)) == 1
    assert intervals(workflow) == [(at(9), at(9), at(10)), (at(10), at(10), at(11))]


@pytest.mark.django_db(transaction=True)
def test_it_makes_one_run_per_interval_when_two_ticks_race() -> None:
    team = make_team("acme", roles=[])
    workflows = [apply(team, spec(f"flow-{i}")) for i in range(5)]
    barrier = threading.Barrier(2)
    made: list[int] = []

    def race() -> None:
        try:
            barrier.wait()
            made.append(scheduling.tick(now=at(12, 30)))  # 10:00, 11:00, 12:00 each
        finally:
            connection.close()

    threads = [threading.Thread(target=race) for _ in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert sum(made) == 15
    for workflow in workflows:
        assert [i[0] for i in intervals(workflow)] == [at(9), at(10), at(11)]


def test_it_fires_nothing_for_a_paused_deleted_or_archived_workflow(team: Team) -> None:
    paused, deleted = apply(team, spec("paused")), apply(team, spec("deleted"))
    other = make_team("globex", roles=[])
    in_archived_tenant = apply(other, spec())
    with tenant_scope([team.tenant]):
        set_paused(actor=Actor.cli(), workflow=paused, paused=True)
        delete_workflow(actor=Actor.cli(), workflow=deleted)
    Tenant.objects.filter(pk=other.tenant.pk).update(archived_at=T0)
    assert scheduling.tick(now=at(12, 0, 1)) == 0
    assert schedule_of(paused).next_run_at is None
    assert schedule_of(deleted).next_run_at is None
    assert intervals(in_archived_tenant) == []


def test_it_fires_only_intervals_between_start_and_end(team: Team) -> None:
    daily = {"cron": "0 2 * * *", "start": "2026-03-05", "end": "2026-03-07"}
    workflow = apply(team, spec(**daily), now=at(0, day=1))
    # The first interval starts at the first firing at or after start: 5 March 02:00.
    assert schedule_of(workflow).next_run_at == at(2, day=6)
    for day in range(1, 12):
        scheduling.tick(now=at(2, 0, 1, day=day))
    assert [i[0] for i in intervals(workflow)] == [at(2, day=5), at(2, day=6)]
    assert schedule_of(workflow).next_run_at is None  # the end is passed


def test_it_removes_the_schedule_when_the_spec_drops_it(team: Team) -> None:
    workflow = apply(team, spec())
    plain = spec()
    del plain["schedule"]
    apply(team, plain)
    assert not Schedule.objects.dangerously_unscoped().filter(workflow=workflow).exists()
    assert scheduling.tick(now=at(12, 0, 1)) == 0


@pytest.mark.django_db
def test_it_registers_the_tick_with_celery_beat_and_keeps_staff_tuning() -> None:
    ensure_periodic_tasks()
    entry = PeriodicTask.objects.get(name="workflows.schedule_tick")
    assert (entry.task, entry.queue, entry.enabled) == (
        "workflows.schedule_tick",
        "housekeeping",
        True,
    )
    assert entry.interval is not None
    assert (entry.interval.every, entry.interval.period) == (1, "seconds")
    assert 0 < (entry.expire_seconds or 0) <= 10
    PeriodicTask.objects.filter(pk=entry.pk).update(expire_seconds=30)
    ensure_periodic_tasks()
    assert PeriodicTask.objects.get(pk=entry.pk).expire_seconds == 30


def test_it_restarts_from_now_on_a_new_cron_and_keeps_its_place_otherwise(team: Team) -> None:
    workflow = apply(team, spec())
    scheduling.tick(now=at(10, 0, 1))
    apply(team, spec(catchup="none"), now=at(12, 30))  # same cron: 11:00 and 12:00 still owed
    assert (schedule_of(workflow).next_run_at, schedule_of(workflow).catchup) == (at(11), "none")
    apply(team, spec(cron="30 * * * *"), now=at(12, 40))  # a new cron owes nothing before now
    assert schedule_of(workflow).next_run_at == at(13, 30)
    assert scheduling.tick(now=at(13, 0, 1)) == 0
    assert scheduling.tick(now=at(13, 30, 1)) == 1
    assert intervals(workflow)[-1] == (at(12, 30), at(12, 30), at(13, 30))
