"""Changes to connections and secrets are audited once each, the diff showing which secret
field changed with the value masked: never the clear text, never the ciphertext."""

from __future__ import annotations

import json

from connections import services
from connections.models import Connection, Secret
from orchestrator.actors import Actor
from orchestrator.audit import MASK
from orchestrator.context import tenant_scope
from orchestrator.models import AuditEvent
from tests.harness import Team, audit_count, new_audit_events

PASSWORD = "pw-Kd81-first"
NEXT = "pw-Kd81-second"
TOKEN = "tok-Vb22-header"


def _create(team: Team) -> Connection:
    return services.create_connection(
        actor=Actor.cli(),
        tenant=team.tenant,
        name="api",
        kind="http",
        host="api.example.test",
        password=PASSWORD,
        extra={"headers": {"Authorization": f"Bearer {TOKEN}"}},
    )


def _all_changes(team: Team) -> str:
    events = AuditEvent.objects.dangerously_unscoped().filter(tenant=team.tenant)
    return json.dumps([e.changes for e in events])


def _ciphertexts(team: Team) -> list[str]:
    with tenant_scope([team.tenant]):
        rows = list(Connection.objects.values_list("password_encrypted", "extra_encrypted"))
        rows += [(s, "") for s in Secret.objects.values_list("value_encrypted", flat=True)]
    return [c for row in rows for c in row if c]


def test_it_masks_secret_fields_when_a_connection_is_created_and_changed(team: Team) -> None:
    count = audit_count(team.tenant)
    connection = _create(team)
    [created] = new_audit_events(team.tenant, count)
    assert created.action == "connection.create"
    assert created.changes["before"] is None
    assert created.changes["after"]["password"] == MASK
    assert created.changes["after"]["extra"] == MASK
    assert created.changes["after"]["extra_keys"] == ["headers"]

    count = audit_count(team.tenant)
    services.update_connection(actor=Actor.cli(), connection=connection, password=NEXT)
    [changed] = new_audit_events(team.tenant, count)
    assert changed.changes == {"before": {"password": MASK}, "after": {"password": MASK}}

    count = audit_count(team.tenant)
    services.update_connection(actor=Actor.cli(), connection=connection, password="", port=8443)
    [cleared] = new_audit_events(team.tenant, count)
    assert cleared.changes["before"] == {"password": MASK, "port": None}
    assert cleared.changes["after"] == {"password": "", "port": 8443}

    changes = _all_changes(team)
    for secret in (PASSWORD, NEXT, TOKEN, *_ciphertexts(team)):
        assert secret not in changes


def test_it_audits_nothing_when_the_same_password_is_sent_again(team: Team) -> None:
    connection = _create(team)
    count = audit_count(team.tenant)
    services.update_connection(actor=Actor.cli(), connection=connection, password=PASSWORD)
    assert new_audit_events(team.tenant, count) == []


def test_it_masks_a_secret_when_it_is_set_rotated_and_deleted(team: Team) -> None:
    count = audit_count(team.tenant)
    secret = services.create_secret(actor=Actor.cli(), tenant=team.tenant, name="K", value="v1-xyz")
    with tenant_scope([team.tenant]):
        services.update_secret(actor=Actor.cli(), secret=secret, value="v2-xyz")
        services.delete_secret(actor=Actor.cli(), secret=Secret.objects.get(name="K"))
    created, rotated, deleted = new_audit_events(team.tenant, count)
    assert created.changes["after"]["value"] == MASK
    assert rotated.changes == {"before": {"value": MASK}, "after": {"value": MASK}}
    assert (deleted.action, deleted.changes["before"]["name"]) == ("secret.delete", "K")
    assert deleted.changes["after"] is None
    assert "v1-xyz" not in _all_changes(team)
    assert "v2-xyz" not in _all_changes(team)
