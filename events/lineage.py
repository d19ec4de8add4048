"""The lineage graph (DESIGN.md section 12), read: which workflows write and read which
datasets, from what the workflows' current versions declare (`DatasetReference`: outlets,
inlets, dataset sensors, dataset schedules), and which versions of the datasets runs read
and wrote (`DatasetUpdate`). Selectors only; callers are inside the viewing tenant's scope.

What another tenant sees (the conservative choice, docs/lineage.md):

- a tenant sees its own datasets and workflows;
- another tenant's dataset (its node and its updates) only while that tenant shares it
  with the viewer (a `dataset` grant of its name or "*"); the owner's workflows never
  appear, so the graph stops at a shared dataset: its producers are not followed;
- the owner of a dataset sees other tenants' workflows consuming it only as a count per
  tenant (`external_consumers`), and only of tenants it shares the dataset with; they are
  not nodes of its graph.

The graph is read a level at a time: two queries per level and direction (the references
of the frontier's datasets, then those of the workflows found), whatever its width."""

from __future__ import annotations

import base64
import binascii
import datetime as dt
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import reduce
from operator import or_
from typing import Any

from django.db import connection
from django.db.models import Count, F, OuterRef, Q, QuerySet, Subquery, Value
from django.db.models.functions import Coalesce, Collate, NullIf

from orchestrator.errors import Invalid, NotFound
from orchestrator.grants import ANY
from orchestrator.models import Grant, Tenant
from runs.graph import graph_for
from runs.models import Dataset, DatasetUpdate, TaskInstance, WorkflowRun
from workflows.models import DatasetReference, Workflow
from workflows.spec import DATASET_NAME_PATTERN, dataset_key

__all__ = [
    "DEPTH_MAX",
    "DIRECTIONS",
    "READS",
    "ROLE",
    "UPDATES_SHOWN",
    "DatasetDetail",
    "DatasetKey",
    "DatasetPage",
    "DatasetSummary",
    "DatasetUse",
    "Edge",
    "ExternalConsumers",
    "LineageGraph",
    "Node",
    "ReadVersion",
    "RunLineage",
    "TaskReference",
    "Update",
    "WorkflowLineage",
    "as_updates",
    "dataset_detail",
    "dataset_graph",
    "dataset_updates",
    "datasets_of",
    "decode_cursor",
    "encode_cursor",
    "run_has_lineage",
    "run_lineage",
    "workflow_lineage",
]

ROLE = DatasetReference.Role
READS = (ROLE.INLET, ROLE.SENSOR, ROLE.SCHEDULE)  # what a workflow reads (or waits for)
DIRECTIONS = ("both", "upstream", "downstream")
DEPTH_MAX = 5
UPDATES_SHOWN = 20  # a dataset's latest updates shown with it
_NAME = re.compile(DATASET_NAME_PATTERN)


# --- what the selectors return -------------------------------------------------------------


@dataclass(frozen=True, order=True)
class DatasetKey:
    """A dataset: its owner's slug and its name."""

    tenant: str
    name: str


@dataclass(frozen=True)
class Node:
    """A dataset or a workflow of the graph; `id` is `kind:tenant:name`."""

    id: str
    kind: str  # "dataset" | "workflow"
    tenant: str
    name: str


@dataclass(frozen=True, order=True)
class Edge:
    """Data flows from `source` to `target`: a workflow's task writes a dataset (role
    `outlet`), or a dataset is read by a workflow's task (`inlet`, `sensor`) or schedules
    the workflow (`schedule`, no task)."""

    source: str
    target: str
    role: str
    task_id: str | None


@dataclass(frozen=True)
class Update:
    """A version of a dataset: what one task of one run wrote."""

    id: int
    tenant: str  # the dataset's owner
    dataset: str
    created_at: dt.datetime
    run_id: int | None
    workflow: str | None
    task_id: str
    logical_date: dt.datetime | None
    metadata: dict[str, Any]


@dataclass(frozen=True)
class TaskReference:
    """A workflow (of the viewer) naming the dataset: `task_id` None for its schedule."""

    workflow: str
    task_id: str | None
    role: str


@dataclass(frozen=True)
class ExternalConsumers:
    """How many workflows of another tenant, which the dataset is shared with, read it."""

    tenant: str
    workflows: int


