"""Catch-up after an outage and on unpause: an hourly schedule handled up to 09:30 and next
ticked at 12:30 missed 10:00, 11:00 and 12:00. `none` runs none of them, `latest` the newest,
`all` every one oldest first (capped by the tenant's max_catchup_runs, keeping the newest),
queued so max_active_runs holds. Firings within the grace always run. Time is passed in."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest

from orchestrator.actors import Actor
from orchestrator.context import tenant_scope
from orchestrator.models import Tenant
from runs import scheduling
from runs.models import WorkflowRun
from tests.harness import Team
from workflows.models import Schedule, Workflow
from workflows.services import apply_workflow, set_paused

UTC = dt.UTC


def at(hour: int, minute: int = 0, second: int = 0) -> dt.datetime:
    return dt.datetime(2026, 3, 2, hour, minute, second, tzinfo=UTC)


def apply(team: Team, catchup: str, **extra: Any) -> Workflow:
    data = {
        "name": "hourly",
        "schedule": {"cron": "0 * * * *", "timezone": "UTC", "catchup": catchup},
        "tasks": {"only": {"type": "noop"}},
        **extra,
    }
    with tenant_scope([team.tenant]):
        result = apply_workflow(actor=Actor.cli(), tenant=team.tenant, data=data, now=at(9, 30))
    return result.workflow


def pause(team: Team, workflow: Workflow, paused: bool, now: dt.datetime | None = None) -> None:
    with tenant_scope([team.tenant]):
        set_paused(actor=Actor.cli(), workflow=workflow, paused=paused, now=now)


def logical_dates(workflow: Workflow) -> list[dt.datetime]:
    rows = WorkflowRun.objects.dangerously_unscoped().filter(workflow=workflow)
    return list(rows.order_by("id").values_list("logical_date", flat=True))


def next_run_at(workflow: Workflow) -> dt.datetime | None:
    return Schedule.objects.dangerously_unscoped().get(workflow=workflow).next_run_at


MISSED = {"none": [], "latest": [at(11)], "all": [at(9), at(10), at(11)]}


@pytest.mark.parametrize("catchup", MISSED)
def test_it_catches_up_after_a_three_hour_outage_as_the_policy_says(
    team: Team, catchup: str
) -> None:
    workflow = apply(team, catchup)
    assert scheduling.tick(now=at(12, 30)) == len(MISSED[catchup])
    assert logical_dates(workflow) == MISSED[catchup]
    assert next_run_at(workflow) == at(13)
    # Back to normal: the next firing runs on time, whatever the policy.
    assert scheduling.tick(now=at(13, 0, 2)) == 1
    assert logical_dates(workflow) == [*MISSED[catchup], at(12)]


@pytest.mark.parametrize("catchup", MISSED)
def test_it_always_runs_a_firing_within_the_grace(team: Team, catchup: str) -> None:
    workflow = apply(team, catchup)
    assert scheduling.tick(now=at(10, 0, 59)) == 1
    assert logical_dates(workflow) == [at(9)]


def test_it_runs_only_the_firing_on_time_with_latest_when_one_is_due(team: Team) -> None:
    workflow = apply(team, "latest")
    assert scheduling.tick(now=at(12, 0, 30)) == 1  # 10:00 and 11:00 missed, 12:00 on time
    assert logical_dates(workflow) == [at(11)]


def test_it_caps_catch_up_at_the_tenant_quota_keeping_the_newest(team: Team) -> None:
    Tenant.objects.filter(pk=team.tenant.pk).update(quotas={"max_catchup_runs": 2})
    workflow = apply(team, "all")
    assert scheduling.tick(now=at(12, 30)) == 2
    assert logical_dates(workflow) == [at(10), at(11)]
    assert next_run_at(workflow) == at(13)


def test_it_queues_caught_up_runs_within_max_active_runs(team: Team) -> None:
    workflow = apply(team, "all", max_active_runs=1)
    assert scheduling.tick(now=at(12, 30)) == 3
    runs = WorkflowRun.objects.dangerously_unscoped().filter(workflow=workflow).order_by("id")
    assert list(runs.values_list("state", flat=True)) == ["running", "queued", "queued"]


@pytest.mark.parametrize("catchup", MISSED)
def test_it_follows_the_policy_when_unpaused_after_missed_firings(team: Team, catchup: str) -> None:
    workflow = apply(team, catchup)
    pause(team, workflow, True)
    for hour in (10, 11, 12):
        assert scheduling.tick(now=at(hour, 0, 1)) == 0
    assert next_run_at(workflow) is None
    pause(team, workflow, False)
    assert scheduling.tick(now=at(12, 30)) == len(MISSED[catchup])
    assert logical_dates(workflow) == MISSED[catchup]
    assert scheduling.tick(now=at(12, 30, 1)) == 0  # no burst after that
    assert next_run_at(workflow) == at(13)


def test_it_fires_normally_when_unpaused_before_anything_was_missed(team: Team) -> None:
    workflow = apply(team, "none")
    pause(team, workflow, True, now=at(9, 40))
    pause(team, workflow, False, now=at(9, 45))
    assert next_run_at(workflow) == at(10)
    assert scheduling.tick(now=at(10, 0, 1)) == 1


@pytest.mark.parametrize(("catchup", "runs"), [("none", 0), ("latest", 1), ("all", 1)])
def test_it_counts_a_firing_while_paused_as_missed_even_within_the_grace(
    team: Team, catchup: str, runs: int
) -> None:
    workflow = apply(team, catchup)
    pause(team, workflow, True, now=at(9, 40))
    assert scheduling.tick(now=at(10, 0, 1)) == 0
    # Unpaused 30 s after the 10:00 firing: recent, but it fell while paused.
    pause(team, workflow, False, now=at(10, 0, 30))
    assert scheduling.tick(now=at(10, 0, 31)) == runs
    assert logical_dates(workflow) == [at(9)] * runs
    assert next_run_at(workflow) == at(11)
