"""Every change to notification channels and rules: keyword-only, transactional, authorised
by the policy and audited in the same transaction (REST, GraphQL, the admin and the demo
all call these). A channel's URL and signing secret are encrypted before they are stored
and never returned; the audit log shows that one changed, masked."""

from __future__ import annotations

import re
from collections.abc import Sequence
from typing import Any
from urllib.parse import urlsplit

from django.core.exceptions import ValidationError
from django.core.validators import validate_email
from django.db import IntegrityError, transaction

from notifications import messages, transports
from notifications.models import Channel, Rule
from orchestrator import audit, crypto
from orchestrator.actors import Actor
from orchestrator.context import tenant_scope
from orchestrator.errors import Conflict, FieldError, Invalid
from orchestrator.models import Tenant
from orchestrator.policy import authorize
from workflows.durations import ACCEPTED as DURATIONS
from workflows.durations import parse_duration
from workflows.models import Workflow
from workflows.spec import EVENT_TYPES, NAME_PATTERN, WorkflowSpec

__all__ = [
    "UNSET",
    "check_notify_channels",
    "create_channel",
    "create_rule",
    "delete_channel",
    "delete_rule",
    "rotate_secret",
    "test_channel",
    "update_channel",
    "update_rule",
]

UNSET: Any = object()
NAMES = "lowercase letters, digits, - and _, starting with a letter or digit, at most 63 characters"
MAX_RECIPIENTS = 50
MAX_QUIET_SECONDS = 86400
CHANNEL_FIELDS = ["name", "kind", "description", "enabled", "recipients", "url_hint"]
RULE_FIELDS = ["name", "description", "enabled", "event_types", "workflows", "tags", "quiet_period"]


# --- checks ------------------------------------------------------------------------------


def _name_errors(name: Any) -> list[FieldError]:
    if not isinstance(name, str) or not re.match(NAME_PATTERN, name):
        return [("name", f"{name!r} is not a valid name; accepted: {NAMES}")]
    return []


def _url_errors(tenant: Tenant, kind: str, url: Any) -> list[FieldError]:
    if kind == Channel.Kind.EMAIL:
        return [("url", "an email channel has no url: give recipients")] if url else []
    if not isinstance(url, str) or not url:
        return [("url", f"a {kind} channel needs its url (https://...)")]
    if len(url) > 2000:
        return [("url", "too long: at most 2000 characters")]
    why = transports.check_url(url, transports.allowed_hosts(tenant))
    return [("url", why)] if why else []


def _recipient_errors(kind: str, recipients: Any) -> list[FieldError]:
    if kind != Channel.Kind.EMAIL:
        return [("recipients", f"a {kind} channel has no recipients")] if recipients else []
    if not isinstance(recipients, list) or not 1 <= len(recipients) <= MAX_RECIPIENTS:
        return [("recipients", f"a list of 1 to {MAX_RECIPIENTS} email addresses")]
    errors: list[FieldError] = []
    for index, address in enumerate(recipients):
        try:
            validate_email(address)
        except (ValidationError, TypeError):
            errors.append((f"recipients[{index}]", f"{address!r} is not an email address"))
    return errors


def _open(ciphertext: str) -> str | None:
    """The clear text ("" when empty), None when no configured key opens it."""
    if not ciphertext:
        return ""
    try:
        return crypto.decrypt(ciphertext)
    except crypto.DecryptionError:
        return None


def _hint(url: str) -> str:
    """What may be shown of a URL: its scheme and host (a Slack URL's path is its key)."""
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc.rpartition('@')[2]}/…" if url else ""


def _masked(channel: Channel) -> dict[str, str]:
    return {
        "url": audit.MASK if channel.url_encrypted else "",
        "signing_secret": audit.MASK if channel.signing_secret_encrypted else "",
    }


def _stamp(obj: Channel | Rule, actor: Actor, *, created: bool) -> None:
    if created:
        obj.created_by_id = actor.user_id
    obj.updated_by_id = actor.user_id


def _save_new(obj: Channel | Rule, what: str) -> None:
    try:
        with transaction.atomic():  # two creators racing for one name: the loser gets a 409
            obj.save()
    except IntegrityError:
        raise Conflict(f"{what} exists; choose another name, or update it") from None


