"""The events dispatcher: the outbox's second consumer (DESIGN.md section 12). Each new
event in a tenant's log (the engine's own, a dataset update, a published one) starts the
runs it triggers, in one transaction with marking it dispatched, so a crash dispatches it
again, whole, and never twice:

- event triggers (`triggers: [{event: ...}]`): every subscribed workflow whose filter
  matches gets one run, with the event in its context; another tenant's subscription
  counts only while this tenant shares the workflow's events with it (a grant);
- dataset schedules (`schedule: {datasets: [...]}`): a `dataset.updated` event queues the
  update for each workflow scheduled on the dataset (another tenant's only under a grant),
  and a workflow whose datasets have all been updated since its last dataset run gets one
  run, listing the updates it consumed (Airflow's semantics)."""

from __future__ import annotations

import datetime as dt
import fnmatch
import logging
import uuid
from collections.abc import Iterable
from typing import Any

from django.db import transaction
from django.db.models import Q
from django.utils import timezone
from jinja2 import TemplateError

from events.models import DatasetQueue
from orchestrator import audit
from orchestrator.actors import Actor
from orchestrator.context import tenant_scope
from orchestrator.errors import Conflict, DomainError
from orchestrator.grants import is_shared
from orchestrator.models import Grant
from runs.engine.events import cloudevent
from runs.graph import graph_for
from runs.models import DatasetUpdate, Event, WorkflowRun
from runs.services import trigger_run
from workflows.models import DatasetReference, EventSubscription, Workflow
from workflows.spec import EventTrigger, dataset_key
from workflows.templating import render_value

__all__ = [
    "dispatch",
    "dispatch_leftovers",
    "dispatch_one",
    "evaluate_dataset_schedule",
    "evaluate_waiting_schedules",
]

logger = logging.getLogger(__name__)

LEFTOVER_AFTER = dt.timedelta(seconds=5)  # not dispatched by then: its message was lost
BATCH = 500


def dispatch(event_ids: Iterable[int]) -> int:
    """Dispatch each event (one transaction each); returns the runs started."""
    return sum(dispatch_one(event_id) for event_id in event_ids)


def dispatch_one(event_id: int) -> int:
    with transaction.atomic():
        if (
            Event.objects.dangerously_unscoped()
            .filter(pk=event_id, dispatched_at__isnull=True)
            .update(dispatched_at=timezone.now())
            != 1
        ):
            return 0  # dispatched already (a redelivered message, or the reconciler)
        event = (
            Event.objects.dangerously_unscoped()
            .select_related("tenant", "workflow")
            .get(pk=event_id)
        )
        envelope = cloudevent(event, event.tenant.slug)
        started = sum(_trigger(sub, event, envelope) for sub in _subscribers(event))
        waiting = _queue_update(event) if event.type == Event.Type.DATASET_UPDATED else []
    for workflow_id in waiting:  # after the queue's commit: see docstring of evaluate
        started += evaluate_dataset_schedule(workflow_id)
    return started


# --- event triggers ----------------------------------------------------------------------


def _subscribers(event: Event) -> list[EventSubscription]:
    """The subscriptions to this event's type: this tenant's, and other tenants' that name
    this tenant as the publisher (checked against the grants by `_trigger`)."""
    return list(
        EventSubscription.objects.dangerously_unscoped()
        .filter(
            event_type=event.type,
            tenant__archived_at__isnull=True,
            tenant__suspended_at__isnull=True,
        )
        .filter(Q(publisher="", tenant_id=event.tenant_id) | Q(publisher=event.tenant.slug))
        .select_related("workflow", "tenant")
        .order_by("id")
    )


def _matches(sub: EventSubscription, event: Event, envelope: dict[str, Any]) -> bool:
    workflow = event.workflow.name if event.workflow is not None else None
    if sub.source_workflow and sub.source_workflow != workflow:
        return False
    if sub.tenant_id != event.tenant_id and not is_shared(
        owner_id=event.tenant_id,
        grantee_id=sub.tenant_id,
        kind=Grant.Kind.EVENTS,
        # A published event belongs to no workflow: only a grant of all ("*") shares it.
        name=workflow or "*",
    ):
        return False
    trigger = _trigger_spec(sub)
    wanted = trigger.event.filter if trigger is not None else None
    if wanted is None:
        return trigger is not None
    for field, pattern in (("subject", wanted.subject), ("source", wanted.source)):
        if pattern is not None and not fnmatch.fnmatchcase(str(envelope.get(field, "")), pattern):
            return False
    return True


