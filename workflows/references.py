"""What a workflow's current version refers to outside itself: the events it subscribes
to and the datasets it reads, writes, waits for or is scheduled on, kept as rows
(`EventSubscription`, `DatasetReference`) so the events dispatcher and the lineage graph
find them with an indexed query instead of parsing every spec. Rewritten by apply and
delete (workflows.services), in their transaction."""

from __future__ import annotations

from workflows.models import DatasetReference, EventSubscription, Workflow
from workflows.spec import EventTrigger, WaitForDataset, WorkflowSpec, dataset_key

__all__ = ["clear_references", "sync_references"]

ROLE = DatasetReference.Role


def clear_references(workflow: Workflow) -> None:
    EventSubscription.objects.dangerously_unscoped().filter(workflow=workflow).delete()
    DatasetReference.objects.dangerously_unscoped().filter(workflow=workflow).delete()


def sync_references(workflow: Workflow, spec: WorkflowSpec) -> None:
    clear_references(workflow)
    subscriptions = []
    for index, trigger in enumerate(spec.triggers):
        if not isinstance(trigger, EventTrigger):
            continue
        publisher, _, source = (trigger.event.workflow or "").rpartition("/")
        subscriptions.append(
            EventSubscription(
                tenant_id=workflow.tenant_id,
                workflow=workflow,
                index=index,
                event_type=trigger.event.type,
                publisher=publisher,
                source_workflow=source,
            )
        )
    EventSubscription.objects.dangerously_unscoped().bulk_create(subscriptions)
    wanted: dict[tuple[str, str, str, str], None] = {}
    if spec.schedule is not None:
        for ref in spec.schedule.datasets or ():
            wanted[("", ROLE.SCHEDULE, *dataset_key(ref))] = None
    for task_id, task in spec.tasks.items():
        for outlet in task.outlets:
            wanted[(task_id, ROLE.OUTLET, "", outlet)] = None
        for inlet in task.inlets:
            wanted[(task_id, ROLE.INLET, *dataset_key(inlet))] = None
        if isinstance(task, WaitForDataset):
            wanted[(task_id, ROLE.SENSOR, *dataset_key(task.dataset))] = None
    DatasetReference.objects.dangerously_unscoped().bulk_create(
        DatasetReference(
            tenant_id=workflow.tenant_id,
            workflow=workflow,
            task_id=task_id,
            role=role,
            publisher=publisher,
            dataset=dataset,
        )
        for task_id, role, publisher, dataset in wanted
    )
