"""What the worker reads at execution time: its own tenant's connections, secrets and
variables, decrypted; another tenant's names never resolve."""

from __future__ import annotations

from connections import runtime, services
from connections.info import ConnectionInfo
from orchestrator.actors import Actor
from tests.harness import Team


def _fill(team: Team, suffix: str) -> None:
    cli = Actor.cli()
    services.create_connection(
        actor=cli,
        tenant=team.tenant,
        name="db",
        kind="postgres",
        host=f"db-{suffix}.internal",
        port=5433,
        database="app",
        login="app",
        password=f"pw-{suffix}",
        extra={"sslmode": "require"},
    )
    services.create_secret(actor=cli, tenant=team.tenant, name="TOKEN", value=f"tok-{suffix}")
    services.create_variable(actor=cli, tenant=team.tenant, name="region", value=suffix)


def test_it_resolves_the_tenants_own_names_decrypted(team: Team) -> None:
    _fill(team, "acme")
    assert runtime.get_connection(team.tenant.pk, "db") == ConnectionInfo(
        name="db",
        kind="postgres",
        host="db-acme.internal",
        port=5433,
        database="app",
        login="app",
        password="pw-acme",
        extra={"sslmode": "require"},
    )
    assert runtime.get_secret(team.tenant.pk, "TOKEN") == "tok-acme"
    assert runtime.get_variable(team.tenant.pk, "region") == "acme"


def test_it_never_resolves_another_tenants_names(team: Team, outsider: Team) -> None:
    _fill(outsider, "globex")
    assert runtime.get_connection(team.tenant.pk, "db") is None
    assert runtime.get_secret(team.tenant.pk, "TOKEN") is None
    assert runtime.get_variable(team.tenant.pk, "region") is None
    _fill(team, "acme")
    info = runtime.get_connection(team.tenant.pk, "db")
    assert info is not None
    assert info.password == "pw-acme"
    assert runtime.get_secret(outsider.tenant.pk, "TOKEN") == "tok-globex"


def test_it_returns_none_for_unknown_names(team: Team) -> None:
    assert runtime.get_connection(team.tenant.pk, "nope") is None
    assert runtime.get_secret(team.tenant.pk, "NOPE") is None
    assert runtime.get_variable(team.tenant.pk, "nope") is None
