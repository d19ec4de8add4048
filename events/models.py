"""Inbound webhooks (their signing secrets and the deliveries they accepted) and the
dataset scheduler's queue. Data and constraints only: events.webhooks and
events.dispatch change them."""

from __future__ import annotations

from typing import ClassVar

from django.conf import settings
from django.db import models

from orchestrator.models import TenantOwnedModel
from runs.models import DatasetUpdate, WorkflowRun
from workflows.models import Workflow

__all__ = ["DatasetQueue", "Webhook", "WebhookDelivery", "WebhookSecret"]


class Webhook(TenantOwnedModel):
    """A `triggers: [{webhook: {name}}]` entry of a workflow, made when its first signing
    secret is. `uid` is the unguessable part of its URL (/hooks/<uid>); it stays when the
    workflow changes, and a webhook the current version no longer declares accepts
    nothing."""

    workflow = models.ForeignKey(Workflow, on_delete=models.CASCADE, related_name="+")
    name = models.CharField(max_length=63)
    uid = models.CharField(max_length=64, unique=True, editable=False)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints: ClassVar = [
            models.UniqueConstraint(fields=["workflow", "name"], name="webhook_unique_name"),
        ]
        ordering: ClassVar = ["name"]

    def __str__(self) -> str:
        return f"webhook {self.name} of {self.workflow_id}"


class WebhookSecret(TenantOwnedModel):
    """A signing secret of a webhook, stored encrypted and shown once. Several may be
    valid at once: a rotation gives the older ones an `expires_at` (the overlap)."""

    AUDIT_SECRET_FIELDS: ClassVar = {"secret_encrypted"}
    ENCRYPTED_FIELDS: ClassVar = ("secret_encrypted",)  # rotate_keys

    webhook = models.ForeignKey(Webhook, on_delete=models.CASCADE, related_name="secrets")
    secret_encrypted = models.TextField()
    prefix = models.CharField(max_length=16)  # shown, to tell secrets apart
    created_at = models.DateTimeField(auto_now_add=True)
    expires_at = models.DateTimeField(null=True, blank=True)  # null: until rotated
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )

    class Meta:
        ordering: ClassVar = ["-id"]

    def __str__(self) -> str:
        return f"secret {self.prefix}… of {self.webhook_id}"


class WebhookDelivery(TenantOwnedModel):
    """A POST a webhook accepted. `key` (the Idempotency-Key, else the body's `id`, else
    the signature) makes a retried or replayed delivery the same run."""

    webhook = models.ForeignKey(Webhook, on_delete=models.CASCADE, related_name="deliveries")
    key = models.CharField(max_length=64)  # SHA-256 hex of the key
    run = models.ForeignKey(
        WorkflowRun, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    received_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints: ClassVar = [
            models.UniqueConstraint(fields=["webhook", "key"], name="webhookdelivery_unique"),
        ]
        indexes: ClassVar = [
            models.Index(fields=["webhook", "-id"], name="webhookdelivery_webhook"),
        ]
        ordering: ClassVar = ["-id"]

    def __str__(self) -> str:
        return f"delivery {self.pk} of {self.webhook_id}"


class DatasetQueue(TenantOwnedModel):
    """A dataset of a workflow's dataset schedule that was updated since the workflow's
    last dataset-triggered run (Airflow's dataset queue): the run starts once every one
    of its datasets has a row, which it takes. `first_update` is the oldest update not
    yet consumed; later ones until the run are listed on it too."""

    workflow = models.ForeignKey(Workflow, on_delete=models.CASCADE, related_name="+")
    publisher = models.CharField(max_length=63, blank=True)  # owner's slug; "" this tenant
    dataset = models.CharField(max_length=300)
    first_update = models.ForeignKey(DatasetUpdate, on_delete=models.CASCADE, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints: ClassVar = [
            models.UniqueConstraint(
                fields=["workflow", "publisher", "dataset"], name="datasetqueue_unique"
            ),
        ]

    def __str__(self) -> str:
        return f"{self.workflow_id} waits on {self.publisher}/{self.dataset}"