@dataclass(frozen=True)
class DatasetSummary:
    tenant: str
    name: str
    last_updated_at: dt.datetime | None
    producers: int  # the viewer's workflows writing it
    consumers: int  # the viewer's workflows reading it, waiting for it or scheduled on it


@dataclass(frozen=True)
class DatasetPage:
    """A page of `datasets_of`, and the key to ask for the next one after (None: last)."""

    results: list[DatasetSummary]
    next_after: DatasetKey | None


@dataclass(frozen=True)
class DatasetDetail:
    tenant: str
    name: str
    created_at: dt.datetime | None  # None: named by workflows, never updated
    last_updated_at: dt.datetime | None
    producers: list[TaskReference]
    consumers: list[TaskReference]
    external_consumers: list[ExternalConsumers]
    updates: list[Update]  # the latest UPDATES_SHOWN, newest first


@dataclass(frozen=True)
class LineageGraph:
    dataset: Node
    depth: int
    direction: str
    nodes: list[Node]
    edges: list[Edge]
    updates: list[Update]
    external_consumers: list[ExternalConsumers]


@dataclass(frozen=True)
class DatasetUse:
    """A dataset a workflow's task reads or writes (its schedule: `task_id` None);
    `visible`: the viewer's own, or shared with it."""

    task_id: str | None
    role: str
    tenant: str
    dataset: str
    visible: bool


@dataclass(frozen=True)
class WorkflowLineage:
    workflow: str
    reads: list[DatasetUse]
    writes: list[DatasetUse]


@dataclass(frozen=True)
class ReadVersion:
    """A version a run read: a task's inlet as it was when the task started (role
    `inlet`; `update` None when there was none, or the dataset is not shared), or an update
    that triggered the run (role `trigger`, no task)."""

    task_id: str | None
    role: str
    tenant: str
    dataset: str
    update: Update | None


@dataclass(frozen=True)
class RunLineage:
    run_id: int
    read: list[ReadVersion]
    produced: list[Update]


# --- who sees what -------------------------------------------------------------------------


@dataclass
class _Viewer:
    """The tenant looking, and the dataset grants other tenants gave it (read once, when
    first needed)."""

    tenant: Tenant
    _shared: dict[str, tuple[int, frozenset[str]]] | None = field(default=None, repr=False)

    @property
    def slug(self) -> str:
        return self.tenant.slug

    def owner_of(self, publisher: str) -> str:
        """A reference's `publisher` as the owner's slug ("" is the viewer itself)."""
        return publisher or self.slug

    def shared(self) -> dict[str, tuple[int, frozenset[str]]]:
        """Owner slug -> (its id, the names it shares with the viewer)."""
        if self._shared is None:
            found: dict[str, tuple[int, set[str]]] = {}
            grants = (
                Grant.objects.dangerously_unscoped()  # grants *to* the viewer, by others
                .filter(grantee=self.tenant, kind=Grant.Kind.DATASET)
                .filter(tenant__archived_at__isnull=True)
                .values_list("tenant_id", "tenant__slug", "name")
            )
            for owner_id, slug, name in grants:
                found.setdefault(slug, (owner_id, set()))[1].add(name)
            self._shared = {s: (i, frozenset(names)) for s, (i, names) in found.items()}
        return self._shared

    def visible(self, key: DatasetKey) -> bool:
        if key.tenant == self.slug:
            return True
        entry = self.shared().get(key.tenant)
        return entry is not None and (ANY in entry[1] or key.name in entry[1])

    def owner_id(self, slug: str) -> int:
        return self.tenant.pk if slug == self.slug else self.shared()[slug][0]


def _owner_annotation(slug: str) -> Any:
    """A reference's owner slug in SQL: its publisher, or the viewer's slug for ""."""
    return Coalesce(NullIf(F("publisher"), Value("")), Value(slug))


def _references(viewer: _Viewer, keys: Iterable[DatasetKey]) -> Q:
    """The viewer's references to these datasets, however they name the owner."""
    by_owner: dict[str, set[str]] = {}
    for key in keys:
        by_owner.setdefault(key.tenant, set()).add(key.name)
    conditions = [
        Q(publisher__in=["", owner] if owner == viewer.slug else [owner], dataset__in=names)
        for owner, names in by_owner.items()
    ]
    return reduce(or_, conditions, Q(pk__in=[]))


