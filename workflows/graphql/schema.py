"""Workflows over GraphQL: the same selectors, services and policy as REST."""

from __future__ import annotations

import dataclasses
import datetime as dt
import zoneinfo

import strawberry
import strawberry_django
from strawberry.scalars import JSON
from strawberry.types import Info

from orchestrator.context import tenant_scope
from orchestrator.graphql.errors import validate
from orchestrator.graphql.types import (
    LIST_LIMIT_DEFAULT,
    LIST_LIMIT_MAX,
    actor_of,
    list_limit,
    tenant_scope_for,
)
from workflows import models, scheduling, services
from workflows.api.serializers import ApplyFilesSerializer
from workflows.selectors import get_workflow, live_workflows

__all__ = ["Mutation", "PlannedChangeType", "Query"]


@strawberry_django.type(models.WorkflowVersion)
class WorkflowVersionType:
    id: strawberry.auto
    number: strawberry.auto
    content_hash: strawberry.auto
    created_at: strawberry.auto
    source_commit: str | None = strawberry_django.field(
        description="The git commit the spec came from, when a sync applied it."
    )
    source: str | None = strawberry_django.field(
        description='What applied it from git, e.g. "git:<source name>".'
    )

    @strawberry_django.field
    def spec(self, root: models.WorkflowVersion) -> JSON:
        return root.spec  # type: ignore[no-any-return]

    @strawberry_django.field
    def spec_yaml(self, root: models.WorkflowVersion) -> str:
        return services.spec_yaml(root.spec)

    @strawberry_django.field(  # type: ignore[untyped-decorator]
        description="The team code each python task runs, pinned when the version was "
        "applied: {task id: {package, version, digest}}."
    )
    def code(self, root: models.WorkflowVersion) -> JSON:
        return root.code  # type: ignore[no-any-return]


@strawberry.type(description="A workflow's schedule; times in its timezone.")
class ScheduleType:
    cron: str
    timezone: str
    catchup: str
    start: dt.datetime | None
    end: dt.datetime | None
    paused: bool
    next_run_at: dt.datetime | None = strawberry.field(
        description="The firing the scheduler processes next (null while paused, once ended)."
    )
    last_logical_date: dt.datetime | None
    next_fire_times: list[dt.datetime] = strawberry.field(
        description="The next 10 firings from now."
    )

    @classmethod
    def of(cls, schedule: models.Schedule) -> ScheduleType:
        def local(value: dt.datetime | None) -> dt.datetime | None:
            return value.astimezone(zoneinfo.ZoneInfo(schedule.timezone)) if value else None

        return cls(
            cron=schedule.cron,
            timezone=schedule.timezone,
            catchup=schedule.catchup,
            start=local(schedule.start),
            end=local(schedule.end),
            paused=schedule.workflow.paused,
            next_run_at=local(schedule.next_run_at),
            last_logical_date=local(schedule.last_logical_date),
            next_fire_times=scheduling.upcoming(schedule, count=10),
        )


@strawberry_django.type(models.Workflow)
class WorkflowType:
    id: strawberry.auto
    name: strawberry.auto
    description: strawberry.auto
    paused: strawberry.auto
    created_at: strawberry.auto
    updated_at: strawberry.auto

    @strawberry_django.field
    def tags(self, root: models.Workflow) -> list[str]:
        return list(root.tags)

    @strawberry_django.field
    def current_version(self, root: models.Workflow) -> WorkflowVersionType | None:
        return root.current_version  # type: ignore[return-value]

    @strawberry_django.field(description="Null when the workflow has no schedule.")  # type: ignore[untyped-decorator]
    def schedule(self, root: models.Workflow) -> ScheduleType | None:
        found = scheduling.schedule_of(root)
        return ScheduleType.of(found) if found else None

    @strawberry_django.field(description="The newest `limit` versions, newest first.")  # type: ignore[untyped-decorator]
    def versions(
        self, root: models.Workflow, limit: int = LIST_LIMIT_DEFAULT
    ) -> list[WorkflowVersionType]:
        limit = list_limit(limit)
        with tenant_scope([root.tenant_id]):
            return list(root.versions.order_by("-number")[:limit])  # type: ignore[arg-type]


@strawberry.type
class ApplyWorkflowResult:
    workflow: WorkflowType
    version: WorkflowVersionType
    created: bool
    changed: bool


@strawberry.input(description="One spec file: its name (errors and the plan name it) and text.")
class SpecFileInput:
    path: str
    content: str = strawberry.field(description="the spec, YAML or JSON")


