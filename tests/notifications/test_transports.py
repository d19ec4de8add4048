"""The transports against real receivers on 127.0.0.1 (tests/notifications/servers.py): what
a Slack hook, a webhook and a mail server get, and which answers are temporary (worth
another try) or permanent. No error names the path of a channel's URL (a Slack hook's
secret). The SSRF guard decides before anything connects."""

from __future__ import annotations

import base64
import datetime as dt
import email.utils
import json
import time
from email.message import EmailMessage
from typing import Any

import pytest
import standardwebhooks

from notifications import transports
from notifications.models import Channel
from notifications.transports import Message, TransportError
from orchestrator import crypto
from tests.harness import Team, make_team, set_policy
from tests.notifications.servers import Answer, HttpReceiver, SmtpReceiver, free_port

pytestmark = pytest.mark.django_db

SECRET = transports.new_secret()
SLACK_PATH = "/services/T000/B000/XXXXsecretXXXX"
MESSAGE = Message(
    subject="[orchestrator] acme/daily-sales: run 41 failed",
    text="daily-sales failed\n",
    html="<p>daily-sales failed</p>\n",
    blocks=[{"type": "section", "text": {"type": "mrkdwn", "text": "*daily-sales* failed"}}],
    cloudevent={
        "specversion": "1.0",
        "id": "5b0c1f0e-8d0a-4c1e-9a57-2f4f6f0f3b11",
        "source": "/tenants/acme/workflows/daily-sales",
        "type": "run.failed",
        "data": {"workflow": "daily-sales", "run": {"id": 41}, "note": "é ✓"},
    },
)


@pytest.fixture(autouse=True)
def _local_receivers(settings: Any, smtp_receiver: SmtpReceiver) -> None:
    settings.NOTIFY_ALLOWED_HOSTS = ["127.0.0.1"]
    settings.NOTIFY_TIMEOUT_SECONDS = 5.0
    settings.EMAIL_BACKEND = "django.core.mail.backends.smtp.EmailBackend"
    settings.EMAIL_HOST, settings.EMAIL_PORT = "127.0.0.1", smtp_receiver.port
    settings.DEFAULT_FROM_EMAIL = "orchestrator@example.com"


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


def failure(target: Channel, message: Message = MESSAGE) -> TransportError:
    with pytest.raises(TransportError) as caught:
        transports.send(target, message)
    return caught.value


# --- Slack ---------------------------------------------------------------------------------


def test_slack_gets_the_blocks_and_the_subject_as_json(
    team: Team, http_receiver: HttpReceiver
) -> None:
    target = channel(team, "slack", http_receiver.url(SLACK_PATH))
    assert transports.send(target, MESSAGE) == "HTTP 200 from 127.0.0.1"
    [post] = http_receiver.posts
    assert post.path == SLACK_PATH
    assert post.headers["content-type"] == "application/json"
    assert post.json() == {"text": MESSAGE.subject, "blocks": MESSAGE.blocks}


def test_slacks_notification_text_cannot_mention_the_channel(
    team: Team, http_receiver: HttpReceiver
) -> None:
    target = channel(team, "slack", http_receiver.url(SLACK_PATH))
    message = Message("<!channel> & <https://evil.example|click>", "", "", [], {})
    transports.send(target, message)
    [post] = http_receiver.posts
    assert post.json()["text"] == "&lt;!channel&gt; &amp; &lt;https://evil.example|click&gt;"


@pytest.mark.parametrize(
    ("status", "permanent"),
    [
        (500, False),
        (502, False),
        (503, False),
        (408, False),
        (400, True),
        (403, True),
        (404, True),
        (410, True),
        (302, True),  # a redirect with no Location: not followed, and it will not change
    ],
)
def test_an_answer_other_than_2xx_is_an_error_of_its_kind(
    team: Team, http_receiver: HttpReceiver, status: int, permanent: bool
) -> None:
    http_receiver.answer(Answer(status, body=b"no_service"))
    error = failure(channel(team, "slack", http_receiver.url(SLACK_PATH)))
    assert (error.permanent, error.retry_after) == (permanent, None)
    assert str(error) == f"HTTP {status} from 127.0.0.1: no_service"
    assert len(http_receiver.posts) == 1


