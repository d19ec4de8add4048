"""The lineage graph over GraphQL: the same selectors (events.lineage), permission
(`lineage.view`) and cross-tenant visibility as REST (events/api/lineage.py). A dataset
another tenant shares is named with `owner: "<its slug>"`; one not shared is NOT_FOUND, as
a missing one is. Nothing here changes anything: LineageMutation stays empty."""

from __future__ import annotations

import datetime as dt
from typing import Any

import strawberry
from strawberry.scalars import JSON
from strawberry.types import Info

from events import lineage
from orchestrator.graphql.types import LIST_LIMIT_DEFAULT, list_limit, tenant_scope_for
from runs.selectors import get_run
from workflows.selectors import get_workflow

__all__ = ["LineageMutation", "LineageQuery"]

PERMISSION = "lineage.view"


@strawberry.type(name="DatasetSummary")
class DatasetSummaryType:
    tenant: str = strawberry.field(description="the slug of the tenant that owns the dataset")
    name: str
    last_updated_at: dt.datetime | None
    producers: int = strawberry.field(description="this tenant's workflows writing it")
    consumers: int = strawberry.field(
        description="this tenant's workflows reading it, waiting for it or scheduled on it"
    )


@strawberry.type(name="DatasetPage")
class DatasetPageType:
    results: list[DatasetSummaryType]
    next: str | None = strawberry.field(
        description="pass it as `cursor` for the next page; null on the last"
    )


@strawberry.type(name="DatasetUpdate")
class DatasetUpdateType:
    """A version of a dataset: what one task of one run wrote."""

    id: int
    tenant: str = strawberry.field(description="the slug of the tenant that owns the dataset")
    dataset: str
    created_at: dt.datetime
    run_id: int | None
    workflow: str | None
    task_id: str
    logical_date: dt.datetime | None
    metadata: JSON = strawberry.field(description="what the task returned for the dataset")


@strawberry.type(name="DatasetTaskReference")
class TaskReferenceType:
    workflow: str
    task_id: str | None = strawberry.field(description="null for the schedule")
    role: str = strawberry.field(description="outlet, inlet, sensor or schedule")


@strawberry.type(name="DatasetExternalConsumers")
class ExternalConsumersType:
    tenant: str
    workflows: int


@strawberry.type(name="DatasetDetail")
class DatasetDetailType:
    tenant: str = strawberry.field(description="the slug of the tenant that owns the dataset")
    name: str
    created_at: dt.datetime | None = strawberry.field(
        description="null: named by workflows, never updated"
    )
    last_updated_at: dt.datetime | None
    producers: list[TaskReferenceType]
    consumers: list[TaskReferenceType]
    external_consumers: list[ExternalConsumersType] = strawberry.field(
        description="other tenants' workflows reading it (counts, of tenants it is shared with)"
    )
    updates: list[DatasetUpdateType] = strawberry.field(
        description=f"the latest {lineage.UPDATES_SHOWN}, newest first"
    )


@strawberry.type(name="LineageNode")
class NodeType:
    id: str = strawberry.field(description="kind:tenant:name")
    kind: str = strawberry.field(description="dataset or workflow")
    tenant: str
    name: str


@strawberry.type(name="LineageEdge")
class EdgeType:
    """Data flows `from` -> `to`: a task writes a dataset (outlet), or a dataset is read by
    a task (inlet, sensor) or schedules a workflow (schedule)."""

    source: str = strawberry.field(name="from", description="a node's id")
    target: str = strawberry.field(name="to", description="a node's id")
    role: str
    task_id: str | None = strawberry.field(description="null for a schedule")


@strawberry.type(name="LineageGraph")
class LineageGraphType:
    dataset: NodeType
    depth: int
    direction: str
    nodes: list[NodeType] = strawberry.field(description="the dataset first")
    edges: list[EdgeType]
    updates: list[DatasetUpdateType]
    external_consumers: list[ExternalConsumersType]


@strawberry.type(name="DatasetUse")
class DatasetUseType:
    task_id: str | None = strawberry.field(description="null for the schedule")
    role: str
    tenant: str
    dataset: str
    visible: bool = strawberry.field(
        description="this tenant's own dataset, or one its owner shares with it"
    )


