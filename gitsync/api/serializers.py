"""What the git-sources endpoints read and answer. They translate; gitsync.services
decides (its checks name the field and what it accepts)."""

from __future__ import annotations

from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from gitsync.models import GitSource
from gitsync.services import INTERVAL_MAX, webhook_url
from orchestrator.api.base import StrictSerializer
from orchestrator.api.serializers import FieldErrorSerializer
from workflows.api.serializers import PlannedChangeSerializer

__all__ = [
    "SYNC_STATUSES",
    "GitSourceCreatedSerializer",
    "GitSourceSerializer",
    "GitSourceUpdateSerializer",
    "SyncResultSerializer",
    "SyncSerializer",
]


# How a sync ended (its enum in the OpenAPI document: ENUM_NAME_OVERRIDES in settings).
SYNC_STATUSES = ("ok", "failed", "skipped")


class GitSourceSerializer(StrictSerializer):
    """A git source: where its specs are, how it syncs, and how its newest sync went."""

    id = serializers.IntegerField(read_only=True)
    name = serializers.CharField(
        max_length=100,
        help_text="lowercase letters, digits, - and _, at most 63 characters; fixed once made",
    )
    url = serializers.CharField(
        max_length=500,
        help_text="https://host/path, ssh://[user@]host[:port]/path or user@host:path",
    )
    branch = serializers.CharField(max_length=255, default="main")
    path = serializers.CharField(
        max_length=500,
        default="",
        allow_blank=True,
        help_text="the folder of spec files inside the repository (recursively); empty: all",
    )
    deploy_key = serializers.CharField(
        max_length=63,
        default="",
        allow_blank=True,
        help_text="the name of a tenant secret holding an SSH private key (ssh remotes)",
    )
    prune = serializers.BooleanField(
        default=False, help_text="delete the tenant's workflows no file defines"
    )
    interval_seconds = serializers.IntegerField(
        default=0,
        min_value=0,
        max_value=INTERVAL_MAX,
        help_text="sync this often (60 or more); 0: only on a push webhook or when asked",
    )
    webhook_url = serializers.SerializerMethodField(
        help_text="where the repository's push webhook posts"
    )
    webhook_secret_prefix = serializers.CharField(
        read_only=True, help_text="the start of the webhook secret, to tell secrets apart"
    )
    last_commit = serializers.CharField(
        read_only=True, help_text="the commit of the newest sync (40 hex digits); empty: none"
    )
    last_synced_at = serializers.DateTimeField(read_only=True, allow_null=True)
    last_status = serializers.CharField(
        read_only=True, help_text="ok, failed, or empty before the first sync"
    )
    last_error = serializers.CharField(
        read_only=True, help_text="why the newest sync failed: git's error, or the invalid files"
    )
    last_changes = serializers.JSONField(
        read_only=True,
        help_text="what the newest sync did: [{workflow, path, action, version}]",
    )
    created_at = serializers.DateTimeField(read_only=True)
    updated_at = serializers.DateTimeField(read_only=True)

    @extend_schema_field(serializers.CharField())
    def get_webhook_url(self, source: GitSource) -> str:
        return webhook_url(source)


class GitSourceCreatedSerializer(GitSourceSerializer):
    """A new source (or a rotated secret), with its webhook secret: shown this once."""

    webhook_secret = serializers.CharField(
        read_only=True, help_text="the push webhook's secret; only its prefix is shown again"
    )


class GitSourceUpdateSerializer(GitSourceSerializer):
    """A source keeps its name: versions and the audit log name it."""

    def get_fields(self) -> dict[str, Any]:
        fields: dict[str, Any] = super().get_fields()
        fields.pop("name")
        return fields


class SyncSerializer(StrictSerializer):
    """What a manual sync may ask."""

    force = serializers.BooleanField(
        default=False, help_text="apply even when the commit was synced already without error"
    )


class SyncResultSerializer(serializers.Serializer[Any]):
    status = serializers.ChoiceField(
        choices=SYNC_STATUSES,
        help_text="skipped: the commit was synced already without error",
    )
    commit = serializers.CharField(
        allow_null=True, help_text="the branch's commit; null when git could not read it"
    )
    changes = PlannedChangeSerializer(many=True, help_text="what the sync did to each workflow")
    error = serializers.CharField(allow_blank=True, help_text="why it failed; empty when not")

    def get_fields(self) -> dict[str, Any]:
        # `source` and `errors` are declared here: as class attributes they would hide
        # Field.source and Serializer.errors.
        fields: dict[str, Any] = super().get_fields()
        return {
            "source": serializers.CharField(help_text="the source's name"),
            **fields,
            "errors": FieldErrorSerializer(
                many=True, help_text="the invalid files' errors, each with its `file`"
            ),
        }