@strawberry.type(description="What applying spec files did (dry run: would do) to a workflow.")
class PlannedChangeType:
    workflow: str
    path: str | None = strawberry.field(description="The file that defines it; null if pruned.")
    action: str = strawberry.field(description="created, updated, unchanged or pruned")
    version: int | None = strawberry.field(description="Its current version afterwards.")
    diff: str = strawberry.field(
        description="Unified diff of the canonical YAML (a new workflow: all added lines)."
    )


@strawberry.type
class ApplyPlanType:
    dry_run: bool
    changes: list[PlannedChangeType]

    @classmethod
    def of(cls, plan: services.ApplyPlan) -> ApplyPlanType:
        return cls(
            dry_run=plan.dry_run,
            changes=[PlannedChangeType(**dataclasses.asdict(change)) for change in plan.changes],
        )


@strawberry.type
class Query:
    @strawberry.field
    def workflows(
        self,
        info: Info,
        tenant: str,
        tag: str | None = None,
        paused: bool | None = None,
        search: str | None = None,
        limit: int = LIST_LIMIT_MAX,
    ) -> list[WorkflowType]:
        limit = list_limit(limit)
        with tenant_scope_for(info, tenant, "workflow.view"):
            found = live_workflows(tag=tag, paused=paused, search=search)
            return list(found[:limit])  # type: ignore[arg-type]

    @strawberry.field(description="Null, with a NOT_FOUND error, when it does not exist.")  # type: ignore[untyped-decorator]
    def workflow(self, info: Info, tenant: str, name: str) -> WorkflowType | None:
        with tenant_scope_for(info, tenant, "workflow.view"):
            return get_workflow(name)  # type: ignore[return-value]


@strawberry.type
class Mutation:
    @strawberry.mutation(
        description="Create a workflow or give it a new version from a "
        "spec in YAML or JSON; an identical spec changes nothing."
    )  # type: ignore[untyped-decorator]
    def apply_workflow(self, info: Info, tenant: str, spec: str) -> ApplyWorkflowResult:
        with tenant_scope_for(info, tenant, "workflow.edit") as t:
            result = services.apply_workflow(
                actor=actor_of(info), tenant=t, data=services.parse_spec(spec, t)
            )
        return ApplyWorkflowResult(
            workflow=result.workflow,  # type: ignore[arg-type]
            version=result.version,  # type: ignore[arg-type]
            created=result.created,
            changed=result.changed,
        )

    @strawberry.mutation(
        description="Sync the tenant to a set of spec files, as `manage.py apply` and REST's "
        "POST .../workflows/apply/ do: all validated first (BAD_USER_INPUT with every error "
        "and its file, nothing applied), then all applied at once; prune deletes the live "
        "workflows no file defines; dryRun keeps nothing."
    )  # type: ignore[untyped-decorator]
    def apply_workflows(
        self,
        info: Info,
        tenant: str,
        files: list[SpecFileInput],
        dry_run: bool = False,
        prune: bool = False,
        source_commit: str | None = None,
    ) -> ApplyPlanType:
        with tenant_scope_for(info, tenant, "workflow.edit") as t:
            body = {
                "files": [{"path": f.path, "content": f.content} for f in files],
                "dry_run": dry_run,
                "prune": prune,
                "source_commit": source_commit,
            }
            data = validate(ApplyFilesSerializer, body)
            plan = services.apply_workflows(
                actor=actor_of(info),
                tenant=t,
                files=[(f["path"], f["content"]) for f in data["files"]],
                dry_run=data["dry_run"],
                prune=data["prune"],
                source_commit=data.get("source_commit"),
            )
        return ApplyPlanType.of(plan)

    @strawberry.mutation
    def delete_workflow(self, info: Info, tenant: str, name: str, force: bool = False) -> bool:
        with tenant_scope_for(info, tenant, "workflow.edit"):
            services.delete_workflow(actor=actor_of(info), workflow=get_workflow(name), force=force)
        return True

    @strawberry.mutation
    def pause_workflow(self, info: Info, tenant: str, name: str) -> WorkflowType:
        return _set_paused(info, tenant, name, paused=True)

    @strawberry.mutation
    def unpause_workflow(self, info: Info, tenant: str, name: str) -> WorkflowType:
        return _set_paused(info, tenant, name, paused=False)


def _set_paused(info: Info, tenant: str, name: str, *, paused: bool) -> WorkflowType:
    with tenant_scope_for(info, tenant, "workflow.pause"):
        workflow = services.set_paused(
            actor=actor_of(info), workflow=get_workflow(name), paused=paused
        )
    return workflow  # type: ignore[return-value]
