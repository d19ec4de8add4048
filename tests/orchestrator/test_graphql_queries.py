"""GraphQL reads: the same objects and the same rules as REST."""

from __future__ import annotations

from typing import Any

import pytest

from tests.harness import ROLES, Team, gql, make_token

TENANT = """
query($slug: String!) {
  tenant(slug: $slug) { slug name role members { username role isServiceAccount } }
}
"""


def _data(response: Any) -> Any:
    body = response.json()
    assert response.status_code == 200, body
    assert "errors" not in body, body
    return body["data"]


def _error_code(response: Any) -> str:
    return str(response.json()["errors"][0]["extensions"]["code"])


def test_it_answers_me(team: Team) -> None:
    me = _data(
        gql(
            team.tokens["operator"],
            "{ me { username isStaff memberships { tenant role } tokenPrefix } }",
        )
    )["me"]
    assert me["username"] == "acme-operator"
    assert me["memberships"] == [{"tenant": "acme", "role": "operator"}]
    assert team.tokens["operator"].startswith(f"orc_{me['tokenPrefix']}_")


def test_it_lists_only_my_tenants(team: Team, outsider: Team) -> None:
    tenants = _data(gql(team.tokens["viewer"], "{ tenants { slug role } }"))["tenants"]
    assert tenants == [{"slug": "acme", "role": "viewer"}]


def test_it_reads_a_tenant_with_its_members(team: Team) -> None:
    tenant = _data(gql(team.tokens["viewer"], TENANT, {"slug": "acme"}))["tenant"]
    assert (tenant["slug"], tenant["role"]) == ("acme", "viewer")
    assert {m["username"]: m["role"] for m in tenant["members"]} == {
        f"acme-{r}": r for r in ("viewer", "operator", "editor", "admin", "owner")
    }


def test_it_answers_null_and_not_found_for_another_tenant(team: Team, outsider: Team) -> None:
    response = gql(team.tokens["owner"], TENANT, {"slug": "globex"})
    assert response.json()["data"] == {"tenant": None}
    assert _error_code(response) == "NOT_FOUND"
    assert "globex-owner" not in response.content.decode()


def test_it_answers_not_found_for_a_tenant_that_does_not_exist(team: Team) -> None:
    response = gql(team.tokens["owner"], TENANT, {"slug": "nowhere"})
    assert response.json()["data"] == {"tenant": None}
    assert _error_code(response) == "NOT_FOUND"


@pytest.mark.parametrize(
    ("field", "min_role"),
    [
        ("tokens { prefix }", "admin"),
        ("serviceAccounts { name }", "admin"),
        ("auditEvents { action }", "admin"),
        ("members { username }", "viewer"),
    ],
)
@pytest.mark.parametrize("role", ["viewer", "editor", "admin"])
def test_it_applies_the_policy_to_nested_lists(
    team: Team, field: str, min_role: str, role: str
) -> None:
    response = gql(team.tokens[role], f'{{ tenant(slug: "acme") {{ slug {field} }} }}')
    if ROLES.index(role) >= ROLES.index(min_role):
        assert _data(response)["tenant"]["slug"] == "acme"
    else:
        assert _error_code(response) == "FORBIDDEN"
        assert response.json()["errors"][0]["path"][0] == "tenant"
        assert response.json()["data"] == {"tenant": None}


def test_it_never_shows_a_token_in_the_token_list(team: Team) -> None:
    query = '{ tenant(slug: "acme") { tokens { prefix name role username lastUsedAt } } }'
    response = gql(team.tokens["admin"], query)
    tokens = _data(response)["tenant"]["tokens"]
    assert len(tokens) == 5
    assert {t["username"] for t in tokens} == {f"acme-{r}" for r in team.users}
    content = response.content.decode()
    assert not any(raw.split("_", 2)[2] in content for raw in team.tokens.values())
    asking = gql(team.tokens["admin"], '{ tenant(slug: "acme") { tokens { token } } }')
    assert "errors" in asking.json()


def test_it_filters_audit_events(team: Team) -> None:
    make_token(team.tenant, team.users["admin"], "viewer")
    query = """
    query($action: String) {
      tenant(slug: "acme") { auditEvents(action: $action, limit: 3) { seq action actor source } }
    }
    """
    events = _data(gql(team.tokens["admin"], query, {"action": "token."}))["tenant"]["auditEvents"]
    assert [e["action"] for e in events] == ["token.create"] * 3
    assert [e["seq"] for e in events] == sorted((e["seq"] for e in events), reverse=True)
    assert {e["source"] for e in events} == {"cli"}
    exact = _data(gql(team.tokens["admin"], query, {"action": "membership.create"}))
    assert {e["action"] for e in exact["tenant"]["auditEvents"]} == {"membership.create"}
