"""Datasets are per tenant: another tenant's workflow scheduled on a dataset runs from its
updates only while the owner shares it (a grant); a revoked grant stops the chain, and
an ungranted tenant's update of a same-named dataset of its own starts nothing."""

from __future__ import annotations

from typing import Any

import pytest
from django.contrib.auth.models import User

from orchestrator import grants, services
from orchestrator.actors import Actor
from orchestrator.context import tenant_scope
from orchestrator.models import AuditEvent, Grant
from runs.models import WorkflowRun
from tests.events.support import dispatch_pending, run_once
from tests.runs.engine.helpers import Engine
from workflows.services import apply_workflow

pytestmark = pytest.mark.django_db(transaction=True)

WRITER = {"name": "sales", "tasks": {"write": {"type": "noop", "outlets": ["warehouse.sales"]}}}
CONSUMER = {
    "name": "forecast",
    "schedule": {"datasets": [{"tenant": "eng", "name": "warehouse.sales"}]},
    "tasks": {"fit": {"type": "noop"}},
}


@pytest.fixture
def engine(transactional_db: None, settings: Any) -> Engine:
    settings.TASK_CONTINUE_SECONDS = 0
    return Engine(workers=None)


@pytest.fixture
def other(engine: Engine) -> Any:
    owner = User.objects.create_user("other-owner")
    tenant = services.create_tenant(actor=Actor.cli(), slug="other", name="Other", owner=owner)
    with tenant_scope([tenant]):
        apply_workflow(actor=Actor(user=owner, source="api"), tenant=tenant, data=CONSUMER)
    return tenant


def forecasts(tenant: Any) -> int:
    with tenant_scope([tenant]):
        return WorkflowRun.objects.filter(workflow__name="forecast").count()


def test_a_grant_starts_the_chain_and_revoking_it_stops_it(engine: Engine, other: Any) -> None:
    writer = engine.apply(WRITER)
    run_once(engine, writer)
    assert dispatch_pending() == 0  # no grant: other sees nothing
    assert forecasts(other) == 0

    with tenant_scope([engine.tenant]):
        grant = grants.create_grant(
            actor=engine.actor,
            tenant=engine.tenant,
            grantee="other",
            kind="dataset",
            name="warehouse.sales",
        )
    run_once(engine, writer)
    assert dispatch_pending() == 1
    assert forecasts(other) == 1

    with tenant_scope([engine.tenant]):
        grants.delete_grant(actor=engine.actor, grant=grant)
        actions = list(
            AuditEvent.objects.filter(tenant=engine.tenant, action__startswith="grant.")
            .order_by("id")
            .values_list("action", flat=True)
        )
    assert actions == ["grant.create", "grant.delete"]
    run_once(engine, writer)
    assert dispatch_pending() == 0
    assert forecasts(other) == 1


def test_a_grant_of_every_dataset_shares_them_all(engine: Engine, other: Any) -> None:
    with tenant_scope([engine.tenant]):
        grants.create_grant(
            actor=engine.actor, tenant=engine.tenant, grantee="other", kind="dataset", name="*"
        )
    run_once(engine, engine.apply(WRITER))
    assert dispatch_pending() == 1


def test_an_events_grant_does_not_share_datasets(engine: Engine, other: Any) -> None:
    with tenant_scope([engine.tenant]):
        grants.create_grant(
            actor=engine.actor, tenant=engine.tenant, grantee="other", kind="events", name="*"
        )
    run_once(engine, engine.apply(WRITER))
    assert dispatch_pending() == 0


class Other:
    """The other tenant's owner, shaped like an Engine for run_once."""

    def __init__(self, tenant: Any) -> None:
        self.tenant = tenant
        self.actor = Actor(user=User.objects.get(username="other-owner"), source="api")

    def scope(self) -> Any:
        return tenant_scope([self.tenant])


def test_a_same_named_dataset_of_another_tenant_starts_nothing(engine: Engine, other: Any) -> None:
    """`other`'s own warehouse.sales is not eng's: updating it does not feed the
    schedule, which names eng's."""
    team = Other(other)
    with team.scope():
        writer = apply_workflow(actor=team.actor, tenant=other, data=WRITER).workflow
    run_once(team, writer)  # type: ignore[arg-type]
    assert dispatch_pending() == 0
    assert forecasts(other) == 0
    assert Grant.objects.dangerously_unscoped().count() == 0
