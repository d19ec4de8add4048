"""Admin for platform staff: webhooks (never a secret, not even encrypted: the prefixes and
expiries), the deliveries they accepted, datasets and their updates, and the OpenLineage
events with their sending status (what failed, and why), all read-only. Changes go through
the API (audited there)."""

from __future__ import annotations

from django.contrib import admin

from events.models import Webhook, WebhookDelivery, WebhookSecret
from orchestrator.admin import TenantRowsAdmin
from runs.models import Dataset, DatasetUpdate, LineageEvent

__all__ = [
    "DatasetAdmin",
    "DatasetUpdateAdmin",
    "LineageEventAdmin",
    "WebhookAdmin",
    "WebhookDeliveryAdmin",
]


@admin.register(Webhook)
class WebhookAdmin(TenantRowsAdmin):
    related = ("tenant", "workflow")
    list_display = ("name", "workflow", "tenant", "secrets_in_use", "created_at")
    list_filter = ("tenant",)
    search_fields = ("name", "workflow__name", "tenant__slug")
    fields = readonly_fields = ("tenant", "workflow", "name", "created_at", "secrets_in_use")

    @admin.display(description="secrets (prefix, expires)")
    def secrets_in_use(self, obj: Webhook) -> str:
        rows = WebhookSecret.objects.dangerously_unscoped().filter(webhook=obj)
        return ", ".join(
            f"{prefix}… ({expires.isoformat() if expires else 'until rotated'})"
            for prefix, expires in rows.values_list("prefix", "expires_at")
        )


@admin.register(WebhookDelivery)
class WebhookDeliveryAdmin(TenantRowsAdmin):
    related = ("tenant", "webhook__workflow", "run")
    list_display = ("id", "tenant", "webhook", "run", "received_at")
    list_filter = ("tenant",)
    search_fields = ("webhook__name", "webhook__workflow__name", "tenant__slug")
    fields = readonly_fields = ("tenant", "webhook", "key", "run", "received_at")


@admin.register(Dataset)
class DatasetAdmin(TenantRowsAdmin):
    list_display = ("name", "tenant", "created_at")
    list_filter = ("tenant",)
    search_fields = ("name", "tenant__slug")
    fields = readonly_fields = ("tenant", "name", "created_at")


@admin.register(DatasetUpdate)
class DatasetUpdateAdmin(TenantRowsAdmin):
    related = ("tenant", "dataset", "workflow", "run")
    list_display = ("id", "dataset", "tenant", "workflow", "run", "task_id", "created_at")
    list_filter = ("tenant",)
    search_fields = ("dataset__name", "workflow__name", "tenant__slug")
    fields = readonly_fields = (
        "tenant",
        "dataset",
        "workflow",
        "run",
        "task_id",
        "logical_date",
        "metadata",
        "created_at",
    )


@admin.register(LineageEvent)
class LineageEventAdmin(TenantRowsAdmin):
    related = ("tenant", "attempt__task_instance")
    list_display = ("id", "kind", "status", "tenant", "attempt", "attempts", "time", "sent_at")
    list_filter = ("status", "kind", "tenant")
    search_fields = ("tenant__slug", "last_error")
    fields = readonly_fields = (
        "tenant",
        "attempt",
        "kind",
        "time",
        "status",
        "attempts",
        "next_attempt_at",
        "sent_at",
        "last_error",
    )
