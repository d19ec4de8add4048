"""Channels (where a tenant hears of events), rules (which events go where), deliveries
(one event to one channel, and how that went), quiet windows (a storm collapsed into one
message and a count) and SLA misses. Data and constraints only: notifications.routing,
notifications.delivery and notifications.sla change them."""

from __future__ import annotations

from typing import ClassVar

from django.conf import settings
from django.db import models
from django.db.models import Q

from orchestrator.models import TenantOwnedModel
from runs.models import Event, WorkflowRun
from workflows.models import Workflow

__all__ = ["Channel", "Delivery", "QuietWindow", "Rule", "SlaMiss"]


class Stamped(TenantOwnedModel):
    name = models.CharField(max_length=63)
    description = models.CharField(max_length=500, blank=True)
    enabled = models.BooleanField(default=True)
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    updated_by = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )

    class Meta:
        abstract = True

    def __str__(self) -> str:
        return self.name


class Channel(Stamped):
    """A place to send messages. The URL (Slack, webhook) and the webhook's signing secret
    are stored encrypted (orchestrator.crypto) and never shown again after creation."""

    class Kind(models.TextChoices):
        SLACK = "slack"  # a Slack incoming-webhook URL
        EMAIL = "email"  # mail to `recipients` through the project's email settings
        WEBHOOK = "webhook"  # the CloudEvent POSTed to a URL, signed with HMAC-SHA256

    ENCRYPTED_FIELDS: ClassVar = ("url_encrypted", "signing_secret_encrypted")  # rotate_keys

    kind = models.CharField(max_length=16, choices=Kind.choices)
    recipients = models.JSONField(default=list, blank=True)  # email addresses
    url_encrypted = models.TextField(blank=True)  # a Fernet token, "" for email
    # What may be shown of the URL: scheme and host (the path of a Slack URL is its secret).
    url_hint = models.CharField(max_length=300, blank=True)
    signing_secret_encrypted = models.TextField(blank=True)  # webhook only

    class Meta:
        constraints: ClassVar = [
            models.UniqueConstraint(fields=["tenant", "name"], name="channel_unique_name"),
            models.CheckConstraint(
                condition=Q(kind__in=["slack", "email", "webhook"]), name="channel_kind_valid"
            ),
        ]
        ordering: ClassVar = ["name"]


class Rule(Stamped):
    """Which events go to which channels: event types, workflows (by name) and tags, each
    matching all when empty. A quiet period collapses repeated events of one workflow on
    one channel into one message, then a count when the period ends."""

    event_types = models.JSONField(default=list, blank=True)
    workflows = models.JSONField(default=list, blank=True)
    tags = models.JSONField(default=list, blank=True)
    channels = models.ManyToManyField(Channel, related_name="rules")
    quiet_period = models.PositiveIntegerField(default=0)  # seconds; 0: every event is sent

    class Meta:
        constraints: ClassVar = [
            models.UniqueConstraint(fields=["tenant", "name"], name="rule_unique_name"),
        ]
        ordering: ClassVar = ["name"]


