"""Every request is bounded before it is parsed: a body past DATA_UPLOAD_MAX_MEMORY_SIZE is
a 413, JSON, YAML, GraphQL variables or a GraphQL document nested deeper than 64 levels a
fast 400 naming the limit (never a RecursionError), and nothing is stored."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from django.test import Client

from orchestrator.models import Tenant
from tests.harness import Team, api, assert_problem, gql
from workflows.models import Workflow

TENANTS = "/api/v1/tenants/"
WORKFLOWS = "/api/v1/tenants/{tenant}/workflows/"
DEEP = 100_000


def tenant_count() -> int:
    return Tenant.objects.count()


def timed(send: object) -> tuple[object, float]:
    started = time.monotonic()
    response = send()  # type: ignore[operator]
    return response, time.monotonic() - started


def test_a_json_body_nested_100k_deep_is_a_fast_400(team: Team) -> None:
    before = tenant_count()
    body = '{"slug": "deep", "name": ' + "[" * DEEP + "]" * DEEP + "}"
    client = api(team.tokens["owner"])
    response, took = timed(lambda: client.post(TENANTS, body, content_type="application/json"))
    assert took < 2
    problem = assert_problem(response, 400)  # type: ignore[arg-type]
    assert "deeper than 64 levels" in problem["detail"]
    assert "Recursion" not in problem["detail"]
    assert tenant_count() == before


def test_json_nested_within_the_limit_is_parsed(team: Team) -> None:
    body = json.dumps({"slug": "nested", "name": [[["x"]]]})
    response = api(team.tokens["owner"]).post(TENANTS, body, content_type="application/json")
    problem = assert_problem(response, 400, "name")  # an ordinary validation error
    assert "deeper" not in problem["detail"]


@pytest.mark.parametrize(
    ("content_type", "text"),
    [
        ("application/yaml", "[" * DEEP),
        ("application/yaml", "- " * DEEP + "x"),
        ("application/json", '{"a":' * 50_000),  # within the tenant's size limit
    ],
    ids=["yaml flow", "yaml block", "json"],
)
def test_a_spec_nested_100k_deep_is_a_fast_400(team: Team, content_type: str, text: str) -> None:
    client = api(team.tokens["editor"])
    url = WORKFLOWS.format(tenant=team.slug)
    response, took = timed(lambda: client.post(url, text, content_type=content_type))
    assert took < 2
    problem = assert_problem(response, 400)  # type: ignore[arg-type]
    assert "deeper than 64 levels" in problem["detail"]
    assert not Workflow.objects.dangerously_unscoped().exists()


def test_graphql_variables_nested_100k_deep_are_a_fast_400(team: Team) -> None:
    before = tenant_count()
    document = 'mutation($n: String!) { createTenant(slug: "deep", name: $n) { slug } }'
    body = '{"query": ' + json.dumps(document) + ', "variables": {"n": ' + "[" * DEEP + "]" * DEEP
    body += "}}"
    client = api(team.tokens["owner"])
    response, took = timed(lambda: client.post("/graphql", body, content_type="application/json"))
    assert took < 2
    assert response.status_code == 400  # type: ignore[attr-defined]
    [error] = response.json()["errors"]  # type: ignore[attr-defined]
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert "deeper than 64 levels" in error["message"]
    assert tenant_count() == before


@pytest.mark.parametrize(
    "document",
    [
        "{ me { " * DEEP + "id" + " }" * DEEP,
        '{ tenant(slug: "x") { quotas } }' + "# {{{{{{{{{{{{{{{{{{{{{{{{{{{{{{{",  # comment: fine
        "query { tenants(limit: " + "[" * DEEP + "1" + "]" * DEEP + ") { slug } }",
    ],
    ids=["selections", "brackets in a comment", "list value"],
)
def test_a_graphql_document_nested_too_deep_is_a_fast_400(team: Team, document: str) -> None:
    response, took = timed(lambda: gql(team.tokens["viewer"], document))
    assert took < 2
    body = response.json()  # type: ignore[attr-defined]
    if "#" in document:  # brackets in comments and strings do not count
        assert response.status_code == 200  # type: ignore[attr-defined]
        return
    assert response.status_code == 400  # type: ignore[attr-defined]
    assert body["errors"][0]["extensions"]["code"] == "BAD_USER_INPUT"
    assert "the GraphQL document nests deeper than 64 levels" in body["errors"][0]["message"]


def test_a_graphql_get_with_deep_variables_is_a_400(team: Team) -> None:
    variables = "[" * DEEP + "]" * DEEP
    response = api(team.tokens["viewer"]).get(
        "/graphql", {"query": "{ me { id } }", "variables": variables}
    )
    assert response.status_code == 400
    assert "deeper than 64 levels" in response.json()["errors"][0]["message"]


@pytest.fixture
def small_bodies(settings: Any) -> int:
    settings.DATA_UPLOAD_MAX_MEMORY_SIZE = 1000
    return 1000


def test_a_json_body_past_the_limit_is_a_413(team: Team, small_bodies: int) -> None:
    before = tenant_count()
    body = json.dumps({"slug": "big", "name": "x" * small_bodies})
    response = api(team.tokens["owner"]).post(TENANTS, body, content_type="application/json")
    problem = assert_problem(response, 413)
    assert problem["type"] == "urn:orchestrator:problem:request-too-large"
    assert f"larger than {small_bodies} bytes" in problem["detail"]
    assert tenant_count() == before


@pytest.mark.parametrize("content_type", ["application/yaml", "application/json"])
def test_a_spec_past_the_limit_is_a_413(team: Team, small_bodies: int, content_type: str) -> None:
    text = "name: big\ndescription: " + "x" * small_bodies + "\ntasks: {t: {type: noop}}\n"
    if content_type == "application/json":
        text = json.dumps({"name": "big", "description": "x" * small_bodies, "tasks": {}})
    response = api(team.tokens["editor"]).post(
        WORKFLOWS.format(tenant=team.slug), text, content_type=content_type
    )
    problem = assert_problem(response, 413)
    assert f"larger than {small_bodies} bytes" in problem["detail"]
    assert not Workflow.objects.dangerously_unscoped().exists()


def test_a_graphql_body_past_the_limit_is_a_413(team: Team, small_bodies: int) -> None:
    before = tenant_count()
    response = gql(
        team.tokens["owner"],
        'mutation($n: String!) { createTenant(slug: "big", name: $n) { slug } }',
        {"n": "x" * small_bodies},
    )
    assert response.status_code == 413
    [error] = response.json()["errors"]
    assert error["extensions"]["code"] == "REQUEST_TOO_LARGE"
    assert f"larger than {small_bodies} bytes" in error["message"]
    assert tenant_count() == before


def test_the_body_limit_has_room_for_the_largest_spec_as_a_graphql_string() -> None:
    from django.conf import settings

    largest_spec = settings.PLATFORM_QUOTA_LIMITS["max_spec_bytes"]
    assert 2 * largest_spec <= settings.DATA_UPLOAD_MAX_MEMORY_SIZE


def test_an_anonymous_oversized_body_is_refused_before_authentication(
    small_bodies: int,
) -> None:
    response = Client().post(TENANTS, "x" * (small_bodies + 1), content_type="application/json")
    assert response.status_code in (401, 413)  # never read, never a 500
