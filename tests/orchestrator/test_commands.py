"""The management commands: createtenant, createtoken, verify_audit."""

from __future__ import annotations

import datetime as dt
from io import StringIO

import pytest
from django.contrib.auth.models import User
from django.core.management import call_command
from django.core.management.base import CommandError
from django.db import DatabaseError, connection, transaction
from django.test import Client
from django.utils import timezone

from orchestrator import services, tokens
from orchestrator.actors import Actor
from orchestrator.audit import chain_key
from orchestrator.models import ApiToken, AuditEvent, Membership, Role, ServiceAccount, Tenant

postgres_only = pytest.mark.skipif(
    connection.vendor != "postgresql", reason="the audit triggers tested are PostgreSQL's"
)
APPEND_ONLY_TRIGGER = "orchestrator_auditevent_append_only"


def run(*args: str) -> tuple[str, str]:
    out, err = StringIO(), StringIO()
    call_command(*args, stdout=out, stderr=err)
    return out.getvalue(), err.getvalue()


def events(tenant: Tenant) -> list[AuditEvent]:
    return list(
        AuditEvent.objects.dangerously_unscoped().filter(chain=chain_key(tenant.pk)).order_by("seq")
    )


@pytest.fixture
def owner(db: None) -> User:
    return User.objects.create_user("olivia", password=None)


@pytest.fixture
def acme(owner: User) -> Tenant:
    return services.create_tenant(actor=Actor.cli(), slug="acme", name="Acme", owner=owner)


# --- createtenant ---------------------------------------------------------------------


@pytest.mark.django_db
def test_it_creates_the_tenant_its_owner_and_cli_audit_events() -> None:
    out, _ = run("createtenant", "acme", "--name", "Acme Corp", "--owner", "alice")

    tenant = Tenant.objects.get(slug="acme")
    alice = User.objects.get(username="alice")
    assert tenant.name == "Acme Corp"
    assert not alice.has_usable_password()
    membership = Membership.objects.dangerously_unscoped().get(tenant=tenant)
    assert (membership.user, membership.role) == (alice, Role.OWNER)
    assert [(e.action, e.source) for e in events(tenant)] == [
        ("tenant.create", "cli"),
        ("membership.create", "cli"),
    ]
    assert "manage.py changepassword alice" in out


@pytest.mark.django_db
def test_it_makes_an_existing_user_owner_without_touching_their_password(owner: User) -> None:
    owner.set_password("s3cret-pass")
    owner.save()

    out, _ = run("createtenant", "acme", "--owner", "olivia")

    owner.refresh_from_db()
    assert owner.check_password("s3cret-pass")
    assert Tenant.objects.get(slug="acme").name == "acme"
    assert "changepassword" not in out


@pytest.mark.django_db
def test_it_defaults_the_owner_to_the_only_superuser() -> None:
    root = User.objects.create_superuser("root", password=None)

    run("createtenant", "acme")

    assert Membership.objects.dangerously_unscoped().get(tenant__slug="acme").user == root


@pytest.mark.django_db
@pytest.mark.parametrize("superusers", [0, 2])
def test_it_requires_an_owner_unless_there_is_exactly_one_superuser(superusers: int) -> None:
    for i in range(superusers):
        User.objects.create_superuser(f"root{i}", password=None)

    with pytest.raises(CommandError, match="--owner USERNAME is required"):
        run("createtenant", "acme")
    assert not Tenant.objects.filter(slug="acme").exists()


@pytest.mark.django_db
def test_it_refuses_an_existing_tenant(acme: Tenant) -> None:
    with pytest.raises(CommandError, match="tenant 'acme' exists"):
        run("createtenant", "acme", "--owner", "someone-new")
    assert not User.objects.filter(username="someone-new").exists()


@pytest.mark.django_db
def test_it_refuses_a_bad_slug() -> None:
    with pytest.raises(CommandError, match="slug 'no spaces!' is not valid"):
        run("createtenant", "no spaces!", "--owner", "alice")
    assert not User.objects.filter(username="alice").exists()


# --- createtoken ----------------------------------------------------------------------


