"""Dataset updates: a task that succeeds records one update of each dataset in its
`outlets` (with the run, its logical date and the metadata the task returned for it under
`datasets` in its result), and a `dataset.updated` event in the outbox, in the
transaction of its success. The events dispatcher starts the dataset-scheduled runs
after commit (events.dispatch)."""

from __future__ import annotations

import datetime as dt
from typing import Any

from runs.engine import events
from runs.graph import VersionGraph
from runs.models import Dataset, DatasetUpdate, Event, WorkflowRun

__all__ = ["metadata_for", "record_outlets"]


def metadata_for(result: Any, dataset: str) -> dict[str, Any]:
    """What a task's result says of one of its outlets: `{"datasets": {name: {...}}}`."""
    if not isinstance(result, dict):
        return {}
    given = result.get("datasets")
    found = given.get(dataset) if isinstance(given, dict) else None
    return found if isinstance(found, dict) else {}


def record_outlets(
    run: WorkflowRun, graph: VersionGraph, succeeded: dict[str, Any], now: dt.datetime
) -> list[DatasetUpdate]:
    """One update per outlet of each task that succeeded ({task id: its result}); nothing
    (and no query) when none of them has outlets."""
    wanted = [
        (task_id, name, result)
        for task_id, result in succeeded.items()
        for name in graph.task(task_id).outlets
    ]
    if not wanted:
        return []
    datasets = Dataset.objects.dangerously_unscoped()
    names = sorted({name for _, name, _ in wanted})
    datasets.bulk_create(
        [Dataset(tenant_id=run.tenant_id, name=name) for name in names], ignore_conflicts=True
    )
    ids = dict(datasets.filter(tenant_id=run.tenant_id, name__in=names).values_list("name", "id"))
    updates = DatasetUpdate.objects.dangerously_unscoped().bulk_create(
        [
            DatasetUpdate(
                tenant_id=run.tenant_id,
                dataset_id=ids[name],
                run=run,
                workflow_id=run.workflow_id,
                task_id=task_id,
                logical_date=run.logical_date,
                metadata=metadata_for(result, name),
                created_at=now,
            )
            for task_id, name, result in wanted
        ]
    )
    tenant = run.tenant.slug
    for update, (task_id, name, _) in zip(updates, wanted, strict=True):
        events.emit(
            tenant_id=run.tenant_id,
            type=Event.Type.DATASET_UPDATED,
            data={
                "tenant": tenant,
                "dataset": name,
                "update": update.pk,
                "workflow": graph.spec.name,
                "run": {"id": run.pk, "logical_date": run.logical_date.isoformat()},
                "task_id": task_id,
                "metadata": update.metadata,
            },
            workflow_id=run.workflow_id,
            run_id=run.pk,
            task_id=task_id,
            subject=name,
        )
    return updates
