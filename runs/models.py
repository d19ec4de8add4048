"""Runs, task instances and attempts: the engine's state, the source of truth.

Every state change is a compare-and-set UPDATE in runs.engine; these models hold data and
constraints only."""

from __future__ import annotations

import uuid
from typing import Any, ClassVar

from django.conf import settings
from django.db import models
from django.db.models import F, Q
from django.utils import timezone

from orchestrator.models import TenantOwnedModel
from workflows.models import Workflow, WorkflowVersion

__all__ = [
    "Backfill",
    "Dataset",
    "DatasetUpdate",
    "Event",
    "IdempotencyKey",
    "LineageEvent",
    "Pool",
    "TaskAttempt",
    "TaskInstance",
    "TaskLog",
    "WorkflowRun",
]


class Backfill(TenantOwnedModel):
    """Runs for every interval of the workflow's schedule in [start, end], fed a few at a
    time (`max_active_runs`, slots of its own) by runs.backfills.feed. `plan` holds the
    intervals in the order they are fed; `position` counts those already handled."""

    class State(models.TextChoices):
        RUNNING = "running"
        PAUSED = "paused"  # no new runs; those already started go on
        CANCELLED = "cancelled"
        COMPLETED = "completed"

    class Reprocess(models.TextChoices):
        NONE = "none"  # an interval that has a run is skipped
        FAILED = "failed"  # ... rerun when it ended failed or cancelled
        ALL = "all"  # ... rerun whatever it ended as (an active run is skipped)

    workflow = models.ForeignKey(Workflow, on_delete=models.PROTECT, related_name="backfills")
    start = models.DateTimeField()
    end = models.DateTimeField()
    reprocess = models.CharField(max_length=8, choices=Reprocess.choices, default=Reprocess.NONE)
    max_active_runs = models.PositiveIntegerField(default=1)
    reverse = models.BooleanField(default=False)
    params = models.JSONField(default=dict)
    state = models.CharField(max_length=16, choices=State.choices, default=State.RUNNING)
    plan = models.JSONField(default=list)  # [[data_interval_start, data_interval_end], ...]
    total = models.PositiveIntegerField(default=0)  # len(plan), readable without the plan
    position = models.PositiveIntegerField(default=0)
    skipped = models.PositiveIntegerField(default=0)
    rerun = models.PositiveIntegerField(default=0)
    created_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)
    ended_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints: ClassVar = [
            models.CheckConstraint(
                condition=Q(state__in=["running", "paused", "cancelled", "completed"]),
                name="backfill_state_valid",
            ),
            models.CheckConstraint(
                condition=Q(reprocess__in=["none", "failed", "all"]),
                name="backfill_reprocess_valid",
            ),
            models.CheckConstraint(condition=Q(end__gte=F("start")), name="backfill_range"),
            models.CheckConstraint(condition=Q(max_active_runs__gte=1), name="backfill_slots"),
        ]
        indexes: ClassVar = [
            models.Index(fields=["tenant", "workflow", "-id"]),
            models.Index(fields=["state"], name="backfill_state"),
        ]
        ordering: ClassVar = ["-id"]

    def __str__(self) -> str:
        return f"backfill {self.pk} of {self.workflow_id} ({self.state})"


