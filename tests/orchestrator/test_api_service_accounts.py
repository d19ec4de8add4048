"""/api/v1/tenants/{tenant}/service-accounts/: users without a login, managed by admins."""

from __future__ import annotations

import itertools

from django.contrib.auth.models import User

from orchestrator import services
from orchestrator.actors import Actor
from orchestrator.models import ApiToken, Membership, ServiceAccount
from tests.harness import (
    EndpointCase,
    EndpointSuite,
    Team,
    assert_problem,
    make_token,
    send,
    tenant_state,
)

ACCOUNTS = "/api/v1/tenants/{tenant}/service-accounts/"
ACCOUNT = ACCOUNTS + "{name}/"
_names = itertools.count(1)


def an_account(team: Team) -> dict[str, str]:
    name = f"bot-{next(_names)}"
    services.create_service_account(actor=Actor.cli(), tenant=team.tenant, name=name, role="viewer")
    return {"name": name}


class TestServiceAccountsEndpoint(EndpointSuite):
    cases = [
        EndpointCase("list", "GET", ACCOUNTS, "admin", setup=an_account),
        EndpointCase("retrieve", "GET", ACCOUNT, "admin", setup=an_account),
        EndpointCase(
            "create", "POST", ACCOUNTS, "admin", status=201,
            body={"name": "ci", "role": "operator", "description": "CI pipeline"},
            audit_action="service_account.create",
        ),
        EndpointCase(
            "delete", "DELETE", ACCOUNT, "admin", status=204, setup=an_account,
            audit_action="service_account.delete",
        ),
    ]  # fmt: skip


def test_it_creates_a_member_who_cannot_log_in(team: Team) -> None:
    url = f"/api/v1/tenants/{team.slug}/service-accounts/"
    response = send(team.tokens["admin"], "POST", url, {"name": "ci", "role": "operator"})
    assert response.status_code == 201, response.content
    body = response.json()
    assert (body["name"], body["role"], body["username"]) == ("ci", "operator", "sa.acme.ci")
    assert body["created_by"] == "acme-admin"
    user = User.objects.get(username="sa.acme.ci")
    assert not user.has_usable_password()
    membership = Membership.objects.dangerously_unscoped().get(tenant=team.tenant, user=user)
    assert membership.role == "operator"
    listed = send(team.tokens["admin"], "GET", url).json()["results"]
    assert [(a["name"], a["role"]) for a in listed] == [("ci", "operator")]


def test_it_refuses_an_account_above_the_admins_role(team: Team) -> None:
    before = tenant_state(team.tenant)
    url = f"/api/v1/tenants/{team.slug}/service-accounts/"
    assert_problem(send(team.tokens["admin"], "POST", url, {"name": "x", "role": "owner"}), 403)
    assert tenant_state(team.tenant) == before


def test_it_refuses_a_name_twice(team: Team) -> None:
    name = an_account(team)["name"]
    url = f"/api/v1/tenants/{team.slug}/service-accounts/"
    assert_problem(send(team.tokens["admin"], "POST", url, {"name": name, "role": "viewer"}), 409)


def test_it_refuses_a_name_that_is_not_a_slug(team: Team) -> None:
    before = tenant_state(team.tenant)
    url = f"/api/v1/tenants/{team.slug}/service-accounts/"
    body = {"name": "not a slug", "role": "viewer"}
    assert_problem(send(team.tokens["admin"], "POST", url, body), 400, path="name")
    assert tenant_state(team.tenant) == before


def test_it_deletes_an_account_by_revoking_its_tokens_and_deactivating_it(team: Team) -> None:
    name = an_account(team)["name"]
    account = ServiceAccount.objects.dangerously_unscoped().get(name=name)
    raw = make_token(team.tenant, account.user, "viewer")
    members = f"/api/v1/tenants/{team.slug}/members/"
    assert send(raw, "GET", members).status_code == 200
    url = f"/api/v1/tenants/{team.slug}/service-accounts/{name}/"
    assert send(team.tokens["admin"], "DELETE", url).status_code == 204
    assert_problem(send(raw, "GET", members), 401)
    account.user.refresh_from_db()
    assert not account.user.is_active
    assert (
        not ApiToken.objects.dangerously_unscoped()
        .filter(revoked_at__isnull=True, user=account.user)
        .exists()
    )
    assert not Membership.objects.dangerously_unscoped().filter(user=account.user).exists()
    assert_problem(send(team.tokens["admin"], "GET", url), 404)
