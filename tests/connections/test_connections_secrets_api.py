"""/api/v1/tenants/{tenant}/secrets/: admins set and rotate, editors see names and when
each last changed; the value is write-only, stored encrypted, in no response."""

from __future__ import annotations

from django.db import connection as db

from connections import services
from orchestrator.actors import Actor
from tests.harness import (
    EndpointCase,
    EndpointSuite,
    Team,
    assert_problem,
    send,
    tenant_state,
)

SECRETS = "/api/v1/tenants/{tenant}/secrets/"
SECRET = SECRETS + "{name}/"
VALUE = "s3cr3t-Pq9Wv-value"


def a_secret(team: Team) -> dict[str, str]:
    services.create_secret(actor=Actor.cli(), tenant=team.tenant, name="API_KEY", value=VALUE)
    return {"name": "API_KEY"}


class TestSecretsEndpoint(EndpointSuite):
    cases = [
        EndpointCase("list", "GET", SECRETS, "editor"),
        EndpointCase("retrieve", "GET", SECRET, "editor", setup=a_secret),
        EndpointCase(
            "create", "POST", SECRETS, "admin", status=201,
            body={"name": "API_KEY", "value": VALUE}, audit_action="secret.create",
        ),
        EndpointCase(
            "rotate", "PATCH", SECRET, "admin", setup=a_secret, body={"value": "next"},
            audit_action="secret.update",
        ),
        EndpointCase(
            "delete", "DELETE", SECRET, "admin", status=204, setup=a_secret,
            audit_action="secret.delete",
        ),
    ]  # fmt: skip


def _url(team: Team, name: str = "") -> str:
    return f"/api/v1/tenants/{team.slug}/secrets/" + (f"{name}/" if name else "")


def test_it_never_returns_the_value(team: Team) -> None:
    created = send(team.tokens["admin"], "POST", _url(team), {"name": "API_KEY", "value": VALUE})
    assert created.status_code == 201, created.content
    assert set(created.json()) == {
        "id", "name", "description", "created_at", "updated_at", "created_by", "updated_by",
    }  # fmt: skip
    responses = [
        created,
        send(team.tokens["admin"], "GET", _url(team)),
        send(team.tokens["admin"], "GET", _url(team, "API_KEY")),
        send(team.tokens["admin"], "PATCH", _url(team, "API_KEY"), {"description": "x"}),
        send(team.tokens["admin"], "GET", f"/api/v1/tenants/{team.slug}/audit-events/"),
    ]
    for response in responses:
        assert response.status_code == 200 or response is created
        assert VALUE.encode() not in response.content


def test_it_stores_the_value_encrypted(team: Team) -> None:
    a_secret(team)
    with db.cursor() as cursor:
        cursor.execute("SELECT * FROM connections_secret")
        rows = repr(cursor.fetchall())
    assert "API_KEY" in rows
    assert VALUE not in rows


def test_it_shows_when_a_value_was_rotated(team: Team) -> None:
    a_secret(team)
    first = send(team.tokens["editor"], "GET", _url(team, "API_KEY")).json()["updated_at"]
    response = send(team.tokens["admin"], "PATCH", _url(team, "API_KEY"), {"value": "v2"})
    assert response.status_code == 200, response.content
    assert response.json()["updated_at"] > first
    assert response.json()["updated_by"] == "acme-admin"


def test_it_refuses_an_empty_value_and_a_bad_name(team: Team) -> None:
    before = tenant_state(team.tenant)
    body = assert_problem(
        send(team.tokens["admin"], "POST", _url(team), {"name": "api-key", "value": ""}), 400
    )
    assert sorted(e["path"] for e in body["errors"]) == ["name", "value"]
    assert tenant_state(team.tenant) == before
    a_secret(team)
    before = tenant_state(team.tenant)
    response = send(team.tokens["admin"], "PATCH", _url(team, "API_KEY"), {"value": ""})
    assert "delete the secret" in assert_problem(response, 400, path="value")["detail"]
    assert tenant_state(team.tenant) == before