def _live_references() -> QuerySet[DatasetReference]:
    return DatasetReference.objects.filter(workflow__deleted_at__isnull=True)


def _resolve(viewer: _Viewer, name: str, owner: str) -> tuple[DatasetKey, Dataset | None]:
    """The dataset the caller names, if it may see it: its own (a Dataset row or a name
    its workflows use), or another tenant's that this tenant shares with it. NotFound
    otherwise, the same whether it is missing or not shared."""
    key = DatasetKey(owner or viewer.slug, name)
    missing = NotFound(
        f"dataset {name!r} not found"
        if key.tenant == viewer.slug
        else f"dataset {name!r} of tenant {key.tenant!r} not found (or not shared with you)"
    )
    if not _NAME.fullmatch(name) or not viewer.visible(key):
        raise missing  # a name no spec accepts names no dataset (nor goes to the database)
    # Another tenant's row only once a grant made it visible (checked above).
    row = (
        Dataset.objects.dangerously_unscoped()
        .filter(tenant_id=viewer.owner_id(key.tenant), name=name)
        .first()
    )
    if row is not None:
        return key, row
    named = _live_references().filter(_references(viewer, [key])).exists()
    if not named and key.tenant != viewer.slug:
        owner_refs = DatasetReference.objects.dangerously_unscoped().filter(
            tenant_id=viewer.owner_id(key.tenant),
            publisher__in=["", key.tenant],
            dataset=name,
            workflow__deleted_at__isnull=True,
        )
        named = owner_refs.exists()
    if not named:
        raise missing
    return key, None


# --- updates -------------------------------------------------------------------------------


def _update(row: DatasetUpdate, tenant: str, dataset: str) -> Update:
    workflow = row.workflow
    return Update(
        id=row.pk,
        tenant=tenant,
        dataset=dataset,
        created_at=row.created_at,
        run_id=row.run_id,
        workflow=workflow.name if workflow is not None else None,
        task_id=row.task_id,
        logical_date=row.logical_date,
        metadata=row.metadata,
    )


def as_updates(rows: Iterable[DatasetUpdate]) -> list[Update]:
    """Rows read with select_related("tenant", "dataset", "workflow"), as `Update`s."""
    return [_update(row, row.tenant.slug, row.dataset.name) for row in rows]


def dataset_updates(tenant: Tenant, name: str, *, owner: str = "") -> QuerySet[DatasetUpdate]:
    """Every update of a visible dataset, newest first (empty before the first one)."""
    viewer = _Viewer(tenant)
    _, row = _resolve(viewer, name, owner)
    # The dataset's own rows: visible (its own, or shared), as _resolve checked.
    updates = DatasetUpdate.objects.dangerously_unscoped()
    if row is None:
        return updates.none()
    return updates.filter(dataset=row).select_related("workflow", "tenant", "dataset")


def _latest_updates(row: Dataset | None, key: DatasetKey) -> list[Update]:
    if row is None:
        return []
    rows = (
        DatasetUpdate.objects.dangerously_unscoped()  # row is visible (see _resolve)
        .filter(dataset=row)
        .select_related("workflow")
        .order_by("-id")[:UPDATES_SHOWN]
    )
    return [_update(r, key.tenant, key.name) for r in rows]


# --- one dataset ---------------------------------------------------------------------------


def _external_consumers(viewer: _Viewer, key: DatasetKey) -> list[ExternalConsumers]:
    """Counts of other tenants' workflows reading the viewer's dataset, of the tenants it
    shares the dataset with (those of a tenant it does not share it with get nothing)."""
    if key.tenant != viewer.slug:
        return []
    grantees = dict(
        Grant.objects.filter(kind=Grant.Kind.DATASET, name__in=[key.name, ANY])
        .filter(grantee__archived_at__isnull=True)
        .values_list("grantee_id", "grantee__slug")
    )
    if not grantees:
        return []
    counts = (
        DatasetReference.objects.dangerously_unscoped()  # counted only, of the grantees
        .filter(tenant_id__in=grantees, publisher=viewer.slug, dataset=key.name, role__in=READS)
        .filter(workflow__deleted_at__isnull=True)
        .values("tenant_id")
        .annotate(workflows=Count("workflow_id", distinct=True))
        .order_by()
    )
    found = [ExternalConsumers(grantees[c["tenant_id"]], c["workflows"]) for c in counts]
    return sorted(found, key=lambda c: c.tenant)


