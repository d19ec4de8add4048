"""Admin for platform staff: every tenant's runs, task instances and attempts, read-only and
searchable (by workflow name, tenant slug or run id), each linking to the tenant's admin
page and to the run's page in the portal; a "Cancel selected runs" action that cancels
through the service (as any operator's cancel, audited with source admin). A suspended
tenant's running work goes on until staff cancel it here.

It also tells the tenant admin page how much of the workflow and run quotas a tenant uses
(orchestrator.admin may not import the models that are counted).

Pools (docs/pools.md) are the one thing staff change here: created, resized and deleted
through runs.pools, as any editor's change, audited with source admin."""

from __future__ import annotations

from django.contrib import admin, messages
from django.db.models import QuerySet
from django.http import HttpRequest
from django.urls import reverse
from django.utils.html import format_html
from django.utils.safestring import SafeString

from orchestrator.admin import (
    ServiceForm,
    ServiceFormAdmin,
    TenantRowsAdmin,
    admin_actor,
    register_quota_usage,
)
from orchestrator.context import tenant_scope
from orchestrator.errors import DomainError
from orchestrator.models import Tenant
from runs import pools, services
from runs.models import Pool, TaskAttempt, TaskInstance, WorkflowRun
from workflows.models import Workflow

__all__ = ["PoolAdmin", "PoolForm", "TaskAttemptAdmin", "TaskInstanceAdmin", "WorkflowRunAdmin"]

UNFINISHED = (WorkflowRun.State.QUEUED, WorkflowRun.State.RUNNING)


def _tenant_link(tenant: Tenant) -> SafeString:
    url = reverse("admin:orchestrator_tenant_change", args=[tenant.pk])
    return format_html('<a href="{}">{}</a>', url, tenant.slug)


def _portal_link(run: WorkflowRun, task_id: str | None = None) -> SafeString:
    """The run's page in the portal (or one task's), as the tenant's members see it."""
    slug = run.tenant.slug
    if task_id is None:
        url = reverse("portal:run", kwargs={"tenant": slug, "run": run.pk})
    else:
        url = reverse("portal:task", kwargs={"tenant": slug, "run": run.pk, "task": task_id})
    return format_html('<a href="{}">{}</a>', url, url)


def _run_link(run: WorkflowRun) -> SafeString:
    url = reverse("admin:runs_workflowrun_change", args=[run.pk])
    return format_html('<a href="{}">run {}</a>', url, run.pk)


@admin.register(WorkflowRun)
class WorkflowRunAdmin(TenantRowsAdmin):
    related = ("tenant", "workflow", "version", "triggered_by")
    list_display = (
        "id",
        "workflow",
        "tenant",
        "state",
        "trigger_source",
        "logical_date",
        "created_at",
        "ended_at",
    )
    list_filter = ("state", "trigger_source", "tenant")
    search_fields = ("=id", "workflow__name", "tenant__slug")
    show_full_result_count = False  # no COUNT(*) over every run on each page
    fields = readonly_fields = (
        "tenant_page",
        "portal_page",
        "workflow",
        "version",
        "state",
        "trigger_source",
        "triggered_by",
        "params",
        "logical_date",
        "data_interval_start",
        "data_interval_end",
        "created_at",
        "queued_at",
        "started_at",
        "ended_at",
        "backfill",
        "event",
    )
    actions = ("cancel",)

    @admin.display(description="tenant")
    def tenant_page(self, obj: WorkflowRun) -> SafeString:
        return _tenant_link(obj.tenant)

    @admin.display(description="in the portal")
    def portal_page(self, obj: WorkflowRun) -> SafeString:
        return _portal_link(obj)

    @admin.action(description="Cancel selected runs")
    def cancel(self, request: HttpRequest, queryset: QuerySet[WorkflowRun]) -> None:
        """Cancel each unfinished run as an operator would (runs.services.cancel_run)."""
        cancelled = []
        for run in queryset.filter(state__in=UNFINISHED).select_related("tenant", "workflow"):
            try:
                with tenant_scope([run.tenant_id]):
                    services.cancel_run(actor=admin_actor(request), run=run)
            except DomainError as exc:
                self.message_user(request, f"run {run.pk}: {exc.message}", messages.ERROR)
            else:
                cancelled.append(str(run.pk))
        listed = ", ".join(cancelled) or "none (finished runs are left as they are)"
        self.message_user(request, f"{len(cancelled)} run(s) cancelled: {listed}")


@admin.register(TaskInstance)
class TaskInstanceAdmin(TenantRowsAdmin):
    related = ("tenant", "run__workflow", "run__tenant")
    list_display = (
        "id",
        "task_id",
        "map_index",
        "run",
        "workflow",
        "tenant",
        "state",
        "try_number",
        "started_at",
        "ended_at",
    )
    list_filter = ("state", "task_type", "tenant")
    search_fields = ("=run__id", "task_id", "run__workflow__name", "tenant__slug")
    show_full_result_count = False
    fields = readonly_fields = (
        "tenant_page",
        "run_page",
        "portal_page",
        "task_id",
        "map_index",
        "task_type",
        "state",
        "try_number",
        "max_tries",
        "lost_tries",
        "priority",
        "pending_upstreams",
        "next_attempt_at",
        "queued_at",
        "started_at",
        "ended_at",
        "result",
    )

    @admin.display(description="workflow", ordering="run__workflow__name")
    def workflow(self, obj: TaskInstance) -> Workflow:
        return obj.run.workflow

    @admin.display(description="tenant")
    def tenant_page(self, obj: TaskInstance) -> SafeString:
        return _tenant_link(obj.tenant)

    @admin.display(description="run")
    def run_page(self, obj: TaskInstance) -> SafeString:
        return _run_link(obj.run)

    @admin.display(description="in the portal")
    def portal_page(self, obj: TaskInstance) -> SafeString:
        return _portal_link(obj.run, obj.task_id)


