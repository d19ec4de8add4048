"""Operating runs over REST, on states built by hand (no workers): cancel stops what is
unfinished, retry re-runs the failed part only and keeps the history, clear re-runs a
finished task (and, asked, what follows it), mark sets a task's outcome and lets the rules
decide its downstream again. Each change is audited once; refusals change nothing."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest

from orchestrator import tokens
from orchestrator.actors import Actor
from orchestrator.context import tenant_scope
from runs.engine import start_queued_runs
from runs.models import TaskAttempt, TaskInstance, WorkflowRun
from runs.services import trigger_run
from tests.harness import (
    Team,
    assert_problem,
    audit_count,
    new_audit_events,
    send,
    tenant_state,
)
from tests.runs.run_states import (
    attempt_rows,
    failed_run,
    instance_rows,
    put,
    run_row,
    running_run,
    started_run,
    states,
    succeeded_run,
)
from workflows.services import apply_workflow

# One run at a time: a second run waits `queued` for the slot.
SERIAL: dict[str, Any] = {
    "name": "serial",
    "max_active_runs": 1,
    "tasks": {"first": {"type": "noop"}, "then": {"type": "noop", "depends_on": ["first"]}},
}


def url(team: Team, run: WorkflowRun | int, suffix: str) -> str:
    run_id = run if isinstance(run, int) else run.pk
    return f"/api/v1/tenants/{team.slug}/runs/{run_id}/{suffix}"


def operate(
    team: Team, run: WorkflowRun | int, suffix: str, body: Any = None, role: str = "operator"
) -> Any:
    return send(team.tokens[role], "POST", url(team, run, suffix), body)


# --- cancel ------------------------------------------------------------------------------


def test_it_cancels_a_running_run_and_everything_unfinished_in_it(team: Team) -> None:
    run = running_run(team)
    response = operate(team, run, "cancel/")
    assert response.status_code == 200, response.content
    assert response.json()["state"] == "cancelled"
    assert response.json()["tasks"] == {"success": 1, "cancelled": 4}
    stored = run_row(run)
    assert stored["state"] == "cancelled"
    assert stored["ended_at"] is not None
    assert states(run) == {
        "extract": ("success", 1),
        "side": ("cancelled", 1),
        "transform": ("cancelled", 1),
        "load": ("cancelled", 0),
        "report": ("cancelled", 0),
    }
    cancelled = instance_rows(run, "side", "transform", "load", "report").values()
    assert all(row["ended_at"] is not None for row in cancelled)
    by_task = {a["task_instance_id"]: a for a in attempt_rows(run)}
    transform = by_task[instance_rows(run, "transform")["transform"]["id"]]
    assert transform["state"] == "cancelled"
    assert transform["ended_at"] is not None
    assert transform["error"] == "cancelled by request"
    extract = by_task[instance_rows(run, "extract")["extract"]["id"]]
    assert extract["state"] == "success"
    left = TaskInstance.objects.dangerously_unscoped().filter(
        run=run, state__in=["queued", "scheduled", "running", "pending"]
    )
    assert not left.exists()
    assert not TaskAttempt.objects.dangerously_unscoped().filter(state="running").exists()


def test_it_cancels_a_run_still_waiting_for_a_slot(team: Team) -> None:
    running = started_run(team, SERIAL)
    with tenant_scope([team.tenant]):
        waiting = trigger_run(actor=Actor.cli(), workflow=running.workflow, params={}).run
    response = operate(team, waiting, "cancel/")
    assert response.status_code == 200, response.content
    assert run_row(waiting)["state"] == "cancelled"
    assert states(waiting) == {"first": ("cancelled", 0), "then": ("cancelled", 0)}
    assert run_row(running)["state"] == "running"
    assert states(running) == {"first": ("queued", 1), "then": ("pending", 0)}


@pytest.mark.parametrize("prepare", [failed_run, succeeded_run], ids=["failed", "succeeded"])
def test_it_refuses_to_cancel_an_ended_run_and_changes_nothing(
    team: Team, prepare: Callable[[Team], WorkflowRun]
) -> None:
    run = prepare(team)
    before = tenant_state(team.tenant)
    assert_problem(operate(team, run, "cancel/"), 409)
    assert tenant_state(team.tenant) == before


# --- retry -------------------------------------------------------------------------------


def test_it_retries_only_the_failed_part_of_a_failed_run(team: Team) -> None:
    run = failed_run(team)
    succeeded = instance_rows(run, "extract", "side")
    history = attempt_rows(run)
    response = operate(team, run, "retry/")
    assert response.status_code == 200, response.content
    assert response.json()["cleared"] == ["load", "report", "transform"]
    assert response.json()["state"] == "running"
    stored = run_row(run)
    assert (stored["state"], stored["ended_at"]) == ("running", None)
    assert states(run) == {
        "extract": ("success", 1),
        "side": ("success", 1),
        "transform": ("queued", 3),
        "load": ("pending", 0),
        "report": ("pending", 0),
    }
    assert instance_rows(run, "extract", "side") == succeeded
    rows = instance_rows(run, "transform", "load", "report")
    # Two tries were used up; the retry gives the task its tries (1 + 1 retry) again.
    assert rows["transform"]["max_tries"] == 4
    assert rows["transform"]["ended_at"] is None
    assert rows["load"]["pending_upstreams"] == 1
    assert rows["report"]["pending_upstreams"] == 1
    assert attempt_rows(run) == history


def test_it_retries_a_cancelled_run(team: Team) -> None:
    run = running_run(team)
    assert operate(team, run, "cancel/").status_code == 200
    response = operate(team, run, "retry/")
    assert response.status_code == 200, response.content
    assert response.json()["cleared"] == ["load", "report", "side", "transform"]
    assert run_row(run)["state"] == "running"
    assert states(run) == {
        "extract": ("success", 1),
        "side": ("queued", 2),
        "transform": ("queued", 2),
        "load": ("pending", 0),
        "report": ("pending", 0),
    }


def test_it_refuses_to_retry_a_running_run_and_changes_nothing(team: Team) -> None:
    run = running_run(team)
    before = tenant_state(team.tenant)
    assert_problem(operate(team, run, "retry/"), 409)
    assert tenant_state(team.tenant) == before


def test_it_refuses_to_retry_a_run_with_nothing_failed(team: Team) -> None:
    run = succeeded_run(team)
    before = tenant_state(team.tenant)
    problem = assert_problem(operate(team, run, "retry/"), 409)
    assert "no failed or cancelled tasks" in problem["detail"]
    assert tenant_state(team.tenant) == before


# --- clear -------------------------------------------------------------------------------


def test_it_clears_one_finished_task_without_its_downstream(team: Team) -> None:
    run = succeeded_run(team)
    untouched = instance_rows(run, "extract", "side", "load", "report")
    history = attempt_rows(run)
    response = operate(team, run, "tasks/transform/clear/", {"downstream": False})
    assert response.status_code == 200, response.content
    assert response.json() == {"cleared": ["transform"]}
    assert states(run)["transform"] == ("queued", 2)
    transform = instance_rows(run, "transform")["transform"]
    assert (transform["max_tries"], transform["result"], transform["ended_at"]) == (3, None, None)
    assert instance_rows(run, "extract", "side", "load", "report") == untouched
    assert attempt_rows(run) == history
    assert (run_row(run)["state"], run_row(run)["ended_at"]) == ("running", None)


def test_it_clears_a_task_with_everything_after_it(team: Team) -> None:
    run = succeeded_run(team)
    untouched = instance_rows(run, "extract", "side")
    response = operate(team, run, "tasks/transform/clear/", {"downstream": True})
    assert response.status_code == 200, response.content
    assert response.json() == {"cleared": ["load", "report", "transform"]}
    assert states(run) == {
        "extract": ("success", 1),
        "side": ("success", 1),
        "transform": ("queued", 2),
        "load": ("pending", 1),
        "report": ("pending", 1),
    }
    assert instance_rows(run, "extract", "side") == untouched
    assert all(row["result"] is None for row in instance_rows(run, "load", "report").values())
    assert run_row(run)["state"] == "running"


def test_it_clears_without_downstream_when_the_body_is_empty(team: Team) -> None:
    run = succeeded_run(team)
    response = operate(team, run, "tasks/load/clear/")
    assert response.status_code == 200, response.content
    assert response.json() == {"cleared": ["load"]}
    assert states(run)["report"] == ("success", 1)


@pytest.mark.parametrize(
    "task_id", ["transform", "side", "load"], ids=["running", "queued", "pending"]
)
def test_it_refuses_to_clear_an_unfinished_task_and_changes_nothing(
    team: Team, task_id: str
) -> None:
    run = running_run(team)
    before = tenant_state(team.tenant)
    problem = assert_problem(
        operate(team, run, f"tasks/{task_id}/clear/", {"downstream": True}), 409
    )
    assert task_id in problem["detail"]
    assert tenant_state(team.tenant) == before


@pytest.mark.parametrize(
    ("body", "path"),
    [({"downstream": "maybe"}, "downstream"), ({"downstream": True, "all": True}, "all")],
    ids=["not-a-boolean", "unknown-field"],
)
def test_it_refuses_a_bad_clear_body(team: Team, body: Any, path: str) -> None:
    run = succeeded_run(team)
    before = tenant_state(team.tenant)
    assert_problem(operate(team, run, "tasks/transform/clear/", body), 400, path=path)
    assert tenant_state(team.tenant) == before


# --- mark --------------------------------------------------------------------------------


def test_it_marks_a_failed_task_success_and_decides_its_downstream_again(team: Team) -> None:
    run = failed_run(team)
    history = attempt_rows(run)
    response = operate(team, run, "tasks/transform/mark-success/")
    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["task_id"], body["state"], body["try_number"]) == ("transform", "success", 2)
    assert [a["state"] for a in body["attempts"]] == ["failed", "failed"]
    # load was upstream_failed without running: decided again, it runs now (try 1);
    # report waits for it.
    assert states(run) == {
        "extract": ("success", 1),
        "side": ("success", 1),
        "transform": ("success", 2),
        "load": ("queued", 1),
        "report": ("pending", 0),
    }
    assert instance_rows(run, "report")["report"]["pending_upstreams"] == 1
    assert (run_row(run)["state"], run_row(run)["ended_at"]) == ("running", None)
    assert attempt_rows(run) == history


def test_it_marks_a_running_task_failed_and_settles_its_downstream(team: Team) -> None:
    run = running_run(team)
    response = operate(team, run, "tasks/transform/mark-failed/")
    assert response.status_code == 200, response.content
    body = response.json()
    assert (body["state"], body["ended_at"] is not None) == ("failed", True)
    [attempt] = body["attempts"]
    assert (attempt["state"], attempt["error"]) == ("cancelled", "marked failed by hand")
    assert states(run) == {
        "extract": ("success", 1),
        "side": ("queued", 1),
        "transform": ("failed", 1),
        "load": ("upstream_failed", 0),
        "report": ("upstream_failed", 0),
    }
    assert run_row(run)["state"] == "running"  # side is still to run


def test_it_ends_the_run_when_marking_settles_its_last_tasks(team: Team) -> None:
    run = running_run(team)
    put(run, "side", "success")
    response = operate(team, run, "tasks/transform/mark-failed/")
    assert response.status_code == 200, response.content
    assert states(run)["report"] == ("upstream_failed", 0)
    stored = run_row(run)
    assert stored["state"] == "failed"
    assert stored["ended_at"] is not None


def test_it_marks_a_succeeded_task_failed_in_an_ended_run(team: Team) -> None:
    run = succeeded_run(team)
    response = operate(team, run, "tasks/report/mark-failed/")
    assert response.status_code == 200, response.content
    assert states(run)["report"] == ("failed", 1)
    assert run_row(run)["state"] == "failed"


def test_it_keeps_a_run_waiting_for_a_slot_queued_when_a_task_is_marked(team: Team) -> None:
    running = started_run(team, SERIAL)
    with tenant_scope([team.tenant]):
        waiting = trigger_run(actor=Actor.cli(), workflow=running.workflow, params={}).run
    assert waiting.state == "queued"
    response = operate(team, waiting, "tasks/first/mark-success/")
    assert response.status_code == 200, response.content
    stored = run_row(waiting)
    assert (stored["state"], stored["started_at"]) == ("queued", None)
    assert states(waiting) == {"first": ("success", 0), "then": ("pending", 0)}
    assert run_row(running)["state"] == "running"
    # Once the slot is free, it starts where the mark left it.
    put(running, "first", "success")
    put(running, "then", "success")
    WorkflowRun.objects.dangerously_unscoped().filter(pk=running.pk).update(state="success")
    assert start_queued_runs(running.workflow_id) == [waiting.pk]
    assert states(waiting) == {"first": ("success", 0), "then": ("queued", 1)}


@pytest.mark.parametrize(
    ("prepare", "task_id", "action"),
    [
        (failed_run, "transform", "mark-failed"),
        (succeeded_run, "transform", "mark-success"),
    ],
    ids=["failed-again", "success-again"],
)
def test_it_changes_nothing_when_marking_a_task_with_its_own_state(
    team: Team, prepare: Callable[[Team], WorkflowRun], task_id: str, action: str
) -> None:
    run = prepare(team)
    instances, run_before, history = instance_rows(run), run_row(run), attempt_rows(run)
    response = operate(team, run, f"tasks/{task_id}/{action}/")
    assert response.status_code == 200, response.content
    assert instance_rows(run) == instances
    assert run_row(run) == run_before
    assert attempt_rows(run) == history


@pytest.mark.parametrize(
    "suffix", ["tasks/nope/clear/", "tasks/nope/mark-success/", "tasks/nope/mark-failed/"]
)
def test_it_answers_404_for_an_unknown_task_and_changes_nothing(team: Team, suffix: str) -> None:
    run = failed_run(team)
    before = tenant_state(team.tenant)
    problem = assert_problem(operate(team, run, suffix, {}), 404)
    assert "'nope'" in problem["detail"]
    assert tenant_state(team.tenant) == before


@pytest.mark.parametrize("suffix", ["cancel/", "retry/", "tasks/load/clear/"])
def test_it_answers_404_for_an_unknown_run(team: Team, suffix: str) -> None:
    before = tenant_state(team.tenant)
    assert_problem(operate(team, 999999, suffix, {}), 404)
    assert tenant_state(team.tenant) == before


# --- audit, roles, tenants ---------------------------------------------------------------

# (name, how to prepare the run, the request suffix, body, audit action, state before/after)
OPERATIONS = [
    ("cancel", running_run, "cancel/", None, "run.cancel", ("running", "cancelled")),
    ("retry", failed_run, "retry/", None, "run.retry", ("failed", "running")),
    (
        "clear",
        succeeded_run,
        "tasks/transform/clear/",
        {"downstream": True},
        "task.clear",
        ("success", "running"),
    ),
    (
        "mark-success",
        failed_run,
        "tasks/transform/mark-success/",
        None,
        "task.mark_success",
        ("failed", "running"),
    ),
    (
        "mark-failed",
        succeeded_run,
        "tasks/report/mark-failed/",
        None,
        "task.mark_failed",
        ("success", "failed"),
    ),
]
OPERATION_IDS = [op[0] for op in OPERATIONS]


@pytest.mark.parametrize(
    ("name", "prepare", "suffix", "body", "action", "run_states"), OPERATIONS, ids=OPERATION_IDS
)
def test_it_audits_each_operation_once_as_done_over_the_api(
    team: Team,
    name: str,
    prepare: Callable[[Team], WorkflowRun],
    suffix: str,
    body: Any,
    action: str,
    run_states: tuple[str, str],
) -> None:
    run = prepare(team)
    count = audit_count(team.tenant)
    response = operate(team, run, suffix, body)
    assert response.status_code == 200, response.content
    [event] = new_audit_events(team.tenant, count)
    assert event.action == action
    assert event.source == "api"
    assert event.actor_id == team.users["operator"].pk
    assert event.token_prefix == tokens.parse(team.tokens["operator"])
    assert event.request_id == response["X-Request-ID"]
    assert (event.object_type, event.object_id) == ("workflowrun", str(run.pk))
    # The run's state, and for task operations the task's state too, before and after.
    assert event.changes["before"]["state"] == run_states[0]
    assert event.changes["after"]["state"] == run_states[1]


def test_it_audits_which_task_was_cleared_and_how(team: Team) -> None:
    run = succeeded_run(team)
    count = audit_count(team.tenant)
    operate(team, run, "tasks/load/clear/", {"downstream": True})
    [event] = new_audit_events(team.tenant, count)
    assert event.changes["extra"] == {"task_id": "load", "downstream": True}


@pytest.mark.parametrize(
    ("name", "prepare", "suffix", "body", "action", "run_states"), OPERATIONS, ids=OPERATION_IDS
)
def test_it_forbids_a_viewer_every_operation_and_changes_nothing(
    team: Team,
    name: str,
    prepare: Callable[[Team], WorkflowRun],
    suffix: str,
    body: Any,
    action: str,
    run_states: tuple[str, str],
) -> None:
    run = prepare(team)
    before = tenant_state(team.tenant)
    assert_problem(operate(team, run, suffix, body, role="viewer"), 403)
    assert tenant_state(team.tenant) == before


@pytest.mark.parametrize(
    ("name", "prepare", "suffix", "body", "action", "run_states"), OPERATIONS, ids=OPERATION_IDS
)
def test_it_hides_another_tenants_run_from_every_operation(
    team: Team,
    outsider: Team,
    name: str,
    prepare: Callable[[Team], WorkflowRun],
    suffix: str,
    body: Any,
    action: str,
    run_states: tuple[str, str],
) -> None:
    theirs = prepare(outsider)
    before = tenant_state(team.tenant), tenant_state(outsider.tenant)
    mine = team.tokens["owner"]
    # Their run addressed under my tenant, and their tenant with my token.
    assert_problem(send(mine, "POST", url(team, theirs, suffix), body), 404)
    assert_problem(send(mine, "POST", url(outsider, theirs, suffix), body), 404)
    assert (tenant_state(team.tenant), tenant_state(outsider.tenant)) == before


def test_a_retried_run_waits_for_a_slot_like_a_new_one(team: Team) -> None:
    """max_active_runs holds for reopened runs too: retry queues the run while another runs."""
    actor = Actor.cli()
    with tenant_scope([team.tenant]):
        workflow = apply_workflow(
            actor=actor,
            tenant=team.tenant,
            data={"name": "one-at-a-time", "max_active_runs": 1, "tasks": {"a": {"type": "noop"}}},
        ).workflow
        first = trigger_run(actor=actor, workflow=workflow).run
        TaskInstance.objects.filter(run=first).update(state="failed")
        WorkflowRun.objects.filter(pk=first.pk).update(state="failed")
        second = trigger_run(actor=actor, workflow=workflow).run
        assert second.state == "running"
    response = send(
        team.tokens["operator"], "post", f"/api/v1/tenants/{team.slug}/runs/{first.pk}/retry/"
    )
    assert response.status_code == 200
    assert response.json()["state"] == "queued"
    with tenant_scope([team.tenant]):
        assert WorkflowRun.objects.filter(workflow=workflow, state="running").count() == 1
