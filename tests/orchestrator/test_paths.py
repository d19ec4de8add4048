"""Paths that forgive: every API path answers with and without its trailing slash, for every
method, without a redirect; a method a path does not map is a 405 problem with an Allow
header (never a 500), and HEAD answers like GET."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client

from orchestrator.models import Tenant
from runs.models import WorkflowRun
from tests.harness import Team, api, assert_problem, send
from tests.runs.run_states import SPEC, running_run
from workflows.models import WorkflowVersion

# "" sends the canonical path without its trailing slash, "/" as routed.
SLASHES = ["", "/"]


def tenant_url(team: Team, rest: str) -> str:
    return f"/api/v1/tenants/{team.slug}/{rest}"


def run_state(run: WorkflowRun) -> str:
    return str(WorkflowRun.objects.dangerously_unscoped().get(pk=run.pk).state)


@pytest.mark.parametrize("slash", SLASHES)
def test_a_post_cancels_the_run_with_or_without_the_slash(team: Team, slash: str) -> None:
    run = running_run(team)
    response = send(
        team.tokens["operator"], "POST", tenant_url(team, f"runs/{run.pk}/cancel{slash}")
    )
    assert response.status_code == 200, response.content
    assert response.json()["state"] == "cancelled"
    assert run_state(run) == "cancelled"


@pytest.mark.parametrize("slash", SLASHES)
def test_a_put_applies_a_version_with_or_without_the_slash(team: Team, slash: str) -> None:
    spec = dict(SPEC, description="applied without a redirect")
    response = send(team.tokens["editor"], "PUT", tenant_url(team, f"workflows/etl{slash}"), spec)
    assert response.status_code in (200, 201), response.content
    versions = WorkflowVersion.objects.dangerously_unscoped()
    stored = versions.get(workflow__tenant=team.tenant, workflow__name="etl")
    assert stored.spec["description"] == "applied without a redirect"


@pytest.mark.parametrize("slash", SLASHES)
def test_a_patch_renames_the_tenant_with_or_without_the_slash(team: Team, slash: str) -> None:
    url = f"/api/v1/tenants/{team.slug}{slash}"
    response = send(team.tokens["owner"], "PATCH", url, {"name": "Acme Renamed"})
    assert response.status_code == 200, response.content
    assert Tenant.objects.get(pk=team.tenant.pk).name == "Acme Renamed"


@pytest.mark.parametrize("slash", SLASHES)
def test_a_delete_removes_the_variable_with_or_without_the_slash(team: Team, slash: str) -> None:
    created = send(
        team.tokens["editor"],
        "POST",
        tenant_url(team, "variables"),
        {"name": "region", "value": "eu"},
    )
    assert created.status_code == 201, created.content
    deleted = send(team.tokens["editor"], "DELETE", tenant_url(team, f"variables/region{slash}"))
    assert deleted.status_code == 204, deleted.content
    gone = send(team.tokens["editor"], "GET", tenant_url(team, "variables/region/"))
    assert_problem(gone, 404)


@pytest.mark.parametrize(
    "path",
    [
        "/api/v1/me",
        "/api/v1/me/",
        "/api/v1/tenants",
        "/api/v1/workflow-spec.schema.json/",
        "/api/schema",
        "/api/docs",
        "/healthz/",
        "/readyz/",
    ],
)
def test_a_get_answers_on_the_other_form_of_the_path(team: Team, path: str) -> None:
    response = api(team.tokens["viewer"]).get(path)
    assert response.status_code == 200, response.content


def test_a_list_keeps_its_query_and_links_its_next_page_canonically(team: Team) -> None:
    running_run(team)
    running_run(team)
    response = api(team.tokens["viewer"]).get(tenant_url(team, "runs?limit=1"))
    assert response.status_code == 200, response.content
    body: dict[str, Any] = response.json()
    assert len(body["results"]) == 1
    assert body["next"].startswith(f"http://testserver/api/v1/tenants/{team.slug}/runs/?")


def test_graphql_answers_with_the_slash_too(team: Team) -> None:
    response = api(team.tokens["viewer"]).post(
        "/graphql/", {"query": "{ me { username } }"}, content_type="application/json"
    )
    assert response.status_code == 200, response.content
    assert response.json()["data"]["me"]["username"] == f"{team.slug}-viewer"


@pytest.mark.parametrize("path", ["/api/v1/nowhere", "/api/v1/nowhere/", "/api/v1/me/extra"])
def test_a_path_that_resolves_neither_way_is_a_404_problem(team: Team, path: str) -> None:
    assert_problem(api(team.tokens["viewer"]).post(path), 404)


def test_a_post_without_the_slash_works_in_debug_too(team: Team, settings: Any) -> None:
    settings.DEBUG = True
    run = running_run(team)
    response = send(team.tokens["operator"], "POST", tenant_url(team, f"runs/{run.pk}/cancel"))
    assert response.status_code == 200, response.content
    assert run_state(run) == "cancelled"


@pytest.mark.django_db
def test_the_admin_answers_with_and_without_the_slash(client: Client) -> None:
    root = User.objects.create_superuser("root", password=None)
    client.force_login(root)
    assert client.get("/admin/").status_code == 200
    without = client.get("/admin")
    assert without.status_code == 301  # pages for browsers keep the canonical address
    assert without["Location"] == "/admin/"
    page = client.get("/admin/orchestrator/tenant")
    assert (page.status_code, page["Location"]) == (301, "/admin/orchestrator/tenant/")
    assert client.get(page["Location"]).status_code == 200


# --- methods a path does not map ---------------------------------------------------------


@pytest.mark.parametrize("method", ["OPTIONS", "TRACE", "CONNECT", "PROPFIND"])
@pytest.mark.parametrize(
    ("rest", "allowed"),
    [
        ("workflows/", {"GET", "POST", "HEAD"}),
        ("runs/", {"GET", "HEAD"}),
        ("members/", {"GET", "POST", "HEAD"}),
        ("connections/", {"GET", "POST", "HEAD"}),
    ],
)
def test_an_unmapped_method_on_a_tenant_list_is_a_405_problem_with_allow(
    team: Team, method: str, rest: str, allowed: set[str]
) -> None:
    response = send(team.tokens["owner"], method, tenant_url(team, rest))
    assert_problem(response, 405)
    assert set(response["Allow"].split(", ")) == allowed


@pytest.mark.parametrize("method", ["OPTIONS", "TRACE", "POST", "PUT"])
def test_an_unmapped_method_on_a_run_is_a_405_problem_with_allow(team: Team, method: str) -> None:
    run = running_run(team)
    response = send(team.tokens["owner"], method, tenant_url(team, f"runs/{run.pk}/"))
    assert_problem(response, 405)
    assert set(response["Allow"].split(", ")) == {"GET", "HEAD"}
    assert run_state(run) == "running"


@pytest.mark.parametrize("path", ["/api/v1/me", "/api/v1/tenants/", "/api/v1/tenants/acme/"])
def test_options_outside_a_tenant_is_a_405_problem_too(team: Team, path: str) -> None:
    response = send(team.tokens["owner"], "OPTIONS", path)
    assert_problem(response, 405)
    assert "OPTIONS" not in response["Allow"]


def test_an_unmapped_method_without_credentials_is_a_401(team: Team) -> None:
    assert_problem(send(None, "TRACE", tenant_url(team, "workflows/")), 401)


def test_an_unmapped_method_on_another_tenant_is_a_405_that_says_nothing_of_it(
    team: Team, outsider: Team
) -> None:
    ours = send(team.tokens["owner"], "OPTIONS", tenant_url(outsider, "workflows/"))
    unknown = send(team.tokens["owner"], "OPTIONS", "/api/v1/tenants/no-such-tenant/workflows/")
    assert_problem(ours, 405)
    assert ours.json() == unknown.json()


@pytest.mark.parametrize("rest", ["runs/", "runs", "workflows/etl/", "workflows/etl/versions/1"])
def test_head_answers_like_get_without_a_body(team: Team, rest: str) -> None:
    running_run(team)
    token = team.tokens["viewer"]
    got = api(token).get(tenant_url(team, rest))
    head = api(token).head(tenant_url(team, rest))
    assert got.status_code == head.status_code == 200, got.content
    assert head.content == b""
    assert head["Content-Type"] == got["Content-Type"]
