"""A workflow's schedule over REST and GraphQL: cron, timezone, catch-up, paused, the next
firing and the next 10 fire times in the workflow's timezone (as croniter and the cron
engine compute them); applying a new cron through the API moves the next firing at once;
viewers read it, another tenant's is a 404. A paused workflow is triggered only with force."""

from __future__ import annotations

import datetime as dt
import zoneinfo
from typing import Any

from croniter import croniter
from django.utils import timezone

from orchestrator.actors import Actor
from orchestrator.context import tenant_scope
from runs.models import WorkflowRun
from tests.harness import (
    EndpointCase,
    EndpointSuite,
    Team,
    assert_problem,
    gql,
    send,
)
from workflows import cron, scheduling
from workflows.models import Schedule, Workflow
from workflows.services import apply_workflow, set_paused

SCHEDULE = "/api/v1/tenants/{tenant}/workflows/{name}/schedule/"


def spec(cron_: str = "15 */3 * * *", tz: str = "Asia/Tokyo", **extra: Any) -> dict[str, Any]:
    return {
        "name": "nightly",
        "schedule": {"cron": cron_, "timezone": tz, "catchup": "latest"},
        "tasks": {"only": {"type": "noop"}},
        **extra,
    }


def apply(team: Team, data: dict[str, Any]) -> Workflow:
    with tenant_scope([team.tenant]):
        return apply_workflow(actor=Actor.cli(), tenant=team.tenant, data=data).workflow


def a_scheduled_workflow(team: Team) -> dict[str, str]:
    return {"name": apply(team, spec()).name}


def pause(team: Team, workflow: Workflow) -> None:
    with tenant_scope([team.tenant]):
        set_paused(actor=Actor.cli(), workflow=workflow, paused=True)


def read(team: Team, role: str = "viewer") -> Any:
    return send(team.tokens[role], "GET", SCHEDULE.format(tenant=team.slug, name="nightly"))


class TestScheduleEndpoint(EndpointSuite):
    cases = [EndpointCase("schedule", "GET", SCHEDULE, "viewer", setup=a_scheduled_workflow)]


def test_it_shows_the_next_ten_fire_times_as_croniter_does(team: Team) -> None:
    apply(team, spec())
    zone = zoneinfo.ZoneInfo("Asia/Tokyo")  # no DST: croniter alone is the reference
    before = croniter("15 */3 * * *", timezone.now().astimezone(zone))
    response = read(team)
    after = croniter("15 */3 * * *", timezone.now().astimezone(zone))
    assert response.status_code == 200, response.content
    body = response.json()
    expected = [[it.get_next(dt.datetime).isoformat() for _ in range(10)] for it in (before, after)]
    assert body["next_fire_times"] in expected
    assert body["next_fire_times"][0].endswith("+09:00")
    assert body["next_run_at"] == body["next_fire_times"][0]
    assert {k: body[k] for k in ("cron", "timezone", "catchup", "paused")} == {
        "cron": "15 */3 * * *",
        "timezone": "Asia/Tokyo",
        "catchup": "latest",
        "paused": False,
    }


def test_it_lists_fire_times_across_a_dst_change_as_the_cron_engine_does(team: Team) -> None:
    workflow = apply(team, spec("30 2 * * *", "Europe/Berlin"))
    schedule = Schedule.objects.dangerously_unscoped().get(workflow=workflow)
    now = dt.datetime(2026, 3, 25, tzinfo=dt.UTC)
    engine = cron.fire_times("30 2 * * *", "Europe/Berlin", now)
    listed = scheduling.upcoming(schedule, now=now)
    assert listed == [next(engine) for _ in range(10)]
    assert [f.isoformat() for f in listed[3:6]] == [
        "2026-03-28T02:30:00+01:00",
        "2026-03-29T03:30:00+02:00",  # 02:30 does not exist that day
        "2026-03-30T02:30:00+02:00",
    ]


