"""Run use cases: trigger (with idempotency keys), cancel, retry, clear and mark, each
transactional, authorised by the policy and audited; they call the engine and
`runs.operations` for the state changes."""

from __future__ import annotations

import datetime as dt
import hashlib
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from django.db import IntegrityError, transaction
from django.utils import timezone
from jsonschema import Draft202012Validator

from orchestrator import audit
from orchestrator.actors import Actor
from orchestrator.errors import Conflict, FieldError, Invalid
from orchestrator.policy import authorize
from runs import engine, operations
from runs.graph import graph_for
from runs.models import IdempotencyKey, TaskInstance, WorkflowRun
from workflows.models import Workflow
from workflows.params import params_schema
from workflows.validation import canonical_json

__all__ = [
    "Triggered",
    "cancel_run",
    "clear_task",
    "mark_task",
    "resolve_params",
    "retry_run",
    "trigger_run",
]


def resolve_params(workflow: Workflow, given: Any) -> dict[str, Any]:
    """The run's params: defaults applied, then checked against the workflow's params."""
    assert workflow.current_version_id is not None
    declared = graph_for(workflow.current_version_id).spec.params
    if not isinstance(given, dict):
        raise Invalid([("params", "expected an object of param values")])
    errors: list[FieldError] = []
    for name in given:
        if name not in declared:
            accepted = ", ".join(declared) or "none (this workflow declares no params)"
            errors.append((f"params.{name}", f"unknown param; accepted: {accepted}"))
    values = {n: p.default for n, p in declared.items() if p.default is not None}
    values.update({k: v for k, v in given.items() if k in declared})
    schema = params_schema(declared)
    for error in Draft202012Validator(schema).iter_errors(values):
        if error.validator == "required":
            missing = error.message.split("'")[1]
            errors.append((f"params.{missing}", "required param missing"))
        elif error.validator != "additionalProperties":
            where = ".".join(str(p) for p in error.absolute_path)
            errors.append((f"params.{where}" if where else "params", error.message))
    if errors:
        raise Invalid(errors)
    return values


IDEMPOTENCY_WINDOW = dt.timedelta(hours=24)


@dataclass(frozen=True)
class Triggered:
    run: WorkflowRun
    replayed: bool  # an earlier request with the same Idempotency-Key made this run
    # Task instance count per state as the trigger left them, when known without a query.
    tasks: dict[str, int] | None = None


def trigger_run(
    *,
    actor: Actor,
    workflow: Workflow,
    params: Any = None,
    source: str | None = None,
    idempotency_key: str | None = None,
    force: bool = False,
    event: dict[str, Any] | None = None,
    dataset_update_ids: list[int] | None = None,
) -> Triggered:
    """Create a run of the workflow's current version; it starts at once if a run slot is
    free (max_active_runs, the tenant's quota), otherwise it waits `queued`, in trigger
    order. With an idempotency key, a repeated request returns the first run; concurrent
    ones with one key make exactly one run (the unique key decides, the losers replay).
    A paused workflow runs only when forced: pausing is meant to stop it. A suspended
    tenant's workflows do not run at all.

    `event`: the CloudEvent that started a webhook, event or dataset run (templates read
    it as `event`); `dataset_update_ids`: the updates that started a dataset run."""
    authorize(actor, "run.operate", workflow.tenant)
    if workflow.tenant.suspended_at is not None:  # by platform staff; a force does not help
        raise Conflict(
            f"tenant {workflow.tenant.slug} is suspended: {workflow.tenant.suspended_reason}"
        )
    if workflow.paused and not force:
        raise Conflict(
            f"workflow {workflow.name!r} is paused: unpause it, or pass force: true to "
            "trigger a run anyway"
        )
    forced = workflow.paused  # recorded: the run went past a pause
    if idempotency_key is None:
        created = _trigger(actor, workflow, params, source, forced, event, dataset_update_ids)
        return Triggered(created.run, replayed=False, tasks=created.tasks)
    # Every field of the trigger body: the same key with another params or force is a 409.
    body = {"params": params or {}, "force": force}
    request_hash = hashlib.sha256(canonical_json(body).encode()).hexdigest()
    earlier = _replay(workflow, idempotency_key, request_hash)
    if earlier is not None:
        return Triggered(earlier, replayed=True)
    try:
        with transaction.atomic():
            created = _trigger(actor, workflow, params, source, forced, event, dataset_update_ids)
            IdempotencyKey.objects.dangerously_unscoped().create(
                tenant_id=workflow.tenant_id,
                workflow=workflow,
                key=idempotency_key,
                request_hash=request_hash,
                run=created.run,
            )
            return Triggered(created.run, replayed=False, tasks=created.tasks)
    except IntegrityError:  # another request with this key committed first
        earlier = _replay(workflow, idempotency_key, request_hash)
        if earlier is None:
            raise
        return Triggered(earlier, replayed=True)


