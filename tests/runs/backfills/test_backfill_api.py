"""Backfills over REST and GraphQL, without workers: the intervals come from the cron
engine (dates are whole days in the workflow's timezone), a dry run stores nothing, an
interval that already has a run is skipped or rerun as `reprocess` says, the feeder keeps
max_active_runs runs going in slots of their own (a scheduled run never waits for them),
and pause, resume and cancel do what they say, each audited once.

In a test transaction no message goes out and nothing executes: a run "ends" here by an
UPDATE, and the feeder is called as the engine's hook or the reconciler would."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from django.utils import timezone

from orchestrator.actors import Actor
from orchestrator.context import tenant_scope
from runs import backfills, engine
from runs.models import Backfill, TaskInstance, WorkflowRun
from tests.harness import (
    Team,
    assert_problem,
    audit_count,
    gql,
    new_audit_events,
    send,
    tenant_state,
)
from workflows import cron
from workflows.models import Workflow
from workflows.services import apply_workflow

# Tests look across tenants: every use says so.
unscoped_runs = WorkflowRun.objects.dangerously_unscoped
unscoped_instances = TaskInstance.objects.dangerously_unscoped

UTC = dt.UTC
DAILY: dict[str, Any] = {
    "name": "daily",
    "schedule": {"cron": "0 2 * * *", "timezone": "Europe/Berlin"},
    "max_active_runs": 1,
    "tasks": {"a": {"type": "noop"}, "b": {"type": "noop", "depends_on": ["a"]}},
}


def apply(team: Team, spec: dict[str, Any] = DAILY) -> Workflow:
    with tenant_scope([team.tenant]):
        return apply_workflow(actor=Actor.cli(), tenant=team.tenant, data=spec).workflow


def url(team: Team, suffix: str = "", workflow: str = "daily") -> str:
    return f"/api/v1/tenants/{team.slug}/workflows/{workflow}/backfills/{suffix}"


def backfill_url(team: Team, backfill_id: int, suffix: str = "") -> str:
    return f"/api/v1/tenants/{team.slug}/backfills/{backfill_id}/{suffix}"


def post(team: Team, body: dict[str, Any], role: str = "operator") -> Any:
    return send(team.tokens[role], "POST", url(team), body)


def berlin_2am(day: int, month: int = 1) -> dt.datetime:
    """02:00 in Berlin in winter (01:00 UTC): a logical date of DAILY."""
    return dt.datetime(2026, month, day, 1, tzinfo=UTC)


def scheduled_run(workflow: Workflow, day: int, state: str = "running") -> WorkflowRun:
    """The run the scheduler tick made for a day's interval, left in `state`."""
    start = berlin_2am(day)
    run = engine.create_run(
        workflow=workflow,
        params={},
        source="schedule",
        user_id=None,
        logical_date=start,
        interval=(start, start + dt.timedelta(days=1)),
    )
    engine.start_queued_runs(workflow.pk)
    if state not in ("queued", "running"):
        end(run, state)
    run.refresh_from_db()
    return run


def end(run: WorkflowRun, state: str) -> None:
    """End a run as the engine would have: every instance success, or failed."""
    ti_state = "success" if state == "success" else "failed"
    now = timezone.now()
    unscoped_instances().filter(run=run).update(
        state=ti_state, try_number=1, ended_at=now, pending_upstreams=0
    )
    unscoped_runs().filter(pk=run.pk).update(state=state, ended_at=now)


def backfill_runs(backfill_id: int) -> list[WorkflowRun]:
    return list(unscoped_runs().filter(backfill_id=backfill_id).order_by("logical_date"))


def by_state(backfill_id: int) -> dict[str, int]:
    counts: dict[str, int] = {}
    for run in backfill_runs(backfill_id):
        counts[run.state] = counts.get(run.state, 0) + 1
    return counts


def finish_active(backfill_id: int, state: str = "success") -> None:
    for run in unscoped_runs().filter(backfill_id=backfill_id, state__in=["queued", "running"]):
        end(run, state)


# --- create and dry run ------------------------------------------------------------------


