"""Mapped task instances over REST: each instance carries its map_index and element; one
is addressed with `?map_index=N` (its attempts, its log, clear, mark), an index that does
not exist is a 404 that says which exist; a run's instances filter by task and index; the
run's task groups show a mapped task once with its count per state, in a number of SQL
statements that does not grow with the instances. Other tenants see nothing; viewers
cannot clear."""

from __future__ import annotations

from typing import Any

import pytest
from django.db import connection
from django.test.utils import CaptureQueriesContext

from runs.models import TaskInstance, WorkflowRun
from tests.harness import Team, assert_problem, send
from tests.runs.mapping.mapped_runs import MAPPED_SPEC, mapped_run, unscoped_instances, write_log
from tests.runs.run_states import started_run

pytestmark = pytest.mark.django_db


def url(team: Team, run: WorkflowRun, suffix: str) -> str:
    return f"/api/v1/tenants/{team.slug}/runs/{run.pk}/{suffix}"


def get(team: Team, path: str, role: str = "viewer") -> Any:
    response = send(team.tokens[role], "GET", path)
    assert response.status_code == 200, response.content
    return response.json()


def test_it_shows_each_instances_index_and_element(team: Team) -> None:
    run = mapped_run(team, ["success", "failed", "running"])
    body = get(team, url(team, run, "tasks/?task_id=process&limit=10"))
    by_index = {ti["map_index"]: ti for ti in body["results"]}
    assert sorted(by_index) == [0, 1, 2]
    assert by_index[1]["map_value"] == "file-1.csv"
    assert by_index[1]["state"] == "failed"
    assert by_index[0]["result"] == {"rows": 0}
    report = get(team, url(team, run, "tasks/?task_id=report"))["results"]
    assert [(ti["map_index"], ti["map_value"]) for ti in report] == [(-1, None)]


def test_it_filters_a_runs_instances_by_task_index_and_state(team: Team) -> None:
    run = mapped_run(team, ["success", "failed", "success"])
    one = get(team, url(team, run, "tasks/?task_id=process&map_index=2"))["results"]
    assert [(ti["task_id"], ti["map_index"]) for ti in one] == [("process", 2)]
    unmapped = get(team, url(team, run, "tasks/?map_index=-1"))["results"]
    assert sorted(ti["task_id"] for ti in unmapped) == ["list_files", "report"]
    failed = get(team, url(team, run, "tasks/?state=failed"))["results"]
    assert [(ti["task_id"], ti["map_index"]) for ti in failed] == [("process", 1)]
    bad = send(team.tokens["viewer"], "GET", url(team, run, "tasks/?map_index=x"))
    assert_problem(bad, 400, "map_index")


def test_it_reads_one_instance_with_its_attempts(team: Team) -> None:
    run = mapped_run(team, ["success", "failed"])
    body = get(team, url(team, run, "tasks/process/?map_index=1"))
    assert (body["map_index"], body["map_value"], body["state"]) == (1, "file-1.csv", "failed")
    assert [a["try_number"] for a in body["attempts"]] == [1, 2]
    assert get(team, url(team, run, "tasks/report/"))["map_index"] == -1


@pytest.mark.parametrize(
    ("suffix", "says"),
    [
        ("tasks/process/?map_index=7", "has no map_index 7; its instances are 0 to 2"),
        ("tasks/process/", "is mapped into 3 instances: name one with map_index (0 to 2)"),
        ("tasks/report/?map_index=0", "has no map_index 0: it is not mapped"),
        ("tasks/process/logs/?map_index=3", "has no map_index 3"),
        ("tasks/nope/?map_index=0", "has no task 'nope'"),
    ],
)
def test_an_index_that_does_not_exist_is_not_found(team: Team, suffix: str, says: str) -> None:
    run = mapped_run(team, ["success", "success", "success"])
    response = send(team.tokens["viewer"], "GET", url(team, run, suffix))
    assert says in assert_problem(response, 404)["detail"]


def test_it_reads_the_log_of_one_instance(team: Team) -> None:
    run = mapped_run(team, ["success", "success"])
    write_log(run, "process", 0, b"zero\n")
    write_log(run, "process", 1, b"one\n")
    body = get(team, url(team, run, "tasks/process/logs/?map_index=1"))
    assert (body["text"], body["try_number"], body["running"]) == ("one\n", 1, False)


def test_the_task_groups_show_a_mapped_task_once(team: Team) -> None:
    run = mapped_run(team, ["success"] * 4 + ["failed", "running"])
    groups = get(team, url(team, run, "task-groups/"))
    assert [g["task_id"] for g in groups] == ["list_files", "process", "report"]
    listing, process, report = groups
    assert process["mapped"] == {"count": 6, "states": {"success": 4, "failed": 1, "running": 1}}
    assert process["state"] == "running"  # unfinished while one is
    assert process["instance_id"] is None
    assert process["started_at"] is not None
    assert process["ended_at"] is None
    assert listing["mapped"] is None
    assert listing["state"] == "success"
    assert listing["instance_id"] == unscoped_instances().get(run=run, task_id="list_files").pk
    assert report["state"] == "pending"
    unscoped_instances().filter(run=run, task_id="process", state="running").update(state="success")
    process = get(team, url(team, run, "task-groups/"))[1]
    assert process["state"] == "failed"  # every instance finished, one failed
    assert process["ended_at"] is not None