def test_500_then_200_is_sent_on_the_second_try(team: Team, http_receiver: HttpReceiver) -> None:
    http_receiver.answer(Answer(500))
    target = channel(team, "slack", http_receiver.url(SLACK_PATH))
    assert not failure(target).permanent
    assert transports.send(target, MESSAGE) == "HTTP 200 from 127.0.0.1"
    assert [p.json() for p in http_receiver.posts] == [http_receiver.posts[0].json()] * 2


def test_429_is_temporary_with_its_retry_after_in_seconds(
    team: Team, http_receiver: HttpReceiver
) -> None:
    http_receiver.answer(Answer(429, {"Retry-After": "120"}))
    error = failure(channel(team, "slack", http_receiver.url(SLACK_PATH)))
    assert (error.permanent, error.retry_after) == (False, 120.0)
    assert str(error).startswith("HTTP 429 from 127.0.0.1")


def test_429_with_an_http_date_waits_until_then(team: Team, http_receiver: HttpReceiver) -> None:
    later = email.utils.formatdate(time.time() + 120, usegmt=True)
    http_receiver.answer(Answer(429, {"Retry-After": later}))
    error = failure(channel(team, "webhook", http_receiver.url()))
    assert not error.permanent
    assert error.retry_after is not None
    assert 115 <= error.retry_after <= 120


@pytest.mark.parametrize(
    ("header", "seconds"),
    [
        ("0", 0.0),
        (" 30 ", 30.0),
        ("99999999", 86400.0),  # a receiver cannot put a retry off beyond a day
        ("Fri, 04 Dec 2026 10:00:00 GMT", 0.0),  # already past
        ("Sat, 05 Dec 2026 10:01:00 GMT", 60.0),
        ("soon", None),
        ("", None),
        (None, None),
    ],
)
def test_retry_after_reads_seconds_and_http_dates(header: str | None, seconds: float) -> None:
    now = dt.datetime(2026, 12, 5, 10, 0, tzinfo=dt.UTC).timestamp()
    assert transports.retry_after(header, now=now) == seconds


def test_a_receiver_that_does_not_answer_in_time_is_temporary(
    team: Team, http_receiver: HttpReceiver, settings: Any
) -> None:
    settings.NOTIFY_TIMEOUT_SECONDS = 0.5
    http_receiver.answer(Answer(200, delay=3))
    error = failure(channel(team, "slack", http_receiver.url(SLACK_PATH)))
    assert not error.permanent
    assert "timed out" in str(error)
    assert "secret" not in str(error)


def test_a_receiver_that_is_down_is_temporary(team: Team) -> None:
    port = free_port()
    error = failure(channel(team, "slack", f"http://127.0.0.1:{port}{SLACK_PATH}?token=abc"))
    assert not error.permanent
    assert f"127.0.0.1:{port}" in str(error)
    assert "secret" not in str(error)
    assert "token" not in str(error)


def test_a_redirect_is_not_followed_and_is_permanent(
    team: Team, http_receiver: HttpReceiver
) -> None:
    http_receiver.answer(Answer(301, {"Location": http_receiver.url(SLACK_PATH + "/moved")}))
    error = failure(channel(team, "slack", http_receiver.url(SLACK_PATH)))
    assert error.permanent
    assert len(http_receiver.posts) == 1  # nothing went to the new place
    assert "secret" not in str(error)


def test_an_answer_quoting_the_url_does_not_put_its_path_in_the_error(
    team: Team, http_receiver: HttpReceiver
) -> None:
    http_receiver.answer(Answer(404, body=f"no hook at {SLACK_PATH}".encode()))
    error = failure(channel(team, "slack", http_receiver.url(SLACK_PATH)))
    assert str(error) == "HTTP 404 from 127.0.0.1: no hook at /…"


