"""Run use cases: trigger. Transactional, authorised by the policy, audited."""

from __future__ import annotations

from typing import Any

from django.db import transaction
from jsonschema import Draft202012Validator

from orchestrator import audit
from orchestrator.actors import Actor
from orchestrator.errors import Conflict, FieldError, Invalid
from orchestrator.policy import authorize
from runs import engine
from runs.graph import graph_for
from runs.models import WorkflowRun
from workflows.models import Workflow
from workflows.params import params_schema

__all__ = ["resolve_params", "trigger_run"]


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


@transaction.atomic
def trigger_run(
    *, actor: Actor, workflow: Workflow, params: Any = None, source: str | None = None
) -> WorkflowRun:
    """Create a run of the workflow's current version; it starts at once if a run slot is
    free (max_active_runs), otherwise it waits `queued`, in trigger order."""
    authorize(actor, "run.operate", workflow.tenant)
    if workflow.deleted_at is not None or workflow.current_version is None:
        raise Conflict(f"workflow {workflow.name!r} has no version to run")
    values = resolve_params(workflow, params if params is not None else {})
    run = engine.create_run(
        workflow=workflow, params=values, source=source or actor.source, user_id=actor.user_id
    )
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
    )
    engine.start_queued_runs(workflow.pk)
    run.refresh_from_db()
    return run