def dataset_detail(tenant: Tenant, name: str, *, owner: str = "") -> DatasetDetail:
    """A dataset: the viewer's workflows writing it and reading it (by task), the other
    tenants reading it (counts, see the module's docstring), and its latest updates."""
    viewer = _Viewer(tenant)
    key, row = _resolve(viewer, name, owner)
    refs = (
        _live_references()
        .filter(_references(viewer, [key]))
        .values_list("workflow__name", "task_id", "role")
        .order_by("workflow__name", "task_id", "role")
    )
    producers: list[TaskReference] = []
    consumers: list[TaskReference] = []
    for workflow, task_id, role in refs:
        reference = TaskReference(workflow, task_id or None, role)
        (producers if role == ROLE.OUTLET else consumers).append(reference)
    updates = _latest_updates(row, key)
    return DatasetDetail(
        tenant=key.tenant,
        name=key.name,
        created_at=row.created_at if row is not None else None,
        last_updated_at=updates[0].created_at if updates else None,
        producers=producers,
        consumers=consumers,
        external_consumers=_external_consumers(viewer, key),
        updates=updates,
    )


# --- the graph -----------------------------------------------------------------------------


def _dataset_node(key: DatasetKey) -> Node:
    return Node(f"dataset:{key.tenant}:{key.name}", "dataset", key.tenant, key.name)


def _workflow_node(tenant: str, name: str) -> Node:
    return Node(f"workflow:{tenant}:{name}", "workflow", tenant, name)


@dataclass
class _Walk:
    """The graph as it grows: nodes by id, edges, and what each direction expanded."""

    viewer: _Viewer
    nodes: dict[str, Node] = field(default_factory=dict)
    edges: set[Edge] = field(default_factory=set)

    def dataset(self, key: DatasetKey) -> Node:
        return self.nodes.setdefault(_dataset_node(key).id, _dataset_node(key))

    def workflow(self, name: str) -> Node:
        node = _workflow_node(self.viewer.slug, name)
        return self.nodes.setdefault(node.id, node)

    def edge(self, source: Node, target: Node, role: str, task_id: str) -> None:
        self.edges.add(Edge(source.id, target.id, role, task_id or None))

    def upstream(self, frontier: set[DatasetKey], depth: int) -> None:
        """Producers of the frontier (the viewer's own datasets only), then what they
        read, `depth` times."""
        seen_datasets, seen_workflows = set(frontier), set[int]()
        for _ in range(depth):
            own = [k for k in frontier if k.tenant == self.viewer.slug]
            if not own:
                return
            writes = (
                _live_references()
                .filter(role=ROLE.OUTLET, dataset__in=[k.name for k in own])
                .values_list("workflow_id", "workflow__name", "task_id", "dataset")
            )
            found: dict[int, Node] = {}
            for workflow_id, workflow, task_id, name in writes:
                node = self.workflow(workflow)
                self.edge(
                    node, self.dataset(DatasetKey(self.viewer.slug, name)), ROLE.OUTLET, task_id
                )
                if workflow_id not in seen_workflows:
                    found[workflow_id] = node
            seen_workflows |= set(found)
            frontier = set()
            reads = DatasetReference.objects.filter(
                workflow_id__in=list(found), role__in=READS
            ).values_list("workflow_id", "task_id", "role", "publisher", "dataset")
            for workflow_id, task_id, role, publisher, name in reads:
                key = DatasetKey(self.viewer.owner_of(publisher), name)
                if not self.viewer.visible(key):
                    continue
                self.edge(self.dataset(key), found[workflow_id], role, task_id)
                if key not in seen_datasets:
                    frontier.add(key)
            seen_datasets |= frontier

    def downstream(self, frontier: set[DatasetKey], depth: int) -> None:
        """The viewer's workflows reading the frontier, then what they write, `depth`
        times."""
        seen_datasets, seen_workflows = set(frontier), set[int]()
        for _ in range(depth):
            if not frontier:
                return
            reads = (
                _live_references()
                .filter(_references(self.viewer, frontier), role__in=READS)
                .values_list(
                    "workflow_id", "workflow__name", "task_id", "role", "publisher", "dataset"
                )
            )
            found: dict[int, Node] = {}
            for workflow_id, workflow, task_id, role, publisher, name in reads:
                node = self.workflow(workflow)
                key = DatasetKey(self.viewer.owner_of(publisher), name)
                self.edge(self.dataset(key), node, role, task_id)
                if workflow_id not in seen_workflows:
                    found[workflow_id] = node
            seen_workflows |= set(found)
            frontier = set()
            writes = DatasetReference.objects.filter(
                workflow_id__in=list(found), role=ROLE.OUTLET
            ).values_list("workflow_id", "task_id", "dataset")
            for workflow_id, task_id, name in writes:
                key = DatasetKey(self.viewer.slug, name)
                self.edge(found[workflow_id], self.dataset(key), ROLE.OUTLET, task_id)
                if key not in seen_datasets:
                    frontier.add(key)
            seen_datasets |= frontier