class WorkflowRun(TenantOwnedModel):
    class State(models.TextChoices):
        QUEUED = "queued"  # waiting for a slot (max_active_runs, tenant quota)
        RUNNING = "running"
        SUCCESS = "success"
        FAILED = "failed"
        CANCELLED = "cancelled"

    FINISHED: ClassVar = (State.SUCCESS, State.FAILED, State.CANCELLED)

    class Source(models.TextChoices):
        API = "api"
        GRAPHQL = "graphql"
        CLI = "cli"
        SCHEDULE = "schedule"
        BACKFILL = "backfill"
        ADMIN = "admin"
        PORTAL = "portal"
        WEBHOOK = "webhook"  # a signed POST to one of the workflow's webhooks
        EVENT = "event"  # an event in the tenant's log matched one of its triggers
        DATASET = "dataset"  # its schedule's datasets were all updated

    workflow = models.ForeignKey(Workflow, on_delete=models.PROTECT, related_name="runs")
    version = models.ForeignKey(WorkflowVersion, on_delete=models.PROTECT, related_name="+")
    state = models.CharField(max_length=16, choices=State.choices, default=State.QUEUED)
    params = models.JSONField(default=dict)
    logical_date = models.DateTimeField()
    data_interval_start = models.DateTimeField(null=True, blank=True)
    data_interval_end = models.DateTimeField(null=True, blank=True)
    trigger_source = models.CharField(max_length=16, choices=Source.choices)
    triggered_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    queued_at = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    ended_at = models.DateTimeField(null=True, blank=True)
    # The backfill that created (or last reran) the run: its slots are the backfill's own,
    # never the workflow's max_active_runs (runs.engine.start_queued_runs).
    backfill = models.ForeignKey(
        Backfill, on_delete=models.PROTECT, null=True, blank=True, related_name="runs"
    )
    # What started a webhook, event or dataset run, as a CloudEvent: templates read it as
    # `event` (the webhook's JSON body is its `data`).
    event = models.JSONField(null=True, blank=True)
    # The W3C traceparent of the run's span when tracing is on (orchestrator/tracing.py):
    # every try of the run is a span under it.
    trace_context = models.CharField(max_length=100, blank=True, default="")
    # The dataset updates that started a dataset-scheduled run.
    dataset_updates: models.ManyToManyField[DatasetUpdate, Any] = models.ManyToManyField(
        "DatasetUpdate", blank=True, related_name="triggered_runs"
    )

    class Meta:
        indexes: ClassVar = [
            models.Index(fields=["tenant", "-id"]),
            models.Index(fields=["tenant", "workflow", "-id"]),
            models.Index(fields=["tenant", "state", "-id"]),
            models.Index(fields=["workflow", "state", "id"], name="run_workflow_state"),
            # What the reconciler and the SLA checks read every few seconds: the unfinished
            # runs, and those that ended lately (a bitmap OR of the two).
            models.Index(
                fields=["state"],
                condition=Q(state__in=["queued", "running"]),
                name="run_unfinished",
            ),
            models.Index(fields=["ended_at"], name="run_ended_at"),
        ]
        constraints: ClassVar = [
            models.CheckConstraint(
                condition=Q(state__in=["queued", "running", "success", "failed", "cancelled"]),
                name="run_state_valid",
            ),
            # One run per data interval: a tick processed twice, two beats, or a backfill
            # over a scheduled interval cannot make a second one.
            models.UniqueConstraint(
                fields=["workflow", "logical_date"],
                condition=Q(trigger_source__in=["schedule", "backfill"]),
                name="run_unique_interval",
            ),
        ]
        ordering: ClassVar = ["-id"]

    def __str__(self) -> str:
        return f"run {self.pk} of {self.workflow_id} ({self.state})"


