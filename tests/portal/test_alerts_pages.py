"""The alerts pages and their forms: channels, rules, deliveries and SLA misses for every
member; the forms through the services the API calls, each refused to a role too low
(403), another tenant (404) and a POST without a CSRF token (403), and audited with the
source `portal` when it works. A channel's URL and signing secret never reach a page,
except the secret once, on the page that made it; the test button and a retried delivery
reach a real receiver on 127.0.0.1."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from notifications import delivery as deliveries
from notifications import services, transports
from notifications.models import Channel, Delivery, Rule
from orchestrator import crypto
from orchestrator.actors import Actor
from orchestrator.context import tenant_scope
from orchestrator.models import AuditEvent, Role
from tests.harness import ROLES, Team, tenant_state
from tests.notifications.objects import (
    HOOK_URL,
    SLACK_URL,
    a_delivery,
    a_failed_delivery,
    a_rule,
    a_slack_channel,
    a_webhook_channel,
    an_email_channel,
    an_event,
    an_sla_miss,
    secrets_of,
    workflow,
)
from tests.notifications.servers import Answer, HttpReceiver, http_receiver

pytestmark = pytest.mark.django_db

__all__ = ["http_receiver"]  # the receiver fixture, for the tests here

ALERTS = "/t/{tenant}/alerts/"
SECRET = re.compile(r"whsec_[A-Za-z0-9+/=]+")


@pytest.fixture(autouse=True)
def _loopback_allowed(settings: Any) -> None:
    """The receivers listen on 127.0.0.1, which the network guard refuses unless allowed."""
    settings.NOTIFY_ALLOWED_HOSTS = ["127.0.0.1"]


def signed_in(client: Client, team: Team, role: str) -> Client:
    client.force_login(team.users[role])
    return client


def page(client: Client, url: str) -> str:
    response = client.get(url)
    assert response.status_code == 200, (url, response.status_code)
    return response.content.decode()


def row(team: Team, model: type[Channel] | type[Rule], name: str) -> Any:
    return model.objects.dangerously_unscoped().filter(tenant=team.tenant, name=name).first()


def portal_events(team: Team, action: str) -> list[AuditEvent]:
    events = AuditEvent.objects.dangerously_unscoped().filter(tenant=team.tenant, action=action)
    return list(events)


# --- reading -----------------------------------------------------------------------------------


def test_every_member_sees_channels_rules_deliveries_and_sla_misses(
    client: Client, team: Team
) -> None:
    a_slack_channel(team, description="#data-alerts")
    an_email_channel(team)
    a_rule(team, "nightly", tags=["nightly"], quiet_period="15m")
    a_delivery(team)
    an_sla_miss(team, workflow(team, "daily-sales"))
    signed_in(client, team, "viewer")
    base = ALERTS.format(tenant=team.slug)

    channels = page(client, base)
    assert 'data-channel="team-slack"' in channels
    assert "#data-alerts" in channels
    assert "http://127.0.0.1:9/…" in channels  # the URL's hint, as the API shows it
    assert "data@example.com" in channels  # an email channel's recipients

    rules = page(client, base + "rules/")
    assert 'data-rule="nightly"' in rules
    assert ">run.failed<" in rules
    assert ">nightly<" in rules
    assert ">15m<" in rules
    assert ">nightly-slack<" in rules

    listed = page(client, base + "deliveries/")
    assert "st-failed" in listed
    assert "HTTP 500 from 127.0.0.1 (gave up after 3 attempts)" in listed

    misses = page(client, base + "sla-misses/")
    assert "run_duration: 1h" in misses
    assert "daily-sales" in misses


def test_each_role_sees_only_the_controls_it_may_use(client: Client, team: Team) -> None:
    a_rule(team)
    a_delivery(team)
    base = ALERTS.format(tenant=team.slug)
    expected = {
        "viewer": set(),
        "operator": {"retry"},
        "editor": {"retry", "rules"},
        "admin": {"retry", "rules", "channels"},
        "owner": {"retry", "rules", "channels"},
    }
    for role, controls in expected.items():
        signed_in(client, team, role)
        channels, rules = page(client, base), page(client, base + "rules/")
        listed = page(client, base + "deliveries/")
        shown = {
            "retry": "/retry/" in listed,
            "rules": "/alerts/rule-editor/" in rules,
            "channels": "/alerts/channel-editor/" in channels,
        }
        assert {name for name, on in shown.items() if on} == controls, role


def test_deliveries_are_newest_first_by_keyset_pages_and_filtered(
    client: Client, team: Team
) -> None:
    first = a_delivery(team, status=Delivery.Status.SENT)
    event = first.event
    slack = Channel.objects.dangerously_unscoped().get(tenant=team.tenant, name="team-slack")
    an_email_channel(team)
    mail = Channel.objects.dangerously_unscoped().get(tenant=team.tenant, name="team-mail")
    Delivery.objects.dangerously_unscoped().bulk_create(
        Delivery(
            tenant=team.tenant,
            key=f"bulk-{n}",
            event=event,
            channel=mail if n % 2 else slack,
            status=Delivery.Status.FAILED if n % 2 else Delivery.Status.PENDING,
            attempts=1,
        )
        for n in range(60)
    )
    signed_in(client, team, "viewer")
    url = ALERTS.format(tenant=team.slug) + "deliveries/"
    body = page(client, url)
    ids = [int(i) for i in re.findall(r'data-delivery="(\d+)"', body)]
    assert len(ids) == 50
    assert ids == sorted(ids, reverse=True)
    cursor = re.search(r'href="\?cursor=(\d+)" rel="next"', body)
    assert cursor is not None
    older = page(client, url + f"?cursor={cursor[1]}")
    rest = [int(i) for i in re.findall(r'data-delivery="(\d+)"', older)]
    assert len(rest) == 11
    assert max(rest) < min(ids)
    assert first.pk in rest

    failed = page(client, url + "?status=failed&channel=team-mail")
    assert failed.count("data-delivery=") == 30
    assert "st-pending" not in failed
    assert page(client, url + "?channel=team-slack").count("data-delivery=") == 31

    refused = page(client, url + "?status=lost")
    assert "&#x27;lost&#x27; is not accepted" in refused
    assert "data-delivery=" not in refused


def test_sla_misses_are_filtered_by_workflow_and_kind(client: Client, team: Team) -> None:
    sales, load = workflow(team, "sales"), workflow(team, "load")
    an_sla_miss(team, sales, kind="run_duration")
    an_sla_miss(team, load, kind="deadline")
    signed_in(client, team, "viewer")
    url = ALERTS.format(tenant=team.slug) + "sla-misses/"
    assert page(client, url).count("data-sla-miss=") == 2
    only = page(client, url + "?workflow=load")
    assert only.count("data-sla-miss=") == 1
    assert "deadline: 1h" in only
    assert page(client, url + "?kind=run_duration").count("data-sla-miss=") == 1


def test_another_tenants_member_gets_404_for_every_page(
    client: Client, team: Team, outsider: Team
) -> None:
    signed_in(client, outsider, "owner")
    base = ALERTS.format(tenant=team.slug)
    for suffix in ("", "rules/", "deliveries/", "sla-misses/"):
        assert client.get(base + suffix).status_code == 404, suffix


# --- every form, forged --------------------------------------------------------------------


Setup = Callable[[Team], dict[str, str]]


def nothing(team: Team) -> dict[str, str]:
    return {}


@dataclass(frozen=True)
class FormCase:
    """One form: its path under /t/<tenant>/, the least role that may use it, what it
    needs to exist, what a person posts, and the audit action it records (None: the
    channel test, which changes nothing)."""

    name: str
    path: str
    role: str
    setup: Setup = nothing
    body: dict[str, Any] = field(default_factory=dict)
    audit: str | None = None
    status: int = 302

    def url(self, tenant: str, kwargs: dict[str, str]) -> str:
        return f"/t/{tenant}/" + self.path.format(**kwargs)

    def below(self) -> list[str]:
        return [r for r in ROLES if not Role(r).includes(self.role)]


CASES = [
    FormCase(
        "channel-new", "alerts/channel-editor/", "admin",
        body={"name": "new-hook", "kind": "webhook", "url": HOOK_URL, "enabled": "on"},
        audit="notification_channel.create", status=200,
    ),
    FormCase(
        "channel-edit", "alerts/channel-editor/{channel}/", "admin", a_slack_channel,
        body={"name": "team-slack", "description": "#data", "url": SLACK_URL + "-2"},
        audit="notification_channel.update",
    ),
    FormCase("channel-test", "alerts/channel-editor/{channel}/test/", "admin", an_email_channel),
    FormCase(
        "channel-rotate-secret", "alerts/channel-editor/{channel}/rotate-secret/", "admin",
        a_webhook_channel, audit="notification_channel.rotate_secret", status=200,
    ),
    FormCase(
        "channel-delete", "alerts/channel-editor/{channel}/delete/", "admin", a_slack_channel,
        audit="notification_channel.delete",
    ),
    FormCase(
        "rule-new", "alerts/rule-editor/", "editor", a_slack_channel,
        body={"name": "failures", "event_types": ["run.failed"], "channels": ["team-slack"]},
        audit="notification_rule.create",
    ),
    FormCase(
        "rule-edit", "alerts/rule-editor/{rule}/", "editor", a_rule,
        body={"name": "failures", "channels": ["failures-slack"], "quiet_period": "15m"},
        audit="notification_rule.update",
    ),
    FormCase(
        "rule-delete", "alerts/rule-editor/{rule}/delete/", "editor", a_rule,
        audit="notification_rule.delete",
    ),
    FormCase(
        "delivery-retry", "alerts/deliveries/{delivery_id}/retry/", "operator",
        a_failed_delivery, audit="delivery.retry",
    ),
]  # fmt: skip
BY_NAME = pytest.mark.parametrize("case", CASES, ids=[c.name for c in CASES])
NAMING = [c for c in CASES if "{" in c.path]  # the forms about one object


@BY_NAME
def test_a_role_too_low_gets_403_and_nothing_changes(
    client: Client, team: Team, case: FormCase
) -> None:
    url = case.url(team.slug, case.setup(team))
    before = tenant_state(team.tenant)
    for role in case.below():
        signed_in(client, team, role)
        assert client.get(url).status_code == 403, role
        assert client.post(url, case.body).status_code == 403, role
    assert tenant_state(team.tenant) == before


@BY_NAME
def test_another_tenant_gets_404_and_nothing_changes(
    client: Client, team: Team, outsider: Team, case: FormCase
) -> None:
    url = case.url(team.slug, case.setup(team))
    before = tenant_state(team.tenant)
    signed_in(client, outsider, "owner")  # a member of another tenant only
    assert client.post(url, case.body).status_code == 404
    assert tenant_state(team.tenant) == before


@pytest.mark.parametrize("case", NAMING, ids=[c.name for c in NAMING])
def test_another_tenants_object_is_404(
    client: Client, team: Team, outsider: Team, case: FormCase
) -> None:
    theirs = case.setup(outsider)  # exists in the other tenant only
    before = tenant_state(outsider.tenant)
    signed_in(client, team, "owner")
    assert client.get(case.url(team.slug, theirs)).status_code == 404
    assert client.post(case.url(team.slug, theirs), case.body).status_code == 404
    assert tenant_state(outsider.tenant) == before


@BY_NAME
def test_a_post_without_a_csrf_token_is_403(team: Team, case: FormCase) -> None:
    url = case.url(team.slug, case.setup(team))
    before = tenant_state(team.tenant)
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(team.users["owner"])
    response = browser.post(url, case.body)
    assert response.status_code == 403
    assert b"CSRF" in response.content
    assert tenant_state(team.tenant) == before


@BY_NAME
def test_the_least_role_succeeds_and_the_audit_says_portal(
    client: Client, team: Team, case: FormCase
) -> None:
    url = case.url(team.slug, case.setup(team))
    signed_in(client, team, case.role)
    form = client.get(url)
    assert form.status_code == 200
    assert b"csrfmiddlewaretoken" in form.content
    response = client.post(url, case.body)
    assert response.status_code == case.status, response.content.decode()[:2000]
    if case.audit is None:
        assert AuditEvent.objects.dangerously_unscoped().filter(source="portal").count() == 0
        return
    [event] = portal_events(team, case.audit)
    assert (event.source, event.actor_id) == ("portal", team.users[case.role].pk)


# --- channels ----------------------------------------------------------------------------------


def test_a_webhook_secret_is_shown_once_and_the_url_never(client: Client, team: Team) -> None:
    signed_in(client, team, "admin")
    base = ALERTS.format(tenant=team.slug)
    created = client.post(
        base + "channel-editor/",
        {"name": "team-hook", "kind": "webhook", "url": HOOK_URL, "description": "to the lake"},
    )
    assert created.status_code == 200
    assert created["Cache-Control"] == "no-store"
    shown = created.content.decode()
    assert 'class="once' in shown
    [secret] = set(SECRET.findall(shown))
    stored = Channel.objects.dangerously_unscoped().get(tenant=team.tenant, name="team-hook")
    assert crypto.decrypt(stored.signing_secret_encrypted) == secret
    assert "Channel team-hook created." in shown
    assert "hOoKtOkEn" not in shown

    secrets = secrets_of("team-hook", team)
    pages = [
        base,
        base + "channel-editor/team-hook/",
        base + "channel-editor/team-hook/test/",
        base + "channel-editor/team-hook/rotate-secret/",
        base + "channel-editor/team-hook/delete/",
        base + "rules/",
        base + "deliveries/",
        f"/t/{team.slug}/audit/",
    ]
    for url in pages:
        body = page(client, url)
        assert not [s for s in secrets if s in body], url
        assert not SECRET.search(body), url

    rotated = client.post(base + "channel-editor/team-hook/rotate-secret/")
    assert rotated.status_code == 200
    [new_secret] = set(SECRET.findall(rotated.content.decode()))
    assert new_secret != secret
    stored.refresh_from_db()
    assert crypto.decrypt(stored.signing_secret_encrypted) == new_secret
    assert not SECRET.search(page(client, base + "channel-editor/team-hook/"))


def test_a_slack_url_is_write_only_and_an_empty_box_keeps_it(client: Client, team: Team) -> None:
    signed_in(client, team, "admin")
    base = ALERTS.format(tenant=team.slug)
    created = client.post(
        base + "channel-editor/", {"name": "team-slack", "kind": "slack", "url": SLACK_URL}
    )
    assert created.status_code == 302
    assert created["Location"] == base
    edit = page(client, base + "channel-editor/team-slack/")
    assert "leave empty to keep http://127.0.0.1:9/…" in edit
    assert "sLaCkKeY" not in edit
    saved = client.post(
        base + "channel-editor/team-slack/", {"name": "team-slack", "description": "#data"}
    )
    assert saved.status_code == 302
    row_ = row(team, Channel, "team-slack")
    assert (row_.description, row_.enabled) == ("#data", False)
    assert crypto.decrypt(row_.url_encrypted) == SLACK_URL
    assert "Channel team-slack saved." in page(client, base)


def test_errors_are_shown_by_their_field_and_what_was_typed_is_kept(
    client: Client, team: Team
) -> None:
    signed_in(client, team, "admin")
    url = ALERTS.format(tenant=team.slug) + "channel-editor/"
    response = client.post(
        url,
        {
            "name": "Team Slack",
            "kind": "slack",
            "url": "http://10.1.2.3/services/sEcReTpAtH",
            "description": "kept as typed",
        },
    )
    assert response.status_code == 400
    body = response.content.decode()
    name_errors = body.split('id="f-name-error"', 1)[1].split("</ul>", 1)[0]
    assert "is not a valid name" in name_errors
    url_errors = body.split('id="f-url-error"', 1)[1].split("</ul>", 1)[0]
    assert "10.1.2.3" in url_errors or "private" in url_errors
    assert 'value="Team Slack"' in body
    assert 'value="kept as typed"' in body
    assert "sEcReTpAtH" not in body  # the URL typed is not sent back
    assert not Channel.objects.dangerously_unscoped().filter(tenant=team.tenant).exists()

    mail = client.post(
        url, {"name": "mail", "kind": "email", "recipients": "a@example.com\nnot-an-address"}
    )
    assert mail.status_code == 400
    said = mail.content.decode().split('id="f-recipients-error"', 1)[1].split("</ul>", 1)[0]
    assert "&#x27;not-an-address&#x27; is not an email address" in said


def test_the_test_button_shows_what_a_real_receiver_answered(
    client: Client, team: Team, http_receiver: HttpReceiver
) -> None:
    signed_in(client, team, "admin")
    base = ALERTS.format(tenant=team.slug)
    created = client.post(
        base + "channel-editor/",
        {"name": "hook", "kind": "webhook", "url": http_receiver.url("/in"), "enabled": "on"},
    )
    [secret] = set(SECRET.findall(created.content.decode()))

    tested = client.post(base + "channel-editor/hook/test/", follow=True)
    assert tested.redirect_chain == [(base + "channel-editor/hook/", 302)]
    assert "Test message to hook sent: HTTP 200 from 127.0.0.1" in tested.content.decode()
    [post] = http_receiver.wait(1)
    assert post.path == "/in"
    assert transports.verify(secret, post.headers, post.body)

    http_receiver.answer(Answer(404, body=b"no_service"))
    failed = client.post(base + "channel-editor/hook/test/", {"back": "list"}, follow=True)
    assert failed.redirect_chain == [(base, 302)]
    body = failed.content.decode()
    assert 'class="message error"' in body
    assert "Test message to hook failed: HTTP 404 from 127.0.0.1" in body
    assert "(permanent error)" in body
    assert AuditEvent.objects.dangerously_unscoped().filter(source="portal").count() == 1


def test_a_channel_a_spec_names_is_not_deleted(client: Client, team: Team) -> None:
    a_slack_channel(team)
    workflow(team, "sales", notify={"on": ["run.failed"], "channels": ["team-slack"]})
    signed_in(client, team, "admin")
    url = ALERTS.format(tenant=team.slug) + "channel-editor/team-slack/delete/"
    assert "it is refused while a workflow" in page(client, url)
    refused = client.post(url)
    assert refused.status_code == 409
    assert "named in notify.channels of workflow(s) sales" in refused.content.decode()
    assert row(team, Channel, "team-slack") is not None


def test_deleting_a_channel_says_what_goes_with_it(client: Client, team: Team) -> None:
    a_rule(team, "failures")
    a_delivery(team, channel="failures-slack")
    signed_in(client, team, "admin")
    base = ALERTS.format(tenant=team.slug)
    confirm = page(client, base + "channel-editor/failures-slack/delete/")
    assert "its 1 delivery goes with it" in confirm
    assert ">failures</span> stops sending to it" in confirm
    done = client.post(base + "channel-editor/failures-slack/delete/", follow=True)
    assert "Channel failures-slack deleted." in done.content.decode()
    assert row(team, Channel, "failures-slack") is None


def test_only_a_webhook_has_a_secret_to_rotate(client: Client, team: Team) -> None:
    a_slack_channel(team)
    signed_in(client, team, "admin")
    url = ALERTS.format(tenant=team.slug) + "channel-editor/team-slack/rotate-secret/"
    assert "Only webhook channels sign" in page(client, url)
    refused = client.post(url)
    assert refused.status_code == 409
    assert "only webhooks sign" in refused.content.decode()


def test_channel_paths_cannot_collide_with_channel_names(client: Client, team: Team) -> None:
    for name in ("test", "delete", "rotate-secret"):
        a_slack_channel(team, name=name)
    signed_in(client, team, "admin")
    base = ALERTS.format(tenant=team.slug) + "channel-editor/"
    assert 'Channel <span class="mono">test</span>' in page(client, base + "test/")
    assert 'Delete channel <span class="mono">delete</span>' in page(
        client, base + "delete/delete/"
    )


# --- rules -------------------------------------------------------------------------------------


def test_an_editor_makes_changes_and_deletes_a_rule(client: Client, team: Team) -> None:
    a_slack_channel(team)
    an_email_channel(team)
    signed_in(client, team, "editor")
    base = ALERTS.format(tenant=team.slug)
    form = page(client, base + "rule-editor/")
    assert 'name="event_types" value="run.failed" checked' in form
    assert 'name="channels" value="team-mail"' in form
    created = client.post(
        base + "rule-editor/",
        {
            "name": "nightly",
            "event_types": ["run.failed", "sla.missed"],
            "workflows": "daily-sales, nightly-load",
            "tags": "nightly",
            "channels": ["team-slack", "team-mail"],
            "quiet_period": "15m",
            "enabled": "on",
        },
    )
    assert created.status_code == 302
    assert created["Location"] == base + "rules/"
    rule = row(team, Rule, "nightly")
    assert (rule.event_types, rule.workflows, rule.tags, rule.quiet_period) == (
        ["run.failed", "sla.missed"],
        ["daily-sales", "nightly-load"],
        ["nightly"],
        900,
    )

    edit = page(client, base + "rule-editor/nightly/")
    assert 'value="sla.missed" checked' in edit
    assert 'value="task.failed" checked' not in edit
    assert 'value="daily-sales, nightly-load"' in edit
    assert 'value="15m"' in edit
    saved = client.post(
        base + "rule-editor/nightly/",
        {"name": "nightly", "channels": ["team-mail"], "quiet_period": ""},
    )
    assert saved.status_code == 302
    rule.refresh_from_db()
    assert (rule.event_types, rule.enabled, rule.quiet_period) == ([], False, 0)
    with tenant_scope([team.tenant]):
        assert [c.name for c in rule.channels.all()] == ["team-mail"]

    assert "will no longer go to" in page(client, base + "rule-editor/nightly/delete/")
    deleted = client.post(base + "rule-editor/nightly/delete/", follow=True)
    assert "Rule nightly deleted." in deleted.content.decode()
    assert row(team, Rule, "nightly") is None
    made = AuditEvent.objects.dangerously_unscoped().filter(source="portal").order_by("seq")
    actions = [e.action for e in made]
    assert actions == [
        "notification_rule.create",
        "notification_rule.update",
        "notification_rule.delete",
    ]


def test_a_rules_errors_are_shown_by_their_field_with_the_choices_kept(
    client: Client, team: Team
) -> None:
    a_slack_channel(team)
    signed_in(client, team, "editor")
    response = client.post(
        ALERTS.format(tenant=team.slug) + "rule-editor/",
        {"name": "r", "event_types": ["run.failed", "task.failed"], "quiet_period": "soon"},
    )
    assert response.status_code == 400
    body = response.content.decode()
    channels = body.split('id="f-channels-error"', 1)[1].split("</ul>", 1)[0]
    assert "name at least one channel" in channels
    quiet = body.split('id="f-quiet-error"', 1)[1].split("</ul>", 1)[0]
    assert "&#x27;soon&#x27; is not a duration" in quiet
    assert 'value="run.failed" checked' in body
    assert 'value="task.failed" checked' in body
    assert 'value="sla.missed" checked' not in body
    assert row(team, Rule, "r") is None


# --- deliveries --------------------------------------------------------------------------------


def test_an_operator_retries_a_failed_delivery_and_it_arrives(
    client: Client, team: Team, http_receiver: HttpReceiver
) -> None:
    services.create_channel(
        actor=Actor.cli(), tenant=team.tenant, name="hook", kind="webhook", url=http_receiver.url()
    )
    failed = a_delivery(team, channel="hook")
    signed_in(client, team, "operator")
    base = ALERTS.format(tenant=team.slug)
    listed = page(client, base + "deliveries/?status=failed")
    assert f"/alerts/deliveries/{failed.pk}/retry/" in listed
    response = client.post(
        base + f"deliveries/{failed.pk}/retry/", {"status": "failed", "channel": "hook"}
    )
    assert response.status_code == 302
    assert response["Location"] == base + "deliveries/?status=failed&channel=hook"
    failed.refresh_from_db()
    assert failed.status == Delivery.Status.PENDING
    [event] = portal_events(team, "delivery.retry")
    assert event.source == "portal"

    assert deliveries.deliver(failed.pk) == Delivery.Status.SENT  # as the notifier does
    [post] = http_receiver.wait(1)
    assert post.json()["type"] == "run.failed"
    after = page(client, base + "deliveries/")
    assert f"Delivery {failed.pk} to hook is being sent again." in after
    assert "st-sent" in after
    assert "HTTP 200 from 127.0.0.1" in after


@pytest.mark.parametrize("status", ["pending", "sent", "suppressed"])
def test_only_a_failed_delivery_can_be_retried(client: Client, team: Team, status: str) -> None:
    target = a_delivery(team, status=status)
    signed_in(client, team, "operator")
    url = ALERTS.format(tenant=team.slug) + f"deliveries/{target.pk}/retry/"
    assert "Only a failed delivery can be sent again" in page(client, url)
    before = tenant_state(team.tenant)
    refused = client.post(url)
    assert refused.status_code == 409
    assert "only a failed delivery can be retried" in refused.content.decode()
    assert tenant_state(team.tenant) == before


def test_a_summary_delivery_says_how_many_it_counts(client: Client, team: Team) -> None:
    wf = workflow(team, "sales")
    summary = a_delivery(team, status="sent", event=an_event(team, wf))
    Delivery.objects.dangerously_unscoped().filter(pk=summary.pk).update(
        kind="summary", suppressed_count=49, response="HTTP 200 from 127.0.0.1",
        sent_at=timezone.now(),
    )  # fmt: skip
    signed_in(client, team, "viewer")
    body = page(client, ALERTS.format(tenant=team.slug) + "deliveries/")
    assert "(quiet period: 49 more)" in body