def _checked(depth: Any, direction: Any) -> tuple[int, str]:
    errors = []
    if isinstance(depth, bool) or not isinstance(depth, int) or not 1 <= depth <= DEPTH_MAX:
        errors.append(("depth", f"must be an integer from 1 to {DEPTH_MAX}; got {depth!r}"))
    if direction not in DIRECTIONS:
        errors.append(("direction", f"accepted: {', '.join(DIRECTIONS)}; got {direction!r}"))
    if errors:
        raise Invalid(errors)
    return depth, direction


def dataset_graph(
    tenant: Tenant, name: str, *, publisher: str = "", depth: int = 1, direction: str = "both"
) -> LineageGraph:
    """The dataset, the workflows writing it and what they read (upstream), the workflows
    reading it and what they write (downstream), `depth` such steps (1 to 5) each way;
    with the dataset's latest updates. `publisher`: the owner's slug, "" for the tenant's
    own dataset."""
    depth, direction = _checked(depth, direction)
    viewer = _Viewer(tenant)
    key, row = _resolve(viewer, name, publisher)
    walk = _Walk(viewer)
    root = walk.dataset(key)
    if direction in ("both", "upstream"):
        walk.upstream({key}, depth)
    if direction in ("both", "downstream"):
        walk.downstream({key}, depth)
    nodes = [root, *sorted((n for n in walk.nodes.values() if n != root), key=_node_order)]
    return LineageGraph(
        dataset=root,
        depth=depth,
        direction=direction,
        nodes=nodes,
        edges=sorted(walk.edges),
        updates=_latest_updates(row, key),
        external_consumers=_external_consumers(viewer, key),
    )


def _node_order(node: Node) -> tuple[str, str, str]:
    return node.kind, node.tenant, node.name


# --- the tenant's datasets -----------------------------------------------------------------


def _bytewise(expression: Any) -> Any:
    """Compared and sorted by code point, as Python sorts the merged page, whatever the
    database's collation (PostgreSQL's may ignore punctuation; SQLite's is binary)."""
    return Collate(expression, "C") if connection.vendor == "postgresql" else expression


def _after(key: DatasetKey | None, name: str, owner: str) -> Q:
    if key is None:
        return Q()
    return Q(**{f"{name}__gt": key.name}) | Q(**{name: key.name, f"{owner}__gt": key.tenant})


def _last_updates(viewer: _Viewer, keys: list[DatasetKey]) -> dict[DatasetKey, dt.datetime]:
    """When each dataset was last updated (those with updates), in one query."""
    by_owner: dict[int, set[str]] = {}
    for key in keys:
        by_owner.setdefault(viewer.owner_id(key.tenant), set()).add(key.name)
    if not by_owner:
        return {}
    latest = (
        DatasetUpdate.objects.dangerously_unscoped()
        .filter(dataset=OuterRef("pk"))
        .order_by("-id")
        .values("created_at")[:1]
    )
    rows = (
        Dataset.objects.dangerously_unscoped()  # the visible keys' rows only (below)
        .filter(reduce(or_, (Q(tenant_id=t, name__in=n) for t, n in by_owner.items())))
        .annotate(last=Subquery(latest))
        .values_list("tenant__slug", "name", "last")
    )
    return {DatasetKey(slug, name): last for slug, name, last in rows if last is not None}


