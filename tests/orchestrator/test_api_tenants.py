"""/api/v1/me and /api/v1/tenants/: any member reads, owners rename and archive, anyone
signed in creates a tenant and becomes its owner."""

from __future__ import annotations

import pytest
from django.test import Client

from orchestrator.models import AuditEvent, Membership, Tenant
from tests.harness import (
    EndpointCase,
    EndpointSuite,
    Team,
    assert_problem,
    make_member,
    make_team,
    new_audit_events,
    send,
    tenant_state,
)

TENANT = "/api/v1/tenants/{tenant}/"


class TestTenantsEndpoint(EndpointSuite):
    cases = [
        EndpointCase("me", "GET", "/api/v1/me", "viewer"),
        EndpointCase("list", "GET", "/api/v1/tenants/", "viewer"),
        EndpointCase("retrieve", "GET", TENANT, "viewer"),
        EndpointCase(
            "rename",
            "PATCH",
            TENANT,
            "owner",
            body={"name": "Renamed"},
            audit_action="tenant.update",
        ),
        EndpointCase(
            "archive", "DELETE", TENANT, "owner", status=204, audit_action="tenant.archive"
        ),
    ]


def _signed_in(user: object) -> Client:
    client = Client()
    client.force_login(user)  # type: ignore[arg-type]
    return client


def test_it_lists_only_the_tenants_of_the_caller(team: Team, outsider: Team) -> None:
    third = make_team("initech", roles=["owner"])
    Membership.objects.dangerously_unscoped().create(
        tenant=third.tenant, user=team.users["viewer"], role="viewer"
    )
    by_session = _signed_in(team.users["viewer"]).get("/api/v1/tenants/")
    assert sorted(t["slug"] for t in by_session.json()["results"]) == ["acme", "initech"]
    by_token = send(team.tokens["viewer"], "GET", "/api/v1/tenants/")
    assert [(t["slug"], t["role"]) for t in by_token.json()["results"]] == [("acme", "viewer")]


def test_it_shows_the_callers_memberships_and_token(team: Team) -> None:
    body = send(team.tokens["editor"], "GET", "/api/v1/me").json()
    assert body["username"] == "acme-editor"
    assert body["memberships"] == [{"tenant": "acme", "tenant_name": "Acme", "role": "editor"}]
    assert body["token"]["tenant"] == "acme"
    assert body["token"]["role"] == "editor"


def test_it_makes_the_creator_the_owner(team: Team) -> None:
    user = team.users["viewer"]
    response = _signed_in(user).post(
        "/api/v1/tenants/", {"slug": "newco", "name": "NewCo"}, content_type="application/json"
    )
    assert response.status_code == 201, response.content
    assert response.json()["slug"] == "newco"
    assert response.json()["role"] == "owner"
    tenant = Tenant.objects.get(slug="newco")
    members = Membership.objects.dangerously_unscoped().filter(tenant=tenant)
    assert [(m.user, m.role) for m in members] == [(user, "owner")]
    events = new_audit_events(tenant, 0)
    assert [e.action for e in events] == ["tenant.create", "membership.create"]
    assert {(e.actor_id, e.source, e.request_id) for e in events} == {
        (user.pk, "api", response["X-Request-ID"])
    }


def test_it_refuses_to_create_a_tenant_with_a_token(team: Team) -> None:
    response = send(team.tokens["owner"], "POST", "/api/v1/tenants/", {"slug": "x", "name": "X"})
    assert_problem(response, 403)
    assert not Tenant.objects.filter(slug="x").exists()


def test_it_refuses_a_slug_that_is_taken(team: Team, outsider: Team) -> None:
    response = _signed_in(team.owner).post(
        "/api/v1/tenants/", {"slug": "globex", "name": "Mine"}, content_type="application/json"
    )
    assert_problem(response, 409)
    assert Tenant.objects.get(slug="globex").name == "Globex"


def test_it_refuses_an_invalid_slug(team: Team) -> None:
    response = _signed_in(team.owner).post(
        "/api/v1/tenants/", {"slug": "not a slug", "name": "X"}, content_type="application/json"
    )
    assert_problem(response, 400, path="slug")
    assert Tenant.objects.count() == 1


def test_it_renames_and_sets_quotas_within_the_platform_limits(team: Team) -> None:
    url = f"/api/v1/tenants/{team.slug}/"
    response = send(
        team.tokens["owner"], "PATCH", url, {"name": "ACME", "quotas": {"max_tokens": 5}}
    )
    assert response.status_code == 200, response.content
    assert response.json()["quotas"]["max_tokens"] == 5
    team.tenant.refresh_from_db()
    assert (team.tenant.name, team.tenant.quotas["max_tokens"]) == ("ACME", 5)


@pytest.mark.parametrize(
    ("quotas", "path"),
    [({"max_tokens": 10**9}, "quotas.max_tokens"), ({"bogus": 1}, "quotas.bogus")],
)
def test_it_refuses_quotas_beyond_the_platform(team: Team, quotas: object, path: str) -> None:
    before = tenant_state(team.tenant)
    url = f"/api/v1/tenants/{team.slug}/"
    assert_problem(send(team.tokens["owner"], "PATCH", url, {"quotas": quotas}), 400, path=path)
    assert tenant_state(team.tenant) == before


def test_it_hides_an_archived_tenant_but_keeps_its_rows(team: Team) -> None:
    owner = team.tokens["owner"]
    assert send(owner, "DELETE", f"/api/v1/tenants/{team.slug}/").status_code == 204
    assert_problem(send(owner, "GET", f"/api/v1/tenants/{team.slug}/"), 404)
    assert_problem(send(owner, "GET", f"/api/v1/tenants/{team.slug}/members/"), 404)
    assert send(owner, "GET", "/api/v1/tenants/").json()["results"] == []
    tenant = Tenant.objects.get(slug=team.slug)
    assert tenant.archived_at is not None
    assert Membership.objects.dangerously_unscoped().filter(tenant=tenant).count() == 5
    assert AuditEvent.objects.dangerously_unscoped().filter(action="tenant.archive").count() == 1


def test_it_lets_another_owner_manage_the_tenant(team: Team) -> None:
    second = make_member(team.tenant, "owner")
    client = _signed_in(second)
    response = client.patch(
        f"/api/v1/tenants/{team.slug}/", {"name": "Co-owned"}, content_type="application/json"
    )
    assert response.status_code == 200, response.content
    assert response.json()["role"] == "owner"