# --- channels ----------------------------------------------------------------------------


@transaction.atomic
def create_channel(
    *,
    actor: Actor,
    tenant: Tenant,
    name: str,
    kind: str,
    description: str = "",
    enabled: bool = True,
    url: str | None = None,
    recipients: Sequence[str] | None = None,
) -> tuple[Channel, str | None]:
    """The channel, and a webhook's signing secret (shown this once; None otherwise)."""
    authorize(actor, "notification_channel.manage", tenant)
    if kind not in Channel.Kind.values:
        raise Invalid(
            [("kind", f"{kind!r} is not a channel kind; accepted: slack, email, webhook")]
        )
    recipients = list(recipients or [])
    errors = (
        _name_errors(name) + _url_errors(tenant, kind, url) + _recipient_errors(kind, recipients)
    )
    if errors:
        raise Invalid(errors)
    secret = transports.new_secret() if kind == Channel.Kind.WEBHOOK else None
    channel = Channel(
        tenant=tenant,
        name=name,
        kind=kind,
        description=description,
        enabled=enabled,
        recipients=recipients,
        url_encrypted=crypto.encrypt(url) if url else "",
        url_hint=_hint(url or ""),
        signing_secret_encrypted=crypto.encrypt(secret) if secret else "",
    )
    _stamp(channel, actor, created=True)
    _save_new(channel, f"notification channel {name!r}")
    after = {**audit.snapshot(channel, CHANNEL_FIELDS), **_masked(channel)}
    audit.record(
        actor=actor, action="notification_channel.create", tenant=tenant, obj=channel, after=after
    )
    return channel, secret


@transaction.atomic
def update_channel(
    *,
    actor: Actor,
    channel: Channel,
    name: str = UNSET,
    description: str = UNSET,
    enabled: bool = UNSET,
    url: str = UNSET,
    recipients: Sequence[str] = UNSET,
) -> Channel:
    """Change what is given (a channel's kind cannot change: make another channel)."""
    authorize(actor, "notification_channel.manage", channel.tenant)
    row = Channel.objects.dangerously_unscoped().select_for_update(no_key=True).get(pk=channel.pk)
    before = {**audit.snapshot(row, CHANNEL_FIELDS), **_masked(row)}
    errors: list[FieldError] = []
    if name is not UNSET:
        errors += _name_errors(name)
        row.name = name
    if description is not UNSET:
        row.description = description
    if enabled is not UNSET:
        row.enabled = enabled
    if recipients is not UNSET:
        errors += _recipient_errors(row.kind, list(recipients))
        row.recipients = list(recipients)
    url_changed = False
    if url is not UNSET:
        problems = _url_errors(row.tenant, row.kind, url)
        errors += problems
        url_changed = not problems and bool(url) and _open(row.url_encrypted) != url
    if errors:
        raise Invalid(errors)
    if url_changed:
        row.url_encrypted, row.url_hint = crypto.encrypt(url), _hint(url)
    after = {**audit.snapshot(row, CHANNEL_FIELDS), **_masked(row)}
    if after == before and not url_changed:
        return row
    if url_changed:  # the diff names the field without either value
        before["url"], after["url"] = audit.MASK + " (old)", audit.MASK + " (new)"
    _stamp(row, actor, created=False)
    try:
        with transaction.atomic():
            row.save()
    except IntegrityError:
        raise Conflict(f"notification channel {row.name!r} exists; choose another name") from None
    audit.record(
        actor=actor,
        action="notification_channel.update",
        tenant=row.tenant,
        obj=row,
        before=before,
        after=after,
    )
    return row


