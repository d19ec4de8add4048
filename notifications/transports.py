"""How a message leaves: one Transport per channel kind (a Slack incoming webhook, email, a
signed webhook), each raising TransportError that says whether trying again can help (the
healthchecks.io way). Slack and webhook URLs go through the same SSRF guard as http tasks,
with NOTIFY_ALLOWED_HOSTS and the tenant's http_allowed_hosts as the allow-list.

Webhooks are signed the Standard Webhooks way (https://www.standardwebhooks.com/):
`webhook-id` (the CloudEvent's id), `webhook-timestamp` (unix seconds) and
`webhook-signature: v1,<base64 HMAC-SHA256 of "<id>.<timestamp>.<body>">`, keyed with the
channel's secret `whsec_<base64 key>`. `verify` is what a receiver runs.

No error text holds the path or query of a channel's URL: a Slack webhook's path is its
secret. Errors name the host only."""

from __future__ import annotations

import base64
import email.utils
import hashlib
import hmac
import json
import secrets
import smtplib
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, ClassVar
from urllib.parse import urlsplit

from django.conf import settings
from django.core.mail import EmailMultiAlternatives, get_connection

from notifications.models import Channel
from orchestrator import crypto
from orchestrator.models import Tenant
from runs.tasktypes import netguard

__all__ = [
    "Email",
    "Message",
    "Slack",
    "Transport",
    "TransportError",
    "Webhook",
    "allowed_hosts",
    "check_url",
    "new_secret",
    "retry_after",
    "send",
    "sign",
    "slack_escape",
    "verify",
]

SECRET_PREFIX = "whsec_"  # noqa: S105 (a prefix, not a secret)
MAX_ANSWER_BYTES = 4096  # of a receiver's answer: only its start is shown
ANSWER_SHOWN = 200  # characters of a refusing receiver's answer put in the error
MAX_RETRY_AFTER = 86400.0  # a receiver may ask for a pause of at most a day
USER_AGENT = "orchestrator-notifications"


