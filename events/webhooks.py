"""Inbound webhooks (docs/events.md, "Webhooks"): a workflow declares
`triggers: [{webhook: {name, params}}]`; an editor makes it a signing secret (shown once),
which gives it its URL, /hooks/<uid>; a POST there signed with a valid secret starts one
run with the JSON body as its event's data.

A POST is checked in this order, and an unsigned caller learns nothing: the body's size
(413), the URL's rate limit (429, counted for unknown URLs too), the signature and its
timestamp (one and the same 401 for an unknown URL, a webhook the workflow no longer
declares, a missing, wrong or expired signature and a stale timestamp), then the body
(400 when not a JSON object) and the run's params (400 with their paths). A repeated delivery (the
same Idempotency-Key, else the same body `id`, else the same signature) answers 200 with
the first run and starts nothing."""

from __future__ import annotations

import datetime as dt
import hashlib
import hmac
import json
import secrets
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from django.conf import settings
from django.db import IntegrityError, transaction
from django.db.models import Count, Max, Q
from django.utils import timezone
from jinja2 import TemplateError

from events.models import Webhook, WebhookDelivery, WebhookSecret
from orchestrator import audit, crypto, hooks
from orchestrator.actors import Actor
from orchestrator.context import tenant_scope
from orchestrator.errors import Conflict, Invalid, NotFound
from orchestrator.hooks import Received, problem, rate_limited
from orchestrator.integers import ascii_int
from orchestrator.policy import authorize
from orchestrator.ratelimit import RateLimited, charge_webhook
from runs.graph import graph_for
from runs.models import WorkflowRun
from runs.services import trigger_run
from workflows.models import Workflow
from workflows.spec import WebhookSpec, WebhookTrigger
from workflows.templating import render_value

__all__ = [
    "DEFAULT_OVERLAP",
    "SIGNATURE_HEADER",
    "DeclaredWebhook",
    "Received",
    "SigningSecret",
    "create_secret",
    "declared_webhooks",
    "delete_secret",
    "get_secret",
    "receive",
    "sign",
    "too_large",
    "webhook_url",
    "webhooks_of",
]

SIGNATURE_HEADER = "Orc-Signature"
SECRET_PREFIX = "whsec_"  # noqa: S105 (a prefix, not a secret)
DEFAULT_OVERLAP = 86400  # seconds an older secret stays valid after a rotation
_UNKNOWN_KEY = secrets.token_bytes(32)  # what an unknown URL's signature is checked with


def sign(secret: str, body: bytes, timestamp: int) -> str:
    """The `Orc-Signature` header for this body at this time (Unix seconds):
    `t=<timestamp>,v1=<hex HMAC-SHA256 of "<timestamp>." + body>`."""
    return f"t={timestamp},v1={_digest(secret.encode(), timestamp, body)}"


def _digest(key: bytes, timestamp: int, body: bytes) -> str:
    return hmac.new(key, f"{timestamp}.".encode() + body, hashlib.sha256).hexdigest()


def webhook_url(webhook: Webhook) -> str:
    return f"{settings.PUBLIC_URL.rstrip('/')}/hooks/{webhook.uid}"


def declared_webhooks(workflow: Workflow) -> dict[str, WebhookSpec]:
    """The webhooks the workflow's current version declares, by name."""
    if workflow.current_version_id is None or workflow.deleted_at is not None:
        return {}
    return {
        t.webhook.name: t.webhook
        for t in graph_for(workflow.current_version_id).spec.triggers
        if isinstance(t, WebhookTrigger)
    }


# --- reads --------------------------------------------------------------------------------


@dataclass(frozen=True)
class SigningSecret:
    """A signing secret as anyone may see it: never the secret, only its prefix."""

    id: int
    prefix: str
    created_at: dt.datetime
    expires_at: dt.datetime | None  # None: until a rotation
    expired: bool


