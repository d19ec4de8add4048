"""Runs over GraphQL: the same selectors, services and policy as REST."""

from __future__ import annotations

import datetime as dt
from typing import Any

import strawberry
import strawberry_django
from strawberry.scalars import JSON
from strawberry.types import Info

from orchestrator.context import tenant_scope
from orchestrator.errors import Invalid
from orchestrator.graphql.types import (
    LIST_LIMIT_DEFAULT,
    LIST_LIMIT_MAX,
    actor_of,
    list_limit,
    tenant_scope_for,
)
from runs import backfills, models, selectors, services
from runs.engine.events import cloudevent as as_cloudevent
from runs.eventlog import publish_event
from runs.graphql.packages import PackageMutation, PackageQuery
from runs.graphql.pools import PoolMutation, PoolQuery
from workflows.selectors import get_workflow

__all__ = ["Mutation", "Query"]


@strawberry_django.type(models.TaskAttempt)
class TaskAttemptType:
    id: strawberry.auto
    try_number: strawberry.auto
    state: str
    worker: strawberry.auto
    pid: strawberry.auto
    lease_expires_at: strawberry.auto
    started_at: strawberry.auto
    ended_at: strawberry.auto
    exit_code: strawberry.auto
    error: strawberry.auto
    log_bytes: strawberry.auto

    @strawberry_django.field
    def rendered(self, root: models.TaskAttempt) -> JSON:
        return root.rendered  # type: ignore[no-any-return]

    @strawberry_django.field
    def uses(self, root: models.TaskAttempt) -> JSON:
        """The connections, secrets and variables the attempt used (names only)."""
        return root.uses  # type: ignore[no-any-return]


@strawberry_django.type(models.TaskInstance)
class TaskInstanceType:
    id: strawberry.auto
    task_id: strawberry.auto
    map_index: strawberry.auto
    task_type: strawberry.auto
    state: str
    try_number: strawberry.auto
    max_tries: strawberry.auto
    lost_tries: strawberry.auto
    priority: strawberry.auto
    pool: strawberry.auto
    pool_slots: strawberry.auto
    concurrency_key: strawberry.auto
    wait_reason: strawberry.auto
    next_attempt_at: strawberry.auto
    queued_at: strawberry.auto
    started_at: strawberry.auto
    ended_at: strawberry.auto

    @strawberry_django.field
    def result(self, root: models.TaskInstance) -> JSON | None:
        return root.result  # type: ignore[no-any-return]

    @strawberry_django.field(  # type: ignore[untyped-decorator]
        description="A mapped instance's element of `map.over` (null when unmapped)."
    )
    def map_value(self, root: models.TaskInstance) -> JSON | None:
        return root.map_value  # type: ignore[no-any-return]

    @strawberry_django.field(  # type: ignore[untyped-decorator]
        description="Its last try's error ('' when it has none: not tried, running, succeeded)."
    )
    def error(self, root: models.TaskInstance) -> str:
        with tenant_scope([root.tenant_id]):
            return selectors.last_error(root)

    @strawberry_django.field(description="The first `limit` tries, in order.")  # type: ignore[untyped-decorator]
    def attempts(
        self, root: models.TaskInstance, limit: int = LIST_LIMIT_DEFAULT
    ) -> list[TaskAttemptType]:
        limit = list_limit(limit)
        with tenant_scope([root.tenant_id]):
            return list(root.attempts.order_by("try_number")[:limit])  # type: ignore[arg-type]