def test_it_creates_a_backfill_that_starts_its_first_runs_at_once(team: Team) -> None:
    apply(team)
    count = audit_count(team.tenant)
    response = post(team, {"start": "2026-01-01", "end": "2026-01-10", "max_active_runs": 3})
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["workflow"] == "daily"
    assert body["state"] == "running"
    assert body["reprocess"] == "none"
    assert body["max_active_runs"] == 3
    assert body["created_by"] == "acme-operator"
    assert body["start"] == "2025-12-31T23:00:00Z"  # midnight in Berlin
    assert body["progress"] == {
        "total": 10,
        "pending": 7,
        "created": 3,
        "rerun": 0,
        "skipped": 0,
        "queued": 0,
        "running": 3,
        "succeeded": 0,
        "failed": 0,
        "cancelled": 0,
    }
    made = backfill_runs(body["id"])
    assert [r.logical_date for r in made] == [berlin_2am(1), berlin_2am(2), berlin_2am(3)]
    assert [r.data_interval_end for r in made] == [berlin_2am(2), berlin_2am(3), berlin_2am(4)]
    assert {(r.trigger_source, r.state) for r in made} == {("backfill", "running")}
    [event] = new_audit_events(team.tenant, count)
    assert event.action == "backfill.create"
    assert event.changes["after"]["intervals"] == 10


def test_it_gives_the_intervals_of_the_cron_engine_on_a_dst_day(team: Team) -> None:
    """29 March 2026: Berlin skips 02:00-03:00, so the 02:00 firing happens at 03:00 CEST."""
    apply(team)
    body = {"start": "2026-03-28", "end": "2026-03-30", "dry_run": True}
    response = post(team, body)
    assert response.status_code == 200, response.content
    got = [(i["data_interval_start"], i["data_interval_end"]) for i in response.json()["intervals"]]
    expected = cron.intervals_between(
        "0 2 * * *",
        "Europe/Berlin",
        dt.datetime(2026, 3, 27, 23, tzinfo=UTC),
        dt.datetime(2026, 3, 30, 22, tzinfo=UTC) - dt.timedelta(microseconds=1),
    )
    assert got == [(s.isoformat().replace("+00:00", "Z"), e.isoformat().replace("+00:00", "Z"))
                   for s, e in expected]  # fmt: skip
    assert got[1] == ("2026-03-29T01:00:00Z", "2026-03-30T00:00:00Z")


def test_it_reads_a_naive_time_in_the_workflows_timezone(team: Team) -> None:
    apply(team)
    body = {"start": "2026-01-05T02:00:00", "end": "2026-01-05T02:00:00", "dry_run": True}
    [interval] = post(team, body).json()["intervals"]
    assert interval["logical_date"] == "2026-01-05T01:00:00Z"
    aware = {"start": "2026-01-05T02:00:00Z", "end": "2026-01-06T01:00:00Z", "dry_run": True}
    [interval] = post(team, aware).json()["intervals"]
    assert interval["logical_date"] == "2026-01-06T01:00:00Z"


def test_a_dry_run_lists_the_intervals_and_creates_nothing(team: Team) -> None:
    workflow = apply(team)
    scheduled_run(workflow, 2, "success")
    before = tenant_state(team.tenant)
    body = {"start": "2026-01-01", "end": "2026-01-03", "dry_run": True, "reverse": True}
    response = post(team, body)
    assert response.status_code == 200, response.content
    assert response.json()["total"] == 3
    plan = [(i["logical_date"], i["action"]) for i in response.json()["intervals"]]
    assert plan == [
        ("2026-01-03T01:00:00Z", "create"),
        ("2026-01-02T01:00:00Z", "skip"),
        ("2026-01-01T01:00:00Z", "create"),
    ]
    assert tenant_state(team.tenant) == before  # no backfill, no run, no audit event


def test_a_reversed_backfill_runs_the_newest_interval_first(team: Team) -> None:
    apply(team)
    body = {"start": "2026-01-01", "end": "2026-01-05", "reverse": True, "max_active_runs": 2}
    backfill_id = post(team, body).json()["id"]
    assert [r.logical_date for r in backfill_runs(backfill_id)] == [berlin_2am(4), berlin_2am(5)]


