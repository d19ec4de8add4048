"""REST endpoints of workflows: apply (JSON or YAML), read, versions, diff, pause."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from drf_spectacular.types import OpenApiTypes
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from rest_framework import exceptions, mixins, status
from rest_framework.decorators import action
from rest_framework.permissions import AllowAny
from rest_framework.renderers import JSONRenderer
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.views import APIView

from orchestrator.api.base import HTTP_METHOD_NAMES, TenantScopedViewSet
from orchestrator.api.parsers import BoundedJSONParser
from orchestrator.api.schema import add_json_schema_components
from orchestrator.integers import ascii_int
from workflows import scheduling, services
from workflows.api.formats import RawSpecParser, YAMLRenderer
from workflows.api.serializers import (
    ApplyFilesSerializer,
    ApplyPlanSerializer,
    ScheduleSerializer,
    VersionDiffSerializer,
    VersionSerializer,
    VersionSummarySerializer,
    WorkflowAppliedSerializer,
    WorkflowSerializer,
)
from workflows.models import Workflow, WorkflowVersion
from workflows.schema import spec_json_schema
from workflows.selectors import get_version, get_workflow, live_workflows

__all__ = ["SpecSchemaView", "VersionViewSet", "WorkflowViewSet", "add_workflow_spec_schema"]

# The spec's JSON Schema (the one /api/v1/workflow-spec.schema.json serves) is the
# component `WorkflowSpec` of the OpenAPI document. A YAML body is the same spec as text,
# described as bytes so that generated clients send it as it is.
APPLIED = WorkflowAppliedSerializer
SPEC_BODY = {
    "application/json": {"$ref": "#/components/schemas/WorkflowSpec"},
    "application/yaml": {
        "type": "string",
        "format": "binary",
        "description": "a WorkflowSpec in YAML",
    },
}


def add_workflow_spec_schema(result: dict[str, Any], **kwargs: Any) -> dict[str, Any]:
    """drf-spectacular postprocessing hook: the spec's JSON Schema as components."""
    return add_json_schema_components(result, "WorkflowSpec", spec_json_schema())


def _bool_param(request: Request, name: str) -> bool | None:
    raw = request.query_params.get(name)
    if raw is None or raw == "":
        return None
    if raw.lower() in ("true", "1", "yes"):
        return True
    if raw.lower() in ("false", "0", "no"):
        return False
    raise exceptions.ValidationError({name: ["expected true or false"]})


