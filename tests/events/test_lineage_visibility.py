"""Lineage across tenants: another tenant's dataset shows (its node, its updates) only
while its owner shares it with the viewer, and never the owner's workflows; the owner sees
the grantees' workflows reading it only as a count per tenant, and nothing of a tenant it
does not share the dataset with."""

from __future__ import annotations

from typing import Any

import pytest

from events.lineage import (
    DatasetKey,
    ExternalConsumers,
    dataset_detail,
    dataset_graph,
    dataset_updates,
    datasets_of,
    workflow_lineage,
)
from orchestrator.actors import Actor
from orchestrator.context import tenant_scope
from orchestrator.errors import NotFound
from orchestrator.grants import delete_grant
from tests.events.lineage_support import apply, apply_chain, record_update, share
from tests.harness import Team, make_team
from workflows.models import Workflow

pytestmark = pytest.mark.django_db

ORDERS = {"tenant": "acme", "name": "warehouse.orders"}


def consumers(outsider: Team) -> dict[str, Workflow]:
    """globex's workflows reading acme's warehouse.orders."""
    mirror = {
        "name": "mirror",
        "tasks": {"copy": {"type": "noop", "inlets": [ORDERS], "outlets": ["mirror.orders"]}},
    }
    watch = {"name": "watch", "schedule": {"datasets": [ORDERS]}, "tasks": {"t": {"type": "noop"}}}
    return {"mirror": apply(outsider, mirror), "watch": apply(outsider, watch)}


def scoped(team: Team, selector: Any, *args: Any, **kwargs: Any) -> Any:
    with tenant_scope([team.tenant]):
        return selector(team.tenant, *args, **kwargs)


def test_it_hides_an_unshared_dataset_of_another_tenant(team: Team, outsider: Team) -> None:
    apply_chain(team)
    mirror = consumers(outsider)["mirror"]
    with pytest.raises(NotFound):
        scoped(outsider, dataset_graph, "warehouse.orders", publisher="acme")
    with pytest.raises(NotFound):
        scoped(outsider, dataset_detail, "warehouse.orders", owner="acme")
    with pytest.raises(NotFound):
        scoped(outsider, dataset_updates, "warehouse.orders", owner="acme")
    upstream = scoped(outsider, dataset_graph, "mirror.orders", direction="upstream", depth=3)
    assert [n.id for n in upstream.nodes] == [
        "dataset:globex:mirror.orders",
        "workflow:globex:mirror",
    ]
    with tenant_scope([outsider.tenant]):
        reads = workflow_lineage(mirror).reads
    assert [(u.tenant, u.dataset, u.visible) for u in reads] == [
        ("acme", "warehouse.orders", False)
    ]
    listed = scoped(outsider, datasets_of).results
    assert [(d.tenant, d.name) for d in listed] == [("globex", "mirror.orders")]
    assert scoped(team, dataset_detail, "warehouse.orders").external_consumers == []


def test_it_shows_a_shared_dataset_and_its_updates_without_its_owners_workflows(
    team: Team, outsider: Team
) -> None:
    workflows = apply_chain(team)
    consumers(outsider)
    update = record_update(team, "warehouse.orders", workflow=workflows["clean"], task_id="tidy")
    share(team, outsider, "warehouse.orders")
    found = scoped(outsider, dataset_graph, "warehouse.orders", publisher="acme", depth=5)
    assert [n.id for n in found.nodes] == [
        "dataset:acme:warehouse.orders",
        "dataset:globex:mirror.orders",
        "workflow:globex:mirror",
        "workflow:globex:watch",
    ]
    assert {(e.source, e.target, e.role) for e in found.edges} == {
        ("dataset:acme:warehouse.orders", "workflow:globex:mirror", "inlet"),
        ("dataset:acme:warehouse.orders", "workflow:globex:watch", "schedule"),
        ("workflow:globex:mirror", "dataset:globex:mirror.orders", "outlet"),
    }
    assert [(u.id, u.tenant, u.workflow) for u in found.updates] == [(update.pk, "acme", "clean")]
    assert found.external_consumers == []  # counts are for the owner
    upstream = scoped(outsider, dataset_graph, "mirror.orders", direction="upstream", depth=5)
    assert [n.id for n in upstream.nodes] == [
        "dataset:globex:mirror.orders",
        "dataset:acme:warehouse.orders",  # and no further: acme's workflows stay hidden
        "workflow:globex:mirror",
    ]
    detail = scoped(outsider, dataset_detail, "warehouse.orders", owner="acme")
    assert (detail.producers, [c.workflow for c in detail.consumers]) == ([], ["mirror", "watch"])
    listed = scoped(outsider, datasets_of).results
    assert [(d.tenant, d.name, d.producers, d.consumers) for d in listed] == [
        ("globex", "mirror.orders", 1, 0),
        ("acme", "warehouse.orders", 0, 2),
    ]
    assert listed[1].last_updated_at == update.created_at


def test_it_shows_the_owner_the_grantees_consumers_as_a_count_only(
    team: Team, outsider: Team
) -> None:
    apply_chain(team)
    consumers(outsider)
    stranger = make_team("initech", roles=["owner"])
    apply(
        stranger,
        {"name": "spy", "tasks": {"t": {"type": "noop", "inlets": [ORDERS]}}},
    )
    share(team, outsider, "warehouse.orders")
    detail = scoped(team, dataset_detail, "warehouse.orders")
    assert detail.external_consumers == [ExternalConsumers("globex", 2)]  # not initech
    graph = scoped(team, dataset_graph, "warehouse.orders", depth=5)
    assert graph.external_consumers == [ExternalConsumers("globex", 2)]
    assert {n.tenant for n in graph.nodes} == {"acme"}


def test_it_follows_the_grants_name_or_all(team: Team, outsider: Team) -> None:
    apply_chain(team)
    consumers(outsider)
    share(team, outsider, "raw.orders")
    with pytest.raises(NotFound):
        scoped(outsider, dataset_graph, "warehouse.orders", publisher="acme")
    share(team, outsider, "*")
    assert scoped(outsider, dataset_graph, "warehouse.orders", publisher="acme").nodes
    assert scoped(outsider, dataset_graph, "raw.orders", publisher="acme").nodes
    with pytest.raises(NotFound):  # shared, but acme has no such dataset
        scoped(outsider, dataset_graph, "nowhere", publisher="acme")


def test_it_hides_the_dataset_again_once_the_grant_is_revoked(team: Team, outsider: Team) -> None:
    apply_chain(team)
    consumers(outsider)
    grant = share(team, outsider, "warehouse.orders")
    assert scoped(outsider, dataset_detail, "warehouse.orders", owner="acme")
    with tenant_scope([team.tenant]):
        delete_grant(actor=Actor(user=team.owner, source="api"), grant=grant)
    with pytest.raises(NotFound):
        scoped(outsider, dataset_detail, "warehouse.orders", owner="acme")
    assert scoped(team, dataset_detail, "warehouse.orders").external_consumers == []
    listed = scoped(outsider, datasets_of).results
    assert DatasetKey("acme", "warehouse.orders") not in {
        DatasetKey(d.tenant, d.name) for d in listed
    }
