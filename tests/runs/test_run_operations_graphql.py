"""Operating runs over GraphQL: the same services as REST. Operators cancel, retry, clear
and mark (each change audited once, source graphql); viewers are FORBIDDEN and change
nothing; another tenant's runs are NOT_FOUND; a trigger repeated with one idempotency key
returns the first run."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from orchestrator import tokens
from runs.models import WorkflowRun
from tests.harness import Team, audit_count, gql, new_audit_events, tenant_state
from tests.runs.run_states import (
    SPEC,
    failed_run,
    run_row,
    running_run,
    started_run,
    states,
    succeeded_run,
)

CANCEL = "mutation($t: String!, $id: Int!) { cancelRun(tenant: $t, id: $id) { id state } }"
RETRY = "mutation($t: String!, $id: Int!) { retryRun(tenant: $t, id: $id) }"
CLEAR = """
mutation($t: String!, $id: Int!, $task: String!, $down: Boolean!) {
  clearTask(tenant: $t, run: $id, taskId: $task, downstream: $down)
}"""
MARK = """
mutation($t: String!, $id: Int!, $task: String!, $state: String!) {
  markTask(tenant: $t, run: $id, taskId: $task, state: $state) {
    taskId state tryNumber attempts { tryNumber state }
  }
}"""
LOG = """
query($t: String!, $id: Int!, $task: String!) {
  taskLog(tenant: $t, run: $id, taskId: $task) { tryNumber text running }
}"""
TRIGGER = """
mutation($t: String!, $key: String, $p: JSON) {
  triggerRun(tenant: $t, workflow: "etl", params: $p, idempotencyKey: $key) { id state }
}"""


def call(team: Team, query: str, run: WorkflowRun, role: str = "operator", **variables: Any) -> Any:
    return gql(team.tokens[role], query, {"t": team.slug, "id": run.pk, **variables})


def data(response: Any) -> Any:
    body = response.json()
    assert "errors" not in body, body
    return body["data"]


def code(response: Any) -> str:
    body = response.json()
    assert body["data"] is None
    return str(body["errors"][0]["extensions"]["code"])


# --- each operation ----------------------------------------------------------------------


def test_it_cancels_a_run(team: Team) -> None:
    run = running_run(team)
    assert data(call(team, CANCEL, run))["cancelRun"] == {"id": str(run.pk), "state": "cancelled"}
    assert run_row(run)["state"] == "cancelled"
    assert {state for state, _ in states(run).values()} == {"success", "cancelled"}


def test_it_retries_a_failed_run(team: Team) -> None:
    run = failed_run(team)
    assert data(call(team, RETRY, run))["retryRun"] == ["load", "report", "transform"]
    assert run_row(run)["state"] == "running"
    assert states(run)["transform"] == ("queued", 3)
    assert states(run)["extract"] == ("success", 1)


def test_it_clears_a_task_with_its_downstream(team: Team) -> None:
    run = succeeded_run(team)
    cleared = data(call(team, CLEAR, run, task="transform", down=True))["clearTask"]
    assert cleared == ["load", "report", "transform"]
    assert states(run) == {
        "extract": ("success", 1),
        "side": ("success", 1),
        "transform": ("queued", 2),
        "load": ("pending", 1),
        "report": ("pending", 1),
    }


def test_it_marks_a_failed_task_success(team: Team) -> None:
    run = failed_run(team)
    marked = data(call(team, MARK, run, task="transform", state="success"))["markTask"]
    assert marked == {
        "taskId": "transform",
        "state": "success",
        "tryNumber": 2,
        "attempts": [{"tryNumber": 1, "state": "failed"}, {"tryNumber": 2, "state": "failed"}],
    }
    assert states(run)["load"] == ("queued", 1)
    assert run_row(run)["state"] == "running"


def test_it_refuses_to_mark_any_other_state_and_changes_nothing(team: Team) -> None:
    run = failed_run(team)
    before = tenant_state(team.tenant)
    response = call(team, MARK, run, task="transform", state="skipped")
    assert code(response) == "BAD_USER_INPUT"
    assert response.json()["errors"][0]["extensions"]["errors"][0]["path"] == "state"
    assert tenant_state(team.tenant) == before


@pytest.mark.parametrize(
    ("prepare", "query", "variables"),
    [
        (succeeded_run, CANCEL, {}),
        (running_run, RETRY, {}),
        (running_run, CLEAR, {"task": "transform", "down": False}),
    ],
    ids=["cancel-ended", "retry-running", "clear-running-task"],
)
def test_it_answers_conflict_and_changes_nothing(
    team: Team, prepare: Callable[[Team], WorkflowRun], query: str, variables: dict[str, Any]
) -> None:
    run = prepare(team)
    before = tenant_state(team.tenant)
    assert code(call(team, query, run, **variables)) == "CONFLICT"
    assert tenant_state(team.tenant) == before


# --- audit, roles, tenants ---------------------------------------------------------------

OPERATIONS = [
    ("cancel", running_run, CANCEL, {}, "run.cancel"),
    ("retry", failed_run, RETRY, {}, "run.retry"),
    ("clear", succeeded_run, CLEAR, {"task": "load", "down": True}, "task.clear"),
    (
        "mark-success",
        failed_run,
        MARK,
        {"task": "transform", "state": "success"},
        "task.mark_success",
    ),
    ("mark-failed", succeeded_run, MARK, {"task": "report", "state": "failed"}, "task.mark_failed"),
]
PARAMS = ("name", "prepare", "query", "variables", "action")
IDS = [op[0] for op in OPERATIONS]


@pytest.mark.parametrize(PARAMS, OPERATIONS, ids=IDS)
def test_it_audits_each_change_once_as_done_over_graphql(
    team: Team,
    name: str,
    prepare: Callable[[Team], WorkflowRun],
    query: str,
    variables: dict[str, Any],
    action: str,
) -> None:
    run = prepare(team)
    before = run_row(run)["state"]
    count = audit_count(team.tenant)
    response = call(team, query, run, **variables)
    data(response)
    [event] = new_audit_events(team.tenant, count)
    assert (event.action, event.source) == (action, "graphql")
    assert event.actor_id == team.users["operator"].pk
    assert event.token_prefix == tokens.parse(team.tokens["operator"])
    assert event.request_id == response["X-Request-ID"]
    assert (event.object_type, event.object_id) == ("workflowrun", str(run.pk))
    assert event.changes["before"]["state"] == before
    assert event.changes["after"]["state"] == run_row(run)["state"]


@pytest.mark.parametrize(PARAMS, OPERATIONS, ids=IDS)
def test_it_forbids_a_viewer_and_changes_nothing(
    team: Team,
    name: str,
    prepare: Callable[[Team], WorkflowRun],
    query: str,
    variables: dict[str, Any],
    action: str,
) -> None:
    run = prepare(team)
    before = tenant_state(team.tenant)
    assert code(call(team, query, run, role="viewer", **variables)) == "FORBIDDEN"
    assert tenant_state(team.tenant) == before


@pytest.mark.parametrize(PARAMS, OPERATIONS, ids=IDS)
def test_it_hides_another_tenants_run(
    team: Team,
    outsider: Team,
    name: str,
    prepare: Callable[[Team], WorkflowRun],
    query: str,
    variables: dict[str, Any],
    action: str,
) -> None:
    theirs = prepare(outsider)
    before = tenant_state(team.tenant), tenant_state(outsider.tenant)
    mine = team.tokens["owner"]
    for slug in (team.slug, outsider.slug):
        response = gql(mine, query, {"t": slug, "id": theirs.pk, **variables})
        assert code(response) == "NOT_FOUND"
    assert (tenant_state(team.tenant), tenant_state(outsider.tenant)) == before


def test_it_lets_a_viewer_read_a_log_but_not_another_tenants(team: Team, outsider: Team) -> None:
    run = failed_run(team)
    page = data(call(team, LOG, run, role="viewer", task="transform"))["taskLog"]
    assert page == {"tryNumber": 2, "text": "", "running": False}
    theirs = failed_run(outsider)
    response = gql(
        team.tokens["owner"], LOG, {"t": team.slug, "id": theirs.pk, "task": "transform"}
    )
    assert code(response) == "NOT_FOUND"


# --- idempotent trigger ------------------------------------------------------------------


def test_it_returns_the_first_run_when_a_trigger_is_repeated_with_its_key(team: Team) -> None:
    run = started_run(team)  # applies the workflow; one run exists
    variables = {"t": team.slug, "key": "nightly-2026-01-01", "p": {}}
    first = data(gql(team.tokens["operator"], TRIGGER, variables))["triggerRun"]
    count = audit_count(team.tenant)
    again = data(gql(team.tokens["operator"], TRIGGER, variables))["triggerRun"]
    assert again == first
    assert int(first["id"]) != run.pk
    assert WorkflowRun.objects.dangerously_unscoped().count() == 2
    assert audit_count(team.tenant) == count  # a replay changes nothing


def test_it_refuses_a_key_reused_with_other_params_over_graphql(team: Team) -> None:
    started_run(team, {**SPEC, "params": {"n": {"type": "integer", "default": 1}}})
    token, variables = team.tokens["operator"], {"t": team.slug, "key": "k1", "p": {"n": 1}}
    data(gql(token, TRIGGER, variables))
    before = tenant_state(team.tenant)
    assert code(gql(token, TRIGGER, {**variables, "p": {"n": 2}})) == "CONFLICT"
    assert tenant_state(team.tenant) == before
