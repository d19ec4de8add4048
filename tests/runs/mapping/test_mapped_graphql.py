"""Mapped task instances over GraphQL: mapIndex and mapValue on instances, a run's
instances narrowed by task and index, a run's taskGroups (a mapped task once, with its
count per state), one instance's log, and clear / mark of one index (NOT_FOUND for an
index that does not exist; other tenants see nothing)."""

from __future__ import annotations

from typing import Any

import pytest

from tests.harness import Team, gql, gql_error
from tests.runs.mapping.mapped_runs import mapped_run, unscoped_instances, write_log

pytestmark = pytest.mark.django_db

RUN = """
query($t: String!, $id: Int!, $task: String, $index: Int) {
  run(tenant: $t, id: $id) {
    taskInstances(taskId: $task, mapIndex: $index) { taskId mapIndex mapValue state }
    taskGroups {
      taskId state instanceId startedAt endedAt
      mapped { count states }
    }
  }
}"""
LOG = """
query($t: String!, $run: Int!, $task: String!, $index: Int) {
  taskLog(tenant: $t, run: $run, taskId: $task, mapIndex: $index) { text tryNumber }
}"""
CLEAR = """
mutation($t: String!, $run: Int!, $task: String!, $index: Int) {
  clearTask(tenant: $t, run: $run, taskId: $task, mapIndex: $index)
}"""
MARK = """
mutation($t: String!, $run: Int!, $task: String!, $index: Int) {
  markTask(tenant: $t, run: $run, taskId: $task, state: "success", mapIndex: $index) {
    mapIndex state
  }
}"""


def data(team: Team, query: str, role: str = "viewer", **variables: Any) -> Any:
    response = gql(team.tokens[role], query, {"t": team.slug, **variables})
    body = response.json()
    assert "errors" not in body, body
    return body["data"]


def test_it_shows_instances_with_their_index_and_element(team: Team) -> None:
    run = mapped_run(team, ["success", "failed", "success"])
    found = data(team, RUN, id=run.pk, task="process", index=1)["run"]["taskInstances"]
    assert found == [
        {"taskId": "process", "mapIndex": 1, "mapValue": "file-1.csv", "state": "failed"}
    ]
    unmapped = data(team, RUN, id=run.pk, index=-1)["run"]["taskInstances"]
    assert sorted(ti["taskId"] for ti in unmapped) == ["list_files", "report"]


def test_the_run_groups_a_mapped_task_once(team: Team) -> None:
    run = mapped_run(team, ["success", "success", "failed"])
    groups = data(team, RUN, id=run.pk)["run"]["taskGroups"]
    assert [g["taskId"] for g in groups] == ["list_files", "process", "report"]
    process = groups[1]
    assert process["state"] == "failed"
    assert process["instanceId"] is None
    assert process["mapped"] == {
        "count": 3,
        "states": {"failed": 1, "success": 2},
    }
    assert groups[0]["mapped"] is None


def test_it_reads_one_instances_log(team: Team) -> None:
    run = mapped_run(team, ["success", "success"])
    write_log(run, "process", 1, b"the second\n")
    page = data(team, LOG, run=run.pk, task="process", index=1)["taskLog"]
    assert page == {"text": "the second\n", "tryNumber": 1}


def test_an_index_that_does_not_exist_is_not_found(team: Team) -> None:
    run = mapped_run(team, ["success", "success"])
    for query, role in ((LOG, "viewer"), (CLEAR, "operator"), (MARK, "operator")):
        response = gql(
            team.tokens[role], query, {"t": team.slug, "run": run.pk, "task": "process", "index": 9}
        )
        error = gql_error(response)
        assert error["extensions"]["code"] == "NOT_FOUND", error
        assert "has no map_index 9; its instances are 0 to 1" in error["message"]


def test_a_viewer_cannot_clear_an_instance(team: Team) -> None:
    run = mapped_run(team, ["success", "failed"])
    response = gql(
        team.tokens["viewer"], CLEAR, {"t": team.slug, "run": run.pk, "task": "process", "index": 1}
    )
    assert gql_error(response)["extensions"]["code"] == "FORBIDDEN"
    assert unscoped_instances().get(run=run, task_id="process", map_index=1).state == "failed"


def test_another_tenants_run_is_not_found(team: Team, outsider: Team) -> None:
    run = mapped_run(team, ["success"])
    response = gql(
        outsider.tokens["owner"],
        LOG,
        {"t": outsider.slug, "run": run.pk, "task": "process", "index": 0},
    )
    assert gql_error(response)["extensions"]["code"] == "NOT_FOUND"


def test_an_operator_marks_one_instance(team: Team) -> None:
    """Needs services.mark_task(map_index=) (runs.operations.mark has it)."""
    run = mapped_run(team, ["success", "failed"])
    marked = data(team, MARK, role="operator", run=run.pk, task="process", index=1)
    assert marked["markTask"] == {"mapIndex": 1, "state": "success"}
