"""A GraphQL query's cost is the most objects it can return (list limits multiplied along
each path); over GRAPHQL_MAX_COST it is refused before it runs, with QUERY_TOO_COSTLY and
the cost. Every list's `limit` is checked as REST checks `?limit=` (1 to 500)."""

from __future__ import annotations

import time
from typing import Any

import pytest
from django.conf import settings
from django.db import connection
from django.test.utils import CaptureQueriesContext
from graphql import parse

from orchestrator.actors import Actor
from orchestrator.context import tenant_scope
from orchestrator.graphql.cost import query_cost
from orchestrator.graphql.schema import schema
from runs import services as run_services
from tests.harness import Team, gql, gql_error
from workflows.selectors import get_workflow
from workflows.services import apply_workflow

GRAPHQL_SCHEMA = schema._schema


def cost(document: str, variables: dict[str, Any] | None = None) -> int:
    return query_cost(GRAPHQL_SCHEMA, parse(document), None, variables)


def test_the_cost_multiplies_limits_along_each_path() -> None:
    document = """
    query($n: Int!) {
      runs(tenant: "t", limit: 10) { id taskInstances(limit: $n) { id attempts(limit: 2) { id } } }
      me { id memberships { tenant } }
    }"""
    # 10 runs + 10 x 5 task instances + 10 x 5 x 2 attempts; me 1 + its memberships (500)
    assert cost(document, {"n": 5}) == 10 + 50 + 100 + 1 + 500


def test_absent_limits_count_their_defaults() -> None:
    # runs: 50 by default; taskInstances: 500 (a whole run); attempts: 50
    assert cost('{ runs(tenant: "t") { id taskInstances { state } } }') == 50 + 50 * 500
    assert cost('{ run(tenant: "t", id: 1) { taskInstances { attempts { id } } } }') == (
        1 + 500 + 500 * 50
    )


def test_fragments_and_variable_defaults_count_once_per_spread() -> None:
    document = """
    query($n: Int = 3) {
      a: runs(tenant: "t", limit: $n) { ...R }
      b: runs(tenant: "t", limit: 1) { ...R }
    }
    fragment R on RunType { taskInstances(limit: 4) { id } }"""
    assert cost(document) == (3 + 3 * 4) + (1 + 1 * 4)


def test_scalars_are_free() -> None:
    assert cost('{ workflows(tenant: "t", limit: 7) { name tags } }') == 7


FIFTEEN_ALIASES = (
    "{ "
    + " ".join(
        f'r{i}: runs(tenant: "acme", limit: 500) {{ id taskInstances {{ id attempts {{ id }} }} }}'
        for i in range(15)
    )
    + " }"
)


def test_the_fifteen_alias_query_is_refused_before_it_runs(team: Team) -> None:
    expected = cost(FIFTEEN_ALIASES)
    assert expected > settings.GRAPHQL_MAX_COST
    with CaptureQueriesContext(connection) as queries:
        started = time.monotonic()
        response = gql(team.tokens["viewer"], FIFTEEN_ALIASES)
        took = time.monotonic() - started
    assert took < 2
    body = response.json()
    assert body["data"] is None
    [error] = body["errors"]
    assert error["extensions"]["code"] == "QUERY_TOO_COSTLY"
    assert error["extensions"]["cost"] == expected
    assert error["extensions"]["maxCost"] == settings.GRAPHQL_MAX_COST
    assert f"up to {expected} objects" in error["message"]
    assert not [q for q in queries.captured_queries if "runs_" in q["sql"]]  # nothing ran


def test_the_budget_comes_from_the_setting(team: Team, settings: Any) -> None:
    document = '{ tenant(slug: "acme") { slug auditEvents(limit: 10) { id } } }'
    assert cost(document) == 11
    settings.GRAPHQL_MAX_COST = 11
    assert gql(team.tokens["admin"], document).json()["data"]["tenant"]["slug"] == "acme"
    settings.GRAPHQL_MAX_COST = 10
    error = gql_error(gql(team.tokens["admin"], document))
    assert error["extensions"] == {
        "code": "QUERY_TOO_COSTLY",
        "cost": 11,
        "maxCost": 10,
        "classification": "BAD_REQUEST",
    }


