"""/api/v1/tenants/{tenant}/notification-channels/: admins create, change, test, rotate and
delete channels; every member sees their metadata. The URL and the signing secret are
write-only, stored encrypted, in no answer, audit event or list (the signing secret once,
in the answer that made it); the test action reaches a real receiver on 127.0.0.1."""

from __future__ import annotations

import json
from typing import Any

import pytest
from django.db import connection as db

from notifications import transports
from notifications.models import Channel, Delivery
from orchestrator.models import AuditEvent
from tests.harness import EndpointCase, EndpointSuite, Team, assert_problem, send, tenant_state
from tests.notifications.objects import (
    HOOK_PATH,
    HOOK_URL,
    SLACK_PATH,
    SLACK_URL,
    a_delivery,
    a_slack_channel,
    a_webhook_channel,
    an_email_channel,
    secrets_of,
    workflow,
)
from tests.notifications.servers import Answer, HttpReceiver

CHANNELS = "/api/v1/tenants/{tenant}/notification-channels/"
CHANNEL = CHANNELS + "{channel}/"
SLACK = {"name": "team-slack", "kind": "slack", "url": SLACK_URL, "description": "#data"}
WEBHOOK = {"name": "team-hook", "kind": "webhook", "url": HOOK_URL}
EMAIL = {"name": "team-mail", "kind": "email", "recipients": ["a@example.com", "b@example.com"]}


@pytest.fixture(autouse=True)
def _loopback_allowed(settings: Any) -> None:
    """The receivers listen on 127.0.0.1, which the network guard refuses unless allowed."""
    settings.NOTIFY_ALLOWED_HOSTS = ["127.0.0.1"]


class TestChannelsEndpoint(EndpointSuite):
    cases = [
        EndpointCase("list", "GET", CHANNELS, "viewer"),
        EndpointCase("retrieve", "GET", CHANNEL, "viewer", setup=a_slack_channel),
        EndpointCase(
            "create", "POST", CHANNELS, "admin", status=201, body=SLACK,
            audit_action="notification_channel.create",
        ),
        EndpointCase(
            "update", "PATCH", CHANNEL, "admin", setup=a_slack_channel,
            body={"enabled": False, "url": SLACK_URL + "-2"},
            audit_action="notification_channel.update",
        ),
        EndpointCase(
            "delete", "DELETE", CHANNEL, "admin", status=204, setup=a_slack_channel,
            audit_action="notification_channel.delete",
        ),
        EndpointCase("test", "POST", CHANNEL + "test/", "admin", setup=an_email_channel),
        EndpointCase(
            "rotate-secret", "POST", CHANNEL + "rotate-secret/", "admin",
            setup=a_webhook_channel, audit_action="notification_channel.rotate_secret",
        ),
    ]  # fmt: skip


def _url(team: Team, name: str = "", action: str = "") -> str:
    base = f"/api/v1/tenants/{team.slug}/notification-channels/"
    return base + (f"{name}/" if name else "") + (f"{action}/" if action else "")


def _row(team: Team, name: str) -> Channel:
    return Channel.objects.dangerously_unscoped().get(tenant=team.tenant, name=name)


def _audit_text(team: Team) -> str:
    events = AuditEvent.objects.dangerously_unscoped().filter(tenant=team.tenant)
    return json.dumps([e.changes for e in events])


def test_it_creates_channels_and_answers_with_metadata(team: Team) -> None:
    response = send(team.tokens["admin"], "POST", _url(team), SLACK)
    assert response.status_code == 201, response.content
    body = response.json()
    assert {k: body[k] for k in ("name", "kind", "description", "enabled", "url_hint")} == {
        "name": "team-slack",
        "kind": "slack",
        "description": "#data",
        "enabled": True,
        "url_hint": "http://127.0.0.1:9/…",
    }
    assert body["signing_secret"] is None
    assert "url" not in body
    mail = send(team.tokens["admin"], "POST", _url(team), EMAIL).json()
    assert (mail["kind"], mail["recipients"], mail["url_hint"]) == (
        "email",
        ["a@example.com", "b@example.com"],
        "",
    )
    listed = send(team.tokens["viewer"], "GET", _url(team)).json()
    assert sorted(c["name"] for c in listed["results"]) == ["team-mail", "team-slack"]
    assert listed["next"] is None


