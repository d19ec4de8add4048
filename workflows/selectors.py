"""Read queries of workflows. Callers are inside the tenant's scope."""

from __future__ import annotations

import functools
from collections.abc import Iterable

from django.db import connection
from django.db.models import BooleanField, Q, QuerySet
from django.db.models.expressions import RawSQL

from orchestrator.context import current_tenant_ids
from orchestrator.errors import NotFound
from orchestrator.fastsql import Columns, attach, in_tenants, quote, statement
from orchestrator.models import Tenant
from workflows.models import Workflow, WorkflowVersion

__all__ = [
    "get_version",
    "get_versions",
    "get_workflow",
    "listed_workflows",
    "live_workflows",
    "version_list",
]


def live_workflows(
    *, tag: str | None = None, paused: bool | None = None, search: str | None = None
) -> QuerySet[Workflow]:
    qs = Workflow.objects.filter(deleted_at__isnull=True).select_related("current_version")
    if tag:
        qs = qs.filter(_has_tag(tag))
    if paused is not None:
        qs = qs.filter(paused=paused)
    if search:
        qs = qs.filter(Q(name__icontains=search) | Q(description__icontains=search))
    return qs


def listed_workflows(*, tag: str | None = None, search: str | None = None) -> QuerySet[Workflow]:
    """Live workflows with their schedule, for a list: one statement, and without their
    versions' specs (a list shows no spec, and specs are the large part of a row)."""
    return live_workflows(tag=tag, search=search).select_related(None).select_related("schedule")


def _has_tag(tag: str) -> Q | RawSQL:
    """Whether a workflow's `tags` list holds `tag`: JSON containment where the database
    has it (PostgreSQL), SQLite's json_each where it does not."""
    if connection.features.supports_json_field_contains:
        return Q(tags__contains=[tag])
    tags = f"{quote(Workflow._meta.db_table)}.{quote('tags')}"
    # Quoted identifiers only; the tag is a query parameter.
    sql = f"EXISTS (SELECT 1 FROM json_each({tags}) WHERE json_each.value = %s)"  # noqa: S608
    return RawSQL(sql, (tag,), output_field=BooleanField())  # noqa: S611


_WORKFLOW = Columns(Workflow)
_VERSION = Columns(WorkflowVersion)
_TENANT = Columns(Tenant)


@functools.cache
def _workflow_query(vendor: str, tenants: int) -> str:
    """A live workflow by name in the tenants in scope, with its current version and its
    tenant, written once: every workflow endpoint and each trigger starts here (see
    orchestrator/fastsql.py)."""
    id_ = quote("id")
    return (
        f"SELECT {_WORKFLOW.select('w')}, {_VERSION.select('v')}, {_TENANT.select('t')} "  # noqa: S608
        f"FROM {_WORKFLOW.table} w JOIN {_TENANT.table} t ON t.{id_} = w.{quote('tenant_id')} "
        f"LEFT JOIN {_VERSION.table} v ON v.{id_} = w.{quote('current_version_id')} "
        f"WHERE w.{quote('name')} = %s AND w.{quote('deleted_at')} IS NULL "
        f"AND {in_tenants('w', tenants)} "
        f"ORDER BY w.{id_} LIMIT 1"
    )


@statement("workflow_by_name")
def get_workflow(name: str) -> Workflow:
    """A live workflow with its current version and tenant (as live_workflows() has them)."""
    tenant_ids = sorted(current_tenant_ids())
    row = None
    if tenant_ids:
        with connection.cursor() as cursor:
            cursor.execute(_workflow_query(connection.vendor, len(tenant_ids)), [name, *tenant_ids])
            row = cursor.fetchone()
    if row is None:
        raise NotFound(f"workflow {name!r} not found")
    workflow = _WORKFLOW.build(row)
    attach(workflow, "current_version", _VERSION.build_or_none(row, len(_WORKFLOW)))
    attach(workflow, "tenant", _TENANT.build(row, len(_WORKFLOW) + len(_VERSION)))
    return workflow


def get_version(workflow: Workflow, number: int) -> WorkflowVersion:
    version = WorkflowVersion.objects.filter(workflow=workflow, number=number).first()
    if version is None:
        raise NotFound(f"workflow {workflow.name!r} has no version {number}")
    return version


def version_list(workflow: Workflow) -> QuerySet[WorkflowVersion]:
    """A workflow's versions, newest first, with their authors and without their specs."""
    return (
        WorkflowVersion.objects.filter(workflow=workflow)
        .select_related("author")
        .defer("spec")
        .order_by("-number")
    )


def get_versions(workflow: Workflow, numbers: Iterable[int]) -> dict[int, WorkflowVersion]:
    """Several versions by number in one statement; NotFound names the first one missing."""
    wanted = sorted(set(numbers))
    found = {
        v.number: v for v in WorkflowVersion.objects.filter(workflow=workflow, number__in=wanted)
    }
    for number in wanted:
        if number not in found:
            raise NotFound(f"workflow {workflow.name!r} has no version {number}")
    return found
