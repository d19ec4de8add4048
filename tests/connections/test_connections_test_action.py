"""POST connections/{name}/test/: a connectivity probe, {"ok", "message"}; it changes
nothing, so it writes no audit event. Probes reach only local sqlite files here."""

from __future__ import annotations

from pathlib import Path

from connections import services
from orchestrator.actors import Actor
from tests.harness import (
    EndpointCase,
    EndpointSuite,
    Team,
    assert_problem,
    gql,
    send,
    tenant_state,
)

TEST = "/api/v1/tenants/{tenant}/connections/{name}/test/"


def a_sqlite_connection(team: Team, path: str = "/nonexistent-dir/x.db") -> dict[str, str]:
    services.create_connection(
        actor=Actor.cli(), tenant=team.tenant, name="local", kind="sqlite", database=path
    )
    return {"name": "local"}


class TestConnectionTestEndpoint(EndpointSuite):
    cases = [EndpointCase("test", "POST", TEST, "admin", setup=a_sqlite_connection)]


def test_it_reports_ok_for_a_sqlite_file_that_exists(team: Team, tmp_path: Path) -> None:
    path = tmp_path / "app.db"
    path.write_bytes(b"")
    a_sqlite_connection(team, str(path))
    before = tenant_state(team.tenant)
    response = send(team.tokens["admin"], "POST", TEST.format(tenant=team.slug, name="local"))
    assert response.status_code == 200, response.content
    assert response.json()["ok"] is True
    assert str(path) in response.json()["message"]
    assert tenant_state(team.tenant) == before


def test_it_reports_the_failure_for_a_file_in_a_missing_directory(
    team: Team, tmp_path: Path
) -> None:
    path = tmp_path / "missing" / "app.db"
    a_sqlite_connection(team, str(path))
    before = tenant_state(team.tenant)
    response = send(team.tokens["admin"], "POST", TEST.format(tenant=team.slug, name="local"))
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["ok"] is False
    assert "cannot open" in body["message"]
    assert tenant_state(team.tenant) == before
    assert not path.parent.exists()


def test_it_probes_over_graphql_too(team: Team, tmp_path: Path) -> None:
    path = tmp_path / "app.db"
    path.write_bytes(b"")
    a_sqlite_connection(team, str(path))
    document = 'mutation($t: String!) { testConnection(tenant: $t, name: "local") { ok } }'
    result = gql(team.tokens["admin"], document, {"t": team.slug}).json()
    assert result["data"]["testConnection"]["ok"] is True


def test_it_answers_404_for_an_unknown_connection(team: Team) -> None:
    response = send(team.tokens["admin"], "POST", TEST.format(tenant=team.slug, name="ghost"))
    assert "ghost" in assert_problem(response, 404)["detail"]


def test_it_probes_a_database_on_a_private_network_only_when_the_tenant_may(
    team: Team,
) -> None:
    """The network guard decides before anything connects; the tenant policy
    sql_allowed_hosts (set by platform staff) lets the probe through."""
    services.create_connection(
        actor=Actor.cli(),
        tenant=team.tenant,
        name="wh",
        kind="postgres",
        host="127.0.0.1",
        database="postgres",
        login="postgres",
        password="unused-with-trust-auth",
    )
    url = TEST.format(tenant=team.slug, name="wh")
    body = send(team.tokens["admin"], "POST", url).json()
    assert body["ok"] is False
    assert body["message"].startswith("blocked: postgres postgres@127.0.0.1:5432: 127.0.0.1")
    assert "sql_allowed_hosts" in body["message"]

    team.tenant.policy = {"sql_allowed_hosts": ["127.0.0.1"]}
    team.tenant.save(update_fields=["policy"])
    body = send(team.tokens["admin"], "POST", url).json()
    assert body["ok"] is True, body
    assert body["message"].startswith("connected to postgres postgres@127.0.0.1:5432 in ")
