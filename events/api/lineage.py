"""REST endpoints of the lineage graph (docs/lineage.md), all for every member
(`lineage.view`). A dataset's name may hold `/` and `:` (a URI), so it travels in the query
(`?name=`, `?dataset=`), never in the path; `?owner=<slug>` names another tenant's dataset,
visible only while that tenant shares it (else 404, as for a missing one):

- `datasets/`: the tenant's datasets (cursor pages);
- `datasets/by-name/?name=`: one, with its producers, consumers and latest updates;
- `dataset-updates/?dataset=`: its updates, newest first (cursor pages);
- `lineage/?dataset=&depth=&direction=`: the graph around it;
- `workflows/{workflow}/lineage/`, `runs/{run_id}/lineage/`: what a workflow reads and
  writes, and the versions a run read and produced."""

from __future__ import annotations

from typing import Any

from django.db.models import QuerySet
from django.urls import path
from drf_spectacular.utils import OpenApiParameter, extend_schema, extend_schema_view
from rest_framework import exceptions, mixins, serializers
from rest_framework.request import Request
from rest_framework.response import Response
from rest_framework.utils.urls import replace_query_param

from events import lineage
from orchestrator.api.base import TenantScopedViewSet
from orchestrator.api.pagination import CursorPagination
from orchestrator.integers import ascii_int
from runs.models import DatasetUpdate, WorkflowRun
from runs.selectors import get_run
from workflows.models import Workflow
from workflows.selectors import get_workflow

__all__ = [
    "DatasetUpdateViewSet",
    "DatasetViewSet",
    "LineageViewSet",
    "urlpatterns",
]

PERMISSION = "lineage.view"
ROLES = "outlet (written), inlet (read), sensor (waited for) or schedule (runs the workflow)"


# --- answers -------------------------------------------------------------------------------


class DatasetSummarySerializer(serializers.Serializer[Any]):
    tenant = serializers.CharField(help_text="the slug of the tenant that owns the dataset")
    name = serializers.CharField()
    last_updated_at = serializers.DateTimeField(allow_null=True)
    producers = serializers.IntegerField(help_text="this tenant's workflows writing it")
    consumers = serializers.IntegerField(
        help_text="this tenant's workflows reading it, waiting for it or scheduled on it"
    )


class DatasetUpdateSerializer(serializers.Serializer[Any]):
    id = serializers.IntegerField()
    tenant = serializers.CharField(help_text="the slug of the tenant that owns the dataset")
    dataset = serializers.CharField()
    created_at = serializers.DateTimeField()
    run_id = serializers.IntegerField(allow_null=True)
    workflow = serializers.CharField(allow_null=True)
    task_id = serializers.CharField()
    logical_date = serializers.DateTimeField(allow_null=True)
    metadata = serializers.DictField(help_text="what the task returned for the dataset")


class TaskReferenceSerializer(serializers.Serializer[Any]):
    workflow = serializers.CharField()
    task_id = serializers.CharField(allow_null=True, help_text="null for the schedule")
    role = serializers.CharField(help_text=ROLES)


class ExternalConsumersSerializer(serializers.Serializer[Any]):
    tenant = serializers.CharField()
    workflows = serializers.IntegerField()


class DatasetDetailSerializer(serializers.Serializer[Any]):
    tenant = serializers.CharField(help_text="the slug of the tenant that owns the dataset")
    name = serializers.CharField()
    created_at = serializers.DateTimeField(
        allow_null=True, help_text="null: named by workflows, never updated"
    )
    last_updated_at = serializers.DateTimeField(allow_null=True)
    producers = TaskReferenceSerializer(many=True)
    consumers = TaskReferenceSerializer(many=True)
    external_consumers = ExternalConsumersSerializer(
        many=True,
        help_text="other tenants' workflows reading it (only counts, only of tenants it is "
        "shared with; for the owner)",
    )
    updates = DatasetUpdateSerializer(
        many=True, help_text=f"the latest {lineage.UPDATES_SHOWN}, newest first"
    )


class LineageNodeSerializer(serializers.Serializer[Any]):
    id = serializers.CharField(help_text="`kind:tenant:name`")
    kind = serializers.ChoiceField(choices=["dataset", "workflow"])
    tenant = serializers.CharField()
    name = serializers.CharField()


