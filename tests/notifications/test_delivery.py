"""Sending deliveries to real receivers on 127.0.0.1: what arrives (Slack Block Kit, a
signed CloudEvent, mail with both parts), retries of temporary errors only, at most once
per channel, and the repairs that resend what is due and fail what a dead worker held."""

from __future__ import annotations

import datetime as dt
import time
from typing import Any

import pytest
import standardwebhooks
from django.utils import timezone

from notifications import delivery, routing, transports
from notifications.models import Channel, Delivery, Rule
from orchestrator import crypto
from orchestrator.context import tenant_scope
from runs.engine import events
from tests.harness import Team, make_team
from tests.notifications.servers import Answer, HttpReceiver, SmtpReceiver

pytestmark = pytest.mark.django_db

SECRET = transports.new_secret()
FAILED_DATA = {
    "tenant": "acme",
    "workflow": "daily-sales",
    "run": {
        "id": 41,
        "state": "failed",
        "trigger_source": "schedule",
        "logical_date": "2026-12-04T01:00:00+00:00",
        "created_at": "2026-12-05T02:00:00+00:00",
        "started_at": "2026-12-05T02:00:00+00:00",
        "ended_at": "2026-12-05T02:00:41+00:00",
        "duration_seconds": 41.0,
    },
    "url": "https://orc.example.com/t/acme/runs/41/",
    "failed_tasks": [
        {
            "task_id": "load",
            "try_number": 3,
            "exit_code": 1,
            "error": "exit code 1",
            "log_tail": 'Traceback (most recent call last):\nUndefinedTable: relation "staging"',
        }
    ],
}


@pytest.fixture(autouse=True)
def _local_receivers(settings: Any, smtp_receiver: SmtpReceiver) -> None:
    settings.NOTIFY_ALLOWED_HOSTS = ["127.0.0.1"]
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", smtp_receiver.port
    settings.NOTIFY_RETRY_DELAY_SECONDS = 0
    settings.NOTIFY_MAX_ATTEMPTS = 3


@pytest.fixture
def team(db: None) -> Team:
    return make_team("acme", roles=[])


def channel(team: Team, kind: str, url: str = "", **fields: Any) -> Channel:
    return Channel.objects.dangerously_unscoped().create(
        tenant=team.tenant,
        name=f"{kind}-{Channel.objects.dangerously_unscoped().count()}",
        kind=kind,
        url_encrypted=crypto.encrypt(url) if url else "",
        signing_secret_encrypted=crypto.encrypt(SECRET) if kind == "webhook" else "",
        **fields,
    )


def pending(team: Team, target: Channel, data: dict[str, Any] | None = None) -> Delivery:
    """A failing run's event, routed to `target` alone."""
    rule = Rule.objects.dangerously_unscoped().create(tenant=team.tenant, name=f"r{target.pk}")
    with tenant_scope([team.tenant]):
        rule.channels.set([target])
    event = events.emit(tenant_id=team.tenant.pk, type="run.failed", data=data or FAILED_DATA)
    routing.route_one(event.pk)
    return Delivery.objects.dangerously_unscoped().get(event=event, channel=target)


def status(row: Delivery) -> tuple[str, int]:
    row.refresh_from_db()
    return row.status, row.attempts


def test_slack_gets_one_block_kit_message_with_the_failed_task_and_the_link(
    team: Team, http_receiver: HttpReceiver
) -> None:
    row = pending(team, channel(team, "slack", http_receiver.url("/services/T0/B0/secretpath")))
    assert delivery.deliver(row.pk) == "sent"
    [post] = http_receiver.posts
    body = post.json()
    assert body["text"] == "[orchestrator] acme/daily-sales: run 41 failed"
    blocks = body["blocks"]
    assert blocks[0] == {
        "type": "header",
        "text": {"type": "plain_text", "text": "daily-sales failed", "emoji": True},
    }
    text = json_text(blocks)
    assert "*Task* `load`, try 3" in text
    assert 'UndefinedTable: relation "staging"' in text
    [button] = blocks[-1]["elements"]
    assert button["url"] == "https://orc.example.com/t/acme/runs/41/"
    row.refresh_from_db()
    assert (row.status, row.attempts, row.last_error) == ("sent", 1, "")
    assert row.response == "HTTP 200 from 127.0.0.1"
    assert row.sent_at is not None
    assert delivery.deliver(row.pk) is None  # sent: never again


def json_text(blocks: list[dict[str, Any]]) -> str:
    import json

    return json.dumps(blocks, ensure_ascii=False).replace("\\n", "\n").replace('\\"', '"')


