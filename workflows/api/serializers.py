from __future__ import annotations

import datetime as dt
import zoneinfo
from typing import Any

from django.conf import settings
from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from orchestrator.api.base import StrictSerializer
from workflows import scheduling
from workflows.models import Schedule, Workflow, WorkflowVersion

__all__ = [
    "PLAN_ACTIONS",
    "ApplyFilesSerializer",
    "ApplyPlanSerializer",
    "PlannedChangeSerializer",
    "ScheduleSerializer",
    "VersionDiffSerializer",
    "VersionSerializer",
    "VersionSummarySerializer",
    "WorkflowAppliedSerializer",
    "WorkflowSerializer",
]


class VersionSummarySerializer(serializers.ModelSerializer[WorkflowVersion]):
    """A version as lists show it: without its spec."""

    author = serializers.CharField(source="author.username", read_only=True, allow_null=True)

    class Meta:
        model = WorkflowVersion
        fields = ["id", "number", "content_hash", "author", "created_at", "source_commit", "source"]
        read_only_fields = fields


class VersionSerializer(VersionSummarySerializer):
    spec = serializers.JSONField(read_only=True, help_text="the workflow spec, as applied")
    code = serializers.JSONField(
        read_only=True,
        help_text="the team code each python task runs, pinned when the version was applied: "
        "{task id: {package, version, digest}} (docs/team-code.md)",
    )

    class Meta(VersionSummarySerializer.Meta):
        fields = [*VersionSummarySerializer.Meta.fields, "spec", "code"]
        read_only_fields = fields


class VersionDiffSerializer(serializers.Serializer[Any]):
    to = serializers.IntegerField(help_text="this version's number")
    diff = serializers.CharField(help_text="unified diff of the canonical YAML; empty if equal")

    def get_fields(self) -> dict[str, Any]:
        # `from` is a Python keyword: it cannot be declared as a class attribute.
        fields: dict[str, Any] = super().get_fields()
        return {"from": serializers.IntegerField(help_text="the `against` version"), **fields}


class WorkflowSerializer(serializers.ModelSerializer[Workflow]):
    current_version = serializers.SerializerMethodField()

    class Meta:
        model = Workflow
        fields = [
            "id",
            "name",
            "description",
            "tags",
            "paused",
            "current_version",
            "created_at",
            "updated_at",
        ]
        read_only_fields = fields

    @extend_schema_field(VersionSerializer(allow_null=True))
    def get_current_version(self, workflow: Workflow) -> dict[str, Any] | None:
        if workflow.current_version is None:
            return None
        return VersionSerializer(workflow.current_version, context=self.context).data


class WorkflowAppliedSerializer(WorkflowSerializer):
    """What an apply answers: the workflow, and whether it was created or changed."""

    created = serializers.BooleanField(read_only=True, help_text="the workflow is new")
    changed = serializers.BooleanField(
        read_only=True, help_text="a new version was made (false: the spec was identical)"
    )

    class Meta(WorkflowSerializer.Meta):
        fields = [*WorkflowSerializer.Meta.fields, "created", "changed"]
        read_only_fields = fields


LOCAL_TIME = serializers.DateTimeField(allow_null=True, help_text="in the schedule's timezone")


class ScheduleSerializer(serializers.ModelSerializer[Schedule]):
    """A workflow's schedule; times in its timezone. `next_run_at` is the firing the
    scheduler processes next (null while paused, once ended); `next_fire_times` are the
    next 10 firings from now."""

    paused = serializers.BooleanField(source="workflow.paused", read_only=True)
    start = serializers.SerializerMethodField()
    end = serializers.SerializerMethodField()
    next_run_at = serializers.SerializerMethodField()
    last_logical_date = serializers.SerializerMethodField()
    next_fire_times = serializers.SerializerMethodField()

    class Meta:
        model = Schedule
        fields = [
            "cron",
            "timezone",
            "catchup",
            "start",
            "end",
            "paused",
            "next_run_at",
            "last_logical_date",
            "next_fire_times",
        ]
        read_only_fields = fields

    def _local(self, schedule: Schedule, value: dt.datetime | None) -> str | None:
        if value is None:
            return None
        return value.astimezone(zoneinfo.ZoneInfo(schedule.timezone)).isoformat()

    @extend_schema_field(LOCAL_TIME)
    def get_start(self, schedule: Schedule) -> str | None:
        return self._local(schedule, schedule.start)

    @extend_schema_field(LOCAL_TIME)
    def get_end(self, schedule: Schedule) -> str | None:
        return self._local(schedule, schedule.end)

    @extend_schema_field(LOCAL_TIME)
    def get_next_run_at(self, schedule: Schedule) -> str | None:
        return self._local(schedule, schedule.next_run_at)

    @extend_schema_field(LOCAL_TIME)
    def get_last_logical_date(self, schedule: Schedule) -> str | None:
        return self._local(schedule, schedule.last_logical_date)

    @extend_schema_field(serializers.ListField(child=serializers.DateTimeField()))
    def get_next_fire_times(self, schedule: Schedule) -> list[str]:
        return [fire.isoformat() for fire in scheduling.upcoming(schedule, count=10)]