def encode_cursor(key: DatasetKey) -> str:
    """The opaque cursor of the page after `key` (a page's last dataset)."""
    raw = json.dumps([key.name, key.tenant], separators=(",", ":")).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> DatasetKey:
    try:
        name, tenant = json.loads(base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)))
        if not isinstance(name, str) or not isinstance(tenant, str):
            raise ValueError(cursor)
    except (ValueError, TypeError, binascii.Error):
        raise Invalid(
            [("cursor", "invalid cursor: pass the `next` of a previous page as it is")]
        ) from None
    return DatasetKey(tenant, name)


def datasets_of(tenant: Tenant, *, after: DatasetKey | None = None, limit: int = 50) -> DatasetPage:
    """The tenant's datasets (updated ones, and those only named by its workflows) and the
    shared datasets of other tenants its workflows name, by name then owner, `limit` after
    `after`; each with when it was last updated and how many of the tenant's workflows
    write and read it."""
    viewer = _Viewer(tenant)
    rows = Dataset.objects.annotate(key=_bytewise(F("name")))
    if after is not None:  # (name, owner) after `after`; the tenant's own have its slug
        lookup = "key__gte" if viewer.slug > after.tenant else "key__gt"
        rows = rows.filter(**{lookup: after.name})
    own = list(rows.order_by("key").values_list("name", flat=True)[: limit + 1])
    named = (
        _live_references()
        .annotate(
            owner=_owner_annotation(viewer.slug),
            key=_bytewise(F("dataset")),
            owner_key=_bytewise(_owner_annotation(viewer.slug)),
        )
        .filter(_after(after, "key", "owner_key"))
        .values_list("owner", "dataset")
        .distinct()
        .order_by("key", "owner_key")
    )
    shared = [Q(owner=viewer.slug)]
    for slug, (_, names) in viewer.shared().items():
        shared.append(Q(owner=slug) if ANY in names else Q(owner=slug, dataset__in=names))
    named = named.filter(reduce(or_, shared))
    keys = {DatasetKey(viewer.slug, name) for name in own}
    keys |= {DatasetKey(owner, name) for owner, name in named[: limit + 1]}
    ordered = sorted(keys, key=lambda k: (k.name, k.tenant))
    page, more = ordered[:limit], len(ordered) > limit
    counts: dict[DatasetKey, tuple[int, int]] = {}
    if page:
        tallies = (
            _live_references()
            .filter(_references(viewer, page))
            .values("publisher", "dataset")
            .annotate(
                producers=Count("workflow_id", distinct=True, filter=Q(role=ROLE.OUTLET)),
                consumers=Count("workflow_id", distinct=True, filter=Q(role__in=READS)),
            )
            .order_by()
        )
        for tally in tallies:
            key = DatasetKey(viewer.owner_of(tally["publisher"]), tally["dataset"])
            before = counts.get(key, (0, 0))
            counts[key] = (before[0] + tally["producers"], before[1] + tally["consumers"])
    last = _last_updates(viewer, page)
    results = [
        DatasetSummary(key.tenant, key.name, last.get(key), *counts.get(key, (0, 0)))
        for key in page
    ]
    return DatasetPage(results, page[-1] if more else None)


# --- a workflow and a run ------------------------------------------------------------------


def workflow_lineage(workflow: Workflow) -> WorkflowLineage:
    """What the workflow's current version reads (inlets, sensors, its dataset schedule)
    and writes (outlets), by task."""
    viewer = _Viewer(workflow.tenant)
    refs = (
        DatasetReference.objects.filter(workflow=workflow)
        .values_list("task_id", "role", "publisher", "dataset")
        .order_by("task_id", "role", "publisher", "dataset")
    )
    reads: list[DatasetUse] = []
    writes: list[DatasetUse] = []
    for task_id, role, publisher, name in refs:
        key = DatasetKey(viewer.owner_of(publisher), name)
        use = DatasetUse(task_id or None, role, key.tenant, name, viewer.visible(key))
        (writes if role == ROLE.OUTLET else reads).append(use)
    return WorkflowLineage(workflow.name, reads, writes)


def _inlets(run: WorkflowRun, slug: str) -> list[tuple[str, DatasetKey]]:
    spec = graph_for(run.version_id).spec
    found = []
    for task_id, task in spec.tasks.items():
        for inlet in task.inlets:
            owner, name = dataset_key(inlet)
            found.append((task_id, DatasetKey(owner or slug, name)))
    return found


