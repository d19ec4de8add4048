from __future__ import annotations

import datetime as dt
import zoneinfo
from typing import Any

from drf_spectacular.utils import extend_schema_field
from rest_framework import serializers

from workflows import scheduling
from workflows.models import Schedule, Workflow, WorkflowVersion

__all__ = [
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
        fields = ["id", "number", "content_hash", "author", "created_at"]
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
