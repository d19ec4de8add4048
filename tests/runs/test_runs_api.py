"""Runs over REST: triggering checks the params (defaults applied, nothing created on an
error), audits once and starts the run at once when a run slot is free; runs and their task
instances read back with filters and cursor pages, and only in their own tenant.

No workers here: messages go out on commit, which a test transaction never reaches, so the
states read right after a trigger are the engine's first steps."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from django.utils import timezone

from orchestrator import tokens
from orchestrator.actors import Actor
from orchestrator.context import tenant_scope
from runs.models import TaskInstance, WorkflowRun
from tests.harness import Team, assert_problem, new_audit_events, send, tenant_state
from tests.runs.run_states import failed_run, name_failures_by_try
from workflows.models import Workflow
from workflows.services import apply_workflow

ETL: dict[str, Any] = {
    "name": "etl",
    "params": {
        "table": {"type": "string", "required": True},
        "format": {"type": "string", "enum": ["csv", "json"], "default": "csv"},
        "limit": {"type": "integer", "minimum": 1, "default": 100},
    },
    "tasks": {
        "extract": {"type": "noop"},
        "audit": {"type": "shell", "command": ["true"]},
        "load": {
            "type": "shell",
            "command": ["echo", "{{ params.table }}"],
            "depends_on": ["extract", "audit"],
        },
        "report": {"type": "noop", "depends_on": ["load"], "trigger_rule": "all_done"},
    },
}
SERIAL: dict[str, Any] = {
    "name": "serial",
    "max_active_runs": 1,
    "tasks": {"only": {"type": "noop"}},
}
SALES = {"params": {"table": "sales"}}


def apply(team: Team, spec: dict[str, Any]) -> Workflow:
    with tenant_scope([team.tenant]):
        return apply_workflow(actor=Actor.cli(), tenant=team.tenant, data=spec).workflow


def trigger_url(team: Team, workflow: str) -> str:
    return f"/api/v1/tenants/{team.slug}/workflows/{workflow}/runs/"


def runs_url(team: Team, suffix: str = "") -> str:
    return f"/api/v1/tenants/{team.slug}/runs/{suffix}"


def trigger(team: Team, workflow: str = "etl", body: Any = SALES) -> dict[str, Any]:
    response = send(team.tokens["operator"], "POST", trigger_url(team, workflow), body)
    assert response.status_code == 201, response.content
    return dict(response.json())


def instances(run_id: int) -> dict[str, tuple[str, int]]:
    rows = TaskInstance.objects.dangerously_unscoped().filter(run_id=run_id)
    return {ti.task_id: (ti.state, ti.try_number) for ti in rows}


def run_state(run_id: int) -> str:
    return str(WorkflowRun.objects.dangerously_unscoped().get(pk=run_id).state)


# --- trigger ---------------------------------------------------------------------------


def test_it_triggers_a_run_that_starts_at_once(team: Team) -> None:
    apply(team, ETL)
    response = send(team.tokens["operator"], "POST", trigger_url(team, "etl"), SALES)
    assert response.status_code == 201, response.content
    body = response.json()
    assert body["state"] == "running"
    assert body["workflow"] == "etl"
    assert body["version"] == 1
    assert body["params"] == {"table": "sales", "format": "csv", "limit": 100}
    assert body["tasks"] == {"queued": 2, "pending": 2}
    assert body["trigger_source"] == "api"
    assert body["triggered_by"] == "acme-operator"
    assert body["started_at"] is not None
    assert run_state(body["id"]) == "running"
    assert instances(body["id"]) == {
        "extract": ("queued", 1),
        "audit": ("queued", 1),
        "load": ("pending", 0),
        "report": ("pending", 0),
    }


def test_it_applies_defaults_and_keeps_the_values_given(team: Team) -> None:
    apply(team, ETL)
    body = trigger(team, body={"params": {"table": "orders", "format": "json"}})
    assert body["params"] == {"table": "orders", "format": "json", "limit": 100}
    stored = WorkflowRun.objects.dangerously_unscoped().get(pk=body["id"]).params
    assert stored == body["params"]


def test_it_triggers_without_a_body_when_no_param_is_required(team: Team) -> None:
    apply(team, SERIAL)
    response = send(team.tokens["operator"], "POST", trigger_url(team, "serial"), None)
    assert response.status_code == 201, response.content
    assert response.json()["params"] == {}


@pytest.mark.parametrize(
    ("body", "path"),
    [
        ({"params": {"table": "sales", "x": 1}}, "params.x"),
        ({"params": {"table": 5}}, "params.table"),
        ({"params": {"table": "sales", "format": "xml"}}, "params.format"),
        ({"params": {"table": "sales", "limit": 0}}, "params.limit"),
        ({"params": {"table": "sales", "limit": "ten"}}, "params.limit"),
        ({"params": {"format": "csv"}}, "params.table"),
        ({}, "params.table"),
        ({"params": ["sales"]}, "params"),
        ({"params": "sales"}, "params"),
        ({"params": []}, "params"),
        ({"params": None}, "params"),
        ({"params": {"table": "sales"}, "priority": 5}, "priority"),
    ],
    ids=[
        "unknown-param",
        "wrong-type",
        "not-in-enum",
        "below-minimum",
        "integer-as-string",
        "required-missing",
        "no-params-at-all",
        "params-a-list",
        "params-a-string",
        "params-an-empty-list",
        "params-null",
        "unknown-field",
    ],
)
def test_it_refuses_bad_params_and_creates_nothing(team: Team, body: Any, path: str) -> None:
    apply(team, ETL)
    before = tenant_state(team.tenant)
    response = send(team.tokens["operator"], "POST", trigger_url(team, "etl"), body)
    assert_problem(response, 400, path=path)
    assert tenant_state(team.tenant) == before
    assert not WorkflowRun.objects.dangerously_unscoped().exists()


def test_it_names_every_bad_param_at_once(team: Team) -> None:
    apply(team, ETL)
    body = {"params": {"x": 1, "format": "xml", "limit": -1}}
    problem = assert_problem(
        send(team.tokens["operator"], "POST", trigger_url(team, "etl"), body), 400
    )
    paths = sorted(e["path"] for e in problem["errors"])
    assert paths == ["params.format", "params.limit", "params.table", "params.x"]


def test_it_audits_a_trigger_once(team: Team) -> None:
    apply(team, ETL)
    count = len(new_audit_events(team.tenant, 0))
    response = send(team.tokens["operator"], "POST", trigger_url(team, "etl"), SALES)
    run_id = response.json()["id"]
    [event] = new_audit_events(team.tenant, count)
    assert event.action == "run.trigger"
    assert event.source == "api"
    assert event.actor_id == team.users["operator"].pk
    assert event.token_prefix == tokens.parse(team.tokens["operator"])
    assert event.request_id == response["X-Request-ID"]
    assert (event.object_type, event.object_id) == ("workflowrun", str(run_id))
    after = event.changes["after"]
    assert after["workflow"] == "etl"
    assert after["params"] == {"table": "sales", "format": "csv", "limit": 100}


def test_it_refuses_an_unknown_workflow(team: Team) -> None:
    before = tenant_state(team.tenant)
    assert_problem(send(team.tokens["operator"], "POST", trigger_url(team, "nope"), SALES), 404)
    assert tenant_state(team.tenant) == before


def test_it_keeps_a_run_queued_while_max_active_runs_are_running(team: Team) -> None:
    apply(team, SERIAL)
    first = trigger(team, "serial", {})
    second = trigger(team, "serial", {})
    assert first["state"] == "running"
    assert second["state"] == "queued"
    assert second["started_at"] is None
    assert second["tasks"] == {"pending": 1}
    assert run_state(first["id"]) == "running"
    assert instances(first["id"]) == {"only": ("queued", 1)}
    assert instances(second["id"]) == {"only": ("pending", 0)}


# --- reading runs ----------------------------------------------------------------------


def _ids(response: Any) -> list[int]:
    assert response.status_code == 200, response.content
    return [r["id"] for r in response.json()["results"]]


def test_it_lists_a_workflows_runs_newest_first(team: Team) -> None:
    apply(team, ETL)
    apply(team, SERIAL)
    etl = [trigger(team)["id"] for _ in range(2)]
    trigger(team, "serial", {})
    listed = _ids(send(team.tokens["viewer"], "GET", trigger_url(team, "etl")))
    assert listed == etl[::-1]


def test_it_filters_runs_by_workflow_and_state(team: Team) -> None:
    apply(team, ETL)
    apply(team, SERIAL)
    etl = trigger(team)["id"]
    running, queued = trigger(team, "serial", {})["id"], trigger(team, "serial", {})["id"]
    viewer = team.tokens["viewer"]
    assert _ids(send(viewer, "GET", runs_url(team))) == [queued, running, etl]
    assert _ids(send(viewer, "GET", runs_url(team, "?workflow=etl"))) == [etl]
    assert _ids(send(viewer, "GET", runs_url(team, "?workflow=serial"))) == [queued, running]
    assert _ids(send(viewer, "GET", runs_url(team, "?state=queued"))) == [queued]
    assert _ids(send(viewer, "GET", runs_url(team, "?workflow=serial&state=running"))) == [running]
    assert _ids(send(viewer, "GET", runs_url(team, "?workflow=nope"))) == []


def test_it_filters_runs_by_creation_time(team: Team) -> None:
    apply(team, ETL)
    old, new = trigger(team)["id"], trigger(team)["id"]
    cutoff = timezone.now() - dt.timedelta(hours=1)
    WorkflowRun.objects.dangerously_unscoped().filter(pk=old).update(
        created_at=cutoff - dt.timedelta(days=1)
    )
    viewer, at = team.tokens["viewer"], cutoff.isoformat().replace("+00:00", "Z")
    assert _ids(send(viewer, "GET", runs_url(team, f"?created_after={at}"))) == [new]
    assert _ids(send(viewer, "GET", runs_url(team, f"?created_before={at}"))) == [old]


def test_it_refuses_a_creation_time_without_a_timezone(team: Team) -> None:
    url = runs_url(team, "?created_after=2026-01-01T00:00:00")
    assert_problem(send(team.tokens["viewer"], "GET", url), 400, path="created_after")


def test_it_pages_runs_with_a_cursor(team: Team) -> None:
    apply(team, ETL)
    ids = [trigger(team)["id"] for _ in range(3)]
    first = send(team.tokens["viewer"], "GET", runs_url(team, "?limit=2")).json()
    assert [r["id"] for r in first["results"]] == [ids[2], ids[1]]
    assert first["next"] is not None
    second = send(team.tokens["viewer"], "GET", first["next"]).json()
    assert [r["id"] for r in second["results"]] == [ids[0]]
    assert second["next"] is None


def test_it_shows_a_run_with_its_task_summary(team: Team) -> None:
    apply(team, ETL)
    run_id = trigger(team)["id"]
    response = send(team.tokens["viewer"], "GET", runs_url(team, f"{run_id}/"))
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["id"] == run_id
    assert (body["workflow"], body["version"], body["state"]) == ("etl", 1, "running")
    assert body["tasks"] == {"queued": 2, "pending": 2}
    assert body["params"] == {"table": "sales", "format": "csv", "limit": 100}
    assert (body["trigger_source"], body["triggered_by"]) == ("api", "acme-operator")
    for name in ("created_at", "queued_at", "started_at"):
        assert dt.datetime.fromisoformat(body[name]).tzinfo is not None
    assert body["ended_at"] is None


def test_it_lists_a_runs_task_instances(team: Team) -> None:
    apply(team, ETL)
    run_id = trigger(team)["id"]
    response = send(team.tokens["viewer"], "GET", runs_url(team, f"{run_id}/tasks/"))
    assert response.status_code == 200, response.content
    listed = {t["task_id"]: t for t in response.json()["results"]}
    assert {k: (t["state"], t["try_number"]) for k, t in listed.items()} == {
        "extract": ("queued", 1),
        "audit": ("queued", 1),
        "load": ("pending", 0),
        "report": ("pending", 0),
    }
    assert {k: t["task_type"] for k, t in listed.items()} == {
        "extract": "noop",
        "audit": "shell",
        "load": "shell",
        "report": "noop",
    }
    assert listed["extract"]["map_index"] == -1


def test_it_shows_a_task_instance_with_its_attempts(team: Team) -> None:
    apply(team, ETL)
    run_id = trigger(team)["id"]
    response = send(team.tokens["viewer"], "GET", runs_url(team, f"{run_id}/tasks/extract/"))
    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["task_id"], body["state"], body["try_number"]) == ("extract", "queued", 1)
    assert body["max_tries"] == 1
    assert body["attempts"] == []
    assert dt.datetime.fromisoformat(body["queued_at"]).tzinfo is not None


@pytest.mark.parametrize("suffix", ["999999/", "abc/", "999999/tasks/", "999999/tasks/extract/"])
def test_it_answers_404_for_an_unknown_run(team: Team, suffix: str) -> None:
    assert_problem(send(team.tokens["viewer"], "GET", runs_url(team, suffix)), 404)


def test_it_answers_404_for_an_unknown_task(team: Team) -> None:
    apply(team, ETL)
    run_id = trigger(team)["id"]
    url = runs_url(team, f"{run_id}/tasks/nope/")
    assert_problem(send(team.tokens["viewer"], "GET", url), 404)


@pytest.mark.parametrize("suffix", ["{run}/", "{run}/tasks/", "{run}/tasks/extract/"])
def test_it_hides_another_tenants_run_under_my_tenant(
    team: Team, outsider: Team, suffix: str
) -> None:
    apply(outsider, ETL)
    url = trigger_url(outsider, "etl")
    theirs = send(outsider.tokens["owner"], "POST", url, SALES).json()["id"]
    apply(team, ETL)
    trigger(team)
    mine = runs_url(team, suffix.format(run=theirs))
    assert_problem(send(team.tokens["owner"], "GET", mine), 404)


def test_it_lists_only_my_tenants_runs(team: Team, outsider: Team) -> None:
    apply(outsider, ETL)
    send(outsider.tokens["owner"], "POST", trigger_url(outsider, "etl"), SALES)
    apply(team, ETL)
    mine = trigger(team)["id"]
    assert _ids(send(team.tokens["viewer"], "GET", runs_url(team))) == [mine]
    assert _ids(send(team.tokens["viewer"], "GET", trigger_url(team, "etl"))) == [mine]


def test_it_refuses_an_unknown_state_filter(team: Team) -> None:
    response = send(team.tokens["viewer"], "get", f"/api/v1/tenants/{team.slug}/runs/?state=bogus")
    assert_problem(response, 400, "state")


def test_it_filters_runs_by_trigger_source_and_actor(team: Team) -> None:
    with tenant_scope([team.tenant]):
        apply_workflow(
            actor=Actor.cli(),
            tenant=team.tenant,
            data={"name": "src", "tasks": {"a": {"type": "noop"}}},
        )
    base = f"/api/v1/tenants/{team.slug}"
    assert (
        send(team.tokens["operator"], "post", f"{base}/workflows/src/runs/", {}).status_code == 201
    )
    runs_url = f"{base}/runs/?trigger_source=api&triggered_by={team.users['operator'].username}"
    found = send(team.tokens["viewer"], "get", runs_url).json()["results"]
    assert [r["triggered_by"] for r in found] == [team.users["operator"].username]
    none = send(team.tokens["viewer"], "get", f"{base}/runs/?trigger_source=schedule").json()
    assert none["results"] == []


def test_it_refuses_to_delete_a_workflow_with_active_runs_unless_forced(team: Team) -> None:
    with tenant_scope([team.tenant]):
        apply_workflow(
            actor=Actor.cli(),
            tenant=team.tenant,
            data={"name": "busy", "tasks": {"a": {"type": "noop"}}},
        )
    base = f"/api/v1/tenants/{team.slug}/workflows/busy/"
    assert send(team.tokens["operator"], "post", f"{base}runs/", {}).status_code == 201
    refused = send(team.tokens["editor"], "delete", base)
    problem = assert_problem(refused, 409)
    assert "1 run is active" in problem["detail"]
    assert send(team.tokens["viewer"], "get", base).status_code == 200
    assert send(team.tokens["editor"], "delete", f"{base}?force=true").status_code == 204
    assert send(team.tokens["viewer"], "get", base).status_code == 404


def test_it_lists_each_instance_with_its_last_tries_error(team: Team) -> None:
    """What failed and why, without a request per instance (orc prints it after a run)."""
    run = failed_run(team)
    name_failures_by_try(run)
    response = send(team.tokens["viewer"], "GET", runs_url(team, f"{run.pk}/tasks/"))
    assert response.status_code == 200, response.content
    listed = {t["task_id"]: t["error"] for t in response.json()["results"]}
    assert listed == {
        "extract": "",
        "side": "",
        "transform": "try 2: exit code 1",
        "load": "",
        "report": "",
    }
    one = send(team.tokens["viewer"], "GET", runs_url(team, f"{run.pk}/tasks/transform/"))
    assert one.json()["error"] == "try 2: exit code 1"
    assert [a["error"] for a in one.json()["attempts"]] == [
        "try 1: exit code 1",
        "try 2: exit code 1",
    ]
