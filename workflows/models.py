"""Workflows and their immutable versions."""

from __future__ import annotations

from typing import Any, ClassVar

from django.conf import settings
from django.db import models
from django.db.models import Q

from orchestrator.models import TenantOwnedModel

__all__ = [
    "CodePackage",
    "DatasetReference",
    "EventSubscription",
    "Schedule",
    "Workflow",
    "WorkflowVersion",
]


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
    # The team code each python task of this version runs, resolved from the spec's `code`
    # when it was applied: {task id: {"package", "version", "digest"}}. A python task not
    # listed runs the platform's allow-listed modules.
    code = models.JSONField(default=dict, blank=True)
    author = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
    )
    created_at = models.DateTimeField(auto_now_add=True)
    # Where the spec came from when a sync applied it (gitsync): the git commit and the
    # sync ("git:<source name>"). NULL, not "", for a version applied any other way.
    source_commit = models.CharField(  # noqa: DJ001
        max_length=40,
        null=True,
        blank=True,
        help_text="the git commit the spec came from, when a sync applied it (40 hex digits)",
    )
    source = models.CharField(  # noqa: DJ001
        max_length=200,
        null=True,
        blank=True,
        help_text='what applied it from git, e.g. "git:<source name>" (docs/gitops.md)',
    )

    class Meta:
        constraints: ClassVar = [
            models.UniqueConstraint(fields=["workflow", "number"], name="workflow_version_number"),
            models.CheckConstraint(condition=Q(number__gte=1), name="workflow_version_positive"),
            models.CheckConstraint(
                condition=Q(source_commit__isnull=True) | Q(source_commit__regex=r"^[0-9a-f]{40}$"),
                name="workflow_version_source_commit_sha",
            ),
        ]
        ordering: ClassVar = ["workflow", "-number"]

    def __str__(self) -> str:
        return f"{self.workflow_id} v{self.number}"

    def save(self, *args: Any, **kwargs: Any) -> None:
        if not self._state.adding:
            raise TypeError("workflow versions are immutable")
        super().save(*args, **kwargs)


class CodePackage(TenantOwnedModel):
    """A tenant's uploaded Python package (docs/team-code.md): one wheel, stored under its
    sha256 (`digest`) through the "packages" storage, with its dependencies locked at upload
    (`lock`: requirement lines pinned by version and hash) and the functions it defines
    (`index`: {module: [function names]}, found by importing it in the tenant's sandbox).
    Immutable: a new release is a new version."""

    name = models.CharField(max_length=100)  # normalised (PEP 503): lowercase, "-"
    version = models.CharField(max_length=64)  # normalised (PEP 440)
    digest = models.CharField(max_length=64)  # sha256 of the stored wheel, hex
    filename = models.CharField(max_length=255)  # the wheel's file name
    size = models.PositiveBigIntegerField()
    # What was uploaded: "wheel", "sdist" or "tree" (built into the stored wheel here).
    source_kind = models.CharField(max_length=8)
    source_digest = models.CharField(max_length=64)  # sha256 of the uploaded file
    requires_python = models.CharField(max_length=100, blank=True)
    requirements = models.JSONField(default=list)  # the wheel's Requires-Dist, as declared
    lock = models.JSONField(default=list)  # "name==version --hash=sha256:..." per dependency
    index = models.JSONField(default=dict)  # {module: [function names]}
    build_log = models.TextField(blank=True)  # the locking and indexing output, for the record
    uploaded_by = models.ForeignKey(
        settings.AUTH_USER_MODEL,
        on_delete=models.PROTECT,
        null=True,
        blank=True,
        related_name="+",
    )
    created_at = models.DateTimeField(auto_now_add=True)

    class Meta:
        constraints: ClassVar = [
            models.UniqueConstraint(
                fields=["tenant", "name", "version"], name="code_package_unique_version"
            ),
        ]
        indexes: ClassVar = [models.Index(fields=["tenant", "name", "-created_at"])]
        ordering: ClassVar = ["name", "-created_at"]

    def __str__(self) -> str:
        return f"{self.name} {self.version}"

    def save(self, *args: Any, **kwargs: Any) -> None:
        if not self._state.adding:
            raise TypeError("code packages are immutable: upload a new version")
        super().save(*args, **kwargs)


