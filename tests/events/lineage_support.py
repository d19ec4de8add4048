"""The workflows the lineage tests share: a chain of datasets across four workflows.

    extract.pull ──▶ raw.orders ──▶ clean.tidy (inlet; and clean's schedule)
    clean.tidy ──▶ warehouse.orders ──▶ report.wait (sensor), report.build (inlet)
    report.build ──▶ reports/daily:orders

and `updates`, rows as the engine records them when a task with outlets succeeds."""

from __future__ import annotations

import datetime as dt
from typing import Any

from django.utils import timezone

from orchestrator.actors import Actor
from orchestrator.context import tenant_scope
from orchestrator.grants import create_grant
from orchestrator.models import Grant
from runs.models import Dataset, DatasetUpdate, WorkflowRun
from tests.harness import Team
from workflows.models import Workflow
from workflows.services import apply_workflow

__all__ = [
    "CHAIN",
    "REPORT_FILE",
    "apply",
    "apply_chain",
    "record_update",
    "share",
]

REPORT_FILE = "reports/daily:orders"  # a name with the `/` and `:` a URI has

CHAIN: list[dict[str, Any]] = [
    {"name": "extract", "tasks": {"pull": {"type": "noop", "outlets": ["raw.orders"]}}},
    {
        "name": "clean",
        "schedule": {"datasets": ["raw.orders"]},
        "tasks": {
            "tidy": {"type": "noop", "inlets": ["raw.orders"], "outlets": ["warehouse.orders"]}
        },
    },
    {
        "name": "report",
        "tasks": {
            "wait": {
                "type": "wait_for",
                "kind": "dataset",
                "dataset": "warehouse.orders",
                "poke_interval": "1m",
            },
            "build": {
                "type": "noop",
                "depends_on": ["wait"],
                "inlets": ["warehouse.orders"],
                "outlets": [REPORT_FILE],
            },
        },
    },
]


def apply(team: Team, spec: dict[str, Any]) -> Workflow:
    with tenant_scope([team.tenant]):
        return apply_workflow(actor=Actor.cli(), tenant=team.tenant, data=spec).workflow


def apply_chain(team: Team) -> dict[str, Workflow]:
    return {spec["name"]: apply(team, spec) for spec in CHAIN}


def record_update(
    team: Team,
    dataset: str,
    *,
    run: WorkflowRun | None = None,
    workflow: Workflow | None = None,
    task_id: str = "",
    at: dt.datetime | None = None,
    metadata: dict[str, Any] | None = None,
) -> DatasetUpdate:
    """An update as runs.engine.datasets.record_outlets writes one."""
    row, _ = Dataset.objects.dangerously_unscoped().get_or_create(tenant=team.tenant, name=dataset)
    return DatasetUpdate.objects.dangerously_unscoped().create(
        tenant=team.tenant,
        dataset=row,
        run=run,
        workflow=workflow if workflow is not None else (run.workflow if run else None),
        task_id=task_id,
        logical_date=run.logical_date if run is not None else None,
        metadata=metadata or {},
        created_at=at or timezone.now(),
    )


def share(owner: Team, grantee: Team, name: str) -> Grant:
    """`owner` shares its dataset `name` (or "*") with `grantee`, as its admin would."""
    actor = Actor(user=owner.owner, source="api")
    with tenant_scope([owner.tenant]):
        return create_grant(
            actor=actor, tenant=owner.tenant, grantee=grantee.slug, kind="dataset", name=name
        )