# --- the SSRF guard ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("url", "why"),
    [
        ("http://10.0.0.1/hook", "a private address"),
        ("http://169.254.169.254/latest/meta-data/", "cloud metadata endpoint"),
        ("http://[::1]:8080/hook", "the loopback address"),
    ],
)
def test_a_blocked_address_is_permanent_and_nothing_connects(
    team: Team, settings: Any, url: str, why: str
) -> None:
    """A connection to 10.0.0.1 would time out (a temporary error): permanent means the
    guard refused it before connecting."""
    settings.NOTIFY_ALLOWED_HOSTS = []
    error = failure(channel(team, "webhook", url))
    assert error.permanent
    assert str(error).startswith("blocked: ")
    assert why in str(error)
    assert "NOTIFY_ALLOWED_HOSTS" in str(error)
    assert "HTTP_ALLOWED_HOSTS" not in str(error)


def test_loopback_is_refused_before_connecting_unless_allowed(
    team: Team, http_receiver: HttpReceiver, settings: Any
) -> None:
    settings.NOTIFY_ALLOWED_HOSTS = []
    target = channel(team, "slack", http_receiver.url(SLACK_PATH))
    error = failure(target)
    assert error.permanent
    assert "a loopback address" in str(error)
    assert "secret" not in str(error)
    assert (http_receiver.connections, http_receiver.posts) == (0, [])
    # The tenant's policy http_allowed_hosts allows it, as it does for http tasks.
    target.tenant = set_policy(team.tenant, http_allowed_hosts=["127.0.0.1"])
    assert transports.send(target, MESSAGE) == "HTTP 200 from 127.0.0.1"
    assert len(http_receiver.posts) == 1


def test_allowed_hosts_are_the_platforms_and_the_tenants(team: Team, settings: Any) -> None:
    settings.NOTIFY_ALLOWED_HOSTS = ["10.1.0.0/16"]
    assert transports.allowed_hosts(team.tenant) == ["10.1.0.0/16"]
    tenant = set_policy(team.tenant, http_allowed_hosts=["hooks.internal"])
    assert transports.allowed_hosts(tenant) == ["10.1.0.0/16", "hooks.internal"]


@pytest.mark.parametrize(
    ("url", "allowed", "why"),
    [
        ("https://hooks.slack.com/services/T0/B0/x", [], None),  # public (or not resolved now)
        ("https://name.invalid/hook", [], None),  # does not resolve: checked again at each send
        ("http://10.0.0.1/hook", ["10.0.0.0/8"], None),
        ("http://127.0.0.1:9000/hook", ["127.0.0.1"], None),
        ("ftp://example.com/hook", [], "must be an http:// or https:// URL with a host"),
        ("https:///hook", [], "must be an http:// or https:// URL with a host"),
        ("hooks.slack.com/services/x", [], "must be an http:// or https:// URL with a host"),
        ("http://[::1/hook", [], "not a valid URL"),
        ("http://user:pw@example.com/hook", [], "holds credentials"),
        ("http://10.0.0.1/hook", [], "a private address (10.0.0.0/8); to reach it, add"),
        ("http://169.254.169.254/", ["169.254.0.0/16"], "cloud metadata endpoint"),
    ],
)
def test_check_url_says_why_a_url_is_refused(url: str, allowed: list[str], why: str | None) -> None:
    answer = transports.check_url(url, allowed)
    if why is None:
        assert answer is None
    else:
        assert answer is not None
        assert why in answer


def test_check_url_names_the_setting_that_allows_a_channel(settings: Any) -> None:
    answer = transports.check_url("http://192.168.1.5/hook", [])
    assert answer is not None
    assert "NOTIFY_ALLOWED_HOSTS" in answer
    assert "http_allowed_hosts" in answer


# --- webhooks ------------------------------------------------------------------------------


def test_the_webhook_gets_the_cloudevent_signed(team: Team, http_receiver: HttpReceiver) -> None:
    before = int(time.time())
    target = channel(team, "webhook", http_receiver.url("/hook"))
    assert transports.send(target, MESSAGE) == "HTTP 200 from 127.0.0.1"
    [post] = http_receiver.posts
    assert post.headers["content-type"] == "application/cloudevents+json; charset=utf-8"
    assert post.json() == MESSAGE.cloudevent
    assert post.headers["webhook-id"] == MESSAGE.cloudevent["id"]
    assert before <= int(post.headers["webhook-timestamp"]) <= time.time()
    assert post.headers["webhook-signature"] == transports.sign(
        SECRET, post.headers["webhook-id"], int(post.headers["webhook-timestamp"]), post.body
    )
    assert transports.verify(SECRET, post.headers, post.body)