def test_the_webhook_gets_the_signed_cloudevent_and_a_replay_is_detectable(
    team: Team, http_receiver: HttpReceiver
) -> None:
    row = pending(team, channel(team, "webhook", http_receiver.url()))
    assert delivery.deliver(row.pk) == "sent"
    [post] = http_receiver.posts
    assert post.headers["content-type"] == "application/cloudevents+json; charset=utf-8"
    envelope = post.json()
    assert envelope["specversion"] == "1.0"
    assert envelope["id"] == str(row.event.uid) == post.headers["webhook-id"]
    assert envelope["type"] == "run.failed"
    assert envelope["data"] == FAILED_DATA
    assert transports.verify(SECRET, post.headers, post.body)
    assert not transports.verify(transports.new_secret(), post.headers, post.body)
    assert not transports.verify(SECRET, post.headers, post.body + b" ")
    # The same post replayed ten minutes later: its timestamp gives it away.
    assert not transports.verify(SECRET, post.headers, post.body, now=time.time() + 600)


def test_the_standard_webhooks_library_verifies_our_signature(
    team: Team, http_receiver: HttpReceiver
) -> None:
    row = pending(team, channel(team, "webhook", http_receiver.url()))
    delivery.deliver(row.pk)
    [post] = http_receiver.posts
    assert standardwebhooks.Webhook(SECRET).verify(post.body, post.headers)["id"] == str(
        row.event.uid
    )


def test_email_has_a_subject_to_filter_on_and_both_parts(
    team: Team, smtp_receiver: SmtpReceiver
) -> None:
    row = pending(team, channel(team, "email", recipients=["oncall@example.com", "b@example.com"]))
    assert delivery.deliver(row.pk) == "sent"
    [(recipients, message)] = smtp_receiver.wait(1)
    assert recipients == ["oncall@example.com", "b@example.com"]
    assert message["Subject"] == "[orchestrator] acme/daily-sales: run 41 failed"
    text = message.get_body(("plain",)).get_content()
    html = message.get_body(("html",)).get_content()
    assert "Failed task load (try 3): exit code 1" in text
    assert 'UndefinedTable: relation "staging"' in text
    assert "Open the run: https://orc.example.com/t/acme/runs/41/" in text
    assert '<a href="https://orc.example.com/t/acme/runs/41/">' in html
    assert "UndefinedTable: relation &quot;staging&quot;" in html  # escaped in HTML
    row.refresh_from_db()
    assert row.response == "accepted for 2 recipients"


def test_500_then_200_is_delivered_once_on_the_second_attempt(
    team: Team, http_receiver: HttpReceiver
) -> None:
    http_receiver.answer(Answer(500))
    row = pending(team, channel(team, "webhook", http_receiver.url()))
    assert delivery.deliver(row.pk) == "pending"
    row.refresh_from_db()
    assert row.last_error.startswith("HTTP 500 from 127.0.0.1")
    assert row.next_attempt_at is not None
    assert delivery.resend_due() == 1  # the repair queues it again once due ...
    assert delivery.deliver(row.pk) == "sent"  # ... and the next attempt goes through
    assert status(row) == ("sent", 2)
    assert len(http_receiver.posts) == 2
    assert (
        http_receiver.posts[0].headers["webhook-id"] == http_receiver.posts[1].headers["webhook-id"]
    )


def test_429_waits_at_least_its_retry_after(team: Team, http_receiver: HttpReceiver) -> None:
    http_receiver.answer(Answer(429, {"Retry-After": "120"}))
    row = pending(team, channel(team, "slack", http_receiver.url()))
    before = timezone.now()
    assert delivery.deliver(row.pk) == "pending"
    row.refresh_from_db()
    assert row.next_attempt_at is not None
    assert row.next_attempt_at >= before + dt.timedelta(seconds=119)
    assert delivery.deliver(row.pk) is None  # not due yet


def test_404_fails_for_good_with_no_retry(team: Team, http_receiver: HttpReceiver) -> None:
    http_receiver.answer(Answer(404))
    row = pending(team, channel(team, "webhook", http_receiver.url()))
    assert delivery.deliver(row.pk) == "failed"
    assert status(row) == ("failed", 1)
    assert row.last_error.startswith("HTTP 404 from 127.0.0.1")
    assert delivery.resend_due() == 0
    assert delivery.deliver(row.pk) is None
    assert len(http_receiver.posts) == 1


def test_temporary_errors_give_up_after_the_last_attempt(
    team: Team, http_receiver: HttpReceiver
) -> None:
    http_receiver.answer(Answer(503), Answer(503), Answer(503))
    row = pending(team, channel(team, "webhook", http_receiver.url()))
    for _ in range(3):
        delivery.deliver(row.pk)
    assert status(row) == ("failed", 3)
    assert row.last_error.endswith("(gave up after 3 attempts)")