@strawberry_django.type(models.WorkflowRun)
class RunType:
    id: strawberry.auto
    state: str
    logical_date: strawberry.auto
    data_interval_start: strawberry.auto
    data_interval_end: strawberry.auto
    trigger_source: str
    created_at: strawberry.auto
    queued_at: strawberry.auto
    started_at: strawberry.auto
    ended_at: strawberry.auto

    @strawberry_django.field
    def workflow(self, root: models.WorkflowRun) -> str:
        return root.workflow.name

    @strawberry_django.field
    def version(self, root: models.WorkflowRun) -> int:
        return root.version.number

    @strawberry_django.field
    def params(self, root: models.WorkflowRun) -> JSON:
        return root.params  # type: ignore[no-any-return]

    @strawberry_django.field(  # type: ignore[untyped-decorator]
        description="The CloudEvent that started a webhook, event or dataset run (else null)."
    )
    def event(self, root: models.WorkflowRun) -> JSON | None:
        return root.event  # type: ignore[no-any-return]

    @strawberry_django.field
    def triggered_by(self, root: models.WorkflowRun) -> str | None:
        return root.triggered_by.username if root.triggered_by else None

    @strawberry_django.field(  # type: ignore[untyped-decorator]
        description="In creation order; `taskId` and `mapIndex` (-1: unmapped) narrow them."
    )
    def task_instances(
        self,
        root: models.WorkflowRun,
        state: str | None = None,
        limit: int = LIST_LIMIT_MAX,
        task_id: str | None = None,
        map_index: int | None = None,
    ) -> list[TaskInstanceType]:
        limit = list_limit(limit)
        with tenant_scope([root.tenant_id]):
            qs = selectors.task_instance_list(
                root, task_id=task_id, map_index=map_index, state=state
            ).order_by("id")
            return list(qs[:limit])  # type: ignore[arg-type]

    @strawberry_django.field(  # type: ignore[untyped-decorator]
        description="Each task once: a mapped task with its instance count per state."
    )
    def task_groups(
        self, root: models.WorkflowRun, limit: int = LIST_LIMIT_MAX
    ) -> list[TaskGroupType]:
        limit = list_limit(limit)
        with tenant_scope([root.tenant_id]):
            return [TaskGroupType.of(group) for group in selectors.task_groups(root)[:limit]]


@strawberry.type
class MappedType:
    count: int = strawberry.field(description="instances (0 before the task is expanded)")
    # A scalar, as in REST ({"success": 298, "failed": 2}): a handful of keys at most.
    states: JSON = strawberry.field(description="instances per state")


@strawberry.type(description="A task of a run seen whole; a mapped task once.")
class TaskGroupType:
    task_id: str
    task_type: str
    state: str = strawberry.field(
        description="a mapped task's as its downstream sees it (unfinished while any instance "
        "is: the most advanced unfinished state shown)"
    )
    instance_id: int | None = strawberry.field(
        description="its single instance's id (null once mapped into several)"
    )
    mapped: MappedType | None = strawberry.field(description="null for an unmapped task")
    started_at: dt.datetime | None
    ended_at: dt.datetime | None = strawberry.field(
        description="its last end, once every instance has finished"
    )

    @classmethod
    def of(cls, group: selectors.TaskGroup) -> TaskGroupType:
        states: JSON = dict(group.states)  # type: ignore[assignment]
        return cls(
            task_id=group.task_id,
            task_type=group.task_type,
            state=group.state,
            instance_id=group.instance_id,
            mapped=MappedType(count=group.count, states=states) if group.mapped else None,
            started_at=group.started_at,
            ended_at=group.ended_at,
        )


@strawberry_django.type(models.Event)
class EventType:
    """An outbox event; `cloudevent` is its CloudEvent 1.0, as webhooks receive it."""

    id: strawberry.auto
    type: str
    time: strawberry.auto
    task_id: strawberry.auto
    routed_at: strawberry.auto

    @strawberry_django.field(only=["uid"], description="its CloudEvent id")  # type: ignore[untyped-decorator]
    def uid(self, root: models.Event) -> str:
        return str(root.uid)

    @strawberry_django.field(select_related=["workflow"], only=["workflow__name"])  # type: ignore[untyped-decorator]
    def workflow(self, root: models.Event) -> str | None:
        return root.workflow.name if root.workflow is not None else None

    @strawberry_django.field(only=["run_id"])  # type: ignore[untyped-decorator]
    def run_id(self, root: models.Event) -> int | None:
        return root.run_id

    @strawberry_django.field(only=["data"])  # type: ignore[untyped-decorator]
    def data(self, root: models.Event) -> JSON:
        return root.data  # type: ignore[no-any-return]

    @strawberry_django.field(  # type: ignore[untyped-decorator]
        select_related=["tenant"],
        only=[
            "tenant__slug",
            "uid",
            "type",
            "time",
            "data",
            "run_id",
            "task_id",
            "source",
            "subject",
        ],
    )
    def cloudevent(self, root: models.Event) -> JSON:
        return as_cloudevent(root, root.tenant.slug)  # type: ignore[return-value]


