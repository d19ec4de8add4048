"""REST endpoints of runs: trigger and list a workflow's runs, read runs and their tasks."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from drf_spectacular.utils import OpenApiParameter, extend_schema
from rest_framework import exceptions, mixins, status
from rest_framework.request import Request
from rest_framework.response import Response

from orchestrator.api.base import TenantScopedViewSet
from orchestrator.api.views import parse_time
from runs import services
from runs.api.serializers import RunSerializer, TaskInstanceSerializer, TriggerSerializer
from runs.models import TaskInstance, WorkflowRun
from runs.selectors import get_run, get_task_instance, run_list, task_summary
from workflows.selectors import get_workflow

__all__ = ["RunViewSet", "TaskInstanceViewSet", "WorkflowRunViewSet"]


class WorkflowRunViewSet(mixins.ListModelMixin, TenantScopedViewSet):
    """A workflow's runs, newest first; POST triggers one (operators and above)."""

    model = WorkflowRun
    serializer_class = RunSerializer
    permissions = {"list": "run.view", "create": "run.operate"}

    def safely_get_queryset(self, queryset: QuerySet[Any]) -> QuerySet[Any]:
        workflow = get_workflow(self.kwargs["workflow_name"])
        return run_list().filter(workflow=workflow, pk__in=queryset.values("pk"))

    @extend_schema(request=TriggerSerializer, responses={201: RunSerializer})
    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        body = TriggerSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        run = services.trigger_run(
            actor=self.actor,
            workflow=get_workflow(kwargs["workflow_name"]),
            params=body.validated_data["params"],
        )
        context = {**self.get_serializer_context(), "summaries": {run.pk: task_summary(run)}}
        return Response(RunSerializer(run, context=context).data, status=status.HTTP_201_CREATED)


@extend_schema(
    parameters=[
        OpenApiParameter("workflow", str),
        OpenApiParameter("state", str, enum=[s.value for s in WorkflowRun.State]),
        OpenApiParameter("created_after", str, description="ISO 8601 with a timezone"),
        OpenApiParameter("created_before", str, description="ISO 8601 with a timezone"),
    ]
)
class RunViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, TenantScopedViewSet):
    """Runs of every workflow of the tenant, newest first."""

    model = WorkflowRun
    serializer_class = RunSerializer
    permissions = {"list": "run.view", "retrieve": "run.view"}

    def safely_get_queryset(self, queryset: QuerySet[Any]) -> QuerySet[Any]:
        params = self.request.query_params
        after, before = params.get("created_after"), params.get("created_before")
        state = params.get("state")
        if state and state not in WorkflowRun.State.values:
            raise exceptions.ValidationError(
                {"state": [f"unknown state; accepted: {', '.join(WorkflowRun.State.values)}"]}
            )
        return run_list(
            workflow=params.get("workflow"),
            state=params.get("state"),
            created_after=parse_time(after, "created_after") if after else None,
            created_before=parse_time(before, "created_before") if before else None,
        ).filter(pk__in=queryset.values("pk"))

    def retrieve(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        run = get_run(kwargs["pk"])
        context = {**self.get_serializer_context(), "summaries": {run.pk: task_summary(run)}}
        return Response(RunSerializer(run, context=context).data)


class TaskInstanceViewSet(mixins.ListModelMixin, TenantScopedViewSet):
    """A run's task instances; one by task id comes with its attempts."""

    model = TaskInstance
    serializer_class = TaskInstanceSerializer
    lookup_field = "task_id"
    permissions = {"list": "run.view", "retrieve": "run.view"}

    def safely_get_queryset(self, queryset: QuerySet[Any]) -> QuerySet[Any]:
        return queryset.filter(run=get_run(self.kwargs["run_pk"]))

    def retrieve(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        ti = get_task_instance(get_run(kwargs["run_pk"]), kwargs["task_id"])
        context = {**self.get_serializer_context(), "with_attempts": True}
        return Response(TaskInstanceSerializer(ti, context=context).data)