@pytest.mark.parametrize(
    ("reprocess", "plan", "rerun"),
    [
        ("none", ["create", "skip", "skip", "skip", "skip", "create"], []),
        ("failed", ["create", "skip", "rerun", "rerun", "skip", "create"], [3, 4]),
        ("all", ["create", "rerun", "rerun", "rerun", "skip", "create"], [2, 3, 4]),
    ],
)
def test_it_skips_or_reruns_intervals_that_have_a_run(
    team: Team, reprocess: str, plan: list[str], rerun: list[int]
) -> None:
    """Day 2 succeeded, day 3 failed, day 4 was cancelled, day 5 is still running; a manual
    run with day 6's logical date does not own the interval."""
    workflow = apply(team)
    existing = {
        2: scheduled_run(workflow, 2, "success"),
        3: scheduled_run(workflow, 3, "failed"),
        4: scheduled_run(workflow, 4, "cancelled"),
        5: scheduled_run(workflow, 5, "running"),
    }
    manual = engine.create_run(
        workflow=workflow, params={}, source="api", user_id=None, logical_date=berlin_2am(6)
    )
    body = {"start": "2026-01-01", "end": "2026-01-06", "reprocess": reprocess}
    dry = post(team, {**body, "dry_run": True}).json()["intervals"]
    assert [i["action"] for i in dry] == plan
    assert [i["run"] for i in dry] == [None, *(existing[d].pk for d in (2, 3, 4, 5)), None]
    response = post(team, {**body, "max_active_runs": 10})
    assert response.status_code == 201, response.content
    progress = response.json()["progress"]
    assert progress["created"] == 2
    assert progress["rerun"] == len(rerun)
    assert progress["skipped"] == 4 - len(rerun)
    made = backfill_runs(response.json()["id"])
    assert {r.logical_date for r in made} == {berlin_2am(d) for d in (1, 6, *rerun)}
    for day, run in existing.items():
        run.refresh_from_db()
        if day in rerun:  # the same run, in the same interval, going again
            assert (run.backfill_id, run.state) == (response.json()["id"], "running")
            assert run.trigger_source == "schedule"
        else:
            assert run.backfill_id is None
    assert unscoped_runs().get(pk=manual.pk).backfill_id is None


@pytest.mark.parametrize(
    ("body", "path"),
    [
        ({"start": "2026-01-05", "end": "2026-01-01"}, "end"),
        ({"start": "yesterday", "end": "2026-01-01"}, "start"),
        ({"start": "2026-02-30", "end": "2026-03-01"}, "start"),
        ({"start": 5, "end": "2026-01-01"}, "start"),
        ({"end": "2026-01-01"}, "start"),
        ({"start": "2026-01-01", "end": "2026-01-02", "reprocess": "some"}, "reprocess"),
        ({"start": "2026-01-01", "end": "2026-01-02", "max_active_runs": 0}, "max_active_runs"),
        ({"start": "2026-01-01", "end": "2026-01-02", "max_active_runs": "3"}, "max_active_runs"),
        ({"start": "2026-01-01", "end": "2026-01-02", "max_active_runs": 51}, "max_active_runs"),
        ({"start": "2026-01-01", "end": "2026-01-02", "priority": 1}, "priority"),
        ({"start": "2026-01-01", "end": "2026-01-02", "params": {"nope": 1}}, "params.nope"),
        ({"start": "2026-01-01", "end": "2026-01-02", "params": [1]}, "params"),
        ({"start": "2099-01-01", "end": "2099-01-02"}, "start"),
        ({"start": "2020-01-01", "end": "2026-01-01"}, "end"),
    ],
    ids=[
        "end-before-start",
        "not-a-date",
        "impossible-date",
        "a-number",
        "start-missing",
        "unknown-reprocess",
        "no-slots",
        "slots-as-string",
        "slots-above-the-tenant-quota",
        "unknown-field",
        "unknown-param",
        "params-not-an-object",
        "only-future-intervals",
        "too-many-intervals",
    ],
)
def test_it_refuses_a_bad_request_and_creates_nothing(
    team: Team, body: dict[str, Any], path: str, settings: Any
) -> None:
    settings.BACKFILL_MAX_INTERVALS = 1000
    apply(team)
    before = tenant_state(team.tenant)
    for dry_run in (False, True):
        assert_problem(post(team, {**body, "dry_run": dry_run}), 400, path)
    assert tenant_state(team.tenant) == before


WITH_PARAMS: dict[str, Any] = {
    **DAILY,
    "name": "with-params",
    "params": {
        "region": {"type": "string", "default": "eu", "enum": ["eu", "us"]},
        "limit": {"type": "integer", "default": 10},
    },
}


def test_every_run_of_a_backfill_gets_its_params(team: Team) -> None:
    workflow = apply(team, WITH_PARAMS)
    body = {"start": "2026-01-01", "end": "2026-01-03", "params": {"region": "us"}}
    response = send(team.tokens["operator"], "POST", url(team, workflow="with-params"), body)
    assert response.status_code == 201, response.content
    created = response.json()
    assert created["params"] == {"region": "us", "limit": 10}  # the defaults fill the rest
    for _ in range(3):  # every interval, as each run ends
        for run in unscoped_runs().filter(workflow=workflow, state="running"):
            end(run, "success")
        backfills.feed(created["id"])
    made = unscoped_runs().filter(workflow=workflow).order_by("logical_date")
    assert [r.params for r in made] == [{"region": "us", "limit": 10}] * 3
    [event] = [e for e in new_audit_events(team.tenant, 0) if e.action == "backfill.create"]
    assert event.changes["after"]["params"] == {"region": "us", "limit": 10}