class TaskInstance(TenantOwnedModel):
    """One task of one run. `pending_upstreams` counts upstreams not finished yet; the
    transaction that finishes an upstream decrements it, so a join is never forgotten."""

    class State(models.TextChoices):
        PENDING = "pending"  # upstreams unfinished
        SCHEDULED = "scheduled"  # ready, waiting for a slot
        QUEUED = "queued"  # message sent to the broker
        RUNNING = "running"
        SUCCESS = "success"
        FAILED = "failed"
        SKIPPED = "skipped"
        UPSTREAM_FAILED = "upstream_failed"
        UP_FOR_RETRY = "up_for_retry"
        CANCELLED = "cancelled"

    FINISHED: ClassVar = (
        State.SUCCESS,
        State.FAILED,
        State.SKIPPED,
        State.UPSTREAM_FAILED,
        State.CANCELLED,
    )

    run = models.ForeignKey(WorkflowRun, on_delete=models.CASCADE, related_name="task_instances")
    task_id = models.CharField(max_length=100)
    map_index = models.IntegerField(default=-1)
    task_type = models.CharField(max_length=16)
    state = models.CharField(max_length=16, choices=State.choices, default=State.PENDING)
    try_number = models.PositiveIntegerField(default=0)
    max_tries = models.PositiveIntegerField(default=1)
    # Tries lost with their worker (lease expired): each one adds a try, up to the platform's
    # TASK_LOST_TRY_LIMIT, so a dead worker does not use up the task's own retries.
    lost_tries = models.PositiveIntegerField(default=0)
    priority = models.IntegerField(default=0)
    pending_upstreams = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    # A sensor's wait began here (its first check since it was last reset): its timeout
    # counts from it across the rescheduled checks.
    wait_started_at = models.DateTimeField(null=True, blank=True)
    queued_at = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField(null=True, blank=True)
    ended_at = models.DateTimeField(null=True, blank=True)
    result = models.JSONField(null=True, blank=True)
    # A mapped task's element (`map.over`'s item at map_index), read by its templates.
    map_value = models.JSONField(null=True, blank=True)
    # Shared slots (docs/pools.md): the tenant's pool the task takes `pool_slots` of, and its
    # rendered concurrency key; set when it becomes ready, so dispatch compares strings only.
    pool = models.CharField(max_length=100, blank=True, default="")
    pool_slots = models.PositiveIntegerField(default=1)
    concurrency_key = models.CharField(max_length=200, blank=True, default="")
    # Why a `scheduled` instance is still waiting (a pool, a key, fair share), for people.
    wait_reason = models.CharField(max_length=300, blank=True, default="")

    class Meta:
        constraints: ClassVar = [
            models.UniqueConstraint(fields=["run", "task_id", "map_index"], name="ti_unique"),
        ]
        indexes: ClassVar = [
            models.Index(fields=["run", "state"], name="ti_run_state"),
            models.Index(
                fields=["state", "next_attempt_at"],
                name="ti_state_due",
                condition=Q(state__in=["up_for_retry", "queued", "scheduled"]),
            ),
            models.Index(fields=["tenant", "-id"], name="ti_tenant_id"),
            # What a tenant has in flight (fair share: runs.engine.fairshare).
            models.Index(
                fields=["tenant"],
                name="ti_tenant_busy",
                condition=Q(state__in=["queued", "running"]),
            ),
            # The slots a pool or a concurrency key has taken, and who waits for them.
            models.Index(
                fields=["tenant", "pool", "state"],
                name="ti_pool_state",
                condition=~Q(pool=""),
            ),
            models.Index(
                fields=["tenant", "concurrency_key", "state"],
                name="ti_key_state",
                condition=~Q(concurrency_key=""),
            ),
        ]
        ordering: ClassVar = ["id"]

    def __str__(self) -> str:
        index = f"[{self.map_index}]" if self.map_index >= 0 else ""
        return f"{self.task_id}{index} of run {self.run_id} ({self.state}, try {self.try_number})"