def _trigger_spec(sub: EventSubscription) -> EventTrigger | None:
    version = sub.workflow.current_version_id
    if version is None or sub.workflow.deleted_at is not None:
        return None
    triggers = graph_for(version).spec.triggers
    found = triggers[sub.index] if sub.index < len(triggers) else None
    return found if isinstance(found, EventTrigger) else None


def _trigger(sub: EventSubscription, event: Event, envelope: dict[str, Any]) -> int:
    """One run of the subscriber for this event; 0 when it does not match, its workflow is
    paused, or the run is refused (recorded in the subscriber's audit log)."""
    if sub.workflow.paused or not _matches(sub, event, envelope):
        return 0
    trigger = _trigger_spec(sub)
    assert trigger is not None  # _matches checked it
    with tenant_scope([sub.tenant_id]):
        try:
            with transaction.atomic():
                params = render_value(trigger.event.params, {"event": envelope}, native=True)
                triggered = trigger_run(
                    actor=Actor.system(),
                    workflow=sub.workflow,
                    params=params,
                    source=WorkflowRun.Source.EVENT,
                    idempotency_key=f"event:{event.uid}:{sub.index}",
                    event=envelope,
                )
        except (DomainError, TemplateError) as exc:
            _refused(sub.workflow, f"triggers[{sub.index}]", envelope, exc)
            return 0
    return 0 if triggered.replayed else 1


def _refused(workflow: Workflow, where: str, envelope: dict[str, Any], exc: Exception) -> None:
    """A trigger that could not start its run says why where the team looks: the audit
    log (and the worker's log)."""
    detail = getattr(exc, "errors", None) or str(exc)
    logger.warning(
        "%s of workflow %s refused event %s: %s", where, workflow.pk, envelope["id"], detail
    )
    if isinstance(exc, Conflict) and "paused" in str(exc):
        return
    audit.record(
        actor=Actor.system(),
        action="run.trigger_refused",
        tenant=workflow.tenant,
        obj=workflow,
        object_repr=workflow.name,
        extra={
            "trigger": where,
            "event": {k: envelope.get(k) for k in ("id", "type", "source", "subject")},
            "error": detail if isinstance(detail, str) else [list(e) for e in detail],
        },
    )


# --- dataset schedules ---------------------------------------------------------------------


def _queue_update(event: Event) -> list[int]:
    """Queue a dataset update for every workflow scheduled on the dataset; returns them."""
    name, update_id = event.data.get("dataset"), event.data.get("update")
    if not isinstance(name, str) or not isinstance(update_id, int):
        return []
    refs = (
        DatasetReference.objects.dangerously_unscoped()
        .filter(role=DatasetReference.Role.SCHEDULE, dataset=name)
        .filter(tenant__archived_at__isnull=True, tenant__suspended_at__isnull=True)
        .filter(Q(publisher="", tenant_id=event.tenant_id) | Q(publisher=event.tenant.slug))
        .values_list("workflow_id", "tenant_id", "publisher")
    )
    waiting = []
    for workflow_id, tenant_id, publisher in refs:
        if tenant_id != event.tenant_id and not is_shared(
            owner_id=event.tenant_id, grantee_id=tenant_id, kind=Grant.Kind.DATASET, name=name
        ):
            continue
        DatasetQueue.objects.dangerously_unscoped().bulk_create(
            [
                DatasetQueue(
                    tenant_id=tenant_id,
                    workflow_id=workflow_id,
                    publisher=publisher,
                    dataset=name,
                    first_update_id=update_id,
                )
            ],
            ignore_conflicts=True,  # queued already: the oldest unconsumed update stays
        )
        waiting.append(workflow_id)
    return waiting


