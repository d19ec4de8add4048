"""Workflows and their immutable versions."""

from __future__ import annotations

from typing import Any, ClassVar

from django.conf import settings
from django.db import models
from django.db.models import Q

from orchestrator.models import TenantOwnedModel

__all__ = ["Workflow", "WorkflowVersion"]


class Workflow(TenantOwnedModel):
    """A named workflow in a tenant. Deleting keeps the row (runs and history refer to it)
    and frees the name."""

    name = models.CharField(max_length=63)
    description = models.TextField(blank=True)
    tags = models.JSONField(default=list, blank=True)
    paused = models.BooleanField(default=False)
    current_version = models.ForeignKey(
        "WorkflowVersion", on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    deleted_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints: ClassVar = [
            models.UniqueConstraint(
                fields=["tenant", "name"],
                condition=Q(deleted_at__isnull=True),
                name="workflow_unique_live_name",
            ),
        ]
        indexes: ClassVar = [models.Index(fields=["tenant", "name"])]
        ordering: ClassVar = ["name"]

    def __str__(self) -> str:
        return self.name


class WorkflowVersion(TenantOwnedModel):
    """One accepted spec, numbered 1..n per workflow. Never changed once written (the
    database refuses updates); runs pin the version they started with."""

    workflow = models.ForeignKey(Workflow, on_delete=models.PROTECT, related_name="versions")
    number = models.PositiveIntegerField()
    spec = models.JSONField()
    content_hash = models.CharField(max_length=64)
    author = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints: ClassVar = [
            models.UniqueConstraint(fields=["workflow", "number"], name="workflow_version_number"),
            models.CheckConstraint(condition=Q(number__gte=1), name="workflow_version_positive"),
        ]
        ordering: ClassVar = ["workflow", "-number"]

    def __str__(self) -> str:
        return f"{self.workflow_id} v{self.number}"

    def save(self, *args: Any, **kwargs: Any) -> None:
        if not self._state.adding:
            raise TypeError("workflow versions are immutable")
        super().save(*args, **kwargs)