@dataclass(frozen=True)
class DeclaredWebhook:
    """A webhook the workflow's current version declares, with what was made of it: its
    URL (None until its first signing secret), its secrets (newest first) and deliveries."""

    name: str
    url: str | None
    params: dict[str, Any]
    secrets: list[SigningSecret]
    deliveries: int
    last_delivery_at: dt.datetime | None


def webhooks_of(workflow: Workflow) -> list[DeclaredWebhook]:
    """Each webhook the workflow declares, in the spec's order (read in the tenant's scope:
    REST, GraphQL and the portal show this)."""
    declared = declared_webhooks(workflow)
    made = {
        w.name: w
        for w in Webhook.objects.filter(workflow=workflow, name__in=list(declared)).annotate(
            delivered=Count("deliveries"), last=Max("deliveries__received_at")
        )
    }
    now = timezone.now()
    secrets_by_webhook: dict[int, list[SigningSecret]] = {}
    for secret in WebhookSecret.objects.filter(webhook__in=list(made.values())).order_by("-id"):
        secrets_by_webhook.setdefault(secret.webhook_id, []).append(
            SigningSecret(
                id=secret.pk,
                prefix=secret.prefix,
                created_at=secret.created_at,
                expires_at=secret.expires_at,
                expired=secret.expires_at is not None and secret.expires_at <= now,
            )
        )
    out = []
    for name, spec in declared.items():
        webhook = made.get(name)
        out.append(
            DeclaredWebhook(
                name=name,
                url=webhook_url(webhook) if webhook is not None else None,
                params=dict(spec.params),
                secrets=secrets_by_webhook.get(webhook.pk, []) if webhook is not None else [],
                deliveries=getattr(webhook, "delivered", 0),
                last_delivery_at=getattr(webhook, "last", None),
            )
        )
    return out


def get_secret(workflow: Workflow, name: str, secret_id: int | str) -> WebhookSecret:
    """One signing secret of the workflow's webhook `name` (NotFound otherwise)."""
    number = ascii_int(secret_id)
    secret = (
        WebhookSecret.objects.select_related("webhook__workflow", "webhook__tenant")
        .filter(pk=number, webhook__workflow=workflow, webhook__name=name)
        .first()
        if number is not None
        else None
    )
    if secret is None:
        raise NotFound(
            f"webhook {name!r} of workflow {workflow.name!r} has no signing secret {secret_id!r}"
        )
    return secret


# --- secrets ------------------------------------------------------------------------------


@transaction.atomic
def create_secret(
    *, actor: Actor, workflow: Workflow, name: str, overlap: Any = DEFAULT_OVERLAP
) -> tuple[Webhook, WebhookSecret, str]:
    """A new signing secret for the workflow's webhook `name` (made on its first secret,
    with its URL). Older secrets stay valid for `overlap` seconds more (0: they stop at
    once), so senders can switch without losing a delivery. The secret is returned this
    once; only its prefix is kept readable."""
    authorize(actor, "webhook.manage", workflow.tenant)
    declared = declared_webhooks(workflow)
    if name not in declared:
        accepted = ", ".join(declared) or "none (add triggers: [{webhook: {name: ...}}])"
        raise NotFound(
            f"workflow {workflow.name!r} declares no webhook {name!r}; it declares: {accepted}"
        )
    if isinstance(overlap, bool) or not isinstance(overlap, int) or not 0 <= overlap <= 30 * 86400:
        raise Invalid([("overlap", "seconds the older secrets stay valid: 0 to 2592000 (30 days)")])
    now = timezone.now()
    webhook, _ = Webhook.objects.dangerously_unscoped().get_or_create(
        tenant_id=workflow.tenant_id,
        workflow=workflow,
        name=name,
        defaults={"uid": secrets.token_urlsafe(24)},
    )
    older = WebhookSecret.objects.dangerously_unscoped().filter(webhook=webhook)
    ends = now + dt.timedelta(seconds=overlap)
    older.filter(Q(expires_at__isnull=True) | Q(expires_at__gt=ends)).update(expires_at=ends)
    plaintext = SECRET_PREFIX + secrets.token_urlsafe(32)
    secret = WebhookSecret.objects.dangerously_unscoped().create(
        tenant_id=workflow.tenant_id,
        webhook=webhook,
        secret_encrypted=crypto.encrypt(plaintext),
        prefix=plaintext[: len(SECRET_PREFIX) + 6],
        created_by_id=actor.user_id,
    )
    audit.record(
        actor=actor,
        action="webhook.secret_create",
        tenant=workflow.tenant,
        obj=secret,
        object_repr=f"{workflow.name} webhook {name}",
        after={"workflow": workflow.name, "webhook": name, "prefix": secret.prefix},
        extra={"older_secrets_expire_at": ends.isoformat()},
    )
    return webhook, secret, plaintext