@transaction.atomic
def rotate_secret(*, actor: Actor, channel: Channel) -> str:
    """A new signing secret for a webhook channel (shown this once); the old one stops
    working at once."""
    authorize(actor, "notification_channel.manage", channel.tenant)
    if channel.kind != Channel.Kind.WEBHOOK:
        raise Conflict(f"channel {channel.name!r} is a {channel.kind} channel: only webhooks sign")
    row = Channel.objects.dangerously_unscoped().select_for_update(no_key=True).get(pk=channel.pk)
    secret = transports.new_secret()
    row.signing_secret_encrypted = crypto.encrypt(secret)
    _stamp(row, actor, created=False)
    row.save(update_fields=["signing_secret_encrypted", "updated_by", "updated_at"])
    audit.record(
        actor=actor,
        action="notification_channel.rotate_secret",
        tenant=row.tenant,
        obj=row,
        before={"signing_secret": audit.MASK + " (old)"},
        after={"signing_secret": audit.MASK + " (new)"},
    )
    return secret


@transaction.atomic
def delete_channel(*, actor: Actor, channel: Channel) -> None:
    """Refused while a workflow's spec names it in notify.channels; its deliveries go with
    it (the audit log keeps the channel's metadata)."""
    authorize(actor, "notification_channel.manage", channel.tenant)
    users = sorted(
        w.name
        for w in Workflow.objects.dangerously_unscoped()
        .filter(tenant_id=channel.tenant_id, deleted_at__isnull=True)
        .select_related("current_version")
        if w.current_version is not None
        and channel.name in ((w.current_version.spec or {}).get("notify") or {}).get("channels", [])
    )
    if users:
        raise Conflict(
            f"channel {channel.name!r} is named in notify.channels of workflow(s) "
            f"{', '.join(users)}: change those specs first"
        )
    before = {**audit.snapshot(channel, CHANNEL_FIELDS), **_masked(channel)}
    audit.record(
        actor=actor,
        action="notification_channel.delete",
        tenant=channel.tenant,
        obj=channel,
        before=before,
    )
    channel.delete()


def test_channel(*, actor: Actor, channel: Channel) -> tuple[bool, str]:
    """Send a test message now; (sent, the transport's answer or why not). Changes nothing,
    so no audit event."""
    authorize(actor, "notification_channel.manage", channel.tenant)
    try:
        return True, transports.send(channel, messages.test_message(channel))
    except transports.TransportError as exc:
        kind = "permanent" if exc.permanent else "temporary"
        return False, f"{exc} ({kind} error)"


# --- rules -------------------------------------------------------------------------------


def _list_of_strings(path: str, value: Any) -> tuple[list[str], list[FieldError]]:
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        return [], [(path, "a list of strings")]
    return list(dict.fromkeys(value)), []


def _rule_values(tenant: Tenant, given: dict[str, Any]) -> tuple[dict[str, Any], list[FieldError]]:
    """Checked values of the rule fields given; channels resolved to rows."""
    values: dict[str, Any] = {}
    errors: list[FieldError] = []
    if "name" in given:
        errors += _name_errors(given["name"])
        values["name"] = given["name"]
    for key in ("event_types", "workflows", "tags", "channels"):
        if key in given:
            values[key], problems = _list_of_strings(key, given[key])
            errors += problems
    for index, kind in enumerate(values.get("event_types", [])):
        if kind not in EVENT_TYPES:
            errors.append(
                (
                    f"event_types[{index}]",
                    f"{kind!r} is not an event type; accepted: {', '.join(EVENT_TYPES)}",
                )
            )
    if "channels" in values:
        found = {
            c.name: c
            for c in Channel.objects.dangerously_unscoped().filter(
                tenant=tenant, name__in=values["channels"]
            )
        }
        for index, name in enumerate(values["channels"]):
            if name not in found:
                errors.append((f"channels[{index}]", _unknown_channel(tenant, name)))
        if not values["channels"]:
            errors.append(("channels", "name at least one channel"))
        values["channels"] = [found[n] for n in values["channels"] if n in found]
    if "quiet_period" in given:
        try:
            seconds = parse_duration(given["quiet_period"])
        except (TypeError, ValueError) as exc:
            errors.append(("quiet_period", f"{exc}; accepted: {DURATIONS}"))
        else:
            if not 0 <= seconds <= MAX_QUIET_SECONDS:
                errors.append(
                    ("quiet_period", f"between 0 and {MAX_QUIET_SECONDS} seconds (1 day)")
                )
            values["quiet_period"] = seconds
    for key in ("description", "enabled"):
        if key in given:
            values[key] = given[key]
    return values, errors


