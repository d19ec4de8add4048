"""Admin for platform staff: workflows and their versions, read-only (specs change through
the API or `manage.py apply`), with pause/unpause actions and a diff of each version, and
where each schedule stands."""

from __future__ import annotations

from typing import Any

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.utils.html import format_html

from orchestrator.actors import Actor
from orchestrator.errors import DomainError
from workflows import services
from workflows.models import Schedule, Workflow, WorkflowVersion


def _actor(request: HttpRequest) -> Actor:
    return Actor(user=request.user, source="admin", request_id=getattr(request, "request_id", None))


class ReadOnlyAdmin(admin.ModelAdmin):  # type: ignore[type-arg]
    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return False


@admin.register(Workflow)
class WorkflowAdmin(ReadOnlyAdmin):
    list_display = ["name", "tenant", "paused", "version_number", "updated_at", "deleted_at"]
    list_filter = ["tenant", "paused", ("deleted_at", admin.EmptyFieldListFilter)]
    search_fields = ["name", "description", "tenant__slug"]
    actions = ["pause", "unpause"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Workflow]:
        return Workflow.objects.dangerously_unscoped().select_related("tenant", "current_version")

    @admin.display(description="version")
    def version_number(self, obj: Workflow) -> int | None:
        return obj.current_version.number if obj.current_version else None

    def _set_paused(self, request: HttpRequest, queryset: QuerySet[Workflow], paused: bool) -> None:
        done = 0
        for workflow in queryset:
            try:
                services.set_paused(actor=_actor(request), workflow=workflow, paused=paused)
                done += 1
            except DomainError as exc:
                self.message_user(request, f"{workflow}: {exc.message}", messages.ERROR)
        self.message_user(request, f"{'paused' if paused else 'unpaused'} {done} workflow(s)")

    @admin.action(description="Pause the selected workflows")
    def pause(self, request: HttpRequest, queryset: QuerySet[Workflow]) -> None:
        self._set_paused(request, queryset, True)

    @admin.action(description="Unpause the selected workflows")
    def unpause(self, request: HttpRequest, queryset: QuerySet[Workflow]) -> None:
        self._set_paused(request, queryset, False)

    def has_change_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        # Lets staff run the pause/unpause actions; the fields themselves stay read-only.
        return obj is None and bool(getattr(request.user, "is_superuser", False))


@admin.register(Schedule)
class ScheduleAdmin(ReadOnlyAdmin):
    """Where each schedule stands: staff see why a workflow did (not) fire. Schedules
    change with the workflow's spec (apply) and pause/unpause, never here."""

    list_display = ["workflow", "tenant", "cron", "timezone", "catchup", "next_run_at"]
    list_filter = ["tenant", "catchup", "timezone"]
    search_fields = ["workflow__name", "tenant__slug"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Schedule]:
        return Schedule.objects.dangerously_unscoped().select_related("workflow", "tenant")

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return bool(getattr(request.user, "is_superuser", False))


@admin.register(WorkflowVersion)
class WorkflowVersionAdmin(ReadOnlyAdmin):
    list_display = ["workflow", "number", "tenant", "author", "created_at", "content_hash"]
    list_filter = ["tenant"]
    search_fields = ["workflow__name", "content_hash"]
    fields = readonly_fields = (
        "workflow",
        "number",
        "tenant",
        "author",
        "created_at",
        "content_hash",
        "spec_yaml",
        "diff_with_previous",
    )

    def get_queryset(self, request: HttpRequest) -> QuerySet[WorkflowVersion]:
        return WorkflowVersion.objects.dangerously_unscoped().select_related(
            "workflow", "tenant", "author"
        )

    def has_view_permission(self, request: HttpRequest, obj: Any = None) -> bool:
        return bool(getattr(request.user, "is_superuser", False))

    @admin.display(description="spec")
    def spec_yaml(self, obj: WorkflowVersion) -> str:
        return format_html("<pre>{}</pre>", services.spec_yaml(obj.spec))

    @admin.display(description="diff with the previous version")
    def diff_with_previous(self, obj: WorkflowVersion) -> str:
        previous = (
            WorkflowVersion.objects.dangerously_unscoped()
            .filter(workflow_id=obj.workflow_id, number=obj.number - 1)
            .select_related("workflow")
            .first()
        )
        if previous is None:
            return "(first version)"
        return format_html("<pre>{}</pre>", services.spec_diff(previous, obj) or "(no change)")