@admin.register(TaskAttempt)
class TaskAttemptAdmin(TenantRowsAdmin):
    related = ("tenant", "task_instance__run__workflow", "task_instance__run__tenant")
    list_display = (
        "id",
        "task_instance",
        "workflow",
        "tenant",
        "try_number",
        "state",
        "worker",
        "started_at",
        "ended_at",
    )
    list_filter = ("state", "tenant")
    search_fields = (
        "=task_instance__run__id",
        "task_instance__task_id",
        "task_instance__run__workflow__name",
        "tenant__slug",
        "worker",
    )
    show_full_result_count = False
    # Not claim_token: it names a worker's claim, which nobody needs to see.
    fields = readonly_fields = (
        "tenant_page",
        "run_page",
        "portal_page",
        "task_instance",
        "try_number",
        "state",
        "worker",
        "pid",
        "lease_expires_at",
        "started_at",
        "ended_at",
        "exit_code",
        "error",
        "rendered",
        "uses",
        "log_bytes",
    )

    @admin.display(description="workflow", ordering="task_instance__run__workflow__name")
    def workflow(self, obj: TaskAttempt) -> Workflow:
        return obj.task_instance.run.workflow

    @admin.display(description="tenant")
    def tenant_page(self, obj: TaskAttempt) -> SafeString:
        return _tenant_link(obj.tenant)

    @admin.display(description="run")
    def run_page(self, obj: TaskAttempt) -> SafeString:
        return _run_link(obj.task_instance.run)

    @admin.display(description="in the portal")
    def portal_page(self, obj: TaskAttempt) -> SafeString:
        return _portal_link(obj.task_instance.run, obj.task_instance.task_id)


# --- pools ----------------------------------------------------------------------------------


class PoolForm(ServiceForm[Pool]):
    class Meta:
        model = Pool
        fields = ("tenant", "name", "slots", "description")

    def _post_clean(self) -> None:
        # Model validation checks unique (tenant, name) through the scoped manager.
        tenant = self.cleaned_data.get("tenant") or self.instance.tenant_id
        with tenant_scope([tenant] if tenant else []):
            super()._post_clean()  # type: ignore[misc]  # Django has it; the stubs omit it

    def apply(self) -> Pool:
        data = self.cleaned_data
        if self.instance.pk is None:
            return pools.create_pool(
                actor=self.actor,
                tenant=data["tenant"],
                name=data["name"],
                slots=data["slots"],
                description=data["description"],
            )
        current = Pool.objects.dangerously_unscoped().get(pk=self.instance.pk)
        return pools.update_pool(
            actor=self.actor, pool=current, slots=data["slots"], description=data["description"]
        )


@admin.register(Pool)
class PoolAdmin(ServiceFormAdmin[Pool]):
    """Every tenant's pools with what their tasks take of them now."""

    form = PoolForm
    list_display = ("name", "tenant", "slots", "usage")
    list_filter = ("tenant",)
    list_select_related = ("tenant",)
    search_fields = ("name", "tenant__slug")

    def get_queryset(self, request: HttpRequest) -> QuerySet[Pool]:
        return pools.with_usage(Pool.objects.dangerously_unscoped())

    def get_readonly_fields(self, request: HttpRequest, obj: Pool | None = None) -> tuple[str, ...]:
        # Tasks name a pool within its tenant: neither changes once it is made.
        return ("tenant", "name", "usage", "updated_at") if obj is not None else ()

    @admin.display(description="usage")
    def usage(self, obj: Pool) -> str:
        used = pools.usage(obj)
        return (
            f"{used.used_slots} of {obj.slots} slots in use; {used.running} running, "
            f"{used.queued} queued, {used.waiting} waiting"
        )

    def delete_model(self, request: HttpRequest, obj: Pool) -> None:
        pools.delete_pool(actor=admin_actor(request), pool=obj)


# --- quota usage on the tenant admin page ------------------------------------------------


def _live_workflows(tenant: Tenant) -> tuple[int, str]:
    live = Workflow.objects.dangerously_unscoped().filter(tenant=tenant, deleted_at__isnull=True)
    return live.count(), "live workflows (deleted ones do not count)"


def _running_runs(tenant: Tenant) -> tuple[int, str]:
    runs = WorkflowRun.objects.dangerously_unscoped().filter(tenant=tenant)
    running = runs.filter(state=WorkflowRun.State.RUNNING).count()
    queued = runs.filter(state=WorkflowRun.State.QUEUED).count()
    return running, f"runs running now; {queued} more queued, waiting for a slot"


register_quota_usage("max_workflows", _live_workflows)
register_quota_usage("max_concurrent_runs", _running_runs)
