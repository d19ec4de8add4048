"""The datasets pages (docs/lineage.md, "The lineage graph"): the tenant's datasets, and
one dataset with the workflows writing and reading it, its latest updates, and what lies
upstream and downstream of it, drawn as nested lists. Every member reads them
(`lineage.view`), through the selectors the API uses (events.lineage), so another
tenant's dataset shows only while that tenant shares it, and never its workflows."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from django.urls import path

from events import lineage
from orchestrator.errors import Invalid
from orchestrator.integers import ascii_int
from portal.pages import KeysetPage, TenantPage

__all__ = [
    "DEFAULT_DEPTH",
    "PAGE_SIZE",
    "DatasetPage",
    "DatasetsPage",
    "TreeItem",
    "lineage_tree",
    "urlpatterns",
]

PAGE_SIZE = 50
DEFAULT_DEPTH = 2


@dataclass
class TreeItem:
    """A node of an upstream or downstream list, reached through `edge` (a workflow's
    task, the role it plays); `repeated` when it is listed already (its branch is not
    drawn twice)."""

    node: lineage.Node
    edge: lineage.Edge | None
    repeated: bool = False
    children: list[TreeItem] = field(default_factory=list)


def lineage_tree(graph: lineage.LineageGraph, upstream: bool) -> list[TreeItem]:
    """The graph's nodes on one side of its dataset, as nested lists: upstream, each node's
    children are where its data came from (a dataset's producers, a workflow's reads);
    downstream, where it goes."""
    nodes = {node.id: node for node in graph.nodes}
    following: dict[str, list[lineage.Edge]] = {}
    for edge in graph.edges:
        here, there = (edge.target, edge.source) if upstream else (edge.source, edge.target)
        if there in nodes:
            following.setdefault(here, []).append(edge)
    seen = {graph.dataset.id}

    def grow(node_id: str) -> list[TreeItem]:
        items = []
        for edge in following.get(node_id, []):
            there = edge.source if upstream else edge.target
            item = TreeItem(nodes[there], edge, repeated=there in seen)
            seen.add(there)
            items.append(item)
        for item in items:
            if not item.repeated:
                item.children = grow(item.node.id)
        return items

    return grow(graph.dataset.id)


def _metadata(update: lineage.Update) -> str:
    return json.dumps(update.metadata, ensure_ascii=False) if update.metadata else ""


class DatasetsPage(TenantPage):
    """The tenant's datasets and the shared ones its workflows name, by name, 50 a page."""

    permission = "lineage.view"
    template_name = "portal/datasets/list.html"
    nav = "datasets"

    def context(self, **kwargs: Any) -> dict[str, Any]:
        cursor = self.request.GET.get("cursor") or None
        found = lineage.datasets_of(
            self.tenant,
            after=lineage.decode_cursor(cursor) if cursor else None,
            limit=PAGE_SIZE,
        )
        after = found.next_after
        page = KeysetPage(found.results, lineage.encode_cursor(after) if after else None)
        return {"page": page, "rows": found.results}

    def context_after_error(self, **kwargs: Any) -> dict[str, Any]:
        return {"rows": []}


class DatasetPage(TenantPage):
    """A dataset: who writes and reads it, its latest updates, and its lineage to
    `?depth=` steps (1 to 5) each way. `?owner=<slug>`: another tenant's, when shared."""

    permission = "lineage.view"
    template_name = "portal/datasets/dataset.html"
    nav = "datasets"

    def context(self, **kwargs: Any) -> dict[str, Any]:
        owner = self.request.GET.get("owner", "").strip()
        raw = self.request.GET.get("depth", "")
        depth = ascii_int(raw) if raw else DEFAULT_DEPTH
        if depth is None or not 1 <= depth <= lineage.DEPTH_MAX:
            raise Invalid([("depth", f"{raw!r}: a whole number from 1 to {lineage.DEPTH_MAX}")])
        detail = lineage.dataset_detail(self.tenant, kwargs["name"], owner=owner)
        graph = lineage.dataset_graph(self.tenant, kwargs["name"], publisher=owner, depth=depth)
        return {
            "dataset": detail,
            "own": detail.tenant == self.tenant.slug,
            "depth": depth,
            "depths": range(1, lineage.DEPTH_MAX + 1),
            "updates": [(u, _metadata(u)) for u in detail.updates],
            "upstream": lineage_tree(graph, upstream=True),
            "downstream": lineage_tree(graph, upstream=False),
        }


urlpatterns = [
    path("datasets/", DatasetsPage.as_view(), name="datasets"),
    path("datasets/<path:name>/", DatasetPage.as_view(), name="dataset"),
]