def evaluate_dataset_schedule(workflow_id: int) -> int:
    """Start the workflow's dataset run if every dataset of its schedule has a queued
    update, taking them (1), else nothing (0). Called after the queue rows' commit and
    under the workflow's row lock, so of two updates committed at once the second
    evaluation sees both, and a pair of updates is consumed by exactly one run."""
    with transaction.atomic():
        workflow = (
            Workflow.objects.dangerously_unscoped()
            .select_for_update(of=("self",), no_key=True)
            .select_related("tenant")
            .filter(pk=workflow_id)
            .first()
        )
        queue = DatasetQueue.objects.dangerously_unscoped().filter(workflow_id=workflow_id)
        schedule = (
            graph_for(workflow.current_version_id).spec.schedule
            if workflow is not None
            and workflow.current_version_id is not None
            and workflow.deleted_at is None
            else None
        )
        if workflow is None or schedule is None or not schedule.datasets:
            queue.delete()  # no longer scheduled on datasets
            return 0
        wanted = {dataset_key(ref) for ref in schedule.datasets}
        rows = {(row.publisher, row.dataset): row for row in queue}
        stale = [row.pk for key, row in rows.items() if key not in wanted]
        if stale:
            DatasetQueue.objects.dangerously_unscoped().filter(pk__in=stale).delete()
        if workflow.paused or not wanted <= rows.keys():
            return 0
        consumed = [rows[key] for key in sorted(wanted)]
        updates = _updates_since(consumed)
        DatasetQueue.objects.dangerously_unscoped().filter(
            pk__in=[row.pk for row in consumed]
        ).delete()
        envelope = _datasets_event(workflow, updates)
        with tenant_scope([workflow.tenant_id]):
            try:
                with transaction.atomic():
                    trigger_run(
                        actor=Actor.system(),
                        workflow=workflow,
                        params={},
                        source=WorkflowRun.Source.DATASET,
                        event=envelope,
                        dataset_update_ids=[u.pk for u in updates],
                    )
            except DomainError as exc:
                _refused(workflow, "schedule.datasets", envelope, exc)
                return 0
        return 1


def _updates_since(rows: list[DatasetQueue]) -> list[DatasetUpdate]:
    """Every update of the queued datasets from the first one queued on: what the run
    consumes."""
    first = {row.first_update_id for row in rows}
    datasets = DatasetUpdate.objects.dangerously_unscoped().filter(pk__in=first)
    condition = Q()
    for dataset_id, first_id in datasets.values_list("dataset_id", "id"):
        condition |= Q(dataset_id=dataset_id, id__gte=first_id)
    return list(
        DatasetUpdate.objects.dangerously_unscoped()
        .filter(condition)
        .select_related("dataset", "tenant", "workflow")
        .order_by("id")
    )


def _datasets_event(workflow: Workflow, updates: list[DatasetUpdate]) -> dict[str, Any]:
    """The CloudEvent a dataset run carries (templates read it as `event`)."""
    return {
        "specversion": "1.0",
        "id": str(uuid.uuid4()),
        "source": f"/tenants/{workflow.tenant.slug}/workflows/{workflow.name}",
        "type": "datasets.updated",
        "time": timezone.now().isoformat(),
        "datacontenttype": "application/json",
        "data": {
            "updates": [
                {
                    "tenant": u.tenant.slug,
                    "dataset": u.dataset.name,
                    "update": u.pk,
                    "workflow": u.workflow.name if u.workflow is not None else None,
                    "run": u.run_id,
                    "task_id": u.task_id,
                    "logical_date": u.logical_date.isoformat() if u.logical_date else None,
                    "metadata": u.metadata,
                    "time": u.created_at.isoformat(),
                }
                for u in updates
            ]
        },
    }


# --- repairs -------------------------------------------------------------------------------


def dispatch_leftovers() -> int:
    """Dispatch events whose after-commit message was lost (a crash, a broker outage)."""
    ids = list(
        Event.objects.dangerously_unscoped()
        .filter(dispatched_at__isnull=True, time__lt=timezone.now() - LEFTOVER_AFTER)
        .order_by("id")
        .values_list("id", flat=True)[:BATCH]
    )
    for event_id in ids:
        try:
            dispatch_one(event_id)
        except Exception:  # one bad event must not stop the others
            logger.exception("dispatching event %s failed", event_id)
    return len(ids)


def evaluate_waiting_schedules() -> int:
    """Evaluate the workflows with queued updates (one whose evaluation a crash lost, one
    unpaused since): returns the runs started."""
    started = 0
    for workflow_id in (
        DatasetQueue.objects.dangerously_unscoped()
        .values_list("workflow_id", flat=True)
        .distinct()
        .order_by("workflow_id")[:BATCH]
    ):
        try:
            started += evaluate_dataset_schedule(workflow_id)
        except Exception:
            logger.exception("evaluating the dataset schedule of workflow %s failed", workflow_id)
    return started
