"""REST endpoints of workflows: apply (JSON or YAML), read, versions, diff, pause."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, OpenApiResponse, extend_schema
from rest_framework import exceptions, mixins, status
from rest_framework.decorators import action
from rest_framework.permissions import AllowAny
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from orchestrator.api.base import TenantScopedViewSet
from workflows import scheduling, services
from workflows.api.formats import RawSpecParser, YAMLRenderer
from workflows.api.serializers import ScheduleSerializer, VersionSerializer, WorkflowSerializer
from workflows.models import Workflow, WorkflowVersion
from workflows.schema import spec_json_schema
from workflows.selectors import get_version, get_workflow, live_workflows

__all__ = ["SpecSchemaView", "VersionViewSet", "WorkflowViewSet"]

SPEC_BODY = {
    "application/json": {"type": "object", "description": "a workflow spec"},
    "application/yaml": {"type": "string", "description": "a workflow spec in YAML"},
}


def _bool_param(request: Request, name: str) -> bool | None:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return None
    if raw.lower() in ("true", "1", "yes"):
        return True
    if raw.lower() in ("false", "0", "no"):
        return False
    raise exceptions.ValidationError({name: ["expected true or false"]})


@extend_schema(
    parameters=[
        OpenApiParameter("tag", str, description="only workflows with this tag"),
        OpenApiParameter("paused", bool),
        OpenApiParameter("search", str, description="in name and description"),
    ]
)
class WorkflowViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, TenantScopedViewSet):
    """Workflows. POST or PUT a spec (JSON, or YAML with Content-Type: application/yaml)
    to create a workflow or give it a new version; an identical spec changes nothing."""

    model = Workflow
    serializer_class = WorkflowSerializer
    lookup_field = "name"
    parser_classes = [RawSpecParser]
    permissions = {
        "list": "workflow.view",
        "retrieve": "workflow.view",
        "create": "workflow.edit",
        "update": "workflow.edit",
        "destroy": "workflow.edit",
        "pause": "workflow.pause",
        "unpause": "workflow.pause",
        "schedule": "workflow.view",
    }

    def safely_get_queryset(self, queryset: QuerySet[Any]) -> QuerySet[Any]:
        request = self.request
        return live_workflows(
            tag=request.query_params.get("tag"),
            paused=_bool_param(request, "paused"),
            search=request.query_params.get("search"),
        ).filter(pk__in=queryset.values("pk"))

    def _apply(self, request: Request, name: str | None) -> Response:
        data = services.parse_spec(request.body, self.tenant)
        result = services.apply_workflow(actor=self.actor, tenant=self.tenant, data=data, name=name)
        body = {
            **WorkflowSerializer(result.workflow, context=self.get_serializer_context()).data,
            "created": result.created,
            "changed": result.changed,
        }
        return Response(body, status=status.HTTP_201_CREATED if result.created else 200)

    @extend_schema(request=SPEC_BODY, responses={201: WorkflowSerializer, 200: WorkflowSerializer})
    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return self._apply(request, None)

    @extend_schema(request=SPEC_BODY, responses={201: WorkflowSerializer, 200: WorkflowSerializer})
    def update(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return self._apply(request, kwargs["name"])

    @extend_schema(
        parameters=[OpenApiParameter("force", bool, description="delete even with active runs")]
    )
    def destroy(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        services.delete_workflow(
            actor=self.actor,
            workflow=get_workflow(kwargs["name"]),
            force=bool(_bool_param(request, "force")),
        )
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(request=None, responses=WorkflowSerializer)
    @action(detail=True, methods=["post"])
    def pause(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        workflow = services.set_paused(
            actor=self.actor, workflow=get_workflow(kwargs["name"]), paused=True
        )
        return Response(self.get_serializer(workflow).data)

    @extend_schema(request=None, responses=WorkflowSerializer)
    @action(detail=True, methods=["post"])
    def unpause(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        workflow = services.set_paused(
            actor=self.actor, workflow=get_workflow(kwargs["name"]), paused=False
        )
        return Response(self.get_serializer(workflow).data)

    @extend_schema(responses=ScheduleSerializer)
    @action(detail=True, methods=["get"])
    def schedule(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        """The workflow's schedule and its next 10 fire times, in its timezone."""
        schedule = scheduling.get_schedule(get_workflow(kwargs["name"]))
        return Response(ScheduleSerializer(schedule).data)


class VersionViewSet(mixins.ListModelMixin, TenantScopedViewSet):
    """A workflow's versions, newest first. A version's spec comes as JSON, or as YAML
    (ready to apply again) with Accept: application/yaml."""

    model = WorkflowVersion
    serializer_class = VersionSerializer
    lookup_field = "number"
    lookup_value_regex = r"[0-9]+"
    renderer_classes = [JSONRenderer, YAMLRenderer]
    permissions = {"list": "workflow.view", "retrieve": "workflow.view", "diff": "workflow.view"}

    def safely_get_queryset(self, queryset: QuerySet[Any]) -> QuerySet[Any]:
        workflow = get_workflow(self.kwargs["workflow_name"])
        return queryset.filter(workflow=workflow).select_related("author", "workflow")

    def get_serializer_context(self) -> dict[str, Any]:
        return {**super().get_serializer_context(), "brief": self.action == "list"}

    def list(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        if request.accepted_renderer.format == "yaml":
            raise exceptions.NotAcceptable("a list of versions is JSON only")
        return super().list(request, *args, **kwargs)

    @extend_schema(
        responses={
            (200, "application/json"): VersionSerializer,
            (200, "application/yaml"): OpenApiTypes.STR,
        }
    )
    def retrieve(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        version = self.get_object()
        if request.accepted_renderer.format == "yaml":
            return Response(version.spec)
        return Response(self.get_serializer(version).data)

    @extend_schema(
        parameters=[
            OpenApiParameter(
                "against", int, required=True, description="the version to compare with"
            )
        ],
        responses=OpenApiResponse(description="unified diff of the canonical YAML"),
    )
    @action(detail=True, methods=["get"], renderer_classes=[JSONRenderer])
    def diff(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        version = self.get_object()
        against = request.query_params.get("against", "")
        if not against.isdigit():
            raise exceptions.ValidationError({"against": ["a version number is required"]})
        other = get_version(version.workflow, int(against))
        return Response(
            {"from": other.number, "to": version.number, "diff": services.spec_diff(other, version)}
        )


class SpecSchemaView(APIView):
    """The JSON Schema of workflow specs, for editors that validate as you type."""

    permission_classes = [AllowAny]
    authentication_classes: list[Any] = []

    @extend_schema(responses={200: OpenApiTypes.OBJECT})
    def get(self, request: Request) -> Response:
        return Response(spec_json_schema())