@transaction.atomic
def delete_secret(*, actor: Actor, secret: WebhookSecret) -> None:
    """Revoke a signing secret at once."""
    webhook = secret.webhook
    authorize(actor, "webhook.manage", webhook.tenant)
    audit.record(
        actor=actor,
        action="webhook.secret_delete",
        tenant=webhook.tenant,
        obj=secret,
        object_repr=f"{webhook.workflow.name} webhook {webhook.name}",
        before={
            "workflow": webhook.workflow.name,
            "webhook": webhook.name,
            "prefix": secret.prefix,
        },
    )
    secret.delete()


# --- deliveries ---------------------------------------------------------------------------


UNAUTHORIZED = (
    401,
    "Unauthorized",
    f"a webhook POST needs a valid {SIGNATURE_HEADER} header (t=<unix seconds>,v1=<hex "
    "HMAC-SHA256 of '<t>.' + body>) from one of the webhook's secrets, within the replay "
    "window (docs/events.md)",
)


def _signature(header: str) -> tuple[int | None, list[str]]:
    timestamp: int | None = None
    offered: list[str] = []
    for part in header.split(","):
        key, _, value = part.strip().partition("=")
        if key == "t" and value.isdigit():
            timestamp = int(value)
        elif key == "v1" and value:
            offered.append(value.strip().lower())
    return timestamp, offered


def _live_webhook(uid: str) -> tuple[Webhook | None, list[bytes]]:
    """The webhook and its valid secrets' keys; (None, []) when no POST to it may count."""
    webhook = (
        Webhook.objects.dangerously_unscoped()
        .select_related("workflow", "tenant")
        .filter(uid=uid, tenant__archived_at__isnull=True)
        .first()
    )
    if webhook is None or webhook.name not in declared_webhooks(webhook.workflow):
        return None, []
    now = timezone.now()
    keys = [
        crypto.decrypt(encrypted).encode()
        for encrypted in WebhookSecret.objects.dangerously_unscoped()
        .filter(webhook=webhook)
        .filter(Q(expires_at__isnull=True) | Q(expires_at__gt=now))
        .values_list("secret_encrypted", flat=True)
    ]
    return (webhook, keys) if keys else (None, [])


def _verified(webhook_keys: list[bytes], header: str, body: bytes) -> bool:
    timestamp, offered = _signature(header)
    if timestamp is None or not offered:
        return False
    fresh = abs(time.time() - timestamp) <= settings.WEBHOOK_TOLERANCE_SECONDS
    matched = False
    for key in webhook_keys or [_UNKNOWN_KEY]:  # the same work for an unknown URL
        expected = _digest(key, timestamp, body)
        for candidate in offered:
            matched |= hmac.compare_digest(expected, candidate)
    return matched and fresh and bool(webhook_keys)


def too_large() -> Received:
    return hooks.too_large(f"a webhook body is at most {settings.WEBHOOK_MAX_BYTES} bytes")