@strawberry.type
class Query(PackageQuery, PoolQuery):  # runs/graphql/packages.py, runs/graphql/pools.py
    @strawberry.field(
        description="Events newest first (types: any of them); page with `beforeId` = the "
        "last id you received."
    )  # type: ignore[untyped-decorator]
    def events(
        self,
        info: Info,
        tenant: str,
        types: list[str] | None = None,
        workflow: str | None = None,
        run: int | None = None,
        since: dt.datetime | None = None,
        until: dt.datetime | None = None,
        before_id: int | None = None,
        limit: int = LIST_LIMIT_DEFAULT,
    ) -> list[EventType]:
        limit = list_limit(limit)
        with tenant_scope_for(info, tenant, "run.view"):
            qs = selectors.event_list(
                types=types or (), workflow=workflow, run_id=run, since=since, until=until
            ).select_related("tenant")  # each cloudevent names its tenant
            if before_id:
                qs = qs.filter(pk__lt=before_id)
            return list(qs[:limit])  # type: ignore[arg-type]

    @strawberry.field(description="By its CloudEvent id; null, with NOT_FOUND, when unknown.")  # type: ignore[untyped-decorator]
    def event(self, info: Info, tenant: str, uid: str) -> EventType | None:
        with tenant_scope_for(info, tenant, "run.view"):
            return selectors.get_event(uid)  # type: ignore[return-value]

    @strawberry.field
    def runs(
        self,
        info: Info,
        tenant: str,
        workflow: str | None = None,
        state: str | None = None,
        before_id: int | None = None,
        limit: int = LIST_LIMIT_DEFAULT,
    ) -> list[RunType]:
        """Newest first; page with `beforeId` = the last id you received."""
        limit = list_limit(limit)
        with tenant_scope_for(info, tenant, "run.view"):
            qs = selectors.run_list(workflow=workflow, state=state).order_by("-id")
            if before_id:
                qs = qs.filter(pk__lt=before_id)
            return list(qs[:limit])  # type: ignore[arg-type]

    @strawberry.field(
        description="A page of a task's log (`mapIndex`: of that instance of a mapped task); "
        "follow it from nextOffset while running is true."
    )  # type: ignore[untyped-decorator]
    def task_log(
        self,
        info: Info,
        tenant: str,
        run: int,
        task_id: str,
        try_number: int | None = None,
        offset: int = 0,
        limit: int = selectors.LOG_PAGE_MAX,
        map_index: int | None = None,
    ) -> LogPage:
        with tenant_scope_for(info, tenant, "run.view"):
            if offset < 0 or limit < 1:
                raise Invalid(
                    [
                        (
                            "offset" if offset < 0 else "limit",
                            "expected a non-negative offset and a positive limit",
                        )
                    ]
                )
            ti = selectors.get_task_instance(selectors.get_run(run), task_id, map_index)
            page = selectors.read_log(
                ti,
                try_number=try_number,
                offset=max(0, offset),
                limit=min(max(1, limit), selectors.LOG_PAGE_MAX),
            )
        return LogPage(**page)

    @strawberry.field(description="Null, with a NOT_FOUND error, when it does not exist.")  # type: ignore[untyped-decorator]
    def run(self, info: Info, tenant: str, id: int) -> RunType | None:
        with tenant_scope_for(info, tenant, "run.view"):
            return selectors.get_run(id)  # type: ignore[return-value]

    @strawberry.field(description="A workflow's backfills (all when no workflow), newest first.")  # type: ignore[untyped-decorator]
    def backfills(
        self,
        info: Info,
        tenant: str,
        workflow: str | None = None,
        limit: int = LIST_LIMIT_DEFAULT,
    ) -> list[BackfillType]:
        limit = list_limit(limit)
        with tenant_scope_for(info, tenant, "backfill.view"):
            qs = backfills.backfill_list(workflow=get_workflow(workflow) if workflow else None)
            return list(qs[:limit])  # type: ignore[arg-type]

    @strawberry.field(description="Null, with a NOT_FOUND error, when it does not exist.")  # type: ignore[untyped-decorator]
    def backfill(self, info: Info, tenant: str, id: int) -> BackfillType | None:
        with tenant_scope_for(info, tenant, "backfill.view"):
            return backfills.get_backfill(id)  # type: ignore[return-value]