# --- applying a set of spec files (GitOps) --------------------------------------------


# What applying a set of spec files did to a workflow (its enum in the OpenAPI document:
# settings.SPECTACULAR_SETTINGS["ENUM_NAME_OVERRIDES"]).
PLAN_ACTIONS = ("created", "updated", "unchanged", "pruned")


class SpecFileSerializer(StrictSerializer):
    """One spec file: its name and its text."""

    path = serializers.CharField(
        max_length=500,
        help_text="the file's name, e.g. etl/daily.yaml: errors and the plan name it",
    )
    content = serializers.CharField(
        max_length=settings.PLATFORM_QUOTA_LIMITS["max_spec_bytes"],
        trim_whitespace=False,
        help_text="the spec, YAML or JSON text, within the tenant's max_spec_bytes",
    )

    def validate_path(self, value: str) -> str:
        if any(ord(c) < 32 or ord(c) == 127 for c in value):
            raise serializers.ValidationError("must not contain control characters")
        return value


class ApplyFilesSerializer(StrictSerializer):
    """A set of spec files to sync the tenant to, as `manage.py apply` does."""

    files = SpecFileSerializer(  # type: ignore[call-arg]  # DRF takes max_length; stubs lag
        many=True,
        allow_empty=False,
        max_length=settings.PLATFORM_QUOTA_LIMITS["max_workflows"],
        help_text="one workflow a file; the same workflow name in two files is an error",
    )
    dry_run = serializers.BooleanField(
        default=False, help_text="report what would change and keep nothing"
    )
    prune = serializers.BooleanField(
        default=False, help_text="delete the tenant's live workflows that no file defines"
    )
    source_commit = serializers.RegexField(
        r"^[0-9a-f]{40}$",
        required=False,
        allow_null=True,
        default=None,
        help_text="the git commit the files come from (40 hex digits), recorded on each new "
        "version",
    )

    def validate_files(self, value: list[dict[str, str]]) -> list[dict[str, str]]:
        seen: set[str] = set()
        errors: list[dict[str, list[str]]] = []  # one a file, empty where it is fine
        for item in value:
            repeated = item["path"] in seen
            errors.append({"path": [f"{item['path']!r} is sent twice"]} if repeated else {})
            seen.add(item["path"])
        if any(errors):
            raise serializers.ValidationError(errors)
        return value


class PlannedChangeSerializer(serializers.Serializer[Any]):
    workflow = serializers.CharField(help_text="the workflow's name")
    path = serializers.CharField(
        allow_null=True, help_text="the file that defines it; null when pruned"
    )
    action = serializers.ChoiceField(
        choices=PLAN_ACTIONS,
        help_text="what the apply did to it (in a dry run: would do)",
    )
    version = serializers.IntegerField(
        allow_null=True, help_text="its current version afterwards; null when pruned"
    )
    diff = serializers.CharField(
        allow_blank=True,
        help_text="unified diff of the canonical YAML from the live version to the new one "
        "(a new workflow: the whole spec as added lines); empty when unchanged or pruned",
    )


class ApplyPlanSerializer(serializers.Serializer[Any]):
    dry_run = serializers.BooleanField(help_text="true: nothing was kept")
    changes = PlannedChangeSerializer(
        many=True, help_text="one entry a workflow: the files' in order, then the pruned"
    )