class LineageEdgeSerializer(serializers.Serializer[Any]):
    """Data flows `from` -> `to`: a task writes a dataset (`outlet`), or a dataset is
    read by a task (`inlet`, `sensor`) or schedules a workflow (`schedule`)."""

    role = serializers.CharField(help_text=ROLES)
    task_id = serializers.CharField(allow_null=True, help_text="null for a schedule")

    def get_fields(self) -> dict[str, Any]:
        # `from` is a keyword: declared here instead of as class attributes.
        fields: dict[str, Any] = {
            "from": serializers.CharField(source="source", help_text="a node's id"),
            "to": serializers.CharField(source="target", help_text="a node's id"),
        }
        return fields | dict(super().get_fields())


class LineageGraphSerializer(serializers.Serializer[Any]):
    dataset = LineageNodeSerializer()
    depth = serializers.IntegerField()
    direction = serializers.ChoiceField(choices=lineage.DIRECTIONS)
    nodes = LineageNodeSerializer(many=True, help_text="the dataset first")
    edges = LineageEdgeSerializer(many=True)
    updates = DatasetUpdateSerializer(
        many=True, help_text=f"the dataset's latest {lineage.UPDATES_SHOWN}, newest first"
    )
    external_consumers = ExternalConsumersSerializer(many=True)


class DatasetUseSerializer(serializers.Serializer[Any]):
    task_id = serializers.CharField(allow_null=True, help_text="null for the schedule")
    role = serializers.CharField(help_text=ROLES)
    tenant = serializers.CharField(help_text="the slug of the tenant that owns the dataset")
    dataset = serializers.CharField()
    visible = serializers.BooleanField(
        help_text="this tenant's own dataset, or one its owner shares with it"
    )


class WorkflowLineageSerializer(serializers.Serializer[Any]):
    workflow = serializers.CharField()
    reads = DatasetUseSerializer(many=True, help_text="inlets, sensors and the schedule")
    writes = DatasetUseSerializer(many=True, help_text="outlets")


class ReadVersionSerializer(serializers.Serializer[Any]):
    task_id = serializers.CharField(allow_null=True, help_text="null for a trigger")
    role = serializers.CharField(help_text="inlet, or trigger (an update that started the run)")
    tenant = serializers.CharField()
    dataset = serializers.CharField()

    def get_fields(self) -> dict[str, Any]:
        # `update` is declared here: as a class attribute it would hide Serializer.update.
        fields: dict[str, Any] = super().get_fields()
        fields["update"] = DatasetUpdateSerializer(
            allow_null=True,
            help_text="the version read: the latest update before the task started (null: "
            "none, or not shared), or the update that triggered the run",
        )
        return fields


class RunLineageSerializer(serializers.Serializer[Any]):
    run_id = serializers.IntegerField()
    read = ReadVersionSerializer(many=True)
    produced = DatasetUpdateSerializer(many=True)


# --- query parameters ------------------------------------------------------------------------

OWNER = OpenApiParameter(
    "owner",
    str,
    description="the slug of the tenant that owns the dataset, when another tenant shares "
    "it with this one (default: this tenant)",
)


def _required(request: Request, name: str) -> str:
    value = request.query_params.get(name, "")
    if not value:
        raise exceptions.ValidationError({name: ["required: a dataset's name"]})
    return value


def _depth(request: Request) -> Any:
    raw = request.query_params.get("depth", "")
    if raw == "":
        return 1
    number = ascii_int(raw)
    return raw if number is None else number  # the selector names what it accepts


# --- the datasets --------------------------------------------------------------------------