class TransportError(Exception):
    """The message did not go out. `permanent`: trying again cannot help (a bad URL, a
    refused address, an unknown recipient); `retry_after`: seconds the receiver asked for."""

    def __init__(self, message: str, *, permanent: bool, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.permanent = permanent
        self.retry_after = retry_after


@dataclass(frozen=True)
class Message:
    """One message in every form a transport may send (notifications.messages makes it)."""

    subject: str  # the email's subject; Slack's notification text
    text: str  # the email's plain-text part
    html: str  # the email's HTML part
    blocks: list[dict[str, Any]]  # Slack Block Kit
    cloudevent: dict[str, Any]  # the webhook's body


def allowed_hosts(tenant: Tenant) -> list[str]:
    """What channels may reach although the guard blocks it: NOTIFY_ALLOWED_HOSTS and the
    tenant's policy http_allowed_hosts."""
    return [*settings.NOTIFY_ALLOWED_HOSTS, *tenant.policy.get("http_allowed_hosts", [])]


def check_url(url: str, allowed: Sequence[str]) -> str | None:
    """Why a channel may not use `url`, or None. A name that does not resolve now is
    accepted: it is checked again at each send."""
    try:
        parts = urlsplit(url)
        scheme, host = parts.scheme.lower(), parts.hostname
    except ValueError:
        return "not a valid URL: expected http(s)://host[:port]/path"
    if scheme not in ("http", "https") or not host:
        return "must be an http:// or https:// URL with a host, e.g. https://hooks.slack.com/..."
    try:
        netguard.check(url, allowed)
    except netguard.Blocked as exc:
        return _blocked_text(exc)
    except netguard.RequestFailed:
        return None
    return None


def _blocked_text(exc: netguard.Blocked) -> str:
    # The guard names the http task's setting; channels are allowed by their own.
    return str(exc).replace("setting HTTP_ALLOWED_HOSTS", "setting NOTIFY_ALLOWED_HOSTS")


# --- signatures --------------------------------------------------------------------------


def new_secret() -> str:
    """A webhook signing secret: whsec_ and 32 random bytes, base64."""
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def _key(secret: str) -> bytes:
    return base64.b64decode(secret.removeprefix(SECRET_PREFIX))


def sign(secret: str, msg_id: str, timestamp: int, body: bytes) -> str:
    """The `webhook-signature` header's value for this message."""
    signed = f"{msg_id}.{timestamp}.".encode() + body
    digest = hmac.new(_key(secret), signed, hashlib.sha256).digest()
    return "v1," + base64.b64encode(digest).decode()


def verify(
    secret: str,
    headers: Mapping[str, str],
    body: bytes,
    tolerance: int = 300,
    now: float | None = None,
) -> bool:
    """What a receiver checks: a signature of ours over this id, timestamp and body, and a
    timestamp within `tolerance` seconds of `now` (an older one is a replay). Header names
    in any case; several space-separated signatures (a rotated secret) are accepted."""
    lower = {k.lower(): v for k, v in headers.items()}
    try:
        msg_id = lower["webhook-id"]
        timestamp = int(lower["webhook-timestamp"])
    except (KeyError, ValueError):
        return False
    if abs((time.time() if now is None else now) - timestamp) > tolerance:
        return False
    expected = sign(secret, msg_id, timestamp, body)
    offered = lower.get("webhook-signature", "").split()
    return any(hmac.compare_digest(expected, candidate) for candidate in offered)


# --- the transports ----------------------------------------------------------------------


class Transport:
    """One channel kind's way out: `notify` sends a message or raises TransportError."""

    def __init__(self, channel: Channel) -> None:
        self.channel = channel

    def notify(self, message: Message) -> str:
        """The receiver's answer in a few words ("HTTP 200 from hooks.slack.com")."""
        raise NotImplementedError


class HttpTransport(Transport):
    """A POST to the channel's (decrypted) URL through the SSRF guard. Redirects are not
    followed: a moved hook is a configuration to fix, not a place to send the body."""

    content_type: ClassVar[str] = "application/json"

    def notify(self, message: Message) -> str:
        body = self.body(message)
        return self.post(body, {"Content-Type": self.content_type, **self.headers(message, body)})

    def body(self, message: Message) -> bytes:
        raise NotImplementedError

    def headers(self, message: Message, body: bytes) -> dict[str, str]:
        return {}

    def post(self, body: bytes, headers: dict[str, str]) -> str:
        url = crypto.decrypt(self.channel.url_encrypted)
        host = urlsplit(url).hostname or "?"
        try:
            response = netguard.request(
                "POST",
                url,
                headers={**headers, "User-Agent": USER_AGENT},
                body=body,
                timeout=settings.NOTIFY_TIMEOUT_SECONDS,
                max_bytes=MAX_ANSWER_BYTES,
                allowed=allowed_hosts(self.channel.tenant),
                max_redirects=0,
            )
        except netguard.Blocked as exc:
            text = _hide_path(f"blocked: {_blocked_text(exc)}", url)
            raise TransportError(text, permanent=True) from None
        except netguard.RequestFailed as exc:
            text = _hide_path(f"{host}: {exc}", url)
            raise TransportError(text, permanent=exc.permanent) from None
        if not 200 <= response.status < 300:
            raise _refusal(response, host, url)
        return f"HTTP {response.status} from {host}"


def _hide_path(text: str, url: str) -> str:
    """`text` without the URL's path or query, should a message quote them: the guard's
    messages name the host only, but a Slack URL's path is a secret, so make sure."""
    parts = urlsplit(url)
    for secret in (parts.query, parts.path):
        if len(secret) > 1:
            text = text.replace(secret, "/…")
    return text


def _refusal(response: netguard.Response, host: str, url: str) -> TransportError:
    """What an answer other than 2xx means: 429, 408 and 5xx are worth another try (after
    Retry-After, for a 429); any other answer (404, 403, a redirect) will not change."""
    detail = response.body[:ANSWER_SHOWN].decode("utf-8", "replace").strip()
    text = _hide_path(
        f"HTTP {response.status} from {host}" + (f": {detail}" if detail else ""), url
    )
    if response.status == 429:
        retry = retry_after(response.headers.get("retry-after"))
        return TransportError(text, permanent=False, retry_after=retry)
    return TransportError(text, permanent=not (response.status >= 500 or response.status == 408))


def retry_after(value: str | None, now: float | None = None) -> float | None:
    """Seconds a Retry-After header asks for (a number of seconds or an HTTP date), at most
    a day; None when absent or unreadable."""
    value = (value or "").strip()
    if not value:
        return None
    if value.isdigit():
        return min(float(value), MAX_RETRY_AFTER)
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    wait = when.timestamp() - (time.time() if now is None else now)
    return min(max(0.0, wait), MAX_RETRY_AFTER)


class Slack(HttpTransport):
    """A Slack incoming webhook: the Block Kit message, the subject as its notification."""

    def body(self, message: Message) -> bytes:
        # The top-level text is mrkdwn too: <!channel> in a workflow name must not ping.
        text = slack_escape(message.subject)
        return json.dumps({"text": text, "blocks": message.blocks}).encode()


def slack_escape(text: str) -> str:
    """Text for Slack's mrkdwn: &, < and > as entities, so that no part of it becomes a
    link, a mention or @channel."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


class Webhook(HttpTransport):
    """The CloudEvent itself (structured content mode), signed the Standard Webhooks way."""

    content_type = "application/cloudevents+json; charset=utf-8"

    def body(self, message: Message) -> bytes:
        return json.dumps(message.cloudevent, separators=(",", ":")).encode()

    def headers(self, message: Message, body: bytes) -> dict[str, str]:
        msg_id = str(message.cloudevent["id"])  # the same on every attempt: receivers dedupe
        timestamp = int(time.time())
        secret = crypto.decrypt(self.channel.signing_secret_encrypted)
        return {
            "webhook-id": msg_id,
            "webhook-timestamp": str(timestamp),
            "webhook-signature": sign(secret, msg_id, timestamp, body),
        }


class Email(Transport):
    """Mail with a text and an HTML part to the channel's recipients, through the project's
    email settings (EMAIL_URL or EMAIL_HOST, ...; EMAIL_TIMEOUT)."""

    def notify(self, message: Message) -> str:
        recipients = [str(r) for r in self.channel.recipients]
        if not recipients:
            raise TransportError("the channel has no recipients", permanent=True)
        mail = EmailMultiAlternatives(
            subject=" ".join(message.subject.split()),  # one line: a header
            body=message.text,
            from_email=settings.DEFAULT_FROM_EMAIL,
            to=recipients,
            connection=get_connection(timeout=settings.EMAIL_TIMEOUT),
        )
        mail.attach_alternative(message.html, "text/html")
        try:
            mail.send()
        except smtplib.SMTPRecipientsRefused as exc:
            raise _recipients_refused(exc) from None
        except smtplib.SMTPException as exc:
            raise _smtp_error(exc) from None
        except OSError as exc:  # refused, unreachable, timed out, TLS failed
            raise TransportError(f"{_mail_server()}: {exc}", permanent=False) from None
        return f"accepted for {len(recipients)} recipient{'s' if len(recipients) != 1 else ''}"


def _mail_server() -> str:
    return f"mail server {settings.EMAIL_HOST}:{settings.EMAIL_PORT}"


def _recipients_refused(exc: smtplib.SMTPRecipientsRefused) -> TransportError:
    """Every recipient refused. A 4xx for any of them (mailbox busy, greylisting) may pass
    later; 5xx for all (no such user) will not."""
    answers = exc.recipients
    code = min((code for code, _ in answers.values()), default=550)
    said = "; ".join(_said(text) for _, text in answers.values() if text)
    text = f"recipients refused ({code}): {', '.join(sorted(answers))}"
    return TransportError(text + (f" ({said})" if said else ""), permanent=code >= 500)


def _smtp_error(exc: smtplib.SMTPException) -> TransportError:
    """An SMTP answer: 5xx (and a refused login) will not change; 4xx and a dropped
    connection (no code) may."""
    code = int(getattr(exc, "smtp_code", 0) or 0)
    if code:
        text = f"{_mail_server()} answered {code} {_said(getattr(exc, 'smtp_error', b''))}"
    else:
        text = f"{_mail_server()}: {exc or type(exc).__name__}"
    permanent = code >= 500 or isinstance(exc, smtplib.SMTPAuthenticationError)
    return TransportError(text.strip(), permanent=permanent)


def _said(text: bytes | str) -> str:
    return (text.decode("utf-8", "replace") if isinstance(text, bytes) else text).strip()


TRANSPORTS: dict[str, type[Transport]] = {
    Channel.Kind.SLACK: Slack,
    Channel.Kind.EMAIL: Email,
    Channel.Kind.WEBHOOK: Webhook,
}


def send(channel: Channel, message: Message) -> str:
    """Send `message` through the channel; the receiver's answer in a few words ("HTTP 200
    from hooks.slack.com", "accepted for 2 recipients"). Raises TransportError."""
    return TRANSPORTS[channel.kind](channel).notify(message)
