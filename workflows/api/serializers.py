from __future__ import annotations

import datetime as dt
import zoneinfo
from typing import Any

from rest_framework import serializers

from workflows import scheduling
from workflows.models import Schedule, Workflow, WorkflowVersion

__all__ = ["ScheduleSerializer", "VersionSerializer", "WorkflowSerializer"]


class VersionSerializer(serializers.ModelSerializer[WorkflowVersion]):
    author = serializers.CharField(source="author.username", read_only=True, allow_null=True)

    class Meta:
        model = WorkflowVersion
        fields = ["id", "number", "content_hash", "author", "created_at", "spec"]
        read_only_fields = fields

    def to_representation(self, instance: WorkflowVersion) -> dict[str, Any]:
        data: dict[str, Any] = super().to_representation(instance)
        if self.context.get("brief"):
            data.pop("spec")
        return data


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

    def get_current_version(self, workflow: Workflow) -> dict[str, Any] | None:
        if workflow.current_version is None:
            return None
        return VersionSerializer(workflow.current_version, context=self.context).data


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

    def get_start(self, schedule: Schedule) -> str | None:
        return self._local(schedule, schedule.start)

    def get_end(self, schedule: Schedule) -> str | None:
        return self._local(schedule, schedule.end)

    def get_next_run_at(self, schedule: Schedule) -> str | None:
        return self._local(schedule, schedule.next_run_at)

    def get_last_logical_date(self, schedule: Schedule) -> str | None:
        return self._local(schedule, schedule.last_logical_date)

    def get_next_fire_times(self, schedule: Schedule) -> list[str]:
        return [fire.isoformat() for fire in scheduling.upcoming(schedule, count=10)]