def test_a_mapped_task_not_expanded_yet_is_a_group_of_none(team: Team) -> None:
    run = started_run(team, MAPPED_SPEC)
    process = get(team, url(team, run, "task-groups/"))[1]
    assert process["mapped"] == {"count": 0, "states": {}}
    assert process["state"] == "pending"
    ti = unscoped_instances().get(run=run, task_id="process")
    assert process["instance_id"] == ti.pk


def test_the_task_groups_cost_the_same_statements_for_3_or_300_instances(team: Team) -> None:
    small, large = mapped_run(team, ["success"] * 3), mapped_run(team, ["success"] * 300)
    send(team.tokens["viewer"], "GET", url(team, small, "task-groups/"))  # graph read once
    counts = []
    for run in (small, large):
        with CaptureQueriesContext(connection) as queries:
            get(team, url(team, run, "task-groups/"))
            get(team, url(team, run, "tasks/?task_id=process&limit=500"))
        counts.append(len(queries))
    assert counts[0] == counts[1]


def test_another_tenants_mapped_instances_are_not_found(team: Team, outsider: Team) -> None:
    run = mapped_run(team, ["success", "success"])
    for suffix in ("tasks/process/?map_index=0", "task-groups/", "tasks/process/logs/?map_index=0"):
        response = send(outsider.tokens["owner"], "GET", url(outsider, run, suffix))
        assert_problem(response, 404)


def test_a_viewer_cannot_clear_or_mark_an_instance(team: Team) -> None:
    run = mapped_run(team, ["success", "failed"])
    for suffix in ("clear/", "mark-success/"):
        path = url(team, run, f"tasks/process/{suffix}?map_index=1")
        assert_problem(send(team.tokens["viewer"], "POST", path, {}), 403)
    assert unscoped_instances().get(run=run, task_id="process", map_index=1).state == "failed"


def test_clearing_an_index_that_does_not_exist_is_not_found(team: Team) -> None:
    run = mapped_run(team, ["success", "failed"])
    response = send(
        team.tokens["operator"], "POST", url(team, run, "tasks/process/clear/?map_index=5"), {}
    )
    assert "has no map_index 5" in assert_problem(response, 404)["detail"]


def _end(run: WorkflowRun, state: str) -> None:
    WorkflowRun.objects.dangerously_unscoped().filter(pk=run.pk).update(state=state)
    unscoped_instances().filter(run=run, task_id="report").update(state="upstream_failed")


def test_an_operator_clears_one_instance(team: Team) -> None:
    """Needs runs.operations.clear(..., map_index=) and services.clear_task(map_index=)."""
    run = mapped_run(team, ["success", "failed", "success"])
    _end(run, "failed")
    response = send(
        team.tokens["operator"],
        "POST",
        url(team, run, "tasks/process/clear/?map_index=1"),
        {"downstream": True},
    )
    assert response.status_code == 200, response.content
    assert "process" in response.json()["cleared"]
    rows = dict(
        unscoped_instances().filter(run=run, task_id="process").values_list("map_index", "state")
    )
    assert rows[0] == "success"
    assert rows[2] == "success"
    assert rows[1] not in TaskInstance.FINISHED  # the one cleared runs again


def test_an_operator_marks_one_instance(team: Team) -> None:
    """Needs runs.operations.mark(..., map_index=) and services.mark_task(map_index=)."""
    run = mapped_run(team, ["success", "failed", "success"])
    _end(run, "failed")
    response = send(
        team.tokens["operator"], "POST", url(team, run, "tasks/process/mark-success/?map_index=1")
    )
    assert response.status_code == 200, response.content
    assert (response.json()["map_index"], response.json()["state"]) == (1, "success")
    states = set(
        unscoped_instances().filter(run=run, task_id="process").values_list("state", flat=True)
    )
    assert states == {"success"}


def test_an_operator_marks_a_whole_mapped_task(team: Team) -> None:
    """Needs runs.operations.mark(..., map_index=None) to mark every instance."""
    run = mapped_run(team, ["success", "failed", "success"])
    _end(run, "failed")
    response = send(team.tokens["operator"], "POST", url(team, run, "tasks/process/mark-failed/"))
    assert response.status_code == 200, response.content
    body = response.json()
    assert body["mapped"] == {"count": 3, "states": {"failed": 3}}
    assert body["state"] == "failed"
