from __future__ import annotations

from typing import Any

from rest_framework import serializers

from workflows.models import Workflow, WorkflowVersion

__all__ = ["VersionSerializer", "WorkflowSerializer"]


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
