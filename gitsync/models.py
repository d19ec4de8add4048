"""Git repositories a tenant syncs its workflows from (GitOps pull mode, docs/gitops.md).
Data and constraints only: gitsync.services changes them."""

from __future__ import annotations

from typing import ClassVar

from django.db import models
from django.db.models import Q

from orchestrator.models import TenantOwnedModel

__all__ = ["GitSource"]


class GitSource(TenantOwnedModel):
    """A branch of a repository whose spec files (under `path`) the tenant's workflows
    follow: synced on a push webhook (/hooks/git/<webhook_uid>, signed with the webhook
    secret), every `interval_seconds`, or when asked. `last_*` is the newest sync's
    outcome; `sync_queued_at` keeps the schedule from queueing a source twice."""

    class Status(models.TextChoices):
        NEVER = "", "never synced"
        OK = "ok", "ok"
        FAILED = "failed", "failed"

    AUDIT_SECRET_FIELDS: ClassVar = {"webhook_secret_encrypted"}
    ENCRYPTED_FIELDS: ClassVar = ("webhook_secret_encrypted",)  # rotate_keys

    name = models.CharField(max_length=63)
    url = models.CharField(max_length=500)
    branch = models.CharField(max_length=255, default="main")
    path = models.CharField(max_length=500, blank=True, default="")
    # The name of a tenant secret (connections) holding an SSH private key; "" for none.
    deploy_key = models.CharField(max_length=63, blank=True, default="")
    prune = models.BooleanField(default=False)
    interval_seconds = models.PositiveIntegerField(default=0)  # 0: no schedule
    webhook_uid = models.CharField(max_length=64, unique=True, editable=False)
    webhook_secret_encrypted = models.TextField(editable=False)
    webhook_secret_prefix = models.CharField(max_length=16, editable=False)
    last_commit = models.CharField(max_length=40, blank=True, default="")
    last_synced_at = models.DateTimeField(null=True, blank=True)
    last_status = models.CharField(
        max_length=8, choices=Status.choices, blank=True, default=Status.NEVER
    )
    last_error = models.TextField(blank=True, default="")
    # What the newest sync did: [{"workflow", "path", "action", "version"}] (no diffs).
    last_changes = models.JSONField(default=list, blank=True)
    sync_queued_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints: ClassVar = [
            models.UniqueConstraint(fields=["tenant", "name"], name="gitsource_unique_name"),
            models.CheckConstraint(
                condition=Q(interval_seconds=0) | Q(interval_seconds__gte=60),
                name="gitsource_interval_0_or_60",
            ),
            models.CheckConstraint(
                condition=Q(last_status__in=["", "ok", "failed"]), name="gitsource_status"
            ),
        ]
        indexes: ClassVar = [
            models.Index(
                fields=["last_synced_at"],
                condition=Q(interval_seconds__gt=0),
                name="gitsource_scheduled",
            ),
        ]
        ordering: ClassVar = ["name"]

    def __str__(self) -> str:
        return self.name

    @property
    def actor_name(self) -> str:
        """How the audit log names the syncs of this source: `gitsync:<name>`."""
        return f"gitsync:{self.name}"
