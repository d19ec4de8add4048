"""Every run operation under the generic suite: operators cancel, retry, clear and mark
(each audited once), viewers read logs (not audited); lower roles are 403, another
tenant's runs 404, bad credentials 401 - and none of those change anything."""

from __future__ import annotations

from collections.abc import Callable

from runs.models import TaskAttempt, WorkflowRun
from tests.harness import EndpointCase, EndpointSuite, Team
from tests.runs.run_states import failed_run, running_run, started_run, succeeded_run, write_log

RUN = "/api/v1/tenants/{tenant}/runs/{run}/"
TASK = RUN + "tasks/{task}/"


def target(prepare: Callable[[Team], WorkflowRun], task: str) -> Callable[[Team], dict[str, str]]:
    def setup(team: Team) -> dict[str, str]:
        return {"run": str(prepare(team).pk), "task": task}

    return setup


def a_run_with_a_log(team: Team) -> dict[str, str]:
    run = running_run(team)
    attempt = TaskAttempt.objects.dangerously_unscoped().get(
        task_instance__run=run, task_instance__task_id="transform"
    )
    write_log(attempt, b"hello\n")
    return {"run": str(run.pk), "task": "transform"}


class TestRunOperationEndpoints(EndpointSuite):
    cases = [
        EndpointCase(
            "cancel", "POST", RUN + "cancel/", "operator",
            setup=target(started_run, "extract"), audit_action="run.cancel",
        ),
        EndpointCase(
            "retry", "POST", RUN + "retry/", "operator",
            setup=target(failed_run, "transform"), audit_action="run.retry",
        ),
        EndpointCase(
            "clear", "POST", TASK + "clear/", "operator", body={"downstream": True},
            setup=target(succeeded_run, "transform"), audit_action="task.clear",
        ),
        EndpointCase(
            "mark-success", "POST", TASK + "mark-success/", "operator",
            setup=target(failed_run, "transform"), audit_action="task.mark_success",
        ),
        EndpointCase(
            "mark-failed", "POST", TASK + "mark-failed/", "operator",
            setup=target(started_run, "extract"), audit_action="task.mark_failed",
        ),
        EndpointCase("logs", "GET", TASK + "logs/", "viewer", setup=a_run_with_a_log),
    ]  # fmt: skip
