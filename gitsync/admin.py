"""Admin for platform staff: every tenant's git sources with their last sync (commit,
status, error), read-only and never a webhook secret (only its prefix). Changes go
through the API or the portal (audited there)."""

from __future__ import annotations

from django.contrib import admin

from gitsync.models import GitSource
from orchestrator.admin import TenantRowsAdmin

__all__ = ["GitSourceAdmin"]


@admin.register(GitSource)
class GitSourceAdmin(TenantRowsAdmin):
    list_display = (
        "name",
        "tenant",
        "url",
        "branch",
        "interval_seconds",
        "last_status",
        "last_commit",
        "last_synced_at",
    )
    list_filter = ("tenant", "last_status")
    search_fields = ("name", "url", "tenant__slug")
    fields = readonly_fields = (
        "tenant",
        "name",
        "url",
        "branch",
        "path",
        "deploy_key",
        "prune",
        "interval_seconds",
        "webhook_uid",
        "webhook_secret_prefix",
        "last_commit",
        "last_synced_at",
        "last_status",
        "last_error",
        "last_changes",
        "sync_queued_at",
        "created_at",
        "updated_at",
    )