def test_verify_refuses_another_key_a_changed_body_and_a_replay(
    team: Team, http_receiver: HttpReceiver
) -> None:
    transports.send(channel(team, "webhook", http_receiver.url()), MESSAGE)
    [post] = http_receiver.posts
    sent = int(post.headers["webhook-timestamp"])
    assert transports.verify(SECRET, post.headers, post.body, now=sent + 299)
    assert not transports.verify(transports.new_secret(), post.headers, post.body)
    assert not transports.verify(SECRET, post.headers, post.body.replace(b"41", b"42"))
    changed_id = {**post.headers, "webhook-id": "another"}
    assert not transports.verify(SECRET, changed_id, post.body)
    # The same post replayed later than the tolerance: its signed timestamp gives it away,
    # and a newer timestamp would not match the signature.
    assert not transports.verify(SECRET, post.headers, post.body, now=sent + 301)
    assert not transports.verify(SECRET, post.headers, post.body, tolerance=60, now=sent + 61)
    newer = {**post.headers, "webhook-timestamp": str(sent + 600)}
    assert not transports.verify(SECRET, newer, post.body, now=sent + 600)


def test_verify_takes_any_header_case_and_one_of_several_signatures() -> None:
    body, now = b'{"a":1}', int(time.time())
    good = transports.sign(SECRET, "msg_1", now, body)
    headers = {
        "Webhook-Id": "msg_1",
        "Webhook-Timestamp": str(now),
        "Webhook-Signature": f"v1,{base64.b64encode(b'x' * 32).decode()} {good}",
    }
    assert transports.verify(SECRET, headers, body)
    assert not transports.verify(SECRET, {**headers, "Webhook-Signature": "v1,"}, body)
    assert not transports.verify(SECRET, {"webhook-id": "msg_1"}, body)
    assert not transports.verify(SECRET, {**headers, "Webhook-Timestamp": "soon"}, body)


def test_sign_matches_the_standard_webhooks_example() -> None:
    """The example of the Standard Webhooks reference libraries."""
    secret = "whsec_MfKQ9r8GKYqrTwjUPD8ILPZIo2LaLaSw"
    signature = transports.sign(
        secret, "msg_p5jXN8AQM9LWM0D4loKWxJek", 1614265330, b'{"test": 2432232314}'
    )
    assert signature == "v1,g0hM9SsE+OTPJTGt/tmIKtSyZlE3uFJELVlNIOLJ1OE="


def test_the_standard_webhooks_library_verifies_what_we_send(
    team: Team, http_receiver: HttpReceiver
) -> None:
    transports.send(channel(team, "webhook", http_receiver.url()), MESSAGE)
    [post] = http_receiver.posts
    assert standardwebhooks.Webhook(SECRET).verify(post.body, post.headers) == json.loads(post.body)
    with pytest.raises(standardwebhooks.webhooks.WebhookVerificationError):
        standardwebhooks.Webhook(transports.new_secret()).verify(post.body, post.headers)


def test_a_new_secret_is_a_whsec_key_of_32_random_bytes() -> None:
    secret = transports.new_secret()
    assert secret.startswith("whsec_")
    assert len(base64.b64decode(secret.removeprefix("whsec_"))) == 32
    assert secret != transports.new_secret()


def test_the_webhook_sends_the_same_id_on_every_try(
    team: Team, http_receiver: HttpReceiver
) -> None:
    http_receiver.answer(Answer(503))
    target = channel(team, "webhook", http_receiver.url())
    assert not failure(target).permanent
    transports.send(target, MESSAGE)
    first, second = http_receiver.posts
    assert first.headers["webhook-id"] == second.headers["webhook-id"] == MESSAGE.cloudevent["id"]
    assert first.body == second.body


