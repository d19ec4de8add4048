"""Admin for platform staff: notification channels, rules, deliveries, SLA misses and the
outbox's events, all read-only. Changes go through
the API (audited there). No channel's URL or signing secret is a field of these pages,
not even encrypted: only the URL's hint (scheme and host)."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.db.models import Prefetch, QuerySet
from django.http import HttpRequest

from notifications.models import Channel, Delivery, Rule, SlaMiss
from orchestrator.admin import TenantRowsAdmin
from runs.models import Event

__all__ = ["ChannelAdmin", "DeliveryAdmin", "EventAdmin", "RuleAdmin", "SlaMissAdmin"]

STAMPS = ("description", "created_at", "created_by", "updated_at", "updated_by")


_Admin = TenantRowsAdmin


@admin.register(Channel)
class ChannelAdmin(_Admin):
    list_display = ("name", "tenant", "kind", "enabled", "url_hint", "updated_at")
    list_filter = ("tenant", "kind", "enabled")
    search_fields = ("name", "description", "tenant__slug")
    fields = readonly_fields = (
        "tenant",
        "name",
        "kind",
        "enabled",
        "url_hint",
        "recipients",
        "has_signing_secret",
        *STAMPS,
    )

    @admin.display(boolean=True, description="signing secret set")
    def has_signing_secret(self, obj: Channel) -> bool:
        return bool(obj.signing_secret_encrypted)


@admin.register(Rule)
class RuleAdmin(_Admin):
    list_display = ("name", "tenant", "enabled", "channel_names", "quiet_period", "updated_at")
    list_filter = ("tenant", "enabled")
    search_fields = ("name", "description", "tenant__slug")
    fields = readonly_fields = (
        "tenant",
        "name",
        "enabled",
        "event_types",
        "workflows",
        "tags",
        "channel_names",
        "quiet_period",
        *STAMPS,
    )

    def get_queryset(self, request: HttpRequest) -> QuerySet[Any]:
        channels = Channel.objects.dangerously_unscoped().order_by("name")  # no tenant in scope
        return super().get_queryset(request).prefetch_related(Prefetch("channels", channels))

    @admin.display(description="channels")
    def channel_names(self, obj: Rule) -> str:
        return ", ".join(channel.name for channel in obj.channels.all())


@admin.register(Delivery)
class DeliveryAdmin(_Admin):
    related = ("tenant", "channel", "rule", "event")
    list_display = ("id", "tenant", "channel", "event", "kind", "status", "attempts", "created_at")
    list_filter = ("tenant", "status", "kind")
    search_fields = ("key", "channel__name", "tenant__slug")
    fields = readonly_fields = (
        "tenant",
        "key",
        "event",
        "channel",
        "rule",
        "kind",
        "suppressed_count",
        "status",
        "attempts",
        "last_error",
        "response",
        "next_attempt_at",
        "claimed_at",
        "created_at",
        "sent_at",
    )


@admin.register(SlaMiss)
class SlaMissAdmin(_Admin):
    related = ("tenant", "workflow", "run", "event")
    list_display = ("id", "tenant", "workflow", "kind", "sla", "due_at", "detected_at")
    list_filter = ("tenant", "kind")
    search_fields = ("key", "workflow__name", "tenant__slug")
    fields = readonly_fields = (
        "tenant",
        "key",
        "kind",
        "workflow",
        "run",
        "task_id",
        "sla",
        "due_at",
        "detected_at",
        "event",
    )


@admin.register(Event)
class EventAdmin(_Admin):
    related = ("tenant", "workflow", "run")
    list_display = ("id", "tenant", "type", "workflow", "run", "time", "routed_at", "dispatched_at")
    list_filter = ("tenant", "type")
    search_fields = ("uid", "external_id", "subject", "workflow__name", "tenant__slug")
    fields = readonly_fields = (
        "tenant",
        "uid",
        "type",
        "time",
        "source",
        "subject",
        "external_id",
        "workflow",
        "run",
        "task_id",
        "data",
        "routed_at",
        "dispatched_at",
    )