@extend_schema_view(
    list=extend_schema(
        parameters=[
            OpenApiParameter("tag", str, description="only workflows with this tag"),
            OpenApiParameter("paused", bool),
            OpenApiParameter("search", str, description="in name and description"),
        ]
    )
)
class WorkflowViewSet(mixins.ListModelMixin, mixins.RetrieveModelMixin, TenantScopedViewSet):
    """Workflows. POST or PUT a spec (JSON, or YAML with Content-Type: application/yaml)
    to create a workflow or give it a new version; an identical spec changes nothing."""

    model = Workflow
    serializer_class = WorkflowSerializer
    lookup_field = "name"
    lookup_url_kwarg = "workflow"
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
        "apply_files": "workflow.edit",
        # The workflow named "apply" shares its URL with the action: see apply_files.
        "retrieve_apply": "workflow.view",
        "update_apply": "workflow.edit",
        "destroy_apply": "workflow.edit",
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

    @extend_schema(request=SPEC_BODY, responses={201: APPLIED, 200: APPLIED})
    def create(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return self._apply(request, None)

    @extend_schema(request=SPEC_BODY, responses={201: APPLIED, 200: APPLIED})
    def update(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return self._apply(request, kwargs["workflow"])

    @extend_schema(
        parameters=[OpenApiParameter("force", bool, description="delete even with active runs")]
    )
    def destroy(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        services.delete_workflow(
            actor=self.actor,
            workflow=get_workflow(kwargs["workflow"]),
            force=bool(_bool_param(request, "force")),
        )
        return Response(status=status.HTTP_204_NO_CONTENT)

    @extend_schema(request=None, responses=WorkflowSerializer)
    @action(detail=True, methods=["post"])
    def pause(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        workflow = services.set_paused(
            actor=self.actor, workflow=get_workflow(kwargs["workflow"]), paused=True
        )
        return Response(self.get_serializer(workflow).data)

    @extend_schema(request=None, responses=WorkflowSerializer)
    @action(detail=True, methods=["post"])
    def unpause(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        workflow = services.set_paused(
            actor=self.actor, workflow=get_workflow(kwargs["workflow"]), paused=False
        )
        return Response(self.get_serializer(workflow).data)

    @extend_schema(
        operation_id="apply_workflows",
        request=ApplyFilesSerializer,
        responses=ApplyPlanSerializer,
    )
    @action(
        detail=False,
        methods=["post"],
        url_path="apply",
        url_name="apply",
        parser_classes=[BoundedJSONParser],
    )
    def apply_files(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        """Sync the tenant to a set of spec files, as `manage.py apply` does: all files are
        validated first (an invalid one: 400, every error with its `file`, nothing applied),
        then applied in one transaction; `prune` deletes the live workflows no file defines;
        `dry_run` keeps nothing and answers the same plan."""
        body = ApplyFilesSerializer(data=request.data)
        body.is_valid(raise_exception=True)
        data = body.validated_data
        plan = services.apply_workflows(
            actor=self.actor,
            tenant=self.tenant,
            files=[(f["path"], f["content"]) for f in data["files"]],
            dry_run=data["dry_run"],
            prune=data["prune"],
            source_commit=data["source_commit"],
        )
        return Response(ApplyPlanSerializer(plan.as_dict()).data)

    # `.../workflows/apply/` is the action's URL and the URL of a workflow named "apply":
    # POST is the action (a workflow's URL takes no POST), the other methods the workflow.
    @extend_schema(exclude=True)
    @apply_files.mapping.get
    def retrieve_apply(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        self.kwargs["workflow"] = "apply"
        return self.retrieve(request, *args, workflow="apply", **kwargs)

    @extend_schema(exclude=True)
    @apply_files.mapping.put
    def update_apply(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return self._apply(request, "apply")

    @extend_schema(exclude=True)
    @apply_files.mapping.delete
    def destroy_apply(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        return self.destroy(request, *args, workflow="apply", **kwargs)

    @extend_schema(responses=ScheduleSerializer)
    @action(detail=True, methods=["get"])
    def schedule(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        """The workflow's schedule and its next 10 fire times, in its timezone."""
        schedule = scheduling.get_schedule(get_workflow(kwargs["workflow"]))
        return Response(ScheduleSerializer(schedule).data)


@extend_schema_view(
    list=extend_schema(responses={(200, "application/json"): VersionSummarySerializer})
)
class VersionViewSet(mixins.ListModelMixin, TenantScopedViewSet):
    """A workflow's versions, newest first. A version's spec comes as JSON, or as YAML
    (ready to apply again) with Accept: application/yaml."""

    model = WorkflowVersion
    serializer_class = VersionSerializer
    lookup_field = "number"
    lookup_url_kwarg = "version"
    lookup_value_regex = r"[0-9]+"
    renderer_classes = [JSONRenderer, YAMLRenderer]
    permissions = {"list": "workflow.view", "retrieve": "workflow.view", "diff": "workflow.view"}

    def safely_get_queryset(self, queryset: QuerySet[Any]) -> QuerySet[Any]:
        workflow = get_workflow(self.kwargs["workflow"])
        return queryset.filter(workflow=workflow).select_related("author", "workflow")

    def get_serializer_class(self) -> Any:
        return VersionSummarySerializer if self.action == "list" else VersionSerializer

    def list(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        if request.accepted_renderer.format == "yaml":
            raise exceptions.NotAcceptable("a list of versions is JSON only")
        return super().list(request, *args, **kwargs)

    @extend_schema(
        responses={
            (200, "application/json"): VersionSerializer,
            (200, "application/yaml"): {"type": "object", "description": "the spec, in YAML"},
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
        responses=VersionDiffSerializer,
    )
    @action(detail=True, methods=["get"], renderer_classes=[JSONRenderer])
    def diff(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        version = self.get_object()
        against = request.query_params.get("against", "")
        number = ascii_int(against)
        if number is None:
            raise exceptions.ValidationError({"against": ["a version number is required"]})
        other = get_version(version.workflow, number)
        return Response(
            {"from": other.number, "to": version.number, "diff": services.spec_diff(other, version)}
        )


class SpecSchemaView(APIView):
    """The JSON Schema of workflow specs, for editors that validate as you type."""

    permission_classes = [AllowAny]
    authentication_classes: list[Any] = []
    http_method_names = HTTP_METHOD_NAMES

    @extend_schema(
        operation_id="get_workflow_spec_schema", tags=["workflows"], responses=OpenApiTypes.OBJECT
    )
    def get(self, request: Request) -> Response:
        return Response(spec_json_schema())
