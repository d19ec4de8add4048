"""The graph around a dataset (events.lineage.dataset_graph): its producers and what they
read upstream, its consumers and what they write downstream, `depth` steps each way, read
a level at a time (the query count grows with the depth, never with the width)."""

from __future__ import annotations

from typing import Any

import pytest

from events.lineage import LineageGraph, dataset_detail, dataset_graph
from orchestrator.actors import Actor
from orchestrator.context import tenant_scope
from orchestrator.errors import Invalid, NotFound
from tests.events.lineage_support import REPORT_FILE, apply, apply_chain, record_update
from tests.harness import Team
from workflows.selectors import get_workflow
from workflows.services import delete_workflow

pytestmark = pytest.mark.django_db


def graph(team: Team, name: str, **kwargs: Any) -> LineageGraph:
    with tenant_scope([team.tenant]):
        return dataset_graph(team.tenant, name, **kwargs)


def edges(found: LineageGraph) -> set[tuple[str, str, str, str | None]]:
    return {(e.source, e.target, e.role, e.task_id) for e in found.edges}


def test_it_shows_producers_and_their_reads_upstream_and_consumers_and_their_writes(
    team: Team,
) -> None:
    apply_chain(team)
    found = graph(team, "warehouse.orders")
    assert found.dataset.id == "dataset:acme:warehouse.orders"
    assert [n.id for n in found.nodes] == [
        "dataset:acme:warehouse.orders",  # the dataset first, then by kind, tenant, name
        "dataset:acme:raw.orders",
        f"dataset:acme:{REPORT_FILE}",
        "workflow:acme:clean",
        "workflow:acme:report",
    ]
    assert edges(found) == {
        ("workflow:acme:clean", "dataset:acme:warehouse.orders", "outlet", "tidy"),
        ("dataset:acme:raw.orders", "workflow:acme:clean", "inlet", "tidy"),
        ("dataset:acme:raw.orders", "workflow:acme:clean", "schedule", None),
        ("dataset:acme:warehouse.orders", "workflow:acme:report", "sensor", "wait"),
        ("dataset:acme:warehouse.orders", "workflow:acme:report", "inlet", "build"),
        ("workflow:acme:report", f"dataset:acme:{REPORT_FILE}", "outlet", "build"),
    }
    assert (found.depth, found.direction, found.external_consumers) == (1, "both", [])


def test_it_goes_as_deep_as_asked_each_way(team: Team) -> None:
    apply_chain(team)
    one = graph(team, "warehouse.orders", direction="upstream")
    assert {n.name for n in one.nodes} == {"warehouse.orders", "clean", "raw.orders"}
    two = graph(team, "warehouse.orders", direction="upstream", depth=2)
    assert {n.name for n in two.nodes} == {"warehouse.orders", "clean", "raw.orders", "extract"}
    assert ("workflow:acme:extract", "dataset:acme:raw.orders", "outlet", "pull") in edges(two)
    down = graph(team, "raw.orders", direction="downstream", depth=2)
    assert {n.name for n in down.nodes} == {
        "raw.orders",
        "clean",
        "warehouse.orders",
        "report",
        REPORT_FILE,
    }
    assert "extract" not in {n.name for n in down.nodes}  # upstream, not asked for
    assert {n.name for n in graph(team, "raw.orders", direction="downstream").nodes} == {
        "raw.orders",
        "clean",
        "warehouse.orders",
    }


def test_it_ends_on_a_cycle(team: Team) -> None:
    apply(
        team, {"name": "ping", "tasks": {"t": {"type": "noop", "inlets": ["a"], "outlets": ["b"]}}}
    )
    apply(
        team, {"name": "pong", "tasks": {"t": {"type": "noop", "inlets": ["b"], "outlets": ["a"]}}}
    )
    found = graph(team, "a", depth=5)
    assert sorted(n.name for n in found.nodes) == ["a", "b", "ping", "pong"]
    assert len(found.edges) == 4


def test_it_reads_a_level_at_a_time(team: Team, django_assert_max_num_queries: Any) -> None:
    """Twenty producers and twenty consumers, five steps each way: the dataset's lookup
    (2), the grants it gives (1), and two per level and direction that finds anything."""
    for i in range(20):
        apply(team, {"name": f"p{i}", "tasks": {"t": {"type": "noop", "outlets": ["hub"]}}})
        apply(
            team,
            {
                "name": f"c{i}",
                "tasks": {"t": {"type": "noop", "inlets": ["hub"], "outlets": [f"out{i}"]}},
            },
        )
    with tenant_scope([team.tenant]), django_assert_max_num_queries(3 + 2 * 2 + 1):
        found = dataset_graph(team.tenant, "hub", depth=5)
    assert len(found.nodes) == 1 + 20 + 20 + 20


def test_it_shows_the_datasets_latest_updates_newest_first(team: Team) -> None:
    workflows = apply_chain(team)
    first = record_update(team, "warehouse.orders", workflow=workflows["clean"], task_id="tidy")
    for _ in range(21):
        last = record_update(
            team, "warehouse.orders", workflow=workflows["clean"], task_id="tidy", metadata={"n": 1}
        )
    found = graph(team, "warehouse.orders")
    assert len(found.updates) == 20
    assert found.updates[0].id == last.pk
    assert first.pk not in [u.id for u in found.updates]
    assert (found.updates[0].workflow, found.updates[0].task_id) == ("clean", "tidy")
    assert found.updates[0].metadata == {"n": 1}


def test_it_knows_a_dataset_only_named_by_workflows_and_none_other(team: Team) -> None:
    apply_chain(team)
    assert graph(team, REPORT_FILE).updates == []  # named, never updated
    with pytest.raises(NotFound):
        graph(team, "nowhere")


def test_it_drops_a_deleted_workflow(team: Team) -> None:
    apply_chain(team)
    with tenant_scope([team.tenant]):
        delete_workflow(actor=Actor.cli(), workflow=get_workflow("report"))
    assert {n.name for n in graph(team, "warehouse.orders").nodes} == {
        "warehouse.orders",
        "clean",
        "raw.orders",
    }


@pytest.mark.parametrize(
    ("kwargs", "path"),
    [({"depth": 0}, "depth"), ({"depth": 6}, "depth"), ({"direction": "sideways"}, "direction")],
)
def test_it_refuses_a_bad_depth_or_direction(team: Team, kwargs: dict[str, Any], path: str) -> None:
    apply_chain(team)
    with pytest.raises(Invalid) as refused:
        graph(team, "warehouse.orders", **kwargs)
    assert [p for p, _ in refused.value.errors] == [path]


def test_it_details_producers_and_consumers_by_task(team: Team) -> None:
    apply_chain(team)
    with tenant_scope([team.tenant]):
        detail = dataset_detail(team.tenant, "raw.orders")
    assert [(r.workflow, r.task_id, r.role) for r in detail.producers] == [
        ("extract", "pull", "outlet")
    ]
    assert [(r.workflow, r.task_id, r.role) for r in detail.consumers] == [
        ("clean", None, "schedule"),
        ("clean", "tidy", "inlet"),
    ]
    assert (detail.created_at, detail.last_updated_at, detail.updates) == (None, None, [])