def test_it_checks_backfill_params_like_a_triggers(team: Team) -> None:
    apply(team, WITH_PARAMS)
    before = tenant_state(team.tenant)
    body = {"start": "2026-01-01", "end": "2026-01-02", "params": {"region": "asia"}}
    for dry_run in (False, True):
        response = send(
            team.tokens["operator"],
            "POST",
            url(team, workflow="with-params"),
            {**body, "dry_run": dry_run, "max_active_runs": 0},
        )
        problem = assert_problem(response, 400, "params.region")
        # Every error at once: the bad param and the bad slot count.
        assert {e["path"] for e in problem["errors"]} == {"params.region", "max_active_runs"}
    assert tenant_state(team.tenant) == before


def test_it_refuses_a_workflow_without_a_schedule(team: Team) -> None:
    apply(team, {"name": "manual", "tasks": {"a": {"type": "noop"}}})
    response = send(
        team.tokens["operator"],
        "POST",
        url(team, workflow="manual"),
        {"start": "2026-01-01", "end": "2026-01-02"},
    )
    body = assert_problem(response, 400, "schedule")
    assert "has no cron schedule" in body["errors"][0]["message"]


# --- slots -------------------------------------------------------------------------------


def test_backfill_runs_never_take_the_slot_of_a_scheduled_run(team: Team) -> None:
    workflow = apply(team)  # max_active_runs: 1
    backfill_id = post(team, {"start": "2026-01-01", "end": "2026-01-20", "max_active_runs": 3})
    backfill_id = backfill_id.json()["id"]
    assert by_state(backfill_id) == {"running": 3}
    scheduled = scheduled_run(workflow, 25)
    assert scheduled.state == "running"  # at once, beside the backfill's three
    second = scheduled_run(workflow, 26)
    assert second.state == "queued"  # the workflow's own max_active_runs still holds
    assert by_state(backfill_id) == {"running": 3}


def test_the_tenants_quota_covers_backfill_runs_too(team: Team) -> None:
    workflow = apply(team)
    scheduled_run(workflow, 25)
    team.tenant.quotas = {**team.tenant.quotas, "max_concurrent_runs": 3}
    team.tenant.save()
    body = {"start": "2026-01-01", "end": "2026-01-20", "max_active_runs": 3}
    backfill_id = post(team, body).json()["id"]
    assert by_state(backfill_id) == {"running": 2, "queued": 1}
    end(unscoped_runs().get(logical_date=berlin_2am(25)), "success")
    engine.start_queued_runs(workflow.pk)
    assert by_state(backfill_id) == {"running": 3}


def test_the_feeder_finishes_every_interval_and_completes_the_backfill(team: Team) -> None:
    apply(team)
    body = {"start": "2026-01-01", "end": "2026-01-07", "max_active_runs": 2}
    backfill_id = post(team, body).json()["id"]
    for _ in range(10):
        assert len(unscoped_runs().filter(backfill_id=backfill_id, state="running")) <= 2
        finish_active(backfill_id)
        backfills.feed(backfill_id)
    assert by_state(backfill_id) == {"success": 7}
    backfill = Backfill.objects.dangerously_unscoped().get(pk=backfill_id)
    assert backfill.state == "completed"
    assert backfill.ended_at is not None
    progress = send(team.tokens["viewer"], "GET", backfill_url(team, backfill_id))
    assert progress.json()["progress"]["succeeded"] == 7
    assert progress.json()["progress"]["pending"] == 0


# --- pause, resume, cancel ---------------------------------------------------------------


def test_pause_stops_new_runs_and_resume_goes_on(team: Team) -> None:
    apply(team)
    body = {"start": "2026-01-01", "end": "2026-01-05", "max_active_runs": 2}
    backfill_id = post(team, body).json()["id"]
    operator = team.tokens["operator"]
    paused = send(operator, "POST", backfill_url(team, backfill_id, "pause/"))
    assert paused.status_code == 200, paused.content
    assert paused.json()["state"] == "paused"
    assert by_state(backfill_id) == {"running": 2}  # running ones go on
    finish_active(backfill_id)
    assert backfills.feed(backfill_id) == 0
    assert by_state(backfill_id) == {"success": 2}
    assert_problem(send(operator, "POST", backfill_url(team, backfill_id, "pause/")), 409)
    resumed = send(operator, "POST", backfill_url(team, backfill_id, "resume/"))
    assert resumed.json()["state"] == "running"
    assert resumed.json()["progress"]["running"] == 2
    assert by_state(backfill_id) == {"success": 2, "running": 2}
    assert_problem(send(operator, "POST", backfill_url(team, backfill_id, "resume/")), 409)