def _unknown_channel(tenant: Tenant, name: str) -> str:
    names = sorted(
        Channel.objects.dangerously_unscoped().filter(tenant=tenant).values_list("name", flat=True)
    )
    have = (
        f"this tenant's channels: {', '.join(names)}"
        if names
        else "this tenant has no channels yet"
    )
    return f"no notification channel named {name!r} ({have})"


def _rule_snapshot(rule: Rule) -> dict[str, Any]:
    with tenant_scope([rule.tenant_id]):  # the channels' manager is tenant-scoped
        channels = sorted(rule.channels.values_list("name", flat=True))
    return {**audit.snapshot(rule, RULE_FIELDS), "channels": channels}


@transaction.atomic
def create_rule(
    *,
    actor: Actor,
    tenant: Tenant,
    name: str,
    channels: Sequence[str],
    event_types: Sequence[str] = (),
    workflows: Sequence[str] = (),
    tags: Sequence[str] = (),
    quiet_period: int | str = 0,
    description: str = "",
    enabled: bool = True,
) -> Rule:
    authorize(actor, "notification_rule.manage", tenant)
    given = {
        "name": name,
        "channels": list(channels),
        "event_types": list(event_types),
        "workflows": list(workflows),
        "tags": list(tags),
        "quiet_period": quiet_period,
        "description": description,
        "enabled": enabled,
    }
    values, errors = _rule_values(tenant, given)
    if errors:
        raise Invalid(errors)
    chosen = values.pop("channels")
    rule = Rule(tenant=tenant, **values)
    _stamp(rule, actor, created=True)
    _save_new(rule, f"notification rule {name!r}")
    with tenant_scope([tenant.pk]):
        rule.channels.set(chosen)
    audit.record(
        actor=actor,
        action="notification_rule.create",
        tenant=tenant,
        obj=rule,
        after=_rule_snapshot(rule),
    )
    return rule


@transaction.atomic
def update_rule(*, actor: Actor, rule: Rule, **given: Any) -> Rule:
    """Change the fields given (name, description, enabled, event_types, workflows, tags,
    channels, quiet_period)."""
    authorize(actor, "notification_rule.manage", rule.tenant)
    row = Rule.objects.dangerously_unscoped().select_for_update(no_key=True).get(pk=rule.pk)
    before = _rule_snapshot(row)
    values, errors = _rule_values(row.tenant, given)
    if errors:
        raise Invalid(errors)
    chosen = values.pop("channels", None)
    for key, value in values.items():
        setattr(row, key, value)
    _stamp(row, actor, created=False)
    try:
        with transaction.atomic():
            row.save()
    except IntegrityError:
        raise Conflict(f"notification rule {row.name!r} exists; choose another name") from None
    if chosen is not None:
        with tenant_scope([row.tenant_id]):
            row.channels.set(chosen)
    after = _rule_snapshot(row)
    if after != before:
        audit.record(
            actor=actor,
            action="notification_rule.update",
            tenant=row.tenant,
            obj=row,
            before=before,
            after=after,
        )
    return row


@transaction.atomic
def delete_rule(*, actor: Actor, rule: Rule) -> None:
    authorize(actor, "notification_rule.manage", rule.tenant)
    audit.record(
        actor=actor,
        action="notification_rule.delete",
        tenant=rule.tenant,
        obj=rule,
        before=_rule_snapshot(rule),
    )
    rule.delete()


# --- the workflow spec ---------------------------------------------------------------------


def check_notify_channels(tenant: Tenant, spec: WorkflowSpec) -> list[FieldError]:
    """At apply: every channel a spec's notify names is one of the tenant's."""
    if spec.notify is None:
        return []
    have = set(
        Channel.objects.dangerously_unscoped()
        .filter(tenant=tenant, name__in=spec.notify.channels)
        .values_list("name", flat=True)
    )
    return [
        (f"notify.channels[{index}]", _unknown_channel(tenant, name))
        for index, name in enumerate(spec.notify.channels)
        if name not in have
    ]
