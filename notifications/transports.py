"""How a message leaves: one transport per channel kind (Slack incoming webhook, email,
signed webhook), each raising TransportError that says whether trying again can help (the
healthchecks.io way). Slack and webhook URLs go through the same SSRF guard as http tasks.

Webhooks are signed the Standard Webhooks way (https://www.standardwebhooks.com/):
`webhook-id`, `webhook-timestamp` and `webhook-signature: v1,<base64 HMAC-SHA256 of
"<id>.<timestamp>.<body>">`, with the channel's secret `whsec_<base64 key>`."""

from __future__ import annotations

import base64
import email.utils
import hashlib
import hmac
import json
import smtplib
import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from django.conf import settings
from django.core.mail import EmailMultiAlternatives, get_connection

from notifications.models import Channel
from orchestrator import crypto
from orchestrator.models import Tenant
from runs.tasktypes import netguard

__all__ = [
    "Message",
    "TransportError",
    "allowed_hosts",
    "check_url",
    "new_secret",
    "send",
    "sign",
    "verify",
]

SECRET_PREFIX = "whsec_"  # noqa: S105 (a prefix, not a secret)
MAX_ANSWER_BYTES = 4096


class TransportError(Exception):
    """The message did not go out. `permanent`: trying again cannot help (a bad URL, a
    refused address, an unknown recipient); `retry_after`: seconds the receiver asked for."""

    def __init__(self, message: str, *, permanent: bool, retry_after: float | None = None) -> None:
        super().__init__(message)
        self.permanent = permanent
        self.retry_after = retry_after


@dataclass(frozen=True)
class Message:
    """One message in every form a transport may send."""

    subject: str  # email subject; Slack's notification text
    text: str  # email plain-text part
    html: str  # email HTML part
    blocks: list[dict[str, Any]]  # Slack Block Kit
    cloudevent: dict[str, Any]  # the webhook body


def allowed_hosts(tenant: Tenant) -> list[str]:
    """What channels may reach although the guard blocks it: NOTIFY_ALLOWED_HOSTS and the
    tenant's policy http_allowed_hosts."""
    return [*settings.NOTIFY_ALLOWED_HOSTS, *tenant.policy.get("http_allowed_hosts", [])]


def check_url(url: str, allowed: Sequence[str]) -> str | None:
    """Why a channel may not use `url`, or None. A name that does not resolve now is
    accepted (it is checked again at each send)."""
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return "must be an http:// or https:// URL with a host"
    try:
        netguard.check(url, allowed)
    except netguard.Blocked as exc:
        return f"{exc} (for alert channels the platform setting is NOTIFY_ALLOWED_HOSTS)"
    except netguard.RequestFailed:
        return None
    return None


def new_secret() -> str:
    """A webhook signing secret: whsec_ and 32 random bytes, base64."""
    import secrets

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
    timestamp within `tolerance` seconds (an older one is a replay)."""
    lower = {k.lower(): v for k, v in headers.items()}
    try:
        msg_id = lower["webhook-id"]
        timestamp = int(lower["webhook-timestamp"])
    except (KeyError, ValueError):
        return False
    if abs((now if now is not None else time.time()) - timestamp) > tolerance:
        return False
    expected = sign(secret, msg_id, timestamp, body)
    offered = lower.get("webhook-signature", "").split()
    return any(hmac.compare_digest(expected, candidate) for candidate in offered)


# --- HTTP transports -------------------------------------------------------------------


def _retry_after(value: str | None) -> float | None:
    if not value:
        return None
    if value.strip().isdigit():
        return float(value.strip())
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    return max(0.0, when.timestamp() - time.time())


def _post(channel: Channel, body: bytes, headers: dict[str, str]) -> str:
    url = crypto.decrypt(channel.url_encrypted)
    host = urlsplit(url).hostname or "?"
    try:
        response = netguard.request(
            "POST",
            url,
            headers={**headers, "User-Agent": "orchestrator-notifications"},
            body=body,
            timeout=settings.NOTIFY_TIMEOUT_SECONDS,
            max_bytes=MAX_ANSWER_BYTES,
            allowed=allowed_hosts(channel.tenant),
            max_redirects=0,
        )
    except netguard.Blocked as exc:
        raise TransportError(f"blocked: {exc}", permanent=True) from None
    except netguard.RequestFailed as exc:
        # The guard's messages name the host only, never the path (a Slack URL's secret).
        raise TransportError(f"{host}: {exc}", permanent=exc.permanent) from None
    answer = f"HTTP {response.status} from {host}"
    if 200 <= response.status < 300:
        return answer
    detail = response.body[:200].decode("utf-8", "replace").strip()
    message = f"{answer}: {detail}" if detail else answer
    if response.status == 429:
        retry = _retry_after(response.headers.get("retry-after"))
        raise TransportError(message, permanent=False, retry_after=retry)
    if response.status >= 500 or response.status == 408:
        raise TransportError(message, permanent=False)
    raise TransportError(message, permanent=True)


def _slack(channel: Channel, message: Message) -> str:
    body = json.dumps({"text": message.subject, "blocks": message.blocks}).encode()
    return _post(channel, body, {"Content-Type": "application/json"})


def _webhook(channel: Channel, message: Message) -> str:
    body = json.dumps(message.cloudevent, separators=(",", ":")).encode()
    msg_id = str(message.cloudevent["id"])
    timestamp = int(time.time())
    secret = crypto.decrypt(channel.signing_secret_encrypted)
    headers = {
        "Content-Type": "application/cloudevents+json; charset=utf-8",
        "webhook-id": msg_id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": sign(secret, msg_id, timestamp, body),
    }
    return _post(channel, body, headers)


# --- email -----------------------------------------------------------------------------


def _smtp_code(exc: smtplib.SMTPException) -> int:
    if isinstance(exc, smtplib.SMTPRecipientsRefused):
        codes = [code for code, _ in exc.recipients.values()]
        return min(codes) if codes else 550
    return int(getattr(exc, "smtp_code", 0) or 0)


def _email(channel: Channel, message: Message) -> str:
    recipients = list(channel.recipients)
    mail = EmailMultiAlternatives(
        subject=message.subject,
        body=message.text,
        from_email=settings.DEFAULT_FROM_EMAIL,
        to=recipients,
        connection=get_connection(timeout=settings.EMAIL_TIMEOUT),
    )
    mail.attach_alternative(message.html, "text/html")
    try:
        mail.send()
    except smtplib.SMTPRecipientsRefused as exc:
        refused = ", ".join(sorted(exc.recipients))
        code = _smtp_code(exc)
        raise TransportError(
            f"recipients refused ({code}): {refused}", permanent=code >= 500
        ) from None
    except smtplib.SMTPException as exc:
        code = _smtp_code(exc)
        permanent = code >= 500 or isinstance(exc, smtplib.SMTPAuthenticationError)
        raise TransportError(f"mail server: {exc}", permanent=permanent) from None
    except OSError as exc:  # refused, unreachable, timed out
        raise TransportError(
            f"mail server {settings.EMAIL_HOST}:{settings.EMAIL_PORT}: {exc}", permanent=False
        ) from None
    return f"accepted for {len(recipients)} recipient{'s' if len(recipients) != 1 else ''}"


_TRANSPORTS = {
    Channel.Kind.SLACK: _slack,
    Channel.Kind.EMAIL: _email,
    Channel.Kind.WEBHOOK: _webhook,
}


def send(channel: Channel, message: Message) -> str:
    """Send `message` through the channel; the receiver's answer in a few words. Raises
    TransportError."""
    return _TRANSPORTS[Channel.Kind(channel.kind)](channel, message)