@strawberry.type
class LogPage:
    try_number: int | None
    offset: int
    next_offset: int
    text: str
    running: bool
    total_bytes: int
    cap_bytes: int


@strawberry.type
class Mutation(PackageMutation, PoolMutation):
    @strawberry.mutation(
        description="Trigger a run of the workflow's current version; a paused workflow's "
        "only with force."
    )  # type: ignore[untyped-decorator]
    def trigger_run(
        self,
        info: Info,
        tenant: str,
        workflow: str,
        params: JSON | None = None,
        idempotency_key: str | None = None,
        force: bool = False,
    ) -> RunType:
        with tenant_scope_for(info, tenant, "run.operate"):
            triggered = services.trigger_run(
                actor=actor_of(info),
                workflow=get_workflow(workflow),
                params=params,
                idempotency_key=idempotency_key,
                force=force,
            )
        return triggered.run  # type: ignore[return-value]

    @strawberry.mutation(
        description="Publish an event of your own type into the tenant's event log, where "
        "event triggers match it; an `id` published before (per source) returns that event."
    )  # type: ignore[untyped-decorator]
    def publish_event(
        self,
        info: Info,
        tenant: str,
        type: str,
        source: str,
        subject: str | None = None,
        data: JSON | None = None,
        id: str | None = None,
        time: str | None = None,
    ) -> EventType:
        with tenant_scope_for(info, tenant, "event.publish") as t:
            event, _ = publish_event(
                actor=actor_of(info),
                tenant=t,
                type=type,
                source=source,
                subject=subject,
                data=data,
                id=id,
                time=time,
            )
        return event  # type: ignore[return-value]

    @strawberry.mutation(description="Stop a queued or running run.")  # type: ignore[untyped-decorator]
    def cancel_run(self, info: Info, tenant: str, id: int) -> RunType:
        with tenant_scope_for(info, tenant, "run.operate"):
            run = selectors.get_run(id)
            services.cancel_run(actor=actor_of(info), run=run)
        return run  # type: ignore[return-value]

    @strawberry.mutation(
        description="Re-run the failed part of an ended run; returns the cleared task ids."
    )  # type: ignore[untyped-decorator]
    def retry_run(self, info: Info, tenant: str, id: int) -> list[str]:
        with tenant_scope_for(info, tenant, "run.operate"):
            return services.retry_run(actor=actor_of(info), run=selectors.get_run(id))

    @strawberry.mutation(
        description="Run a finished task again (with downstream: all after it too; with "
        "mapIndex: only that instance of a mapped task); returns the cleared task ids."
    )  # type: ignore[untyped-decorator]
    def clear_task(
        self,
        info: Info,
        tenant: str,
        run: int,
        task_id: str,
        downstream: bool = False,
        map_index: int | None = None,
    ) -> list[str]:
        with tenant_scope_for(info, tenant, "run.operate"):
            found = selectors.get_run(run)
            if map_index is not None:
                selectors.get_task_instance(found, task_id, map_index)  # NOT_FOUND names them
            return services.clear_task(
                actor=actor_of(info),
                run=found,
                task_id=task_id,
                downstream=downstream,
                map_index=map_index,
            )

    @strawberry.mutation(
        description="Set a task success or failed by hand (with mapIndex: only that instance "
        "of a mapped task; without: all of them, and the first instance answers)."
    )  # type: ignore[untyped-decorator]
    def mark_task(
        self,
        info: Info,
        tenant: str,
        run: int,
        task_id: str,
        state: str,
        map_index: int | None = None,
    ) -> TaskInstanceType:
        with tenant_scope_for(info, tenant, "run.operate"):
            found = selectors.get_run(run)
            if map_index is not None:
                selectors.get_task_instance(found, task_id, map_index)  # NOT_FOUND names them
            return services.mark_task(  # type: ignore[return-value]
                actor=actor_of(info),
                run=found,
                task_id=task_id,
                state=state,
                map_index=map_index,
            )

    @strawberry.mutation(
        description="Backfill a workflow's schedule over [start, end] (dates or ISO 8601 "
        "times, in the workflow's timezone without an offset). With dryRun, only the "
        "intervals and what would happen to each; nothing is created."
    )  # type: ignore[untyped-decorator]
    def create_backfill(
        self,
        info: Info,
        tenant: str,
        workflow: str,
        start: str,
        end: str,
        reprocess: str = "none",
        max_active_runs: int | None = None,
        reverse: bool = False,
        params: JSON | None = None,
        dry_run: bool = False,
    ) -> BackfillCreated:
        with tenant_scope_for(info, tenant, "backfill.operate"):
            target = get_workflow(workflow)
            options: dict[str, Any] = {
                "start": start,
                "end": end,
                "reprocess": reprocess,
                "reverse": reverse,
                "params": params,
            }
            if dry_run:
                planned = backfills.plan_backfill(
                    actor=actor_of(info),
                    workflow=target,
                    max_active_runs=max_active_runs,
                    **options,
                )
                return BackfillCreated(
                    backfill=None, intervals=[PlannedIntervalType.of(p) for p in planned]
                )
            created = backfills.create_backfill(
                actor=actor_of(info), workflow=target, max_active_runs=max_active_runs, **options
            )
            return BackfillCreated(
                backfill=backfills.get_backfill(created.pk),  # type: ignore[arg-type]
                intervals=[],
            )

    @strawberry.mutation(description="Create no more runs; those started go on.")  # type: ignore[untyped-decorator]
    def pause_backfill(self, info: Info, tenant: str, id: int) -> BackfillType:
        return _operate_backfill(info, tenant, id, backfills.pause_backfill)

    @strawberry.mutation(description="Go on with a paused backfill.")  # type: ignore[untyped-decorator]
    def resume_backfill(self, info: Info, tenant: str, id: int) -> BackfillType:
        return _operate_backfill(info, tenant, id, backfills.resume_backfill)

    @strawberry.mutation(description="Create no more runs; cancel its queued and running runs.")  # type: ignore[untyped-decorator]
    def cancel_backfill(self, info: Info, tenant: str, id: int) -> BackfillType:
        return _operate_backfill(info, tenant, id, backfills.cancel_backfill)


