"""`manage.py rotate_keys`: every encrypted value re-encrypted with the first key, so the
old key can go; a value no key opens is reported and left as it is; one audit event."""

from __future__ import annotations

from io import StringIO

import pytest
from cryptography.fernet import Fernet
from django.apps import apps
from django.core.management import CommandError, call_command
from django.test import override_settings

from connections import runtime, services
from connections.models import Connection, Secret
from notifications.models import Channel
from notifications.services import create_channel
from orchestrator import crypto
from orchestrator.actors import Actor
from orchestrator.audit import chain_key
from orchestrator.management.commands.rotate_keys import encrypted_columns
from orchestrator.models import AuditEvent
from tests.harness import Team

OLD, NEW, OTHER = (Fernet.generate_key().decode() for _ in range(3))


def _fill(team: Team) -> None:
    cli = Actor.cli()
    services.create_connection(
        actor=cli,
        tenant=team.tenant,
        name="db",
        kind="postgres",
        host="db.internal",
        password="pw-1",
        extra={"sslmode": "require"},
    )
    services.create_connection(actor=cli, tenant=team.tenant, name="bare", kind="http", host="h")
    services.create_secret(actor=cli, tenant=team.tenant, name="TOKEN", value="tok-1")


def _ciphertexts() -> list[str]:
    rows = list(
        Connection.objects.dangerously_unscoped().values_list(
            "password_encrypted", "extra_encrypted"
        )
    )
    values = [c for row in rows for c in row if c]
    values += list(Secret.objects.dangerously_unscoped().values_list("value_encrypted", flat=True))
    return sorted(values)


def _run(*args: str) -> str:
    out = StringIO()
    call_command("rotate_keys", *args, stdout=out, stderr=StringIO())
    return out.getvalue()


def _rotation_events() -> list[AuditEvent]:
    events = AuditEvent.objects.dangerously_unscoped().filter(chain=chain_key(None))
    return list(events.filter(action="encryption.rotate_keys"))


def test_it_re_encrypts_every_value_with_the_first_key(team: Team) -> None:
    with override_settings(ENCRYPTION_KEYS=[OLD]):
        _fill(team)
    before = _ciphertexts()
    assert len(before) == 3
    with override_settings(ENCRYPTION_KEYS=[NEW, OLD]):
        output = _run()
    assert "re-encrypted 3 value(s)" in output
    after = _ciphertexts()
    assert not set(before) & set(after)
    with override_settings(ENCRYPTION_KEYS=[NEW]):
        info = runtime.get_connection(team.tenant.pk, "db")
        assert info is not None
        assert (info.password, dict(info.extra)) == ("pw-1", {"sslmode": "require"})
        assert runtime.get_secret(team.tenant.pk, "TOKEN") == "tok-1"
    [event] = _rotation_events()
    assert (event.source, event.tenant_id) == ("cli", None)
    assert event.changes["after"] == {"re_encrypted": 3, "unreadable": 0}
    assert "pw-1" not in str(event.changes)
    assert "tok-1" not in str(event.changes)


def test_it_counts_only_with_dry_run(team: Team) -> None:
    with override_settings(ENCRYPTION_KEYS=[OLD]):
        _fill(team)
    before = _ciphertexts()
    with override_settings(ENCRYPTION_KEYS=[NEW, OLD]):
        assert "would re-encrypt 3 value(s)" in _run("--dry-run")
    assert _ciphertexts() == before
    assert _rotation_events() == []


def test_it_reports_a_value_no_key_opens_and_leaves_it(team: Team) -> None:
    with override_settings(ENCRYPTION_KEYS=[OLD]):
        _fill(team)
    with override_settings(ENCRYPTION_KEYS=[OTHER]):
        services.create_secret(actor=Actor.cli(), tenant=team.tenant, name="LOST", value="x")
    lost = Secret.objects.dangerously_unscoped().get(name="LOST")
    err = StringIO()
    with override_settings(ENCRYPTION_KEYS=[NEW, OLD]), pytest.raises(CommandError) as exc:
        call_command("rotate_keys", stdout=StringIO(), stderr=err)
    assert "1 value(s) could not be decrypted" in str(exc.value)
    assert f"connections_secret.value_encrypted id={lost.pk}" in err.getvalue()
    assert Secret.objects.dangerously_unscoped().get(pk=lost.pk).value_encrypted == (
        lost.value_encrypted
    )
    with override_settings(ENCRYPTION_KEYS=[NEW]):
        assert runtime.get_secret(team.tenant.pk, "TOKEN") == "tok-1"
        with pytest.raises(crypto.DecryptionError, match="secret 'LOST'"):
            runtime.get_secret(team.tenant.pk, "LOST")
    [event] = _rotation_events()
    assert event.changes["after"] == {"re_encrypted": 3, "unreadable": 1}


def test_it_keeps_updated_at_which_users_read_as_the_last_change(team: Team) -> None:
    with override_settings(ENCRYPTION_KEYS=[OLD]):
        _fill(team)
    stamps = sorted(Secret.objects.dangerously_unscoped().values_list("updated_at", flat=True))
    with override_settings(ENCRYPTION_KEYS=[NEW, OLD]):
        _run("--batch-size", "1")
    assert sorted(Secret.objects.dangerously_unscoped().values_list("updated_at", flat=True)) == (
        stamps
    )


def test_it_covers_every_encrypted_column_of_every_app() -> None:
    """A model names its encrypted columns in ENCRYPTED_FIELDS; a column named *_encrypted
    that is not there would keep its old key and be lost with it."""
    named = {
        (model._meta.db_table, field.name)
        for model in apps.get_models()
        for field in model._meta.get_fields()
        if field.name.endswith("_encrypted")
    }
    covered = {(model._meta.db_table, column) for model, column in encrypted_columns()}
    assert covered == named
    assert {
        "connections_secret",
        "events_webhooksecret",
        "gitsync_gitsource",
        "notifications_channel",
    } <= {table for table, _ in covered}


def test_notification_channels_keep_their_url_and_signing_secret(team: Team) -> None:
    slack_url = "https://hooks.slack.com/services/T000/B000/XXXX"
    with override_settings(ENCRYPTION_KEYS=[OLD]):
        create_channel(
            actor=Actor.cli(), tenant=team.tenant, name="ops", kind="slack", url=slack_url
        )
        _, signing = create_channel(
            actor=Actor.cli(),
            tenant=team.tenant,
            name="hook",
            kind="webhook",
            url="https://receiver.example/hook",
        )
    with override_settings(ENCRYPTION_KEYS=[NEW, OLD]):
        output = _run()
    assert "notifications_channel.url_encrypted: 2" in output
    assert "notifications_channel.signing_secret_encrypted: 1" in output
    rows = Channel.objects.dangerously_unscoped()
    with override_settings(ENCRYPTION_KEYS=[NEW]):
        assert crypto.decrypt(rows.get(name="ops").url_encrypted) == slack_url
        hook = rows.get(name="hook")
        assert crypto.decrypt(hook.url_encrypted) == "https://receiver.example/hook"
        assert crypto.decrypt(hook.signing_secret_encrypted) == signing
