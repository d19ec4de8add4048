"""/api/v1/tenants/{tenant}/connections/: admins manage, editors see metadata; the password
and extra's values are write-only, stored encrypted, and in no response."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import connection as db

from connections import services
from connections.models import Connection
from orchestrator.actors import Actor
from orchestrator.context import tenant_scope
from tests.harness import (
    EndpointCase,
    EndpointSuite,
    Team,
    assert_problem,
    send,
    tenant_state,
)

CONNECTIONS = "/api/v1/tenants/{tenant}/connections/"
CONNECTION = CONNECTIONS + "{name}/"
PASSWORD = "pw-Zq8xK2-never-shown"
TOKEN = "tok-Hh7Yy3-never-shown"
WAREHOUSE = {
    "name": "warehouse",
    "kind": "postgres",
    "host": "db.internal",
    "port": 5432,
    "database": "sales",
    "login": "loader",
    "password": PASSWORD,
    "extra": {"sslmode": "require", "headers": {"X-Token": TOKEN}},
    "description": "the sales warehouse",
}


def a_connection(team: Team, **fields: Any) -> dict[str, str]:
    data = {**WAREHOUSE, **fields}
    services.create_connection(actor=Actor.cli(), tenant=team.tenant, **data)
    return {"name": data["name"]}


class TestConnectionsEndpoint(EndpointSuite):
    cases = [
        EndpointCase("list", "GET", CONNECTIONS, "editor"),
        EndpointCase("retrieve", "GET", CONNECTION, "editor", setup=a_connection),
        EndpointCase(
            "create", "POST", CONNECTIONS, "admin", status=201, body=WAREHOUSE,
            audit_action="connection.create",
        ),
        EndpointCase(
            "update", "PATCH", CONNECTION, "admin", setup=a_connection,
            body={"port": 6432, "password": "new"}, audit_action="connection.update",
        ),
        EndpointCase(
            "delete", "DELETE", CONNECTION, "admin", status=204, setup=a_connection,
            audit_action="connection.delete",
        ),
    ]  # fmt: skip


def _url(team: Team, name: str = "") -> str:
    return f"/api/v1/tenants/{team.slug}/connections/" + (f"{name}/" if name else "")


def _row(team: Team, name: str = "warehouse") -> Connection:
    with tenant_scope([team.tenant]):
        return Connection.objects.get(name=name)


def test_it_creates_and_returns_metadata_only(team: Team) -> None:
    response = send(team.tokens["admin"], "POST", _url(team), WAREHOUSE)
    assert response.status_code == 201, response.content
    body = response.json()
    assert {k: body[k] for k in ("name", "kind", "host", "port", "database", "login")} == {
        "name": "warehouse",
        "kind": "postgres",
        "host": "db.internal",
        "port": 5432,
        "database": "sales",
        "login": "loader",
    }
    assert (body["has_password"], body["extra_keys"]) == (True, ["headers", "sslmode"])
    assert (body["created_by"], body["updated_by"]) == ("acme-admin", "acme-admin")
    assert "password" not in body
    assert "extra" not in body
    raw = [
        response.content,
        send(team.tokens["editor"], "GET", _url(team)).content,
        send(team.tokens["editor"], "GET", _url(team, "warehouse")).content,
    ]
    for content in raw:
        for secret in (PASSWORD, TOKEN, "require"):
            assert secret.encode() not in content


def test_it_stores_the_password_and_extra_encrypted(team: Team) -> None:
    a_connection(team)
    with db.cursor() as cursor:
        cursor.execute("SELECT * FROM connections_connection")
        row = repr(cursor.fetchall())
    assert "warehouse" in row
    for secret in (PASSWORD, TOKEN, "require"):
        assert secret not in row
    assert _row(team).password_encrypted.startswith("gAAAAA")  # a Fernet token


def test_it_keeps_the_password_unless_given_and_clears_it_with_an_empty_string(
    team: Team,
) -> None:
    a_connection(team)
    response = send(team.tokens["admin"], "PATCH", _url(team, "warehouse"), {"login": "etl"})
    assert response.status_code == 200, response.content
    assert (response.json()["login"], response.json()["has_password"]) == ("etl", True)
    with tenant_scope([team.tenant]):
        info = services.connection_info(_row(team))
    assert (info.password, dict(info.extra)["sslmode"]) == (PASSWORD, "require")

    body = {"password": "", "extra": {"scheme": "https"}}
    response = send(team.tokens["admin"], "PATCH", _url(team, "warehouse"), body)
    assert response.status_code == 200, response.content
    assert (response.json()["has_password"], response.json()["extra_keys"]) == (False, ["scheme"])
    info = services.connection_info(_row(team))
    assert (info.password, dict(info.extra)) == ("", {"scheme": "https"})


def test_it_deletes_a_connection(team: Team) -> None:
    a_connection(team)
    assert send(team.tokens["admin"], "DELETE", _url(team, "warehouse")).status_code == 204
    assert_problem(send(team.tokens["admin"], "GET", _url(team, "warehouse")), 404)
    assert_problem(send(team.tokens["admin"], "DELETE", _url(team, "warehouse")), 404)


def test_it_refuses_a_name_that_exists(team: Team) -> None:
    a_connection(team)
    before = tenant_state(team.tenant)
    assert_problem(send(team.tokens["admin"], "POST", _url(team), WAREHOUSE), 409)
    assert tenant_state(team.tenant) == before


def test_it_does_not_rename(team: Team) -> None:
    a_connection(team)
    before = tenant_state(team.tenant)
    response = send(team.tokens["admin"], "PATCH", _url(team, "warehouse"), {"name": "other"})
    body = assert_problem(response, 400, path="name")
    assert "accepted:" in body["errors"][0]["message"]
    assert tenant_state(team.tenant) == before


@pytest.mark.parametrize(
    ("fields", "paths", "words"),
    [
        ({"name": "Ware House"}, ["name"], "lowercase letters"),
        ({"kind": "oracle"}, ["kind"], "postgres, mysql, sqlite, http"),
        ({"port": 70000}, ["port"], "1 to 65535"),
        ({"port": "abc"}, ["port"], "integer"),
        ({"extra": ["sslmode"]}, ["extra"], "object"),
        ({"host": ""}, ["host"], "needs a host"),
        ({"host": "https://db.internal/x"}, ["host"], "without scheme"),
        ({"kind": "sqlite", "host": "", "database": ""}, ["database"], "file's path"),
        ({"kind": "http", "host": "", "port": 0}, ["host", "port"], "needs a host"),
        ({"colour": "blue"}, ["colour"], "accepted: name, kind"),
    ],
    ids=[
        "bad-name",
        "unknown-kind",
        "port-out-of-range",
        "port-not-a-number",
        "extra-not-an-object",
        "postgres-without-host",
        "host-with-scheme",
        "sqlite-without-database",
        "two-errors-at-once",
        "unknown-field",
    ],
)
def test_it_refuses_bad_input_naming_the_field(
    team: Team, fields: dict[str, Any], paths: list[str], words: str
) -> None:
    before = tenant_state(team.tenant)
    response = send(team.tokens["admin"], "POST", _url(team), {**WAREHOUSE, **fields})
    body = assert_problem(response, 400)
    assert sorted(e["path"] for e in body["errors"]) == sorted(paths)
    assert words in body["detail"]
    assert tenant_state(team.tenant) == before


def test_it_validates_a_change_against_the_whole_connection(team: Team) -> None:
    a_connection(team)
    before = tenant_state(team.tenant)
    response = send(team.tokens["admin"], "PATCH", _url(team, "warehouse"), {"host": ""})
    assert_problem(response, 400, path="host")
    body = {"kind": "sqlite", "database": ""}
    assert_problem(send(team.tokens["admin"], "PATCH", _url(team, "warehouse"), body), 400)
    assert tenant_state(team.tenant) == before
