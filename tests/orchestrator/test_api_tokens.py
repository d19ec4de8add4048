"""/api/v1/tenants/{tenant}/tokens/: admins mint and revoke; the token is shown once."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from django.utils import timezone

from orchestrator import services, tokens
from orchestrator.actors import Actor
from orchestrator.models import ApiToken
from tests.harness import (
    EndpointCase,
    EndpointSuite,
    Team,
    assert_problem,
    make_token,
    send,
    tenant_state,
    token_row,
)

TOKENS = "/api/v1/tenants/{tenant}/tokens/"
TOKEN = TOKENS + "{prefix}/"


def a_token(team: Team) -> dict[str, str]:
    raw = make_token(team.tenant, team.owner, "viewer", name="ci")
    return {"prefix": str(tokens.parse(raw))}


class TestTokensEndpoint(EndpointSuite):
    cases = [
        EndpointCase("list", "GET", TOKENS, "admin"),
        EndpointCase("retrieve", "GET", TOKEN, "admin", setup=a_token),
        EndpointCase(
            "create", "POST", TOKENS, "admin", status=201,
            body={"name": "deploy", "role": "viewer"}, audit_action="token.create",
        ),
        EndpointCase(
            "revoke", "DELETE", TOKEN, "admin", status=204, setup=a_token,
            audit_action="token.revoke",
        ),
    ]  # fmt: skip


def _url(team: Team, prefix: str = "") -> str:
    return f"/api/v1/tenants/{team.slug}/tokens/" + (f"{prefix}/" if prefix else "")


def test_it_returns_the_token_once(team: Team) -> None:
    response = send(team.tokens["admin"], "POST", _url(team), {"name": "deploy", "role": "editor"})
    assert response.status_code == 201, response.content
    body = response.json()
    raw = body["token"]
    assert raw.startswith(f"orc_{body['prefix']}_")
    assert (body["name"], body["role"], body["username"]) == ("deploy", "editor", "acme-admin")
    assert send(raw, "GET", f"/api/v1/tenants/{team.slug}/members/").status_code == 200
    for url in (_url(team), _url(team, body["prefix"])):
        again = send(team.tokens["admin"], "GET", url)
        assert again.status_code == 200
        assert raw not in again.content.decode()
    listed = send(team.tokens["admin"], "GET", _url(team)).json()["results"]
    assert all(t["token"] is None for t in listed)
    assert body["prefix"] in [t["prefix"] for t in listed]


def test_it_mints_a_token_for_a_service_account(team: Team) -> None:
    services.create_service_account(actor=Actor.cli(), tenant=team.tenant, name="ci", role="editor")
    body = {"name": "ci", "role": "operator", "service_account": "ci"}
    response = send(team.tokens["admin"], "POST", _url(team), body)
    assert response.status_code == 201, response.content
    assert response.json()["username"] == "sa.acme.ci"
    me = send(response.json()["token"], "GET", "/api/v1/me").json()
    assert (me["username"], me["token"]["role"]) == ("sa.acme.ci", "operator")


def test_it_refuses_a_token_above_the_creators_role(team: Team) -> None:
    before = tenant_state(team.tenant)
    response = send(team.tokens["admin"], "POST", _url(team), {"name": "x", "role": "owner"})
    assert_problem(response, 403)
    assert tenant_state(team.tenant) == before


def test_it_refuses_a_token_above_its_holders_role(team: Team) -> None:
    services.create_service_account(actor=Actor.cli(), tenant=team.tenant, name="ci", role="viewer")
    before = tenant_state(team.tenant)
    body = {"name": "x", "role": "editor", "service_account": "ci"}
    assert_problem(send(team.tokens["admin"], "POST", _url(team), body), 400, path="role")
    assert tenant_state(team.tenant) == before


@pytest.mark.parametrize(
    ("body", "path"),
    [
        ({"name": "x", "role": "viewer", "service_account": "ghost"}, "service_account"),
        ({"name": "x", "role": "viewer", "expires_at": "2001-01-01T00:00:00Z"}, "expires_at"),
        ({"name": "x", "role": "root"}, "role"),
        ({"name": "x" * 101, "role": "viewer"}, "name"),
        ({"role": "viewer"}, "name"),
    ],
    ids=["unknown-service-account", "expiry-in-the-past", "unknown-role", "long-name", "no-name"],
)
def test_it_refuses_bad_input(team: Team, body: dict[str, Any], path: str) -> None:
    before = tenant_state(team.tenant)
    assert_problem(send(team.tokens["admin"], "POST", _url(team), body), 400, path=path)
    assert tenant_state(team.tenant) == before


def test_it_mints_a_token_that_expires(team: Team) -> None:
    expires = timezone.now() + dt.timedelta(days=1)
    body = {"name": "x", "role": "viewer", "expires_at": expires.isoformat()}
    response = send(team.tokens["admin"], "POST", _url(team), body)
    assert response.status_code == 201, response.content
    assert token_row(response.json()["token"]).expires_at == expires


def test_it_revokes_a_token_once_and_keeps_its_row(team: Team) -> None:
    prefix = a_token(team)["prefix"]
    assert send(team.tokens["admin"], "DELETE", _url(team, prefix)).status_code == 204
    assert_problem(send(team.tokens["admin"], "DELETE", _url(team, prefix)), 409)
    body = send(team.tokens["admin"], "GET", _url(team, prefix)).json()
    assert body["revoked_at"] is not None
    assert ApiToken.objects.dangerously_unscoped().filter(prefix=prefix).count() == 1


def test_it_refuses_more_live_tokens_than_the_quota(team: Team) -> None:
    team.tenant.quotas = {**team.tenant.quotas, "max_tokens": 5}
    team.tenant.save()
    before = tenant_state(team.tenant)
    response = send(team.tokens["admin"], "POST", _url(team), {"name": "x", "role": "viewer"})
    assert_problem(response, 409)
    assert tenant_state(team.tenant) == before