# --- email ---------------------------------------------------------------------------------


def test_mail_has_the_subject_both_parts_and_every_recipient(
    team: Team, smtp_receiver: SmtpReceiver
) -> None:
    target = channel(team, "email", recipients=["oncall@example.com", "lead@example.com"])
    assert transports.send(target, MESSAGE) == "accepted for 2 recipients"
    [(recipients, mail)] = smtp_receiver.wait(1)
    assert recipients == ["oncall@example.com", "lead@example.com"]
    assert mail["Subject"] == MESSAGE.subject
    assert mail["From"] == "orchestrator@example.com"
    assert mail["To"] == "oncall@example.com, lead@example.com"
    assert part(mail, "plain") == MESSAGE.text
    assert part(mail, "html") == MESSAGE.html


def part(mail: EmailMessage, subtype: str) -> str:
    body = mail.get_body((subtype,))
    assert body is not None, f"no text/{subtype} part"
    return str(body.get_content()).replace("\r\n", "\n")


def test_a_subject_stays_on_one_line(team: Team, smtp_receiver: SmtpReceiver) -> None:
    target = channel(team, "email", recipients=["oncall@example.com"])
    message = Message("run 41\r\nBcc: everyone@example.com", "text", "<p>html</p>", [], {})
    assert transports.send(target, message) == "accepted for 1 recipient"
    [(recipients, mail)] = smtp_receiver.wait(1)
    assert recipients == ["oncall@example.com"]
    assert mail["Subject"] == "run 41 Bcc: everyone@example.com"
    assert mail["Bcc"] is None


def test_a_refused_recipient_is_permanent(team: Team, smtp_receiver: SmtpReceiver) -> None:
    smtp_receiver.refused.add("nobody@example.com")
    error = failure(channel(team, "email", recipients=["nobody@example.com"]))
    assert error.permanent
    assert str(error) == "recipients refused (550): nobody@example.com (5.1.1 no such user)"
    assert smtp_receiver.messages == []


def test_a_recipient_refused_for_now_is_temporary(team: Team, smtp_receiver: SmtpReceiver) -> None:
    smtp_receiver.rcpt_answers["busy@example.com"] = "451 4.2.1 mailbox busy, try later"
    error = failure(channel(team, "email", recipients=["busy@example.com"]))
    assert not error.permanent
    assert str(error).startswith("recipients refused (451): busy@example.com")


@pytest.mark.parametrize(
    ("answer", "permanent"),
    [("554 5.7.1 rejected as spam", True), ("451 4.3.0 try again later", False)],
)
def test_a_refused_message_is_an_error_of_its_kind(
    team: Team, smtp_receiver: SmtpReceiver, answer: str, permanent: bool
) -> None:
    smtp_receiver.data_answer = answer
    error = failure(channel(team, "email", recipients=["oncall@example.com"]))
    assert error.permanent is permanent
    assert str(error) == f"mail server 127.0.0.1:{smtp_receiver.port} answered {answer}"


def test_a_refused_login_is_permanent_and_keeps_the_password_out(
    team: Team, smtp_receiver: SmtpReceiver, settings: Any
) -> None:
    settings.EMAIL_HOST_USER, settings.EMAIL_HOST_PASSWORD = "alerts", "hunter2-password"
    smtp_receiver.refuse_logins = True
    error = failure(channel(team, "email", recipients=["oncall@example.com"]))
    assert error.permanent
    assert str(error).startswith(f"mail server 127.0.0.1:{smtp_receiver.port} answered 535")
    assert "hunter2" not in str(error)


def test_a_dead_mail_server_is_temporary(team: Team, settings: Any) -> None:
    settings.EMAIL_PORT = free_port()
    error = failure(channel(team, "email", recipients=["oncall@example.com"]))
    assert not error.permanent
    assert str(error).startswith(f"mail server 127.0.0.1:{settings.EMAIL_PORT}: ")


def test_a_channel_with_no_recipients_is_permanent(team: Team) -> None:
    error = failure(channel(team, "email", recipients=[]))
    assert (error.permanent, str(error)) == (True, "the channel has no recipients")