@strawberry.type(name="WorkflowLineage")
class WorkflowLineageType:
    workflow: str
    reads: list[DatasetUseType]
    writes: list[DatasetUseType]


@strawberry.type(name="DatasetVersionRead")
class ReadVersionType:
    task_id: str | None = strawberry.field(description="null for a trigger")
    role: str = strawberry.field(description="inlet, or trigger")
    tenant: str
    dataset: str
    update: DatasetUpdateType | None


@strawberry.type(name="RunLineage")
class RunLineageType:
    run_id: int
    read: list[ReadVersionType]
    produced: list[DatasetUpdateType]


# The selectors' dataclasses have the types' fields: they are returned as they are.


@strawberry.type
class LineageQuery:
    @strawberry.field(
        description="The tenant's datasets and the shared ones its workflows name, by name; "
        "page with `cursor` = the last page's `next`."
    )  # type: ignore[untyped-decorator]
    def datasets(
        self, info: Info, tenant: str, limit: int = LIST_LIMIT_DEFAULT, cursor: str | None = None
    ) -> DatasetPageType:
        limit = list_limit(limit)
        with tenant_scope_for(info, tenant, PERMISSION) as found:
            after = lineage.decode_cursor(cursor) if cursor else None
            page = lineage.datasets_of(found, after=after, limit=limit)
        after = page.next_after
        next_cursor = lineage.encode_cursor(after) if after is not None else None
        return DatasetPageType(results=page.results, next=next_cursor)  # type: ignore[arg-type]

    @strawberry.field(
        description="A dataset by name (`owner`: another tenant's slug, when shared); null "
        "with NOT_FOUND otherwise."
    )  # type: ignore[untyped-decorator]
    def dataset(
        self, info: Info, tenant: str, name: str, owner: str | None = None
    ) -> DatasetDetailType | None:
        with tenant_scope_for(info, tenant, PERMISSION) as found:
            return lineage.dataset_detail(found, name, owner=owner or "")  # type: ignore[return-value]

    @strawberry.field(
        description="A dataset's updates, newest first; page with `beforeId` = the last id "
        "you received."
    )  # type: ignore[untyped-decorator]
    def dataset_updates(
        self,
        info: Info,
        tenant: str,
        dataset: str,
        owner: str | None = None,
        before_id: int | None = None,
        limit: int = LIST_LIMIT_DEFAULT,
    ) -> list[DatasetUpdateType]:
        limit = list_limit(limit)
        with tenant_scope_for(info, tenant, PERMISSION) as found:
            rows = lineage.dataset_updates(found, dataset, owner=owner or "").order_by("-id")
            if before_id is not None:
                rows = rows.filter(id__lt=before_id)
            return lineage.as_updates(rows[:limit])  # type: ignore[return-value]

    @strawberry.field(
        description=f"The graph around a dataset: `depth` steps (1 to {lineage.DEPTH_MAX}) "
        "upstream, downstream or both."
    )  # type: ignore[untyped-decorator]
    def lineage(
        self,
        info: Info,
        tenant: str,
        dataset: str,
        owner: str | None = None,
        depth: int = 1,
        direction: str = "both",
    ) -> LineageGraphType | None:
        with tenant_scope_for(info, tenant, PERMISSION) as found:
            graph: Any = lineage.dataset_graph(
                found, dataset, publisher=owner or "", depth=depth, direction=direction
            )
            return graph  # type: ignore[no-any-return]

    @strawberry.field(description="What a workflow's current version reads and writes, by task.")  # type: ignore[untyped-decorator]
    def workflow_lineage(
        self, info: Info, tenant: str, workflow: str
    ) -> WorkflowLineageType | None:
        with tenant_scope_for(info, tenant, PERMISSION):
            return lineage.workflow_lineage(get_workflow(workflow))  # type: ignore[return-value]

    @strawberry.field(description="The dataset versions a run read and produced.")  # type: ignore[untyped-decorator]
    def run_lineage(self, info: Info, tenant: str, run_id: int) -> RunLineageType | None:
        with tenant_scope_for(info, tenant, PERMISSION) as found:
            return lineage.run_lineage(get_run(run_id), tenant=found)  # type: ignore[return-value]


@strawberry.type
class LineageMutation:
    pass