class Delivery(TenantOwnedModel):
    """One event (or a quiet period's count) to one channel. `key` makes it at most once:
    "e<event id>:c<channel id>" for an event, "q<window id>:<n>" for a quiet period's
    summary. A worker claims it by setting `claimed_at` (compare-and-set); a claim left by
    a dead worker is not sent again (the message may have gone out): it ends `failed`, and
    a person may retry it."""

    class Status(models.TextChoices):
        PENDING = "pending"  # to be sent (now, or at next_attempt_at after an error)
        SENT = "sent"
        FAILED = "failed"  # a permanent error, the last attempt, or a lost claim
        SUPPRESSED = "suppressed"  # inside a quiet period: counted in its summary

    class Kind(models.TextChoices):
        EVENT = "event"
        SUMMARY = "summary"  # the count of a quiet period's suppressed events

    key = models.CharField(max_length=64)
    event = models.ForeignKey(Event, on_delete=models.CASCADE, related_name="+")
    channel = models.ForeignKey(Channel, on_delete=models.CASCADE, related_name="deliveries")
    rule = models.ForeignKey(
        Rule, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )  # null: the workflow spec's `notify` (or a retry of a deleted rule's delivery)
    kind = models.CharField(max_length=16, choices=Kind.choices, default=Kind.EVENT)
    suppressed_count = models.PositiveIntegerField(default=0)  # a summary's count
    status = models.CharField(max_length=16, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    last_error = models.TextField(blank=True)
    response = models.CharField(max_length=500, blank=True)  # the transport's last answer
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    claimed_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(auto_now_add=True)
    sent_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints: ClassVar = [
            models.UniqueConstraint(fields=["tenant", "key"], name="delivery_unique_key"),
            models.CheckConstraint(
                condition=Q(status__in=["pending", "sent", "failed", "suppressed"]),
                name="delivery_status_valid",
            ),
        ]
        indexes: ClassVar = [
            models.Index(fields=["tenant", "-id"], name="delivery_tenant_id"),
            models.Index(fields=["tenant", "status", "-id"], name="delivery_tenant_status"),
            models.Index(fields=["channel", "-id"], name="delivery_channel"),
            models.Index(fields=["event"], name="delivery_event"),
            models.Index(
                fields=["next_attempt_at"],
                condition=Q(status="pending"),
                name="delivery_pending",
            ),
        ]
        ordering: ClassVar = ["-id"]

    def __str__(self) -> str:
        return f"delivery {self.key} ({self.status})"


class QuietWindow(TenantOwnedModel):
    """The current quiet period of one rule, channel and workflow: events inside it are
    counted (`suppressed`), and a summary goes out once it has ended."""

    rule = models.ForeignKey(Rule, on_delete=models.CASCADE, related_name="+")
    channel = models.ForeignKey(Channel, on_delete=models.CASCADE, related_name="+")
    workflow = models.ForeignKey(Workflow, on_delete=models.CASCADE, related_name="+")
    ends_at = models.DateTimeField()
    suppressed = models.PositiveIntegerField(default=0)
    last_event = models.ForeignKey(
        Event, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    summaries = models.PositiveIntegerField(default=0)  # summaries sent: part of their key

    class Meta:
        constraints: ClassVar = [
            models.UniqueConstraint(
                fields=["rule", "channel", "workflow"], name="quietwindow_unique"
            ),
        ]
        indexes: ClassVar = [
            models.Index(fields=["ends_at"], condition=Q(suppressed__gt=0), name="quietwindow_due"),
        ]

    def __str__(self) -> str:
        return f"quiet window {self.pk} until {self.ends_at}"


class SlaMiss(TenantOwnedModel):
    """A run, a task or a day's scheduled run that was late, recorded once (`key`)."""

    class Kind(models.TextChoices):
        RUN_DURATION = "run_duration"
        DEADLINE = "deadline"
        TASK_DURATION = "task_duration"

    key = models.CharField(max_length=200)
    kind = models.CharField(max_length=16, choices=Kind.choices)
    workflow = models.ForeignKey(Workflow, on_delete=models.PROTECT, related_name="+")
    run = models.ForeignKey(
        WorkflowRun, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    task_id = models.CharField(max_length=100, blank=True)
    sla = models.CharField(max_length=100)  # what was asked, e.g. "run_duration: 1h"
    due_at = models.DateTimeField()  # when it had to be done
    detected_at = models.DateTimeField(auto_now_add=True)
    event = models.ForeignKey(
        Event, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )

    class Meta:
        constraints: ClassVar = [
            models.UniqueConstraint(fields=["tenant", "key"], name="slamiss_unique_key"),
        ]
        indexes: ClassVar = [
            models.Index(fields=["tenant", "-id"], name="slamiss_tenant_id"),
            models.Index(fields=["tenant", "workflow", "-id"], name="slamiss_tenant_workflow"),
        ]
        ordering: ClassVar = ["-id"]

    def __str__(self) -> str:
        return f"{self.kind} miss {self.key}"
