"""Every runs endpoint under the generic suite: viewers read, operators trigger (audited
once as run.trigger), another tenant's runs are 404, bad credentials are 401."""

from __future__ import annotations

from typing import Any

from orchestrator.actors import Actor
from orchestrator.context import tenant_scope
from runs.services import trigger_run
from tests.harness import EndpointCase, EndpointSuite, Team
from workflows.models import Workflow
from workflows.services import apply_workflow

SPEC: dict[str, Any] = {
    "name": "etl",
    "params": {"limit": {"type": "integer", "minimum": 1, "default": 10}},
    "tasks": {
        "extract": {"type": "noop"},
        "load": {"type": "shell", "command": ["true"], "depends_on": ["extract"]},
    },
}
TENANT = "/api/v1/tenants/{tenant}"
WORKFLOW_RUNS = TENANT + "/workflows/{workflow}/runs/"
RUNS = TENANT + "/runs/"
RUN = RUNS + "{run}/"
TASKS = RUN + "tasks/"
TASK = TASKS + "{task}/"


def _workflow(team: Team) -> Workflow:
    with tenant_scope([team.tenant]):
        return apply_workflow(actor=Actor.cli(), tenant=team.tenant, data=SPEC).workflow


def a_workflow(team: Team) -> dict[str, str]:
    return {"workflow": _workflow(team).name}


def a_run(team: Team) -> dict[str, str]:
    workflow = _workflow(team)
    with tenant_scope([team.tenant]):
        run = trigger_run(actor=Actor.cli(), workflow=workflow, params={}).run
    return {"workflow": workflow.name, "run": str(run.pk), "task": "extract"}


class TestRunsEndpoints(EndpointSuite):
    cases = [
        EndpointCase(
            "trigger", "POST", WORKFLOW_RUNS, "operator", status=201, setup=a_workflow,
            body={"params": {"limit": 5}}, audit_action="run.trigger",
        ),
        EndpointCase("workflow-runs", "GET", WORKFLOW_RUNS, "viewer", setup=a_run),
        EndpointCase("runs", "GET", RUNS, "viewer", setup=a_run),
        EndpointCase("run", "GET", RUN, "viewer", setup=a_run),
        EndpointCase("tasks", "GET", TASKS, "viewer", setup=a_run),
        EndpointCase("task", "GET", TASK, "viewer", setup=a_run),
    ]  # fmt: skip