def _replay(workflow: Workflow, key: str, request_hash: str) -> WorkflowRun | None:
    keys = IdempotencyKey.objects.dangerously_unscoped().filter(workflow=workflow, key=key)
    keys.filter(created_at__lt=timezone.now() - IDEMPOTENCY_WINDOW).delete()
    found = keys.select_related("run").first()
    if found is None:
        return None
    if found.request_hash != request_hash:
        raise Conflict(
            f"Idempotency-Key {key!r} was used for another request body (run "
            f"{found.run_id}); use a new key for a different request"
        )
    return found.run


@transaction.atomic
def _trigger(
    actor: Actor,
    workflow: Workflow,
    params: Any,
    source: str | None,
    forced: bool = False,
    event: dict[str, Any] | None = None,
    dataset_update_ids: list[int] | None = None,
) -> engine.Created:
    if workflow.deleted_at is not None or workflow.current_version is None:
        raise Conflict(f"workflow {workflow.name!r} has no version to run")
    values = resolve_params(workflow, params if params is not None else {})
    # Locks: tenant, workflow and run rows first, the audit chain last (as everywhere).
    created = engine.create_and_start_run(
        workflow=workflow,
        params=values,
        source=source or actor.source,
        user_id=actor.user_id,
        event=event,
    )
    run = created.run
    if dataset_update_ids:
        run.dataset_updates.add(*dataset_update_ids)
    # With what a response shows, as run_list() reads it.
    run.version = workflow.current_version
    run.triggered_by = actor.user if actor.user_id is not None else None  # type: ignore[assignment]
    audit.record(
        actor=actor,
        action="run.trigger",
        tenant=workflow.tenant,
        obj=run,
        object_repr=f"{workflow.name} run {run.pk}",
        after={
            "workflow": workflow.name,
            "version": workflow.current_version.number,
            "params": values,
            "state": run.state,
        },
        extra=_trigger_extra(forced, event),
    )
    return created


def _trigger_extra(forced: bool, event: dict[str, Any] | None) -> dict[str, Any] | None:
    extra: dict[str, Any] = {}
    if forced:
        extra["forced_while_paused"] = True
    if event is not None:
        extra["event"] = {k: event.get(k) for k in ("id", "type", "source", "subject")}
    return extra or None


def _operate(
    actor: Actor,
    run: WorkflowRun,
    action: str,
    change: Callable[[], Any],
    task_id: str | None = None,
    **details: Any,
) -> Any:
    """Authorise, apply an operation, audit it: the run's state (and the task's, for a task
    operation) before and after. An operation that changed nothing is not audited."""
    authorize(actor, "run.operate", run.tenant)

    def snapshot() -> dict[str, Any]:
        state: dict[str, Any] = {
            "state": WorkflowRun.objects.filter(pk=run.pk).values_list("state", flat=True).get()
        }
        if task_id is not None:
            instances = TaskInstance.objects.filter(run=run, task_id=task_id)
            if details.get("map_index") is not None:
                instances = instances.filter(map_index=details["map_index"])
            rows = list(instances.values_list("state", "try_number"))
            if len(rows) > 1:  # a mapped task as a whole: how many in each state
                state["task_state"] = dict(Counter(s for s, _ in rows))
                state["task_try_number"] = sum(t for _, t in rows)
            else:
                state["task_state"], state["task_try_number"] = rows[0] if rows else (None, None)
        return state

    with transaction.atomic():
        before = snapshot()
        result = change()
        after = snapshot()
        if after != before:
            audit.record(
                actor=actor,
                action=action,
                tenant=run.tenant,
                obj=run,
                object_repr=f"{run.workflow.name} run {run.pk}",
                before=before,
                after=after,
                extra={"task_id": task_id, **details} if task_id else details or None,
            )
    run.refresh_from_db()
    return result


def cancel_run(*, actor: Actor, run: WorkflowRun) -> WorkflowRun:
    _operate(actor, run, "run.cancel", lambda: operations.cancel(run.pk))
    return run


def retry_run(*, actor: Actor, run: WorkflowRun) -> list[str]:
    cleared: list[str] = []
    _operate(actor, run, "run.retry", lambda: cleared.extend(operations.retry(run.pk)))
    return cleared


def clear_task(
    *,
    actor: Actor,
    run: WorkflowRun,
    task_id: str,
    downstream: bool,
    map_index: int | None = None,
) -> list[str]:
    """Clear a task (a mapped one: as a whole, or the instance at `map_index`)."""
    cleared: list[str] = []
    _operate(
        actor,
        run,
        "task.clear",
        lambda: cleared.extend(
            operations.clear(run.pk, task_id, downstream=downstream, map_index=map_index)
        ),
        task_id=task_id,
        downstream=downstream,
        **({"map_index": map_index} if map_index is not None else {}),
    )
    return cleared


def mark_task(
    *, actor: Actor, run: WorkflowRun, task_id: str, state: str, map_index: int | None = None
) -> TaskInstance:
    """Mark a task (a mapped one: as a whole, or the instance at `map_index`)."""
    return _operate(  # type: ignore[no-any-return]
        actor,
        run,
        f"task.mark_{state}",
        lambda: operations.mark(run.pk, task_id, state, map_index=map_index),
        task_id=task_id,
        **({"map_index": map_index} if map_index is not None else {}),
    )
