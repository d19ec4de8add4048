"""Runs over GraphQL: the same selectors, services and policy as REST."""

from __future__ import annotations

import strawberry
import strawberry_django
from strawberry.scalars import JSON
from strawberry.types import Info

from orchestrator.context import tenant_scope
from orchestrator.errors import Invalid
from orchestrator.graphql.types import actor_of, tenant_for
from runs import models, selectors, services
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
    next_attempt_at: strawberry.auto
    queued_at: strawberry.auto
    started_at: strawberry.auto
    ended_at: strawberry.auto

    @strawberry_django.field
    def result(self, root: models.TaskInstance) -> JSON | None:
        return root.result  # type: ignore[no-any-return]

    @strawberry_django.field
    def attempts(self, root: models.TaskInstance) -> list[TaskAttemptType]:
        with tenant_scope([root.tenant_id]):
            return list(root.attempts.order_by("try_number"))  # type: ignore[arg-type]


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

    @strawberry_django.field
    def triggered_by(self, root: models.WorkflowRun) -> str | None:
        return root.triggered_by.username if root.triggered_by else None

    @strawberry_django.field
    def task_instances(
        self, root: models.WorkflowRun, state: str | None = None
    ) -> list[TaskInstanceType]:
        with tenant_scope([root.tenant_id]):
            qs = models.TaskInstance.objects.filter(run=root).order_by("id")
            if state:
                qs = qs.filter(state=state)
            return list(qs)  # type: ignore[arg-type]


@strawberry.type
class Query:
    @strawberry.field
    def runs(
        self,
        info: Info,
        tenant: str,
        workflow: str | None = None,
        state: str | None = None,
        before_id: int | None = None,
        limit: int = 50,
    ) -> list[RunType]:
        """Newest first; page with `beforeId` = the last id you received."""
        t = tenant_for(info, tenant, "run.view")
        with tenant_scope([t]):
            qs = selectors.run_list(workflow=workflow, state=state).order_by("-id")
            if before_id:
                qs = qs.filter(pk__lt=before_id)
            return list(qs[: max(1, min(limit, 500))])  # type: ignore[arg-type]

    @strawberry.field(
        description="A page of a task's log; follow it from nextOffset while running is true."
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
    ) -> LogPage:
        t = tenant_for(info, tenant, "run.view")
        if offset < 0 or limit < 1:
            raise Invalid(
                [
                    (
                        "offset" if offset < 0 else "limit",
                        "expected a non-negative offset and a positive limit",
                    )
                ]
            )
        with tenant_scope([t]):
            ti = selectors.get_task_instance(selectors.get_run(run), task_id)
            page = selectors.read_log(
                ti,
                try_number=try_number,
                offset=max(0, offset),
                limit=min(max(1, limit), selectors.LOG_PAGE_MAX),
            )
        return LogPage(**page)

    @strawberry.field(description="Null, with a NOT_FOUND error, when it does not exist.")  # type: ignore[untyped-decorator]
    def run(self, info: Info, tenant: str, id: int) -> RunType | None:
        t = tenant_for(info, tenant, "run.view")
        with tenant_scope([t]):
            return selectors.get_run(id)  # type: ignore[return-value]


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
class Mutation:
    @strawberry.mutation(description="Trigger a run of the workflow's current version.")  # type: ignore[untyped-decorator]
    def trigger_run(
        self,
        info: Info,
        tenant: str,
        workflow: str,
        params: JSON | None = None,
        idempotency_key: str | None = None,
    ) -> RunType:
        t = tenant_for(info, tenant, "run.operate")
        with tenant_scope([t]):
            triggered = services.trigger_run(
                actor=actor_of(info),
                workflow=get_workflow(workflow),
                params=params,
                idempotency_key=idempotency_key,
            )
        return triggered.run  # type: ignore[return-value]

    @strawberry.mutation(description="Stop a queued or running run.")  # type: ignore[untyped-decorator]
    def cancel_run(self, info: Info, tenant: str, id: int) -> RunType:
        t = tenant_for(info, tenant, "run.operate")
        with tenant_scope([t]):
            run = selectors.get_run(id)
            services.cancel_run(actor=actor_of(info), run=run)
        return run  # type: ignore[return-value]

    @strawberry.mutation(
        description="Re-run the failed part of an ended run; returns the cleared task ids."
    )  # type: ignore[untyped-decorator]
    def retry_run(self, info: Info, tenant: str, id: int) -> list[str]:
        t = tenant_for(info, tenant, "run.operate")
        with tenant_scope([t]):
            return services.retry_run(actor=actor_of(info), run=selectors.get_run(id))

    @strawberry.mutation(
        description="Run a finished task again (with downstream: all after "
        "it too); returns the cleared task ids."
    )  # type: ignore[untyped-decorator]
    def clear_task(
        self, info: Info, tenant: str, run: int, task_id: str, downstream: bool = False
    ) -> list[str]:
        t = tenant_for(info, tenant, "run.operate")
        with tenant_scope([t]):
            return services.clear_task(
                actor=actor_of(info),
                run=selectors.get_run(run),
                task_id=task_id,
                downstream=downstream,
            )

    @strawberry.mutation(description="Set a task success or failed by hand.")  # type: ignore[untyped-decorator]
    def mark_task(
        self, info: Info, tenant: str, run: int, task_id: str, state: str
    ) -> TaskInstanceType:
        t = tenant_for(info, tenant, "run.operate")
        with tenant_scope([t]):
            return services.mark_task(  # type: ignore[return-value]
                actor=actor_of(info), run=selectors.get_run(run), task_id=task_id, state=state
            )