def run_has_lineage(run: WorkflowRun) -> bool:
    """Whether the run may have read or written datasets, from its version's spec (no
    query): a task with inlets or outlets, or a run its dataset schedule started."""
    spec = graph_for(run.version_id).spec
    return run.trigger_source == WorkflowRun.Source.DATASET or any(
        task.inlets or task.outlets for task in spec.tasks.values()
    )


def _versions_read(
    viewer: _Viewer, run: WorkflowRun, inlets: list[tuple[str, DatasetKey]]
) -> list[ReadVersion]:
    """For each task's inlet, the dataset's latest update before the task started: one
    query for the datasets, one for the versions (a subquery per dataset), one to read
    them."""
    visible = sorted({key for _, key in inlets if viewer.visible(key)})
    ids: dict[DatasetKey, int] = {}
    if visible:
        by_owner: dict[int, list[str]] = {}
        for key in visible:
            by_owner.setdefault(viewer.owner_id(key.tenant), []).append(key.name)
        rows = (
            Dataset.objects.dangerously_unscoped()  # visible keys only
            .filter(reduce(or_, (Q(tenant_id=t, name__in=n) for t, n in by_owner.items())))
            .values_list("tenant__slug", "name", "id")
        )
        ids = {DatasetKey(slug, name): pk for slug, name, pk in rows}
    read: dict[tuple[str, DatasetKey], set[int]] = {(t, k): set() for t, k in inlets}
    if ids:
        columns = {f"d{pk}": _latest_before(pk) for pk in ids.values()}
        tasks = sorted({t for t, k in inlets if k in ids})
        instances = (
            TaskInstance.objects.filter(run=run, task_id__in=tasks)
            .annotate(**columns)
            .values("task_id", *columns)
        )
        for instance in instances:
            for task_id, key in inlets:
                found = instance.get(f"d{ids.get(key)}")
                if task_id == instance["task_id"] and found is not None:
                    read[(task_id, key)].add(found)
    wanted = {pk for found in read.values() for pk in found}
    updates = {}
    if wanted:
        loaded = (
            DatasetUpdate.objects.dangerously_unscoped()  # ids found above, of visible datasets
            .filter(pk__in=wanted)
            .select_related("tenant", "dataset", "workflow")
        )
        updates = {u.id: u for u in as_updates(loaded)}
    versions = []
    for (task_id, key), found in read.items():
        chosen: list[Update | None] = [updates[pk] for pk in sorted(found)] or [None]
        versions += [ReadVersion(task_id, ROLE.INLET, key.tenant, key.name, u) for u in chosen]
    return versions


def _latest_before(dataset_id: int) -> Subquery:
    return Subquery(
        DatasetUpdate.objects.dangerously_unscoped()  # a visible dataset (see caller)
        .filter(dataset_id=dataset_id, created_at__lt=OuterRef("started_at"))
        .order_by("-created_at", "-id")
        .values("id")[:1]
    )


def run_lineage(run: WorkflowRun, *, tenant: Tenant | None = None) -> RunLineage:
    """The dataset versions the run read (each task's inlets as they were when the task
    started, and the updates that triggered it) and those it produced. No query for a run
    whose spec names no dataset. `tenant`: the run's, when the caller has it at hand."""
    viewer = _Viewer(tenant if tenant is not None else run.tenant)
    inlets = _inlets(run, viewer.slug)
    read = _versions_read(viewer, run, inlets) if inlets else []
    if run.trigger_source == WorkflowRun.Source.DATASET:
        # The run already carries these (its event); another tenant's too.
        triggers = (
            DatasetUpdate.objects.dangerously_unscoped()
            .filter(triggered_runs=run)
            .select_related("tenant", "dataset", "workflow")
            .order_by("id")
        )
        read += [ReadVersion(None, "trigger", u.tenant, u.dataset, u) for u in as_updates(triggers)]
    produced: list[Update] = []
    if any(task.outlets for task in graph_for(run.version_id).spec.tasks.values()):
        rows = (
            DatasetUpdate.objects.filter(run=run)
            .select_related("tenant", "dataset", "workflow")
            .order_by("id")
        )
        produced = as_updates(rows)
    return RunLineage(run.pk, read, produced)