@pytest.mark.django_db
def test_it_prints_only_a_token_that_authenticates(acme: Tenant, client: Client) -> None:
    out, err = run("createtoken", "--tenant", "acme", "--role", "editor")

    assert out.endswith("\n")
    assert len(out.splitlines()) == 1
    raw = out.strip()
    assert tokens.parse(raw) is not None
    assert raw not in err
    response = client.get("/api/v1/me", HTTP_AUTHORIZATION=f"Bearer {raw}")
    assert response.status_code == 200
    body = response.json()
    assert body["username"] == "sa.acme.editor"
    assert body["token"]["role"] == "editor"
    assert body["token"]["tenant"] == "acme"


@pytest.mark.django_db
def test_it_uses_or_creates_a_service_account_named_after_the_role(acme: Tenant) -> None:
    run("createtoken", "--tenant", "acme", "--role", "operator")
    _, err = run("createtoken", "--tenant", "acme", "--role", "operator")

    account = ServiceAccount.objects.dangerously_unscoped().get(tenant=acme)
    assert account.name == "operator"
    membership = Membership.objects.dangerously_unscoped().get(tenant=acme, user=account.user)
    assert membership.role == Role.OPERATOR
    assert ApiToken.objects.dangerously_unscoped().filter(user=account.user).count() == 2
    assert "created service account" not in err  # the second run reused it
    actions = [(e.action, e.source) for e in events(acme)]
    assert actions[2:] == [
        ("service_account.create", "cli"),
        ("token.create", "cli"),
        ("token.create", "cli"),
    ]


@pytest.mark.django_db
def test_it_mints_for_a_named_service_account(acme: Tenant) -> None:
    out, _ = run("createtoken", "--tenant", "acme", "--role", "viewer", "--service-account", "ci")

    token = ApiToken.objects.dangerously_unscoped().get(prefix=tokens.parse(out.strip()))
    assert token.user.username == "sa.acme.ci"
    assert token.role == Role.VIEWER


@pytest.mark.django_db
def test_it_mints_for_a_member(acme: Tenant, owner: User) -> None:
    out, _ = run("createtoken", "--tenant", "acme", "--role", "admin", "--user", "olivia")

    token = ApiToken.objects.dangerously_unscoped().get(prefix=tokens.parse(out.strip()))
    assert (token.user, token.role, token.name, token.expires_at) == (owner, "admin", "cli", None)
    assert not ServiceAccount.objects.dangerously_unscoped().exists()


@pytest.mark.django_db
def test_it_sets_the_expiry(acme: Tenant) -> None:
    out, _ = run("createtoken", "--tenant", "acme", "--role", "viewer", "--expires-in", "7")

    token = ApiToken.objects.dangerously_unscoped().get(prefix=tokens.parse(out.strip()))
    assert token.expires_at is not None
    expected = timezone.now() + dt.timedelta(days=7)
    assert abs(token.expires_at - expected) < dt.timedelta(minutes=1)


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--role", "superuser"], "invalid role 'superuser'; accepted: viewer, operator, editor"),
        (["--role", "viewer", "--expires-in", "0"], "--expires-in must be"),
        (["--role", "viewer", "--user", "nobody"], "unknown user 'nobody'"),
        (["--role", "viewer", "--user", "stranger"], "'stranger' is not a member of tenant"),
        (["--role", "viewer", "--service-account", "CI bot"], "name 'CI bot' is not valid"),
    ],
)
def test_it_refuses_bad_arguments(acme: Tenant, args: list[str], message: str) -> None:
    User.objects.create_user("stranger", password=None)

    with pytest.raises(CommandError, match=message):
        run("createtoken", "--tenant", "acme", *args)
    assert not ApiToken.objects.dangerously_unscoped().exists()
    assert not ServiceAccount.objects.dangerously_unscoped().exists()


@pytest.mark.django_db
def test_it_refuses_an_unknown_tenant() -> None:
    with pytest.raises(CommandError, match="unknown tenant 'nope'"):
        run("createtoken", "--tenant", "nope", "--role", "viewer")


@pytest.mark.django_db
def test_it_refuses_a_token_above_the_holders_role(acme: Tenant) -> None:
    run("createtoken", "--tenant", "acme", "--role", "viewer", "--service-account", "ci")

    with pytest.raises(CommandError, match="holds viewer"):
        run("createtoken", "--tenant", "acme", "--role", "editor", "--service-account", "ci")
    assert ApiToken.objects.dangerously_unscoped().count() == 1


# --- verify_audit ---------------------------------------------------------------------


