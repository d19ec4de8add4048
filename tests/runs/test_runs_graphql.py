"""Runs over GraphQL: the same services and policy as REST. Viewers read runs and their
task instances, operators trigger (audited once, source graphql), bad params are
BAD_USER_INPUT with their paths, another tenant's workflows and runs are NOT_FOUND."""

from __future__ import annotations

from typing import Any

import pytest

from orchestrator import tokens
from orchestrator.actors import Actor
from orchestrator.context import tenant_scope
from runs.models import TaskInstance, WorkflowRun
from tests.harness import Team, gql, new_audit_events, tenant_state
from tests.runs.run_states import failed_run, name_failures_by_try
from workflows.services import apply_workflow

SPEC: dict[str, Any] = {
    "name": "etl",
    "params": {
        "table": {"type": "string", "required": True},
        "limit": {"type": "integer", "minimum": 1, "default": 10},
    },
    "tasks": {
        "extract": {"type": "noop"},
        "load": {"type": "shell", "command": ["true"], "depends_on": ["extract"]},
    },
}
TRIGGER = """
mutation($t: String!, $w: String!, $p: JSON) {
  triggerRun(tenant: $t, workflow: $w, params: $p) {
    id state workflow version params triggerSource triggeredBy
    taskInstances { taskId state tryNumber }
  }
}"""
RUNS = """
query($t: String!, $w: String, $s: String, $before: Int, $limit: Int!) {
  runs(tenant: $t, workflow: $w, state: $s, beforeId: $before, limit: $limit) {
    id state workflow params
  }
}"""
RUN = """
query($t: String!, $id: Int!) {
  run(tenant: $t, id: $id) {
    id state workflow version params triggerSource triggeredBy createdAt startedAt endedAt
    taskInstances { taskId taskType state tryNumber maxTries attempts { tryNumber } }
  }
}"""


def apply(team: Team) -> None:
    with tenant_scope([team.tenant]):
        apply_workflow(actor=Actor.cli(), tenant=team.tenant, data=SPEC)


def trigger(team: Team, role: str = "operator", params: Any = None) -> Any:
    variables = {"t": team.slug, "w": "etl", "p": {"table": "sales"} if params is None else params}
    return gql(team.tokens[role], TRIGGER, variables).json()


def triggered(team: Team) -> int:
    body = trigger(team)
    assert "errors" not in body, body
    return int(body["data"]["triggerRun"]["id"])


def _code(body: Any) -> str:
    return str(body["errors"][0]["extensions"]["code"])


def runs_in_db() -> int:
    return WorkflowRun.objects.dangerously_unscoped().count()


def test_it_triggers_a_run_for_an_operator_and_audits_it_once(team: Team) -> None:
    apply(team)
    count = len(new_audit_events(team.tenant, 0))
    response = gql(
        team.tokens["operator"], TRIGGER, {"t": team.slug, "w": "etl", "p": {"table": "sales"}}
    )
    body = response.json()
    assert "errors" not in body, body
    run = body["data"]["triggerRun"]
    assert (run["state"], run["workflow"], run["version"]) == ("running", "etl", 1)
    assert run["params"] == {"table": "sales", "limit": 10}
    assert (run["triggerSource"], run["triggeredBy"]) == ("graphql", "acme-operator")
    states = {t["taskId"]: (t["state"], t["tryNumber"]) for t in run["taskInstances"]}
    assert states == {"extract": ("queued", 1), "load": ("pending", 0)}
    stored = WorkflowRun.objects.dangerously_unscoped().get(pk=run["id"])
    assert (stored.state, stored.trigger_source) == ("running", "graphql")
    [event] = new_audit_events(team.tenant, count)
    assert (event.action, event.source) == ("run.trigger", "graphql")
    assert event.actor_id == team.users["operator"].pk
    assert event.token_prefix == tokens.parse(team.tokens["operator"])
    assert event.request_id == response["X-Request-ID"]
    assert event.object_id == str(run["id"])


def test_it_forbids_a_viewer_to_trigger_and_creates_nothing(team: Team) -> None:
    apply(team)
    before = tenant_state(team.tenant)
    body = trigger(team, "viewer")
    assert _code(body) == "FORBIDDEN"
    assert body["data"] is None
    assert tenant_state(team.tenant) == before
    assert runs_in_db() == 0


@pytest.mark.parametrize(
    ("params", "paths"),
    [
        ({"table": "sales", "x": 1}, ["params.x"]),
        ({"table": 5}, ["params.table"]),
        ({"table": "sales", "limit": 0}, ["params.limit"]),
        ({}, ["params.table"]),
        ({"x": 1, "limit": "ten"}, ["params.limit", "params.table", "params.x"]),
        (["sales"], ["params"]),
        ("sales", ["params"]),
        ([], ["params"]),
        (False, ["params"]),
    ],
    ids=[
        "unknown-param",
        "wrong-type",
        "below-minimum",
        "required-missing",
        "several-at-once",
        "a-list",
        "a-string",
        "an-empty-list",
        "false",
    ],
)
def test_it_refuses_bad_params_with_their_paths(team: Team, params: Any, paths: list[str]) -> None:
    apply(team)
    before = tenant_state(team.tenant)
    body = trigger(team, params=params)
    [error] = body["errors"]
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert sorted(e["path"] for e in error["extensions"]["errors"]) == paths
    assert body["data"] is None
    assert tenant_state(team.tenant) == before


