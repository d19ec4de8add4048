"""Admin for platform staff: connections, variables and secrets, read-only metadata.
Changes go through the API (audited there); no value of a connection's password, its
extra or a secret is a field of these pages, not even masked."""

from __future__ import annotations

from typing import Any

from django.contrib import admin
from django.db.models import QuerySet
from django.http import HttpRequest

from connections.models import Connection, Secret, Variable
from orchestrator.admin import ReadOnlyAdmin

__all__ = ["ConnectionAdmin", "SecretAdmin", "VariableAdmin"]

STAMPS = ("description", "created_at", "created_by", "updated_at", "updated_by")


class _MetadataAdmin(ReadOnlyAdmin[Any]):
    search_fields = ("name", "description", "tenant__slug")

    def get_queryset(self, request: HttpRequest) -> QuerySet[Any]:
        manager: Any = self.model.objects
        return manager.dangerously_unscoped().select_related("tenant")  # type: ignore[no-any-return]

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Connection)
class ConnectionAdmin(_MetadataAdmin):
    list_display = ("name", "tenant", "kind", "host", "port", "database", "updated_at")
    list_filter = ("tenant", "kind")
    fields = readonly_fields = (
        "tenant",
        "name",
        "kind",
        "host",
        "port",
        "database",
        "login",
        "has_password",
        "extra_keys",
        *STAMPS,
    )

    @admin.display(boolean=True, description="password set")
    def has_password(self, obj: Connection) -> bool:
        return obj.has_password


@admin.register(Variable)
class VariableAdmin(_MetadataAdmin):
    list_display = ("name", "tenant", "value", "updated_at")
    list_filter = ("tenant",)
    fields = readonly_fields = ("tenant", "name", "value", *STAMPS)


@admin.register(Secret)
class SecretAdmin(_MetadataAdmin):
    list_display = ("name", "tenant", "updated_at")
    list_filter = ("tenant",)
    fields = readonly_fields = ("tenant", "name", *STAMPS)