class Schedule(TenantOwnedModel):
    """When a workflow runs by itself (its spec's `schedule`) and how far the scheduler
    tick has got. Firings at or before `handled_until` are done with: a run was made, or
    catch-up skipped them. `next_run_at` is the next firing to process, NULL while the
    workflow is paused or deleted and once `end` is passed (workflows.scheduling)."""

    class Catchup(models.TextChoices):
        NONE = "none"
        LATEST = "latest"
        ALL = "all"

    workflow = models.OneToOneField(Workflow, on_delete=models.CASCADE, related_name="schedule")
    cron = models.CharField(max_length=200)
    timezone = models.CharField(max_length=64)
    catchup = models.CharField(max_length=8, choices=Catchup.choices)
    start = models.DateTimeField(null=True, blank=True)
    end = models.DateTimeField(null=True, blank=True)
    next_run_at = models.DateTimeField(null=True, blank=True)
    handled_until = models.DateTimeField()
    last_logical_date = models.DateTimeField(null=True, blank=True)  # of the newest run made
    # When the workflow was last unpaused: firings before it fell while paused, so they are
    # missed (the catch-up policy decides) even within the misfire grace.
    resumed_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        indexes: ClassVar = [
            models.Index(
                fields=["next_run_at"],
                condition=Q(next_run_at__isnull=False),
                name="schedule_due",
            )
        ]

    def __str__(self) -> str:
        return f"{self.cron} ({self.timezone})"


class EventSubscription(TenantOwnedModel):
    """One `triggers: [{event: ...}]` entry of a workflow's current version, kept so the
    events dispatcher finds a new event's subscribers with one indexed query. Rewritten
    whenever the workflow is applied or deleted (workflows.services)."""

    workflow = models.ForeignKey(Workflow, on_delete=models.CASCADE, related_name="+")
    index = models.PositiveIntegerField()  # the trigger's position in `triggers`
    event_type = models.CharField(max_length=200)
    publisher = models.CharField(max_length=63, blank=True)  # a tenant slug; "" this tenant
    source_workflow = models.CharField(max_length=63, blank=True)  # "": any workflow

    class Meta:
        constraints: ClassVar = [
            models.UniqueConstraint(fields=["workflow", "index"], name="eventsub_unique"),
        ]
        indexes: ClassVar = [
            models.Index(fields=["event_type", "publisher"], name="eventsub_type"),
        ]

    def __str__(self) -> str:
        return f"{self.workflow_id} on {self.event_type}"


class DatasetReference(TenantOwnedModel):
    """A dataset named by a workflow's current version: a task's outlet or inlet, a
    `wait_for` sensor, or the dataset schedule. The lineage graph and the dataset
    scheduler read these; rewritten whenever the workflow is applied or deleted."""

    class Role(models.TextChoices):
        OUTLET = "outlet"
        INLET = "inlet"
        SENSOR = "sensor"
        SCHEDULE = "schedule"

    workflow = models.ForeignKey(Workflow, on_delete=models.CASCADE, related_name="+")
    task_id = models.CharField(max_length=100, blank=True)  # "" for the schedule
    role = models.CharField(max_length=16, choices=Role.choices)
    publisher = models.CharField(max_length=63, blank=True)  # owner's slug; "" this tenant
    dataset = models.CharField(max_length=300)

    class Meta:
        constraints: ClassVar = [
            models.UniqueConstraint(
                fields=["workflow", "task_id", "role", "publisher", "dataset"],
                name="datasetref_unique",
            ),
        ]
        indexes: ClassVar = [
            models.Index(fields=["dataset", "role"], name="datasetref_dataset"),
            models.Index(fields=["tenant", "workflow"], name="datasetref_workflow"),
        ]

    def __str__(self) -> str:
        return f"{self.workflow_id} {self.role} {self.publisher}/{self.dataset}"