def test_a_webhook_secret_is_shown_once_and_signs_what_the_receiver_gets(
    team: Team, http_receiver: HttpReceiver
) -> None:
    body = {**WEBHOOK, "url": http_receiver.url("/hook")}
    created = send(team.tokens["admin"], "POST", _url(team), body)
    assert created.status_code == 201, created.content
    secret = created.json()["signing_secret"]
    assert secret.startswith("whsec_")
    for response in (
        send(team.tokens["admin"], "GET", _url(team)),
        send(team.tokens["admin"], "GET", _url(team, "team-hook")),
    ):
        assert "signing_secret" not in response.content.decode().replace("has_signing_secret", "")
        assert secret.encode() not in response.content

    tested = send(team.tokens["admin"], "POST", _url(team, "team-hook", "test"))
    assert tested.json() == {"ok": True, "answer": "HTTP 200 from 127.0.0.1"}
    [post] = http_receiver.wait(1)
    assert transports.verify(secret, post.headers, post.body)

    rotated = send(team.tokens["admin"], "POST", _url(team, "team-hook", "rotate-secret"))
    assert rotated.status_code == 200, rotated.content
    new_secret = rotated.json()["signing_secret"]
    assert new_secret.startswith("whsec_")
    assert new_secret != secret
    send(team.tokens["admin"], "POST", _url(team, "team-hook", "test"))
    [_, post] = http_receiver.wait(2)
    assert transports.verify(new_secret, post.headers, post.body)
    assert not transports.verify(secret, post.headers, post.body)


def test_no_answer_or_audit_event_shows_a_url_or_secret(team: Team) -> None:
    responses = [
        send(team.tokens["admin"], "POST", _url(team), SLACK),
        send(team.tokens["admin"], "POST", _url(team), WEBHOOK),
        send(team.tokens["admin"], "GET", _url(team)),
        send(team.tokens["viewer"], "GET", _url(team, "team-slack")),
        send(team.tokens["admin"], "PATCH", _url(team, "team-slack"), {"url": SLACK_URL + "x"}),
        send(team.tokens["admin"], "PATCH", _url(team, "team-hook"), {"description": "ops"}),
        send(team.tokens["admin"], "POST", _url(team, "team-hook", "rotate-secret")),
    ]
    hook_secret = responses[1].json()["signing_secret"]
    rotated = responses[-1].json()["signing_secret"]
    hidden = [*secrets_of("team-slack", team), *secrets_of("team-hook", team), hook_secret]
    for index, response in enumerate(responses):
        assert response.status_code in (200, 201), response.content
        text = response.content.decode()
        allowed = {1: hook_secret, 6: rotated}.get(index)  # each shown once, where made
        for value in hidden:
            if value != allowed:
                assert value not in text, (index, value)
    audit = (
        _audit_text(team)
        + send(
            team.tokens["owner"], "GET", f"/api/v1/tenants/{team.slug}/audit-events/"
        ).content.decode()
    )
    for value in [*hidden, rotated]:
        assert value not in audit
    actions = list(
        AuditEvent.objects.dangerously_unscoped()
        .filter(tenant=team.tenant, action__startswith="notification_channel.")
        .order_by("seq")
        .values_list("action", "changes")
    )
    assert [a for a, _ in actions] == [
        "notification_channel.create",
        "notification_channel.create",
        "notification_channel.update",
        "notification_channel.update",
        "notification_channel.rotate_secret",
    ]
    url_change = actions[2][1]
    assert url_change["before"]["url"] != url_change["after"]["url"]  # says it changed
    assert "********" in url_change["after"]["url"]


def test_it_stores_the_url_and_secret_encrypted(team: Team) -> None:
    a_slack_channel(team)
    a_webhook_channel(team)
    with db.cursor() as cursor:
        cursor.execute("SELECT * FROM notifications_channel")
        rows = repr(cursor.fetchall())
    assert "team-slack" in rows
    for value in (SLACK_PATH, HOOK_PATH, "whsec_"):
        assert value not in rows
    assert _row(team, "team-slack").url_encrypted.startswith("gAAAAA")  # a Fernet token


@pytest.mark.parametrize(
    ("fields", "paths", "words"),
    [
        ({"name": "Team Slack"}, ["name"], "lowercase letters"),
        ({"kind": "sms"}, ["kind"], "slack, email, webhook"),
        ({"url": None}, ["url"], "null"),
        ({"url": "ftp://127.0.0.1/x"}, ["url"], "http:// or https://"),
        ({"url": "http://169.254.169.254/latest"}, ["url"], "NOTIFY_ALLOWED_HOSTS"),
        ({"recipients": ["a@example.com"]}, ["recipients"], "has no recipients"),
        (
            {"kind": "email", "url": "", "recipients": ["a@example.com", "not-an-address"]},
            ["recipients[1]"],
            "not an email address",
        ),
        ({"kind": "email", "url": SLACK_URL}, ["recipients", "url"], "has no url"),
        ({"colour": "blue"}, ["colour"], "accepted: name, kind"),
    ],
    ids=[
        "bad-name",
        "unknown-kind",
        "null-url",
        "not-http",
        "metadata-address",
        "recipients-on-slack",
        "bad-address",
        "email-with-url-and-no-recipients",
        "unknown-field",
    ],
)
def test_it_refuses_bad_input_naming_the_field(
    team: Team, fields: dict[str, Any], paths: list[str], words: str
) -> None:
    before = tenant_state(team.tenant)
    body = {k: v for k, v in {**SLACK, **fields}.items() if not (k == "url" and v == "")}
    response = send(team.tokens["admin"], "POST", _url(team), body)
    problem = assert_problem(response, 400)
    assert sorted(e["path"] for e in problem["errors"]) == sorted(paths)
    assert words in problem["detail"]
    assert tenant_state(team.tenant) == before