@extend_schema_view(list=extend_schema(responses=DatasetSummarySerializer(many=True)))
class DatasetViewSet(mixins.ListModelMixin, TenantScopedViewSet):
    """The tenant's datasets (updated ones, and those its workflows only name) and the
    shared datasets of other tenants its workflows name, by name, then owner."""

    model = DatasetUpdate  # rows are read by events.lineage
    serializer_class = DatasetSummarySerializer
    permissions = {"list": PERMISSION, "by_name": PERMISSION}

    def list(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        # Keyset pages over two sources (datasets and names workflows use): a page of
        # events.lineage.datasets_of, with the project's `limit` and `{results, next}`.
        limit = CursorPagination().get_page_size(request)
        raw = request.query_params.get("cursor")
        page = lineage.datasets_of(
            self.tenant, after=lineage.decode_cursor(raw) if raw else None, limit=limit
        )
        after = page.next_after
        link = request.build_absolute_uri()
        return Response(
            {
                "results": DatasetSummarySerializer(page.results, many=True).data,
                "next": replace_query_param(link, "cursor", lineage.encode_cursor(after))
                if after
                else None,
            }
        )

    @extend_schema(
        parameters=[OpenApiParameter("name", str, required=True), OWNER],
        responses=DatasetDetailSerializer,
    )
    def by_name(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        """A dataset by its name: this tenant's workflows writing and reading it (by task),
        other tenants reading it (counts), and its latest updates."""
        detail = lineage.dataset_detail(
            self.tenant, _required(request, "name"), owner=request.query_params.get("owner", "")
        )
        return Response(DatasetDetailSerializer(detail).data)


@extend_schema_view(
    list=extend_schema(
        parameters=[
            OpenApiParameter(
                "dataset", str, description="a dataset's name (default: every dataset's)"
            ),
            OWNER,
        ]
    )
)
class DatasetUpdateViewSet(mixins.ListModelMixin, TenantScopedViewSet):
    """Dataset updates (the versions tasks' outlets wrote), newest first: of one dataset,
    or of every dataset of the tenant."""

    model = DatasetUpdate
    serializer_class = DatasetUpdateSerializer
    permissions = {"list": PERMISSION}

    def safely_get_queryset(self, queryset: QuerySet[Any]) -> QuerySet[Any]:
        params = self.request.query_params
        name = params.get("dataset", "")
        if name:
            # Another tenant's rows when it shares the dataset: the selector checks.
            return lineage.dataset_updates(self.tenant, name, owner=params.get("owner", ""))
        if params.get("owner"):
            raise exceptions.ValidationError({"dataset": ["required with `owner`"]})
        return queryset.select_related("workflow", "tenant", "dataset")

    def list(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        rows = self.paginate_queryset(self.get_queryset()) or []
        data = DatasetUpdateSerializer(lineage.as_updates(rows), many=True).data
        return self.get_paginated_response(data)


# --- the graph, a workflow, a run ------------------------------------------------------------


class LineageViewSet(TenantScopedViewSet):
    """The graph around a dataset; what a workflow reads and writes; what a run read and
    produced."""

    model = WorkflowRun  # rows are read by events.lineage
    permissions = {"graph": PERMISSION, "workflow": PERMISSION, "run": PERMISSION}

    @extend_schema(
        parameters=[
            OpenApiParameter("dataset", str, required=True, description="the dataset's name"),
            OWNER,
            OpenApiParameter(
                "depth",
                int,
                description=f"steps each way, 1 to {lineage.DEPTH_MAX} (default 1): a step is "
                "the workflows writing (reading) a dataset and what they read (write)",
            ),
            OpenApiParameter(
                "direction", str, enum=list(lineage.DIRECTIONS), description="default both"
            ),
        ],
        responses=LineageGraphSerializer,
    )
    def graph(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        """The graph around a dataset: nodes (datasets and workflows) and edges."""
        params = request.query_params
        graph = lineage.dataset_graph(
            self.tenant,
            _required(request, "dataset"),
            publisher=params.get("owner", ""),
            depth=_depth(request),
            direction=params.get("direction", "both"),
        )
        return Response(LineageGraphSerializer(graph).data)

    @extend_schema(responses=WorkflowLineageSerializer)
    def workflow(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        """What the workflow's current version reads and writes, by task."""
        found: Workflow = get_workflow(kwargs["workflow"])
        return Response(WorkflowLineageSerializer(lineage.workflow_lineage(found)).data)

    @extend_schema(responses=RunLineageSerializer)
    def run(self, request: Request, *args: Any, **kwargs: Any) -> Response:
        """The dataset versions the run read (its tasks' inlets when they started, the
        updates that triggered it) and those it produced."""
        found = get_run(kwargs["run_id"])
        read = lineage.run_lineage(found, tenant=self.tenant)
        return Response(RunLineageSerializer(read).data)


def _get(viewset: type[TenantScopedViewSet], action: str, basename: str) -> Any:
    return viewset.as_view({"get": action}, basename=basename, detail=False)


# Mounted under /api/v1/tenants/<tenant>/ by events/api/urls.py.
urlpatterns = [
    path("datasets/", _get(DatasetViewSet, "list", "dataset"), name="dataset-list"),
    path("datasets/by-name/", _get(DatasetViewSet, "by_name", "dataset"), name="dataset-by-name"),
    path(
        "dataset-updates/",
        _get(DatasetUpdateViewSet, "list", "dataset-update"),
        name="dataset-update-list",
    ),
    path("lineage/", _get(LineageViewSet, "graph", "lineage"), name="lineage-graph"),
    path(
        "workflows/<str:workflow>/lineage/",
        _get(LineageViewSet, "workflow", "lineage"),
        name="workflow-lineage",
    ),
    path("runs/<int:run_id>/lineage/", _get(LineageViewSet, "run", "lineage"), name="run-lineage"),
]