def test_a_blocked_address_fails_for_good_without_connecting(team: Team, settings: Any) -> None:
    settings.NOTIFY_ALLOWED_HOSTS = []
    row = pending(team, channel(team, "slack", "http://169.254.169.254/latest/meta-data/"))
    assert delivery.deliver(row.pk) == "failed"
    row.refresh_from_db()
    assert row.last_error.startswith("blocked: ")
    assert "metadata" in row.last_error


def test_a_refused_recipient_is_permanent_and_a_dead_mail_server_temporary(
    team: Team, smtp_receiver: SmtpReceiver, settings: Any
) -> None:
    smtp_receiver.refused.add("nobody@example.com")
    refused = pending(team, channel(team, "email", recipients=["nobody@example.com"]))
    assert delivery.deliver(refused.pk) == "failed"
    refused.refresh_from_db()
    assert "recipients refused (550): nobody@example.com" in refused.last_error
    settings.EMAIL_PORT = 1  # nothing listens there
    dead = pending(team, channel(team, "email", recipients=["oncall@example.com"]))
    assert delivery.deliver(dead.pk) == "pending"
    dead.refresh_from_db()
    assert "mail server 127.0.0.1:1" in dead.last_error


@pytest.mark.django_db(transaction=True)
def test_two_workers_racing_for_one_delivery_send_it_once(
    team: Team, http_receiver: HttpReceiver
) -> None:
    """The claim is a compare-and-set: whoever comes second finds it taken."""
    http_receiver.answer(Answer(200, delay=0.5))
    row = pending(team, channel(team, "webhook", http_receiver.url()))
    from concurrent.futures import ThreadPoolExecutor

    def race() -> str | None:
        from django.db import connection

        try:
            return delivery.deliver(row.pk)
        finally:
            connection.close()

    with ThreadPoolExecutor(2) as pool:
        outcomes = sorted(pool.map(lambda _: race() or "", range(2)))
    assert outcomes == ["", "sent"]
    assert len(http_receiver.posts) == 1


def test_a_claim_left_by_a_dead_worker_is_failed_not_sent_again(
    team: Team, http_receiver: HttpReceiver
) -> None:
    row = pending(team, channel(team, "webhook", http_receiver.url()))
    Delivery.objects.dangerously_unscoped().filter(pk=row.pk).update(
        claimed_at=timezone.now() - delivery.claim_timeout() - dt.timedelta(seconds=1), attempts=1
    )
    assert delivery.deliver(row.pk) is None  # claimed: nobody else sends it
    assert delivery.resend_due() == 0
    assert delivery.fail_lost_claims() == 1
    row.refresh_from_db()
    assert row.status == "failed"
    assert "not sent again automatically" in row.last_error
    assert http_receiver.posts == []


def test_a_disabled_channel_fails_its_pending_deliveries(
    team: Team, http_receiver: HttpReceiver
) -> None:
    target = channel(team, "webhook", http_receiver.url())
    row = pending(team, target)
    Channel.objects.dangerously_unscoped().filter(pk=target.pk).update(enabled=False)
    assert delivery.deliver(row.pk) == "failed"
    row.refresh_from_db()
    assert row.last_error == "the channel is disabled"
    assert http_receiver.posts == []


def test_a_quiet_periods_count_arrives_as_one_message(
    team: Team, http_receiver: HttpReceiver
) -> None:
    target = channel(team, "webhook", http_receiver.url())
    rule = Rule.objects.dangerously_unscoped().create(
        tenant=team.tenant, name="quiet", quiet_period=600
    )
    with tenant_scope([team.tenant]):
        rule.channels.set([target])
    from workflows.models import Workflow

    wf = Workflow.objects.dangerously_unscoped().create(tenant=team.tenant, name="sales")
    for _ in range(50):
        event = events.emit(
            tenant_id=team.tenant.pk, type="run.failed", workflow_id=wf.pk, data=FAILED_DATA
        )
        routing.route_one(event.pk)
    for row in Delivery.objects.dangerously_unscoped().filter(status="pending"):
        delivery.deliver(row.pk)
    assert len(http_receiver.posts) == 1
    from notifications.models import QuietWindow

    QuietWindow.objects.dangerously_unscoped().update(ends_at=timezone.now())
    assert routing.flush_quiet_windows() == 1
    [summary] = Delivery.objects.dangerously_unscoped().filter(kind="summary")
    assert delivery.deliver(summary.pk) == "sent"
    assert len(http_receiver.posts) == 2
    counted = http_receiver.posts[1].json()
    assert counted["type"] == "notification.suppressed"
    assert counted["data"]["count"] == 49
    assert counted["data"]["last_event"]["type"] == "run.failed"
