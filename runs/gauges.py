"""What /metrics reads at scrape time from the runs' tables and the broker (docs/metrics.md):
the work in flight per tenant against its quota, and the queues' depth. A few grouped
queries, whatever the number of runs."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

from django.conf import settings
from django.db.models import Count

from orchestrator.models import Tenant
from orchestrator.tenancy import tenant_quota
from runs.engine.repair import broker_backlog
from runs.models import TaskInstance, WorkflowRun

__all__ = ["collect"]

logger = logging.getLogger(__name__)

UNFINISHED_RUNS = (WorkflowRun.State.QUEUED, WorkflowRun.State.RUNNING)
WAITING_TASKS = (TaskInstance.State.QUEUED, TaskInstance.State.RUNNING)


def collect() -> Iterator[Any]:
    from prometheus_client.core import GaugeMetricFamily

    live = list(Tenant.objects.filter(archived_at__isnull=True).values_list("pk", "slug", "quotas"))
    tenants = {pk: slug for pk, slug, _ in live}
    yield _by_tenant_and_state(
        "orc_runs_active",
        "Runs queued or running, per tenant.",
        WorkflowRun.objects.dangerously_unscoped().filter(state__in=UNFINISHED_RUNS),
        tenants,
    )
    yield _by_tenant_and_state(
        "orc_task_instances_active",
        "Task instances queued or running, per tenant.",
        TaskInstance.objects.dangerously_unscoped().filter(state__in=WAITING_TASKS),
        tenants,
    )

    limit = GaugeMetricFamily(
        "orc_tenant_concurrent_runs_limit",
        "A tenant's max_concurrent_runs quota: the running runs it may have at once.",
        labels=("tenant",),
    )
    for _, slug, quotas in live:
        limit.add_metric([slug], tenant_quota(quotas, "max_concurrent_runs"))
    yield limit

    depth = GaugeMetricFamily(
        "orc_queue_depth", "Messages waiting in each Celery queue.", labels=("queue",)
    )
    for queue in settings.CELERY_TASK_QUEUES:
        try:
            depth.add_metric([queue.name], broker_backlog(queue.name))
        except Exception:  # an unreachable broker: no depth rather than no metrics
            logger.warning("metrics: no depth of queue %s", queue.name, exc_info=True)
    yield depth


def _by_tenant_and_state(name: str, text: str, rows: Any, tenants: dict[int, str]) -> Any:
    """A gauge of `rows` counted by tenant (its slug) and state, in one grouped query."""
    from prometheus_client.core import GaugeMetricFamily

    gauge = GaugeMetricFamily(name, text, labels=("tenant", "state"))
    grouped = rows.values_list("tenant_id", "state").annotate(n=Count("id")).order_by()
    for tenant_id, state, count in grouped:
        gauge.add_metric([tenants.get(tenant_id, str(tenant_id)), state], count)
    return gauge