def receive(*, uid: str, headers: Mapping[str, str], body: bytes) -> Received:
    """Check one POST to /hooks/<uid> and start its run (see the module's docstring)."""
    if len(body) > settings.WEBHOOK_MAX_BYTES:
        return too_large()
    try:
        charge_webhook(uid, settings.WEBHOOK_RATE_LIMIT)
    except RateLimited as exc:
        return rate_limited(exc)
    header = headers.get(SIGNATURE_HEADER, "")
    webhook, keys = _live_webhook(uid)
    if webhook is None or not _verified(keys, header, body):
        return problem(*UNAUTHORIZED)
    try:
        data = json.loads(body)
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        return problem(400, "Bad Request", f"the body is not JSON: {exc}", [("", str(exc))])
    if not isinstance(data, dict):
        wrong = f"the body must be a JSON object, not {type(data).__name__}"
        return problem(400, "Bad Request", wrong, [("", "expected a JSON object")])
    with tenant_scope([webhook.tenant_id]):
        return _start(webhook, headers, header, data)


def _delivery_key(headers: Mapping[str, str], signature: str, data: Any) -> tuple[str, str]:
    """(what identifies the delivery, its SHA-256 as stored)."""
    given = headers.get("Idempotency-Key", "").strip()
    if given:
        key = f"idempotency-key:{given}"
    elif isinstance(data, dict) and isinstance(data.get("id"), str | int) and data["id"] != "":
        key = f"id:{data['id']}"
    else:
        key = f"signature:{signature}"
    return key, hashlib.sha256(key.encode()).hexdigest()


def _start(webhook: Webhook, headers: Mapping[str, str], signature: str, data: Any) -> Received:
    key, digest = _delivery_key(headers, signature, data)
    earlier = WebhookDelivery.objects.dangerously_unscoped().filter(webhook=webhook, key=digest)
    if (found := earlier.first()) is not None:
        return _duplicate(found)
    workflow = webhook.workflow
    if workflow.paused:
        return problem(409, "Conflict", f"workflow {workflow.name!r} is paused: nothing started")
    envelope = {
        "specversion": "1.0",
        "id": key.partition(":")[2] if not key.startswith("signature:") else str(uuid.uuid4()),
        "source": f"/tenants/{webhook.tenant.slug}/workflows/{workflow.name}"
        f"/webhooks/{webhook.name}",
        "type": "webhook.received",
        "time": timezone.now().isoformat(),
        "datacontenttype": "application/json",
        "data": data,
    }
    spec = declared_webhooks(workflow)[webhook.name]
    try:
        params = render_value(spec.params, {"event": envelope}, native=True)
    except TemplateError as exc:
        return problem(
            400, "Bad Request", f"the webhook's params could not be rendered from the body: {exc}"
        )
    try:
        with transaction.atomic():
            delivery = WebhookDelivery.objects.dangerously_unscoped().create(
                tenant_id=webhook.tenant_id, webhook=webhook, key=digest
            )
            run = trigger_run(
                actor=Actor.system(),
                workflow=workflow,
                params=params,
                source=WorkflowRun.Source.WEBHOOK,
                event=envelope,
            ).run
            delivery.run = run
            delivery.save(update_fields=["run"])
    except IntegrityError:  # the same delivery, committed first by a concurrent request
        found = earlier.first()
        if found is None:
            raise
        return _duplicate(found)
    except Invalid as exc:
        return problem(400, "Bad Request", "the run's params are invalid", exc.errors)
    except Conflict as exc:
        return problem(409, "Conflict", exc.message)
    return Received(202, {"run_id": run.pk, "state": run.state, "duplicate": False})


def _duplicate(delivery: WebhookDelivery) -> Received:
    if delivery.run_id is None:  # its run was deleted since
        return Received(200, {"run_id": None, "state": None, "duplicate": True})
    state = (
        WorkflowRun.objects.dangerously_unscoped()
        .filter(pk=delivery.run_id)
        .values_list("state", flat=True)
        .first()
    )
    return Received(200, {"run_id": delivery.run_id, "state": state, "duplicate": True})