@pytest.fixture
def busy(acme: Tenant) -> Tenant:
    """acme with five audit events."""
    actor = Actor.cli()
    services.update_tenant(actor=actor, tenant=acme, name="Acme Corp")
    services.create_token(actor=actor, tenant=acme, name="t", role="owner", user=acme_owner(acme))
    services.update_tenant(actor=actor, tenant=acme, name="Acme Inc")
    assert [e.seq for e in events(acme)] == [1, 2, 3, 4, 5]
    return acme


def acme_owner(tenant: Tenant) -> User:
    return Membership.objects.dangerously_unscoped().get(tenant=tenant, role=Role.OWNER).user


def tamper(sql: str, *params: object) -> None:
    """What someone with the table owner's rights could do: the HMAC must still catch it."""
    with connection.cursor() as cursor:
        # The test's transaction has deferred foreign key checks pending on the table, and
        # ALTER TABLE refuses to run while any are: run them now.
        cursor.execute("SET CONSTRAINTS ALL IMMEDIATE")
        cursor.execute(f"ALTER TABLE orchestrator_auditevent DISABLE TRIGGER {APPEND_ONLY_TRIGGER}")
        cursor.execute(sql, params)
        cursor.execute(f"ALTER TABLE orchestrator_auditevent ENABLE TRIGGER {APPEND_ONLY_TRIGGER}")
        cursor.execute("SET CONSTRAINTS ALL DEFERRED")


@pytest.mark.django_db
def test_it_reports_untouched_chains_ok(busy: Tenant, owner: User) -> None:
    other = services.create_tenant(actor=Actor.cli(), slug="globex", name="Globex", owner=owner)

    out, _ = run("verify_audit")

    lines = out.splitlines()
    assert "tenant acme: OK, 5 events" in lines
    assert "tenant globex: OK, 2 events" in lines
    assert any(line.startswith("platform: OK") for line in lines)
    assert run("verify_audit", "--tenant", other.slug)[0] == "tenant globex: OK, 2 events\n"


@postgres_only
@pytest.mark.django_db
@pytest.mark.parametrize(
    "sql",
    [
        """UPDATE orchestrator_auditevent SET object_repr = 'someone else'
           WHERE chain = %s AND seq = 3""",
        """UPDATE orchestrator_auditevent SET changes = '{"after": {}, "before": null}'
           WHERE chain = %s AND seq = 3""",
    ],
)
def test_it_finds_an_edited_event(busy: Tenant, sql: str) -> None:
    tamper(sql, chain_key(busy.pk))

    out = StringIO()
    with pytest.raises(CommandError, match="1 of 2 audit chains are broken"):
        call_command("verify_audit", stdout=out)
    assert "tenant acme: BROKEN at event #3: contents do not match their HMAC" in out.getvalue()


@postgres_only
@pytest.mark.django_db
def test_it_finds_a_deleted_event(busy: Tenant) -> None:
    tamper("DELETE FROM orchestrator_auditevent WHERE chain = %s AND seq = 2", chain_key(busy.pk))

    out = StringIO()
    with pytest.raises(CommandError):
        call_command("verify_audit", "--tenant", "acme", stdout=out)
    assert out.getvalue() == "tenant acme: BROKEN at event #2: event #2 is missing\n"


@postgres_only
@pytest.mark.django_db
def test_it_finds_the_newest_event_deleted(busy: Tenant) -> None:
    tamper("DELETE FROM orchestrator_auditevent WHERE chain = %s AND seq = 5", chain_key(busy.pk))

    out = StringIO()
    with pytest.raises(CommandError):
        call_command("verify_audit", "--tenant", "acme", stdout=out)
    assert "BROKEN at event #5" in out.getvalue()


@postgres_only
@pytest.mark.django_db
@pytest.mark.parametrize(
    "sql",
    [
        "UPDATE orchestrator_auditevent SET object_repr = 'x' WHERE chain = %s",
        "DELETE FROM orchestrator_auditevent WHERE chain = %s",
    ],
)
def test_the_database_refuses_changes_to_the_audit_log(busy: Tenant, sql: str) -> None:
    with (
        pytest.raises(DatabaseError, match="append-only"),
        transaction.atomic(),
        connection.cursor() as cursor,
    ):
        cursor.execute(sql, [chain_key(busy.pk)])
    assert len(events(busy)) == 5
    assert run("verify_audit", "--tenant", "acme")[0] == "tenant acme: OK, 5 events\n"