def _operate_backfill(info: Info, tenant: str, id: int, operation: Any) -> BackfillType:
    with tenant_scope_for(info, tenant, "backfill.operate"):
        operation(actor=actor_of(info), backfill=backfills.get_backfill(id))
        return backfills.get_backfill(id)  # type: ignore[return-value]


@strawberry.type
class BackfillProgress:
    total: int
    pending: int
    created: int
    rerun: int
    skipped: int
    queued: int
    running: int
    succeeded: int
    failed: int
    cancelled: int


@strawberry_django.type(models.Backfill)
class BackfillType:
    id: strawberry.auto
    state: str
    start: strawberry.auto
    end: strawberry.auto
    reprocess: str
    max_active_runs: strawberry.auto
    reverse: strawberry.auto
    created_at: strawberry.auto
    updated_at: strawberry.auto
    ended_at: strawberry.auto

    @strawberry_django.field
    def workflow(self, root: models.Backfill) -> str:
        return root.workflow.name

    @strawberry_django.field
    def created_by(self, root: models.Backfill) -> str | None:
        return root.created_by.username if root.created_by else None

    @strawberry_django.field(description="params of every run of the backfill")  # type: ignore[untyped-decorator]
    def params(self, root: models.Backfill) -> JSON:
        return root.params  # type: ignore[no-any-return]

    @strawberry_django.field
    def progress(self, root: models.Backfill) -> BackfillProgress:
        return BackfillProgress(**backfills.progress(root))


@strawberry.type
class PlannedIntervalType:
    logical_date: dt.datetime
    data_interval_start: dt.datetime
    data_interval_end: dt.datetime
    action: str
    run: int | None

    @classmethod
    def of(cls, planned: backfills.PlannedInterval) -> PlannedIntervalType:
        return cls(
            logical_date=planned.logical_date,
            data_interval_start=planned.data_interval_start,
            data_interval_end=planned.data_interval_end,
            action=planned.action,
            run=planned.run_id,
        )


@strawberry.type
class BackfillCreated:
    backfill: BackfillType | None  # null for a dry run
    intervals: list[PlannedIntervalType]  # a dry run's plan (empty otherwise)
