"""The Django admin: platform staff change things through the services, audited as admin."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse

from orchestrator import services
from orchestrator.actors import Actor
from orchestrator.audit import chain_key
from orchestrator.models import ApiToken, AuditEvent, Membership, Role, ServiceAccount, Tenant


def url(model: str, view: str, *args: object) -> str:
    return reverse(f"admin:orchestrator_{model}_{view}", args=args)


def events(tenant: Tenant) -> list[AuditEvent]:
    return list(
        AuditEvent.objects.dangerously_unscoped().filter(chain=chain_key(tenant.pk)).order_by("seq")
    )


def error_text(response: Any) -> str:
    return response.content.decode()


@pytest.fixture
def root(db: None) -> User:
    return User.objects.create_superuser("root", password=None)


@pytest.fixture
def staff(client: Client, root: User) -> Client:
    client.force_login(root)
    return client


@pytest.fixture
def owner(db: None) -> User:
    return User.objects.create_user("olivia", password=None)


@pytest.fixture
def acme(owner: User) -> Tenant:
    return services.create_tenant(actor=Actor.cli(), slug="acme", name="Acme", owner=owner)


def owner_membership(tenant: Tenant) -> Membership:
    return Membership.objects.dangerously_unscoped().get(tenant=tenant, role=Role.OWNER)


def tenant_form(tenant: Tenant, **changes: Any) -> dict[str, str]:
    data = {"name": tenant.name, "quotas": tenant.quotas, "policy": tenant.policy, **changes}
    return {
        "name": data["name"],
        "quotas": json.dumps(data["quotas"]),
        "policy": json.dumps(data["policy"]),
        "_save": "Save",
    }


# --- every page works without a tenant scope --------------------------------------------


@pytest.mark.django_db
@pytest.mark.parametrize(
    "model", ["tenant", "membership", "serviceaccount", "apitoken", "auditevent"]
)
def test_it_lists_and_shows_every_model(staff: Client, acme: Tenant, model: str) -> None:
    account = services.create_service_account(
        actor=Actor.cli(), tenant=acme, name="ci", role="viewer"
    )
    token, _ = services.create_token(
        actor=Actor.cli(), tenant=acme, name="t", role="viewer", user=account.user
    )
    rows = {
        "tenant": acme,
        "membership": owner_membership(acme),
        "serviceaccount": account,
        "apitoken": token,
        "auditevent": events(acme)[0],
    }

    assert staff.get(url(model, "changelist")).status_code == 200
    assert staff.get(url(model, "changelist"), {"q": "acme"}).status_code == 200
    assert staff.get(url(model, "change", rows[model].pk)).status_code == 200


@pytest.mark.django_db
def test_it_is_for_superusers_only(client: Client, acme: Tenant) -> None:
    client.force_login(User.objects.create_user("clerk", password=None, is_staff=True))

    assert client.get(url("tenant", "changelist")).status_code == 403
    assert client.get(url("auditevent", "changelist")).status_code == 403


# --- tenants --------------------------------------------------------------------------


@pytest.mark.django_db
def test_it_changes_quotas_and_audits_once_as_admin(
    staff: Client, root: User, acme: Tenant
) -> None:
    before = len(events(acme))
    quotas = {**acme.quotas, "max_workflows": 7}

    response = staff.post(url("tenant", "change", acme.pk), tenant_form(acme, quotas=quotas))

    assert response.status_code == 302
    acme.refresh_from_db()
    assert acme.quotas["max_workflows"] == 7
    new = events(acme)[before:]
    assert len(new) == 1
    event = new[0]
    assert (event.action, event.source, event.actor_id) == ("tenant.update", "admin", root.pk)
    assert event.changes["after"]["quotas"]["max_workflows"] == 7
    assert event.request_id  # the request's X-Request-ID


@pytest.mark.django_db
@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"quotas": {"max_workflows": -1}}, "quotas.max_workflows: must be between 0 and"),
        ({"quotas": {"max_wrkflows": 1}}, "quotas.max_wrkflows: unknown quota; accepted:"),
        ({"quotas": []}, "quotas: expected an object"),
        ({"policy": {"allowed_task_types": ["bogus"]}}, "unknown task type &#x27;bogus&#x27;"),
        (
            {"policy": {"sql_allowed_hosts": "10.0.0.0/8"}},
            "policy.sql_allowed_hosts: list of host names or networks the sql task may reach",
        ),
    ],
)
def test_it_shows_bad_quotas_and_policy_as_form_errors(
    staff: Client, acme: Tenant, changes: dict[str, Any], message: str
) -> None:
    before = (len(events(acme)), acme.quotas, acme.policy)

    response = staff.post(url("tenant", "change", acme.pk), tenant_form(acme, **changes))

    assert response.status_code == 200
    assert message in error_text(response)
    acme.refresh_from_db()
    assert (len(events(acme)), acme.quotas, acme.policy) == before


@pytest.mark.django_db
def test_it_sets_the_policy(staff: Client, acme: Tenant) -> None:
    policy = {"allowed_task_types": ["shell", "http"]}

    response = staff.post(url("tenant", "change", acme.pk), tenant_form(acme, policy=policy))

    assert response.status_code == 302
    acme.refresh_from_db()
    assert acme.policy == policy
    assert events(acme)[-1].source == "admin"


@pytest.mark.django_db
def test_it_archives_and_restores_tenants(staff: Client, acme: Tenant) -> None:
    changelist = url("tenant", "changelist")

    staff.post(changelist, {"action": "archive", "_selected_action": [acme.pk]})
    acme.refresh_from_db()
    assert acme.is_archived
    staff.post(changelist, {"action": "unarchive", "_selected_action": [acme.pk]})
    acme.refresh_from_db()
    assert not acme.is_archived
    assert [(e.action, e.source) for e in events(acme)[-2:]] == [
        ("tenant.archive", "admin"),
        ("tenant.unarchive", "admin"),
    ]


@pytest.mark.django_db
def test_it_never_deletes_or_adds_tenants(staff: Client, acme: Tenant) -> None:
    assert staff.get(url("tenant", "delete", acme.pk)).status_code == 403
    assert staff.post(url("tenant", "delete", acme.pk), {"post": "yes"}).status_code == 403
    assert staff.get(url("tenant", "add")).status_code == 403
    assert Tenant.objects.filter(pk=acme.pk).exists()


# --- members --------------------------------------------------------------------------


@pytest.mark.django_db
def test_it_refuses_to_demote_the_last_owner(staff: Client, acme: Tenant) -> None:
    membership = owner_membership(acme)
    before = len(events(acme))

    response = staff.post(url("membership", "change", membership.pk), {"role": "admin"})

    assert response.status_code == 200
    assert "is the last owner of" in error_text(response)
    membership.refresh_from_db()
    assert membership.role == Role.OWNER
    assert len(events(acme)) == before


@pytest.mark.django_db
def test_it_refuses_to_remove_the_last_owner(staff: Client, acme: Tenant) -> None:
    membership = owner_membership(acme)
    before = len(events(acme))

    response = staff.post(url("membership", "delete", membership.pk), {"post": "yes"}, follow=True)

    assert response.status_code == 200
    assert "is the last owner of" in error_text(response)
    assert Membership.objects.dangerously_unscoped().filter(pk=membership.pk).exists()
    assert len(events(acme)) == before


@pytest.mark.django_db
def test_it_adds_changes_and_removes_a_member_through_the_services(
    staff: Client, acme: Tenant
) -> None:
    bob = User.objects.create_user("bob", password=None)

    response = staff.post(
        url("membership", "add"), {"tenant": acme.pk, "user": bob.pk, "role": "viewer"}
    )
    assert response.status_code == 302
    membership = Membership.objects.dangerously_unscoped().get(tenant=acme, user=bob)
    staff.post(url("membership", "change", membership.pk), {"role": "owner"})
    membership.refresh_from_db()
    assert membership.role == Role.OWNER
    # Two owners now: the first one may go.
    first = Membership.objects.dangerously_unscoped().get(tenant=acme, user__username="olivia")
    staff.post(url("membership", "delete", first.pk), {"post": "yes"})
    assert not Membership.objects.dangerously_unscoped().filter(pk=first.pk).exists()

    assert [(e.action, e.source, e.object_repr) for e in events(acme)[-3:]] == [
        ("membership.create", "admin", "bob"),
        ("membership.update", "admin", "bob"),
        ("membership.delete", "admin", "olivia"),
    ]


@pytest.mark.django_db
def test_it_refuses_a_second_membership(staff: Client, acme: Tenant, owner: User) -> None:
    before = len(events(acme))

    response = staff.post(
        url("membership", "add"), {"tenant": acme.pk, "user": owner.pk, "role": "viewer"}
    )

    assert response.status_code == 200
    assert "already exists" in error_text(response)
    assert Membership.objects.dangerously_unscoped().filter(tenant=acme).count() == 1
    assert len(events(acme)) == before


# --- service accounts and tokens ------------------------------------------------------


@pytest.mark.django_db
def test_it_deletes_a_service_account_through_the_service(staff: Client, acme: Tenant) -> None:
    account = services.create_service_account(
        actor=Actor.cli(), tenant=acme, name="ci", role="editor"
    )
    token, _ = services.create_token(
        actor=Actor.cli(), tenant=acme, name="t", role="editor", user=account.user
    )

    response = staff.post(url("serviceaccount", "delete", account.pk), {"post": "yes"})

    assert response.status_code == 302
    assert not ServiceAccount.objects.dangerously_unscoped().filter(pk=account.pk).exists()
    token.refresh_from_db()
    assert token.revoked_at is not None
    assert (events(acme)[-1].action, events(acme)[-1].source) == ("service_account.delete", "admin")


@pytest.mark.django_db
def test_it_revokes_tokens_and_audits(staff: Client, acme: Tenant, owner: User) -> None:
    token, _ = services.create_token(
        actor=Actor.cli(), tenant=acme, name="t", role="viewer", user=owner
    )

    response = staff.post(
        url("apitoken", "changelist"), {"action": "revoke", "_selected_action": [token.pk]}
    )

    assert response.status_code == 302
    token.refresh_from_db()
    assert token.revoked_at is not None
    event = events(acme)[-1]
    assert (event.action, event.source, event.object_id) == ("token.revoke", "admin", str(token.pk))


@pytest.mark.django_db
def test_it_never_shows_a_token_hash_nor_edits_tokens(
    staff: Client, acme: Tenant, owner: User
) -> None:
    token, raw = services.create_token(
        actor=Actor.cli(), tenant=acme, name="t", role="viewer", user=owner
    )

    for page in (url("apitoken", "changelist"), url("apitoken", "change", token.pk)):
        html = error_text(staff.get(page))
        assert token.prefix in html
        assert token.token_hash not in html
        assert raw not in html
    assert staff.get(url("apitoken", "add")).status_code == 403
    assert staff.post(url("apitoken", "change", token.pk), {"role": "owner"}).status_code == 403
    assert staff.post(url("apitoken", "delete", token.pk), {"post": "yes"}).status_code == 403
    assert ApiToken.objects.dangerously_unscoped().get(pk=token.pk).role == "viewer"


# --- audit log ------------------------------------------------------------------------


@pytest.mark.django_db
def test_it_shows_audit_events_read_only(staff: Client, acme: Tenant) -> None:
    event = events(acme)[0]

    page = staff.get(url("auditevent", "change", event.pk))
    assert page.status_code == 200
    assert "tenant.create" in error_text(page)
    assert "&quot;slug&quot;: &quot;acme&quot;" in error_text(page)  # the changes, as JSON
    assert staff.get(url("auditevent", "add")).status_code == 403
    assert staff.post(url("auditevent", "change", event.pk), {"action": "x"}).status_code == 403
    assert staff.get(url("auditevent", "delete", event.pk)).status_code == 403
    assert staff.post(url("auditevent", "delete", event.pk), {"post": "yes"}).status_code == 403
    filters = {
        "tenant__id__exact": acme.pk,
        "source__exact": "cli",
        "action__exact": "tenant.create",
    }
    changelist = staff.get(url("auditevent", "changelist"), filters)
    assert changelist.status_code == 200
    assert list(changelist.context["cl"].result_list) == [event]
    assert "delete_selected" not in error_text(changelist)
    assert AuditEvent.objects.dangerously_unscoped().get(pk=event.pk).action == "tenant.create"


@pytest.mark.django_db
def test_its_front_page_warns_while_tasks_run_unsandboxed(staff: Client, settings: Any) -> None:
    settings.TASK_SANDBOX = "on"
    page = staff.get("/admin/")
    assert page.status_code == 200
    assert b"task-sandbox-off" not in page.content
    settings.TASK_SANDBOX = "off"
    page = staff.get("/admin/")
    assert b'id="task-sandbox-off"' in page.content
    assert b"The task sandbox is off (<code>TASK_SANDBOX=off</code>)" in page.content


@pytest.mark.django_db
def test_it_sets_the_task_policy_and_refuses_a_bad_one(staff: Client, acme: Tenant) -> None:
    policy = {
        "task_limits": {"memory_mb": 512, "processes": 64},
        "task_network": "none",
        "task_mounts": [{"path": "/srv/acme", "writable": True}],
    }
    response = staff.post(url("tenant", "change", acme.pk), tenant_form(acme, policy=policy))
    assert response.status_code == 302, error_text(response)
    acme.refresh_from_db()
    assert acme.policy == policy
    bad = {"task_limits": {"memory_mb": 10**9}, "task_network": "wifi"}
    page = error_text(staff.post(url("tenant", "change", acme.pk), tenant_form(acme, policy=bad)))
    assert "must be at most 65536 (platform limit)" in page
    assert "egress (default) or none" in page
    acme.refresh_from_db()
    assert acme.policy == policy
