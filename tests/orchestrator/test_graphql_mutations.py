"""GraphQL mutations go through the same services as REST: the same roles, the same 404
for another tenant (NOT_FOUND), one audit event per change (source "graphql")."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

from orchestrator import services, tokens
from orchestrator.actors import Actor
from orchestrator.models import ApiToken, Tenant
from tests.graphql_harness import MutationCase, MutationSuite
from tests.harness import (
    Team,
    gql,
    make_member,
    make_team,
    make_teammate,
    make_token,
    new_audit_events,
    tenant_state,
    token_row,
)


def _new_user(team: Team) -> dict[str, Any]:
    return {"t": team.slug, "u": make_teammate(team).username}


def _viewer(team: Team) -> dict[str, Any]:
    return {"t": team.slug, "u": make_member(team.tenant, "viewer").username}


def _token(team: Team) -> dict[str, Any]:
    return {"t": team.slug, "p": tokens.parse(make_token(team.tenant, team.owner, "viewer"))}


def _tenant(team: Team) -> dict[str, Any]:
    return {"t": team.slug}


MUTATIONS = [
    MutationCase(
        "addMember",
        'mutation($t: String!, $u: String!) { addMember(tenant: $t, username: $u, role: "viewer")'
        " { username role } }",
        _new_user, "admin", "membership.create",
    ),
    MutationCase(
        "changeMemberRole",
        "mutation($t: String!, $u: String!) {"
        ' changeMemberRole(tenant: $t, username: $u, role: "operator") { role } }',
        _viewer, "admin", "membership.update",
    ),
    MutationCase(
        "removeMember",
        "mutation($t: String!, $u: String!) { removeMember(tenant: $t, username: $u) }",
        _viewer, "admin", "membership.delete",
    ),
    MutationCase(
        "createToken",
        'mutation($t: String!) { createToken(tenant: $t, name: "ci", role: "viewer")'
        " { token apiToken { prefix } } }",
        _tenant, "admin", "token.create",
    ),
    MutationCase(
        "revokeToken",
        "mutation($t: String!, $p: String!) { revokeToken(tenant: $t, prefix: $p) { revokedAt } }",
        _token, "admin", "token.revoke",
    ),
    MutationCase(
        "createServiceAccount",
        'mutation($t: String!) { createServiceAccount(tenant: $t, name: "ci", role: "viewer")'
        " { name } }",
        _tenant, "admin", "service_account.create",
    ),
    MutationCase(
        "updateTenant",
        'mutation($t: String!) { updateTenant(slug: $t, name: "Renamed") { name } }',
        _tenant, "owner", "tenant.update",
    ),
    MutationCase(
        "archiveTenant", "mutation($t: String!) { archiveTenant(slug: $t) }",
        _tenant, "owner", "tenant.archive",
    ),
]  # fmt: skip


def _code(response: Any) -> str:
    return str(response.json()["errors"][0]["extensions"]["code"])


class TestPlatformMutations(MutationSuite):
    cases = MUTATIONS


@pytest.mark.parametrize(
    "case",
    [c for c in MUTATIONS if c.variables in (_viewer, _token)],
    ids=lambda case: str(case.name),
)
def test_it_hides_another_tenants_object_under_its_own_tenant(db: None, case: MutationCase) -> None:
    team, outsider = make_team("acme", roles=[]), make_team("globex", roles=[])
    variables = {**case.variables(outsider), "t": team.slug}
    before = tenant_state(team.tenant), tenant_state(outsider.tenant)
    response = gql(team.tokens["owner"], case.document, variables)
    assert _code(response) == "NOT_FOUND"
    assert (tenant_state(team.tenant), tenant_state(outsider.tenant)) == before


@pytest.mark.parametrize(
    ("document", "variables", "path"),
    [
        (MUTATIONS[0].document.replace('"viewer"', '"superuser"'), {"u": "acme-viewer"}, "role"),
        (
            'mutation($t: String!, $n: String!) { createToken(tenant: $t, name: $n, role: "viewer")'
            " { token } }",
            {"n": "x" * 101},
            "name",
        ),
        (
            'mutation($t: String!) { createToken(tenant: $t, name: "x", role: "viewer",'
            ' expiresAt: "2001-01-01T00:00:00+00:00") { token } }',
            {},
            "expires_at",
        ),
        (MUTATIONS[6].document.replace('"Renamed"', '"' + "x" * 201 + '"'), {}, "name"),
    ],
    ids=["unknown-role", "long-token-name", "expiry-in-the-past", "long-tenant-name"],
)
def test_it_refuses_bad_input_with_paths(
    team: Team, document: str, variables: dict[str, Any], path: str
) -> None:
    before = tenant_state(team.tenant)
    response = gql(team.tokens["owner"], document, {"t": team.slug, **variables})
    [error] = response.json()["errors"]
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert path in [e["path"] for e in error["extensions"]["errors"]]
    assert tenant_state(team.tenant) == before


def test_it_refuses_a_token_above_its_holders_role(team: Team) -> None:
    services.create_service_account(actor=Actor.cli(), tenant=team.tenant, name="ci", role="viewer")
    before = tenant_state(team.tenant)
    document = (
        'mutation { createToken(tenant: "acme", name: "x", role: "editor", serviceAccount: "ci")'
        " { token } }"
    )
    [error] = gql(team.tokens["admin"], document).json()["errors"]
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert [e["path"] for e in error["extensions"]["errors"]] == ["role"]
    assert tenant_state(team.tenant) == before


def test_it_keeps_the_last_owner(team: Team) -> None:
    before = tenant_state(team.tenant)
    document = 'mutation { removeMember(tenant: "acme", username: "acme-owner") }'
    assert _code(gql(team.tokens["owner"], document)) == "CONFLICT"
    assert tenant_state(team.tenant) == before


def test_it_returns_a_new_token_once(team: Team) -> None:
    response = gql(team.tokens["admin"], MUTATIONS[3].document, {"t": team.slug})
    created = response.json()["data"]["createToken"]
    raw = created["token"]
    assert token_row(raw).prefix == created["apiToken"]["prefix"]
    listed = gql(team.tokens["admin"], '{ tenant(slug: "acme") { tokens { prefix } } }')
    assert created["apiToken"]["prefix"] in listed.content.decode()
    assert raw not in listed.content.decode()
    assert gql(raw, "{ me { username } }").json()["data"]["me"]["username"] == "acme-admin"


def test_it_creates_a_tenant_for_a_signed_in_user_but_not_for_a_token(team: Team) -> None:
    document = 'mutation { createTenant(slug: "newco", name: "NewCo") { slug role } }'
    assert _code(gql(team.tokens["owner"], document)) == "FORBIDDEN"
    assert not Tenant.objects.filter(slug="newco").exists()
    client = Client()
    client.force_login(team.users["viewer"])
    response = client.post("/graphql", {"query": document}, content_type="application/json")
    assert response.json()["data"]["createTenant"] == {"slug": "newco", "role": "owner"}
    [create, owner] = new_audit_events(Tenant.objects.get(slug="newco"), 0)
    assert (create.action, create.source) == ("tenant.create", "graphql")
    assert owner.action == "membership.create"


def test_it_revokes_the_tokens_of_a_demoted_member(team: Team) -> None:
    document = (
        'mutation { changeMemberRole(tenant: "acme", username: "acme-editor", role: "viewer")'
        " { role } }"
    )
    assert (
        gql(team.tokens["admin"], document).json()["data"]["changeMemberRole"]["role"] == "viewer"
    )
    assert token_row(team.tokens["editor"]).revoked_at is not None
    live = ApiToken.objects.dangerously_unscoped().filter(revoked_at__isnull=True)
    assert live.count() == 4
