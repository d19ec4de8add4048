"""Serializers translate; they decide nothing (connections.services does). Secret values
are write-only fields: no serializer here can output one."""

from __future__ import annotations

from typing import Any

from rest_framework import serializers

from orchestrator.api.base import StrictSerializer

__all__ = [
    "CheckResultSerializer",
    "ConnectionSerializer",
    "ConnectionUpdateSerializer",
    "SecretSerializer",
    "SecretUpdateSerializer",
    "VariableSerializer",
    "VariableUpdateSerializer",
]


class _Stamps(StrictSerializer):
    id = serializers.IntegerField(read_only=True)
    created_at = serializers.DateTimeField(read_only=True)
    updated_at = serializers.DateTimeField(read_only=True)
    created_by = serializers.CharField(
        source="created_by.username", read_only=True, allow_null=True
    )
    updated_by = serializers.CharField(
        source="updated_by.username", read_only=True, allow_null=True
    )


class ConnectionSerializer(_Stamps):
    name = serializers.CharField(max_length=63)
    kind = serializers.CharField(max_length=16, help_text="postgres, mysql, sqlite or http")
    host = serializers.CharField(max_length=255, required=False, allow_blank=True)
    port = serializers.IntegerField(required=False, allow_null=True)
    database = serializers.CharField(
        max_length=1000, required=False, allow_blank=True, help_text="sqlite: the file's path"
    )
    login = serializers.CharField(max_length=200, required=False, allow_blank=True)
    password = serializers.CharField(
        write_only=True,
        required=False,
        allow_blank=True,
        trim_whitespace=False,
        help_text='Write-only. Omit to keep the stored one; "" clears it.',
    )
    has_password = serializers.BooleanField(read_only=True)
    extra = serializers.JSONField(
        write_only=True,
        required=False,
        help_text="Write-only object of settings (sslmode, scheme, auth, headers...); "
        "stored encrypted. When given, it replaces the stored object.",
    )
    extra_keys = serializers.ListField(child=serializers.CharField(), read_only=True)
    description = serializers.CharField(max_length=500, required=False, allow_blank=True)


class ConnectionUpdateSerializer(ConnectionSerializer):
    """A connection keeps its name: tasks refer to it by name."""

    def get_fields(self) -> dict[str, Any]:
        fields: dict[str, Any] = super().get_fields()
        fields.pop("name")
        return fields


class VariableSerializer(_Stamps):
    name = serializers.CharField(max_length=63)
    value = serializers.CharField(allow_blank=True, trim_whitespace=False)
    description = serializers.CharField(max_length=500, required=False, allow_blank=True)


class VariableUpdateSerializer(VariableSerializer):
    def get_fields(self) -> dict[str, Any]:
        fields: dict[str, Any] = super().get_fields()
        fields.pop("name")
        return fields


class SecretSerializer(_Stamps):
    name = serializers.CharField(max_length=63)
    value = serializers.CharField(
        write_only=True,
        allow_blank=True,
        trim_whitespace=False,
        help_text="Write-only: never returned by any interface.",
    )
    description = serializers.CharField(max_length=500, required=False, allow_blank=True)


class SecretUpdateSerializer(SecretSerializer):
    def get_fields(self) -> dict[str, Any]:
        fields: dict[str, Any] = super().get_fields()
        fields.pop("name")
        return fields


class CheckResultSerializer(serializers.Serializer[Any]):
    ok = serializers.BooleanField()
    message = serializers.CharField()