def test_a_slack_or_webhook_channel_needs_a_url_and_email_recipients(team: Team) -> None:
    before = tenant_state(team.tenant)
    slack = {k: v for k, v in SLACK.items() if k != "url"}
    assert_problem(send(team.tokens["admin"], "POST", _url(team), slack), 400, path="url")
    mail = {"name": "m", "kind": "email"}
    assert_problem(send(team.tokens["admin"], "POST", _url(team), mail), 400, path="recipients")
    assert tenant_state(team.tenant) == before


def test_it_refuses_a_name_that_exists_and_a_change_of_kind(team: Team) -> None:
    a_slack_channel(team)
    before = tenant_state(team.tenant)
    assert_problem(send(team.tokens["admin"], "POST", _url(team), SLACK), 409)
    response = send(team.tokens["admin"], "PATCH", _url(team, "team-slack"), {"kind": "email"})
    assert "unknown field" in assert_problem(response, 400, path="kind")["detail"]
    assert tenant_state(team.tenant) == before


def test_it_renames_disables_and_changes_recipients(team: Team) -> None:
    an_email_channel(team)
    body = {"name": "data-mail", "enabled": False, "recipients": ["ops@example.com"]}
    response = send(team.tokens["admin"], "PATCH", _url(team, "team-mail"), body)
    assert response.status_code == 200, response.content
    got = response.json()
    assert {k: got[k] for k in body} == body
    assert _row(team, "data-mail").recipients == ["ops@example.com"]
    assert_problem(send(team.tokens["viewer"], "GET", _url(team, "team-mail")), 404)


def test_it_refuses_to_delete_a_channel_a_workflow_names(team: Team) -> None:
    a_slack_channel(team)
    workflow(team, "nightly", notify={"on": ["run.failed"], "channels": ["team-slack"]})
    before = tenant_state(team.tenant)
    problem = assert_problem(send(team.tokens["admin"], "DELETE", _url(team, "team-slack")), 409)
    assert "nightly" in problem["detail"]
    assert tenant_state(team.tenant) == before


def test_deleting_a_channel_deletes_its_deliveries(team: Team) -> None:
    delivery = a_delivery(team)
    assert send(team.tokens["admin"], "DELETE", _url(team, "team-slack")).status_code == 204
    assert not Delivery.objects.dangerously_unscoped().filter(pk=delivery.pk).exists()
    assert_problem(send(team.tokens["admin"], "GET", _url(team, "team-slack")), 404)


def test_the_test_action_reports_a_refusal_and_changes_nothing(
    team: Team, http_receiver: HttpReceiver
) -> None:
    http_receiver.answer(Answer(404, body=b"no_service"))
    send(team.tokens["admin"], "POST", _url(team), {**SLACK, "url": http_receiver.url("/T/B/k")})
    before = tenant_state(team.tenant)
    response = send(team.tokens["admin"], "POST", _url(team, "team-slack", "test"))
    assert response.status_code == 200, response.content
    assert response.json()["ok"] is False
    answer = response.json()["answer"]
    assert "HTTP 404 from 127.0.0.1" in answer
    assert "permanent" in answer
    assert "/T/B/k" not in answer
    assert len(http_receiver.posts) == 1
    assert tenant_state(team.tenant) == before


def test_the_test_action_reports_a_url_the_guard_now_refuses(team: Team, settings: Any) -> None:
    a_slack_channel(team)
    settings.NOTIFY_ALLOWED_HOSTS = []
    response = send(team.tokens["admin"], "POST", _url(team, "team-slack", "test"))
    assert response.json()["ok"] is False
    assert "blocked" in response.json()["answer"]
    assert SLACK_PATH not in response.content.decode()


def test_only_a_webhook_has_a_secret_to_rotate(team: Team) -> None:
    a_slack_channel(team)
    before = tenant_state(team.tenant)
    response = send(team.tokens["admin"], "POST", _url(team, "team-slack", "rotate-secret"))
    assert "only webhooks" in assert_problem(response, 409)["detail"]
    assert tenant_state(team.tenant) == before