class Pool(TenantOwnedModel):
    """A tenant's named pool of slots (docs/pools.md): tasks that name it take `pool_slots`
    of its `slots` while queued or running, across all its workflows and runs."""

    name = models.CharField(max_length=100)
    slots = models.PositiveIntegerField()
    description = models.CharField(max_length=500, blank=True, default="")
    created_at = models.DateTimeField(auto_now_add=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        constraints: ClassVar = [
            models.UniqueConstraint(fields=["tenant", "name"], name="pool_unique_name"),
        ]
        ordering: ClassVar = ["name"]

    def __str__(self) -> str:
        return f"pool {self.name} ({self.slots} slots)"


class TaskAttempt(TenantOwnedModel):
    """One try of a task instance: who ran it, its lease, how it ended."""

    class State(models.TextChoices):
        RUNNING = "running"
        SUCCESS = "success"
        FAILED = "failed"
        SKIPPED = "skipped"
        CANCELLED = "cancelled"
        RESCHEDULED = "rescheduled"  # a sensor's check said "not yet"

    task_instance = models.ForeignKey(
        TaskInstance, on_delete=models.CASCADE, related_name="attempts"
    )
    try_number = models.PositiveIntegerField()
    state = models.CharField(max_length=16, choices=State.choices, default=State.RUNNING)
    worker = models.CharField(max_length=255, blank=True)
    pid = models.IntegerField(null=True, blank=True)
    # Names the claim that created the attempt, so a claim retried after a lost answer from
    # the database recognises its own attempt (see engine.claim).
    claim_token = models.CharField(max_length=32, blank=True, editable=False)
    lease_expires_at = models.DateTimeField(null=True, blank=True)
    started_at = models.DateTimeField()
    ended_at = models.DateTimeField(null=True, blank=True)
    exit_code = models.IntegerField(null=True, blank=True)
    error = models.TextField(blank=True)
    rendered = models.JSONField(default=dict, blank=True)
    # The connections, secrets and variables the attempt used (names only).
    uses = models.JSONField(default=dict, blank=True)
    log_bytes = models.PositiveBigIntegerField(default=0)

    class Meta:
        constraints: ClassVar = [
            models.UniqueConstraint(
                fields=["task_instance", "try_number"], name="attempt_unique_try"
            ),
        ]
        indexes: ClassVar = [
            models.Index(
                fields=["lease_expires_at"],
                name="attempt_running_lease",
                condition=Q(state="running"),
            ),
        ]
        ordering: ClassVar = ["task_instance", "try_number"]

    def __str__(self) -> str:
        return f"try {self.try_number} of {self.task_instance_id} ({self.state})"


class TaskLog(TenantOwnedModel):
    """A chunk of an attempt's output (bytes); `offset` is its first byte in the whole log."""

    attempt = models.ForeignKey(TaskAttempt, on_delete=models.CASCADE, related_name="logs")
    offset = models.PositiveBigIntegerField()
    data = models.BinaryField()

    class Meta:
        constraints: ClassVar = [
            models.UniqueConstraint(fields=["attempt", "offset"], name="tasklog_unique_offset"),
        ]
        ordering: ClassVar = ["attempt", "offset"]

    def __str__(self) -> str:
        return f"log of {self.attempt_id} at {self.offset}"


class IdempotencyKey(TenantOwnedModel):
    """An `Idempotency-Key` of a trigger request: the same key and body return the run
    first created (for 24 hours); the same key with another body is refused."""

    workflow = models.ForeignKey(Workflow, on_delete=models.CASCADE, related_name="+")
    key = models.CharField(max_length=255)
    request_hash = models.CharField(max_length=64)
    run = models.ForeignKey(WorkflowRun, on_delete=models.CASCADE, related_name="+")
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints: ClassVar = [
            models.UniqueConstraint(fields=["workflow", "key"], name="idempotency_key_unique"),
        ]

    def __str__(self) -> str:
        return f"{self.key} -> run {self.run_id}"


class Dataset(TenantOwnedModel):
    """A dataset of a tenant: a name or URI that tasks' `outlets` update. Made when first
    updated (or first named by an applied workflow)."""

    name = models.CharField(max_length=300)
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints: ClassVar = [
            models.UniqueConstraint(fields=["tenant", "name"], name="dataset_unique_name"),
        ]
        ordering: ClassVar = ["name"]

    def __str__(self) -> str:
        return self.name


class DatasetUpdate(TenantOwnedModel):
    """One update of a dataset: a task with it in `outlets` succeeded (run, task, logical
    date, and the metadata the task returned for it). A dataset's versions, in order."""

    dataset = models.ForeignKey(Dataset, on_delete=models.CASCADE, related_name="updates")
    run = models.ForeignKey(
        WorkflowRun, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    workflow = models.ForeignKey(
        Workflow, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    task_id = models.CharField(max_length=100, blank=True)
    logical_date = models.DateTimeField(null=True, blank=True)
    metadata = models.JSONField(default=dict, blank=True)
    created_at = models.DateTimeField(default=timezone.now)

    class Meta:
        indexes: ClassVar = [
            models.Index(fields=["dataset", "-id"], name="datasetupdate_dataset"),
            models.Index(fields=["run"], name="datasetupdate_run"),
        ]
        ordering: ClassVar = ["-id"]

    def __str__(self) -> str:
        return f"update {self.pk} of {self.dataset_id}"


class LineageEvent(TenantOwnedModel):
    """An OpenLineage run event to send (START when a try begins, COMPLETE, FAIL or ABORT
    when it ends), written by the engine in the transaction of the change when OpenLineage
    is configured, and sent after commit by the lineage sender, retried like a
    notification delivery."""

    class Kind(models.TextChoices):
        START = "START"
        COMPLETE = "COMPLETE"
        FAIL = "FAIL"
        ABORT = "ABORT"

    class Status(models.TextChoices):
        PENDING = "pending"
        SENT = "sent"
        FAILED = "failed"  # gave up: a permanent error or the last attempt

    attempt = models.ForeignKey(TaskAttempt, on_delete=models.CASCADE, related_name="+")
    kind = models.CharField(max_length=8, choices=Kind.choices)
    time = models.DateTimeField(default=timezone.now)
    status = models.CharField(max_length=8, choices=Status.choices, default=Status.PENDING)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    sent_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        constraints: ClassVar = [
            models.UniqueConstraint(fields=["attempt", "kind"], name="lineageevent_unique"),
        ]
        indexes: ClassVar = [
            models.Index(
                fields=["next_attempt_at"],
                condition=Q(status="pending"),
                name="lineageevent_pending",
            ),
        ]
        ordering: ClassVar = ["id"]

    def __str__(self) -> str:
        return f"{self.kind} of attempt {self.attempt_id} ({self.status})"


class Event(TenantOwnedModel):
    """Something that happened to a run, a task or a deadline: the outbox (DESIGN.md
    section 12). Written in the same transaction as the change it describes, so it exists
    exactly when the change does; consumers (notifications) read it after commit and mark
    it `routed_at`, and the reconciler routes what a crash left. `uid` is the CloudEvent
    id; `data` is the CloudEvent's data (runs.engine.events documents both)."""

    class Type(models.TextChoices):
        RUN_SUCCEEDED = "run.succeeded"
        RUN_FAILED = "run.failed"
        RUN_RECOVERED = "run.recovered"  # the first success after a failed run
        RUN_CANCELLED = "run.cancelled"
        TASK_FAILED = "task.failed"  # a task's last try failed
        TASK_RETRYING = "task.retrying"  # a try failed; another one will follow
        SLA_MISSED = "sla.missed"
        DATASET_UPDATED = "dataset.updated"  # a task's outlet: data is the update

    uid = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    # The engine's types above, or a published event's own (com.acme.file.landed).
    type = models.CharField(max_length=200)
    time = models.DateTimeField(default=timezone.now)
    # A published event's CloudEvent source and subject (the engine's are derived).
    source = models.CharField(max_length=500, blank=True)
    subject = models.CharField(max_length=500, blank=True)
    # A published event's own `id`: unique per source, so a repeated publish is one event.
    external_id = models.CharField(max_length=200, blank=True)
    # Set once the events dispatcher has started the runs the event triggers (event
    # triggers, dataset schedules); the reconciler dispatches what a crash left.
    dispatched_at = models.DateTimeField(null=True, blank=True)
    workflow = models.ForeignKey(
        Workflow, on_delete=models.PROTECT, null=True, blank=True, related_name="+"
    )
    # Kept when retention deletes the run: the event says what happened to it.
    run = models.ForeignKey(
        WorkflowRun, on_delete=models.SET_NULL, null=True, blank=True, related_name="+"
    )
    task_id = models.CharField(max_length=100, blank=True)
    data = models.JSONField(default=dict)
    routed_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        indexes: ClassVar = [
            models.Index(fields=["tenant", "-id"], name="event_tenant_id"),
            models.Index(fields=["tenant", "type", "-id"], name="event_tenant_type"),
            models.Index(fields=["tenant", "workflow", "-id"], name="event_tenant_workflow"),
            models.Index(fields=["run", "-id"], name="event_run"),
            models.Index(fields=["id"], condition=Q(routed_at__isnull=True), name="event_unrouted"),
            models.Index(
                fields=["id"], condition=Q(dispatched_at__isnull=True), name="event_undispatched"
            ),
        ]
        constraints: ClassVar = [
            models.UniqueConstraint(
                fields=["tenant", "source", "external_id"],
                condition=~Q(external_id=""),
                name="event_unique_external_id",
            ),
        ]
        ordering: ClassVar = ["-id"]

    def __str__(self) -> str:
        return f"{self.type} {self.uid}"