def test_it_moves_the_next_firing_at_once_when_the_cron_changes_through_the_api(
    team: Team,
) -> None:
    apply(team, spec("0 0 1 1 *", "UTC"))
    url = f"/api/v1/tenants/{team.slug}/workflows/nightly/"
    response = send(team.tokens["editor"], "PUT", url, spec("*/5 * * * *", "UTC"))
    assert response.status_code == 200, response.content
    next_run_at = dt.datetime.fromisoformat(read(team).json()["next_run_at"])
    assert dt.timedelta(0) < next_run_at - timezone.now() <= dt.timedelta(minutes=5)


def test_it_shows_a_paused_schedule_with_no_next_firing(team: Team) -> None:
    pause(team, apply(team, spec()))
    body = read(team).json()
    assert (body["paused"], body["next_run_at"]) == (True, None)
    assert len(body["next_fire_times"]) == 10  # what it would fire once unpaused


def test_it_answers_not_found_for_a_workflow_without_schedule(team: Team) -> None:
    data = spec()
    del data["schedule"]
    apply(team, data)
    assert_problem(read(team), 404)


SCHEDULE_QUERY = """
query($t: String!, $w: String!) {
  workflow(tenant: $t, name: $w) {
    schedule { cron timezone catchup paused nextRunAt nextFireTimes }
  }
}"""


def test_it_shows_the_schedule_over_graphql(team: Team, outsider: Team) -> None:
    apply(team, spec())
    rest = read(team).json()
    body = gql(team.tokens["viewer"], SCHEDULE_QUERY, {"t": team.slug, "w": "nightly"}).json()
    schedule = body["data"]["workflow"]["schedule"]
    assert schedule["cron"] == "15 */3 * * *"
    assert schedule["nextRunAt"] == rest["next_run_at"]
    assert len(schedule["nextFireTimes"]) == 10
    assert schedule["nextFireTimes"][0].endswith("+09:00")
    hidden = gql(outsider.tokens["owner"], SCHEDULE_QUERY, {"t": team.slug, "w": "nightly"})
    assert hidden.json()["errors"][0]["extensions"]["code"] == "NOT_FOUND"


# --- a paused workflow is triggered only with force -------------------------------------

TRIGGER = """
mutation($t: String!, $w: String!, $force: Boolean!) {
  triggerRun(tenant: $t, workflow: $w, force: $force) { id triggerSource }
}"""


def runs_of(workflow: Workflow) -> int:
    return WorkflowRun.objects.dangerously_unscoped().filter(workflow=workflow).count()


def test_it_refuses_to_trigger_a_paused_workflow_without_force_over_rest(team: Team) -> None:
    workflow = apply(team, spec())
    pause(team, workflow)
    url = f"/api/v1/tenants/{team.slug}/workflows/nightly/runs/"
    body = assert_problem(send(team.tokens["operator"], "POST", url, {}), 409)
    assert "paused" in body["detail"]
    assert "force" in body["detail"]
    assert runs_of(workflow) == 0
    assert_problem(send(team.tokens["viewer"], "POST", url, {"force": True}), 403)
    response = send(team.tokens["operator"], "POST", url, {"force": True})
    assert response.status_code == 201, response.content
    assert runs_of(workflow) == 1


def test_it_refuses_to_trigger_a_paused_workflow_without_force_over_graphql(
    team: Team,
) -> None:
    workflow = apply(team, spec())
    pause(team, workflow)
    refused = gql(
        team.tokens["operator"], TRIGGER, {"t": team.slug, "w": "nightly", "force": False}
    )
    assert refused.json()["errors"][0]["extensions"]["code"] == "CONFLICT"
    assert runs_of(workflow) == 0
    forced = gql(team.tokens["operator"], TRIGGER, {"t": team.slug, "w": "nightly", "force": True})
    assert forced.json()["data"]["triggerRun"]["triggerSource"] == "graphql"
    assert runs_of(workflow) == 1