def test_cancel_stops_the_backfill_and_cancels_its_runs(team: Team) -> None:
    workflow = apply(team)
    scheduled = scheduled_run(workflow, 25)
    body = {"start": "2026-01-01", "end": "2026-01-05", "max_active_runs": 2}
    backfill_id = post(team, body).json()["id"]
    count = audit_count(team.tenant)
    response = send(team.tokens["operator"], "POST", backfill_url(team, backfill_id, "cancel/"))
    assert response.status_code == 200, response.content
    assert response.json()["state"] == "cancelled"
    assert response.json()["ended_at"] is not None
    assert by_state(backfill_id) == {"cancelled": 2}
    assert unscoped_runs().get(pk=scheduled.pk).state == "running"  # not the backfill's
    [event] = new_audit_events(team.tenant, count)
    assert event.action == "backfill.cancel"
    assert len(event.changes["extra"]["cancelled_runs"]) == 2
    assert backfills.feed(backfill_id) == 0
    again = send(team.tokens["operator"], "POST", backfill_url(team, backfill_id, "cancel/"))
    assert_problem(again, 409)


def test_it_lists_backfills_with_their_progress(team: Team, outsider: Team) -> None:
    apply(team)
    first = post(team, {"start": "2026-01-01", "end": "2026-01-02"}).json()["id"]
    second = post(team, {"start": "2026-01-03", "end": "2026-01-04"}).json()["id"]
    apply(outsider)
    send(
        outsider.tokens["owner"],
        "POST",
        url(outsider),
        {"start": "2026-01-01", "end": "2026-01-02"},
    )
    for list_url in (url(team), f"/api/v1/tenants/{team.slug}/backfills/"):
        listed = send(team.tokens["viewer"], "GET", list_url).json()["results"]
        assert [b["id"] for b in listed] == [second, first]
        assert listed[0]["progress"]["running"] == 1


# --- GraphQL -----------------------------------------------------------------------------

CREATE = """
mutation($t: String!, $dry: Boolean!) {
  createBackfill(tenant: $t, workflow: "daily", start: "2026-01-01", end: "2026-01-04",
                 maxActiveRuns: 2, dryRun: $dry, params: {}) {
    backfill { id state workflow params progress { total created running pending } }
    intervals { logicalDate dataIntervalEnd action run }
  }
}"""
QUERY = """
query($t: String!) {
  backfills(tenant: $t, workflow: "daily") { id state reprocess progress { total running } }
}"""
PAUSE = "mutation($t: String!, $id: Int!) { pauseBackfill(tenant: $t, id: $id) { id state } }"


def test_it_backfills_over_graphql(team: Team, outsider: Team) -> None:
    apply(team)
    before = tenant_state(team.tenant)
    dry = gql(team.tokens["operator"], CREATE, {"t": team.slug, "dry": True}).json()
    assert "errors" not in dry, dry
    assert dry["data"]["createBackfill"]["backfill"] is None
    intervals = dry["data"]["createBackfill"]["intervals"]
    assert [i["action"] for i in intervals] == ["create"] * 4
    assert intervals[0]["logicalDate"] == "2026-01-01T01:00:00+00:00"
    assert tenant_state(team.tenant) == before
    created = gql(team.tokens["operator"], CREATE, {"t": team.slug, "dry": False}).json()
    backfill = created["data"]["createBackfill"]["backfill"]
    assert backfill["progress"] == {"total": 4, "created": 2, "running": 2, "pending": 2}
    assert backfill["params"] == {}
    listed = gql(team.tokens["viewer"], QUERY, {"t": team.slug}).json()["data"]["backfills"]
    assert listed == [
        {
            "id": backfill["id"],
            "state": "running",
            "reprocess": "none",
            "progress": {"total": 4, "running": 2},
        }
    ]
    variables = {"t": team.slug, "id": int(backfill["id"])}
    count = audit_count(team.tenant)
    denied = gql(team.tokens["viewer"], PAUSE, variables).json()
    assert denied["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    hidden = gql(outsider.tokens["owner"], PAUSE, {**variables, "t": outsider.slug}).json()
    assert hidden["errors"][0]["extensions"]["code"] == "NOT_FOUND"
    assert audit_count(team.tenant) == count
    paused = gql(team.tokens["operator"], PAUSE, variables).json()["data"]["pauseBackfill"]
    assert paused["state"] == "paused"
    [event] = new_audit_events(team.tenant, count)
    assert (event.action, event.source) == ("backfill.pause", "graphql")