SPEC: dict[str, Any] = {
    "name": "three",
    "tasks": {"a": {"type": "noop"}, "b": {"type": "noop"}, "c": {"type": "noop"}},
}


@pytest.fixture
def run_id(team: Team) -> int:
    with tenant_scope([team.tenant]):
        apply_workflow(actor=Actor.cli(), tenant=team.tenant, data=SPEC)
        workflow = get_workflow("three")
        triggered = run_services.trigger_run(actor=Actor.cli(), workflow=workflow, params={})
    return int(triggered.run.pk)


def test_nested_lists_return_at_most_their_limit(team: Team, run_id: int) -> None:
    document = """query($id: Int!, $n: Int!) {
      run(tenant: "acme", id: $id) { taskInstances(limit: $n) { taskId } }
    }"""
    run = gql(team.tokens["viewer"], document, {"id": run_id, "n": 2}).json()["data"]["run"]
    assert len(run["taskInstances"]) == 2
    run = gql(team.tokens["viewer"], document, {"id": run_id, "n": 500}).json()["data"]["run"]
    assert len(run["taskInstances"]) == 3


LISTS = {
    "runs": '{ runs(tenant: "acme", limit: %d) { id } }',
    "backfills": '{ backfills(tenant: "acme", limit: %d) { id } }',
    "workflows": '{ workflows(tenant: "acme", limit: %d) { name } }',
    "versions": '{ workflows(tenant: "acme", limit: 1) { versions(limit: %d) { number } } }',
    "taskInstances": '{ runs(tenant: "acme", limit: 1) { taskInstances(limit: %d) { id } } }',
    "attempts": (
        '{ runs(tenant: "acme", limit: 1) { taskInstances(limit: 1) { '
        "attempts(limit: %d) { id } } } }"
    ),
    "tenants": "{ tenants(limit: %d) { slug } }",
    "members": '{ tenant(slug: "acme") { members(limit: %d) { username } } }',
    "tokens": '{ tenant(slug: "acme") { tokens(limit: %d) { prefix } } }',
    "serviceAccounts": '{ tenant(slug: "acme") { serviceAccounts(limit: %d) { name } } }',
    "auditEvents": '{ tenant(slug: "acme") { auditEvents(limit: %d) { id } } }',
    "connections": '{ connections(tenant: "acme", limit: %d) { name } }',
    "variables": '{ variables(tenant: "acme", limit: %d) { name } }',
    "secrets": '{ secrets(tenant: "acme", limit: %d) { name } }',
}


@pytest.mark.parametrize("limit", [0, -1, 501, 10**9])
@pytest.mark.parametrize("field", sorted(LISTS))
def test_a_limit_out_of_range_is_bad_user_input(
    team: Team, run_id: int, field: str, limit: int
) -> None:
    body = gql(team.tokens["owner"], LISTS[field] % limit).json()
    [error] = body["errors"]
    assert error["extensions"]["code"] == "BAD_USER_INPUT", error
    assert error["extensions"]["errors"] == [
        {"path": "limit", "message": f"must be an integer from 1 to 500; got {limit}"}
    ]


@pytest.mark.parametrize("field", sorted(LISTS))
def test_a_limit_in_range_is_accepted(team: Team, run_id: int, field: str) -> None:
    body = gql(team.tokens["owner"], LISTS[field] % 500).json()
    assert "errors" not in body, body


@pytest.mark.parametrize(
    ("document", "expected"),
    [
        ("{ tenants { slug } }", 50),
        ('{ backfills(tenant: "t") { id } }', 50),
        ('{ tenant(slug: "t") { auditEvents { id } } }', 1 + 50),
        ('{ workflows(tenant: "t") { name } }', 500),
        ('{ workflows(tenant: "t", limit: 1) { versions { number } } }', 1 + 50),
        ('{ tenant(slug: "t") { members { id } tokens { id } serviceAccounts { id } } }', 1501),
        ('{ connections(tenant: "t") { name } variables(tenant: "t") { name } }', 1000),
        ('{ secrets(tenant: "t") { name } }', 500),
    ],
)
def test_the_documented_defaults(document: str, expected: int) -> None:
    assert cost(document) == expected
