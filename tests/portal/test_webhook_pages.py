"""A workflow's webhooks in the portal: its page lists each declared webhook with its URL,
its secrets' prefixes and expiry and its deliveries, for every member; editors make a new
signing secret (shown once, on the answer to the POST) and revoke one after a
confirmation, through the services the API calls, audited with the source `portal`. A
role too low is refused (403), another tenant's workflow is a 404, a POST without a CSRF
token is refused, and a secret never reaches a page again."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from events.models import WebhookSecret
from events.webhooks import create_secret
from orchestrator import crypto
from orchestrator.actors import Actor
from orchestrator.context import tenant_scope
from orchestrator.models import AuditEvent
from tests.harness import Team, tenant_state
from workflows.selectors import get_workflow
from workflows.services import apply_workflow

pytestmark = pytest.mark.django_db

SPEC = {
    "name": "ingest",
    "params": {"region": {"type": "string", "default": "eu"}},
    "triggers": [
        {"webhook": {"name": "uploads", "params": {"region": "{{ event.data.region }}"}}},
        {"webhook": {"name": "manual"}},
    ],
    "tasks": {"load": {"type": "noop"}},
}
PAGE = "/t/{tenant}/workflows/ingest/"
NEW = PAGE + "webhooks/{webhook}/new-secret/"
REVOKE = PAGE + "webhooks/{webhook}/secrets/{secret}/revoke/"
SECRET = re.compile(r"whsec_[A-Za-z0-9_-]{20,}")


def a_workflow(team: Team, spec: dict[str, Any] = SPEC) -> None:
    with tenant_scope([team.tenant]):
        apply_workflow(actor=Actor(user=team.owner, source="api"), tenant=team.tenant, data=spec)


def a_secret(team: Team, webhook: str = "uploads") -> tuple[WebhookSecret, str]:
    with tenant_scope([team.tenant]):
        _, row, secret = create_secret(
            actor=Actor(user=team.owner, source="api"),
            workflow=get_workflow("ingest"),
            name=webhook,
        )
    return row, secret


def signed_in(client: Client, team: Team, role: str) -> Client:
    client.force_login(team.users[role])
    return client


def text_of(client: Client, url: str) -> str:
    response = client.get(url)
    assert response.status_code == 200, (url, response.status_code)
    return " ".join(response.content.decode().split())


def portal_audit(team: Team, action: str) -> list[AuditEvent]:
    events = AuditEvent.objects.dangerously_unscoped().filter(tenant=team.tenant, action=action)
    return list(events.order_by("seq"))


def test_every_member_sees_the_webhooks_their_urls_and_secrets(
    client: Client, team: Team, settings: Any
) -> None:
    settings.PUBLIC_URL = "https://orc.example.com"
    a_workflow(team)
    old, old_secret = a_secret(team)
    new, new_secret = a_secret(team)
    signed_in(client, team, "viewer")
    text = text_of(client, PAGE.format(tenant=team.slug))
    assert '<h2 id="webhooks-heading">Webhooks</h2>' in text
    [url] = {u for u in re.findall(r"https://orc\.example\.com/hooks/[\w-]+", text)}
    assert f"{old.prefix}…" in text
    assert f"{new.prefix}…" in text
    assert "until the next rotation" in text
    assert "<code>region: {{ event.data.region }}</code>" in text
    assert "No signing secret yet: it accepts nothing." in text  # manual
    assert old_secret not in text
    assert new_secret not in text
    assert "New signing secret" not in text
    assert "/revoke/" not in text
    assert url.endswith(WebhookSecret.objects.dangerously_unscoped().get(pk=new.pk).webhook.uid)


def test_an_expired_secret_is_marked_expired(client: Client, team: Team) -> None:
    a_workflow(team)
    old, _ = a_secret(team)
    a_secret(team)
    WebhookSecret.objects.dangerously_unscoped().filter(pk=old.pk).update(
        expires_at=timezone.now() - dt.timedelta(minutes=1)
    )
    signed_in(client, team, "viewer")
    assert "no: expired" in text_of(client, PAGE.format(tenant=team.slug))


def test_a_workflow_without_webhooks_shows_no_section(client: Client, team: Team) -> None:
    a_workflow(team, {**SPEC, "triggers": []})
    signed_in(client, team, "editor")
    assert 'id="webhooks"' not in text_of(client, PAGE.format(tenant=team.slug))


def test_an_editor_makes_a_secret_shown_once(client: Client, team: Team) -> None:
    a_workflow(team)
    signed_in(client, team, "editor")
    page = text_of(client, PAGE.format(tenant=team.slug))
    assert "New signing secret" in page
    [key] = set(re.findall(r'name="form_key" value="([\w-]+)-uploads"', page))
    form = {"form_key": f"{key}-uploads", "overlap": "3600"}
    made = client.post(NEW.format(tenant=team.slug, webhook="uploads"), form)
    assert made.status_code == 200
    assert made["Cache-Control"] == "no-store"
    shown = made.content.decode()
    [secret] = set(SECRET.findall(shown))
    [row] = WebhookSecret.objects.dangerously_unscoped().filter(webhook__name="uploads")
    assert crypto.decrypt(row.secret_encrypted) == secret
    assert "Webhook uploads of ingest has a new signing secret." in shown
    assert f"/hooks/{row.webhook.uid}" in shown
    [event] = portal_audit(team, "webhook.secret_create")
    assert event.source == "portal"
    assert secret not in str(event.changes)
    again = client.post(NEW.format(tenant=team.slug, webhook="uploads"), form)
    assert again.status_code == 409  # a resent form makes no second secret
    assert WebhookSecret.objects.dangerously_unscoped().count() == 1
    for url in (PAGE, NEW.replace("{webhook}", "uploads"), "/t/{tenant}/audit/"):
        assert secret not in text_of(signed_in(client, team, "owner"), url.format(tenant=team.slug))


def test_the_overlap_is_chosen_and_checked(client: Client, team: Team) -> None:
    a_workflow(team)
    old, _ = a_secret(team)
    signed_in(client, team, "editor")
    url = NEW.format(tenant=team.slug, webhook="uploads")
    assert "The older secrets stay valid for" in text_of(client, url)
    refused = client.post(url, {"overlap": "forever"})
    assert refused.status_code == 400
    assert 'id="f-overlap-error"' in refused.content.decode()
    assert client.post(url, {"overlap": "0"}).status_code == 200
    old.refresh_from_db()
    assert old.expires_at is not None
    assert old.expires_at <= timezone.now()


def test_an_editor_revokes_a_secret_after_a_confirmation(client: Client, team: Team) -> None:
    a_workflow(team)
    row, _ = a_secret(team)
    signed_in(client, team, "editor")
    page = text_of(client, PAGE.format(tenant=team.slug))
    url = REVOKE.format(tenant=team.slug, webhook="uploads", secret=row.pk)
    assert url in page
    confirm = text_of(client, url)
    assert f"{row.prefix}…" in confirm
    assert "No other secret of this webhook is valid" in confirm
    done = client.post(url)
    assert done.status_code == 302
    assert done["Location"] == PAGE.format(tenant=team.slug) + "#webhooks"
    assert not WebhookSecret.objects.dangerously_unscoped().filter(pk=row.pk).exists()
    [event] = portal_audit(team, "webhook.secret_delete")
    assert event.source == "portal"


@pytest.mark.parametrize("role", ["viewer", "operator"])
def test_a_role_below_editor_is_refused(client: Client, team: Team, role: str) -> None:
    a_workflow(team)
    row, _ = a_secret(team)
    signed_in(client, team, role)
    before = tenant_state(team.tenant)
    new = NEW.format(tenant=team.slug, webhook="uploads")
    revoke = REVOKE.format(tenant=team.slug, webhook="uploads", secret=row.pk)
    for url in (new, revoke):
        assert client.get(url).status_code == 403
        assert client.post(url, {"overlap": "0"}).status_code == 403
    assert tenant_state(team.tenant) == before


def test_another_tenants_or_an_undeclared_webhook_is_404(
    client: Client, team: Team, outsider: Team
) -> None:
    a_workflow(outsider)
    with tenant_scope([outsider.tenant]):
        _, row, _ = create_secret(
            actor=Actor(user=outsider.owner, source="api"),
            workflow=get_workflow("ingest"),
            name="uploads",
        )
    a_workflow(team)
    signed_in(client, team, "owner")
    before = tenant_state(outsider.tenant)
    for url in (
        NEW.format(tenant=outsider.slug, webhook="uploads"),
        REVOKE.format(tenant=outsider.slug, webhook="uploads", secret=row.pk),
        REVOKE.format(tenant=team.slug, webhook="uploads", secret=row.pk),
        NEW.format(tenant=team.slug, webhook="nope"),
    ):
        assert client.get(url).status_code == 404, url
        assert client.post(url).status_code == 404, url
    assert tenant_state(outsider.tenant) == before


def test_a_post_without_a_csrf_token_is_refused(team: Team) -> None:
    a_workflow(team)
    client = Client(enforce_csrf_checks=True)
    client.force_login(team.users["editor"])
    assert client.post(NEW.format(tenant=team.slug, webhook="uploads")).status_code == 403
    assert not WebhookSecret.objects.dangerously_unscoped().exists()
