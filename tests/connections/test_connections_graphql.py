"""Connections, variables and secrets over GraphQL: the same roles, tenant isolation,
validation paths and audit events (source "graphql") as REST; secret values are not
fields at all, so no query can return one."""

from __future__ import annotations

from typing import Any

import pytest

from connections import runtime, services
from orchestrator.actors import Actor
from tests.graphql_harness import MutationCase, MutationSuite
from tests.harness import Team, gql, gql_error, tenant_state

PASSWORD = "pw-Gq55-graphql"
VALUE = "secret-Gq55-value"

CREATE_CONNECTION = """mutation($t: String!, $n: String!, $p: String, $port: Int, $x: JSON) {
  createConnection(tenant: $t, name: $n, kind: "postgres", host: "db.internal", port: $port,
                   password: $p, extra: $x) { name kind port hasPassword extraKeys }
}"""
UPDATE_CONNECTION = """mutation($t: String!, $n: String!, $p: String, $port: Int) {
  updateConnection(tenant: $t, name: $n, password: $p, port: $port) { name port hasPassword }
}"""
DELETE_CONNECTION = "mutation($t: String!, $n: String!) { deleteConnection(tenant: $t, name: $n) }"
CREATE_VARIABLE = """mutation($t: String!, $n: String!) {
  createVariable(tenant: $t, name: $n, value: "eu") { name value }
}"""
UPDATE_VARIABLE = """mutation($t: String!, $n: String!) {
  updateVariable(tenant: $t, name: $n, value: "us") { name value }
}"""
DELETE_VARIABLE = "mutation($t: String!, $n: String!) { deleteVariable(tenant: $t, name: $n) }"
CREATE_SECRET = """mutation($t: String!, $n: String!, $v: String!) {
  createSecret(tenant: $t, name: $n, value: $v) { name updatedAt }
}"""
UPDATE_SECRET = """mutation($t: String!, $n: String!) {
  updateSecret(tenant: $t, name: $n, value: "rotated") { name updatedAt }
}"""
DELETE_SECRET = "mutation($t: String!, $n: String!) { deleteSecret(tenant: $t, name: $n) }"
READ_ALL = """query($t: String!) {
  connections(tenant: $t) { name kind host port database login hasPassword extraKeys }
  secrets(tenant: $t) { name description createdAt updatedAt }
  variables(tenant: $t) { name value }
}"""


def _connection(team: Team) -> dict[str, Any]:
    services.create_connection(
        actor=Actor.cli(), tenant=team.tenant, name="db", kind="postgres", host="h", password="p"
    )
    return {"t": team.slug, "n": "db"}


def _variable(team: Team) -> dict[str, Any]:
    services.create_variable(actor=Actor.cli(), tenant=team.tenant, name="region", value="eu")
    return {"t": team.slug, "n": "region"}


def _secret(team: Team) -> dict[str, Any]:
    services.create_secret(actor=Actor.cli(), tenant=team.tenant, name="KEY", value=VALUE)
    return {"t": team.slug, "n": "KEY"}


MUTATIONS = [
    MutationCase(
        "createConnection", CREATE_CONNECTION, lambda t: {"t": t.slug, "n": "db", "p": PASSWORD},
        "admin", "connection.create",
    ),
    MutationCase(
        "updateConnection", UPDATE_CONNECTION, lambda t: {**_connection(t), "port": 6432},
        "admin", "connection.update",
    ),
    MutationCase("deleteConnection", DELETE_CONNECTION, _connection, "admin", "connection.delete"),
    MutationCase(
        "createVariable", CREATE_VARIABLE, lambda t: {"t": t.slug, "n": "region"}, "editor",
        "variable.create",
    ),
    MutationCase("updateVariable", UPDATE_VARIABLE, _variable, "editor", "variable.update"),
    MutationCase("deleteVariable", DELETE_VARIABLE, _variable, "editor", "variable.delete"),
    MutationCase(
        "createSecret", CREATE_SECRET, lambda t: {"t": t.slug, "n": "KEY", "v": VALUE}, "admin",
        "secret.create",
    ),
    MutationCase("updateSecret", UPDATE_SECRET, _secret, "admin", "secret.update"),
    MutationCase("deleteSecret", DELETE_SECRET, _secret, "admin", "secret.delete"),
]  # fmt: skip


class TestConnectionMutations(MutationSuite):
    cases = MUTATIONS
    never_returned = (PASSWORD, VALUE)


def test_it_reads_metadata_only(team: Team, outsider: Team) -> None:
    variables = {"t": team.slug, "n": "db", "p": PASSWORD, "port": 5432, "x": {"sslmode": "x"}}
    created = gql(team.tokens["admin"], CREATE_CONNECTION, variables).json()
    assert created["data"]["createConnection"] == {
        "name": "db",
        "kind": "postgres",
        "port": 5432,
        "hasPassword": True,
        "extraKeys": ["sslmode"],
    }
    _secret(team)
    _variable(team)
    _connection(outsider)
    response = gql(team.tokens["admin"], READ_ALL, {"t": team.slug})
    data = response.json()["data"]
    assert [c["name"] for c in data["connections"]] == ["db"]
    assert [s["name"] for s in data["secrets"]] == ["KEY"]
    assert data["variables"] == [{"name": "region", "value": "eu"}]
    assert PASSWORD.encode() not in response.content
    assert VALUE.encode() not in response.content


@pytest.mark.parametrize(
    ("role", "visible"),
    [("viewer", ["variables"]), ("editor", ["connections", "secrets", "variables"])],
)
def test_it_shows_each_list_to_its_roles(team: Team, role: str, visible: list[str]) -> None:
    for field in ("connections", "secrets", "variables"):
        document = f"query($t: String!) {{ {field}(tenant: $t) {{ name }} }}"
        response = gql(team.tokens[role], document, {"t": team.slug})
        if field in visible:
            assert response.json()["data"] == {field: []}, response.content
        else:
            assert gql_error(response)["extensions"]["code"] == "FORBIDDEN"


def test_it_has_no_field_for_a_secret_value(team: Team) -> None:
    _secret(team)
    for field in ("value", "valueEncrypted"):
        document = f"query($t: String!) {{ secrets(tenant: $t) {{ name {field} }} }}"
        response = gql(team.tokens["owner"], document, {"t": team.slug}).json()
        assert "Cannot query field" in response["errors"][0]["message"]
    document = "query($t: String!) { connections(tenant: $t) { password passwordEncrypted } }"
    assert "Cannot query field" in gql(team.tokens["owner"], document, {"t": team.slug}).text


def test_it_keeps_or_clears_the_password(team: Team) -> None:
    variables = _connection(team)
    kept = gql(team.tokens["admin"], UPDATE_CONNECTION, {**variables, "port": 1}).json()
    assert kept["data"]["updateConnection"] == {"name": "db", "port": 1, "hasPassword": True}
    info = runtime.get_connection(team.tenant.pk, "db")
    assert info is not None
    assert info.password == "p"
    cleared = gql(team.tokens["admin"], UPDATE_CONNECTION, {**variables, "p": ""}).json()
    assert cleared["data"]["updateConnection"]["hasPassword"] is False


def test_it_refuses_bad_input_with_paths(team: Team) -> None:
    before = tenant_state(team.tenant)
    variables = {"t": team.slug, "n": "Bad Name", "port": 99999, "x": [1]}
    error = gql_error(gql(team.tokens["admin"], CREATE_CONNECTION, variables))
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert sorted(e["path"] for e in error["extensions"]["errors"]) == ["extra", "name", "port"]
    assert tenant_state(team.tenant) == before