def test_it_lets_a_viewer_read_runs_newest_first(team: Team) -> None:
    apply(team)
    first, second = triggered(team), triggered(team)
    variables = {"t": team.slug, "w": "etl", "limit": 50}
    body = gql(team.tokens["viewer"], RUNS, variables).json()
    assert "errors" not in body, body
    assert [int(r["id"]) for r in body["data"]["runs"]] == [second, first]
    assert {r["state"] for r in body["data"]["runs"]} == {"running"}
    assert body["data"]["runs"][0]["params"] == {"table": "sales", "limit": 10}


def test_it_filters_and_pages_runs(team: Team) -> None:
    apply(team)
    ids = [triggered(team) for _ in range(3)]
    viewer = team.tokens["viewer"]
    page = gql(viewer, RUNS, {"t": team.slug, "limit": 2}).json()["data"]["runs"]
    assert [int(r["id"]) for r in page] == [ids[2], ids[1]]
    rest = gql(viewer, RUNS, {"t": team.slug, "limit": 2, "before": ids[1]}).json()
    assert [int(r["id"]) for r in rest["data"]["runs"]] == [ids[0]]
    none = gql(viewer, RUNS, {"t": team.slug, "s": "success", "limit": 50}).json()
    assert none["data"]["runs"] == []
    other = gql(viewer, RUNS, {"t": team.slug, "w": "nope", "limit": 50}).json()
    assert other["data"]["runs"] == []


def test_it_lets_a_viewer_read_a_run_with_its_task_instances(team: Team) -> None:
    apply(team)
    run_id = triggered(team)
    body = gql(team.tokens["viewer"], RUN, {"t": team.slug, "id": run_id}).json()
    assert "errors" not in body, body
    run = body["data"]["run"]
    assert int(run["id"]) == run_id
    assert (run["state"], run["workflow"], run["version"]) == ("running", "etl", 1)
    assert (run["triggerSource"], run["triggeredBy"]) == ("graphql", "acme-operator")
    assert run["createdAt"]
    assert run["startedAt"]
    assert run["endedAt"] is None
    assert sorted(run["taskInstances"], key=lambda t: t["taskId"]) == [
        {
            "taskId": "extract",
            "taskType": "noop",
            "state": "queued",
            "tryNumber": 1,
            "maxTries": 1,
            "attempts": [],
        },
        {
            "taskId": "load",
            "taskType": "shell",
            "state": "pending",
            "tryNumber": 0,
            "maxTries": 1,
            "attempts": [],
        },
    ]


def test_it_answers_not_found_for_an_unknown_run(team: Team) -> None:
    body = gql(team.tokens["viewer"], RUN, {"t": team.slug, "id": 999999}).json()
    assert _code(body) == "NOT_FOUND"
    assert body["data"]["run"] is None


def test_it_hides_another_tenants_run(team: Team, outsider: Team) -> None:
    apply(outsider)
    theirs = triggered_as_owner(outsider)
    for tenant in (team.slug, outsider.slug):  # their run under my tenant; their tenant
        body = gql(team.tokens["owner"], RUN, {"t": tenant, "id": theirs}).json()
        assert _code(body) == "NOT_FOUND"
        assert body["data"]["run"] is None
    listed = gql(team.tokens["owner"], RUNS, {"t": outsider.slug, "limit": 50}).json()
    assert _code(listed) == "NOT_FOUND"


def test_it_hides_another_tenants_workflow_from_trigger(team: Team, outsider: Team) -> None:
    apply(outsider)
    before = tenant_state(team.tenant), tenant_state(outsider.tenant)
    for tenant in (team.slug, outsider.slug):  # their workflow under my tenant; their tenant
        variables = {"t": tenant, "w": "etl", "p": {"table": "sales"}}
        body = gql(team.tokens["owner"], TRIGGER, variables).json()
        assert _code(body) == "NOT_FOUND"
        assert body["data"] is None
    assert (tenant_state(team.tenant), tenant_state(outsider.tenant)) == before
    assert not TaskInstance.objects.dangerously_unscoped().exists()


def triggered_as_owner(team: Team) -> int:
    body = trigger(team, "owner")
    assert "errors" not in body, body
    return int(body["data"]["triggerRun"]["id"])


def test_it_gives_each_task_instance_its_last_tries_error(team: Team) -> None:
    run = failed_run(team)
    name_failures_by_try(run)
    query = """
    query($t: String!, $id: Int!) {
      run(tenant: $t, id: $id) { taskInstances { taskId error attempts { error } } }
    }"""
    body = gql(team.tokens["viewer"], query, {"t": team.slug, "id": run.pk}).json()
    assert "errors" not in body, body
    listed = {t["taskId"]: t for t in body["data"]["run"]["taskInstances"]}
    assert {name: t["error"] for name, t in listed.items()} == {
        "extract": "",
        "side": "",
        "transform": "try 2: exit code 1",
        "load": "",
        "report": "",
    }
    assert [a["error"] for a in listed["transform"]["attempts"]] == [
        "try 1: exit code 1",
        "try 2: exit code 1",
    ]
