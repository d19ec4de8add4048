"""/api/v1/tenants/{tenant}/sla-misses/: every member reads the runs, tasks and days that
were late, newest first, filtered by workflow, kind and run; nothing here changes them."""

from __future__ import annotations

import pytest

from tests.harness import EndpointCase, EndpointSuite, Team, assert_problem, send
from tests.notifications.objects import a_run, an_event, an_sla_miss, workflow

MISSES = "/api/v1/tenants/{tenant}/sla-misses/"


def a_miss(team: Team) -> dict[str, str]:
    return {"sla_miss_id": str(an_sla_miss(team).pk)}


class TestSlaMissesEndpoint(EndpointSuite):
    cases = [
        EndpointCase("list", "GET", MISSES, "viewer"),
        EndpointCase("retrieve", "GET", MISSES + "{sla_miss_id}/", "viewer", setup=a_miss),
    ]


def _url(team: Team, suffix: str = "") -> str:
    return f"/api/v1/tenants/{team.slug}/sla-misses/{suffix}"


def _ids(team: Team, query: str) -> list[int]:
    response = send(team.tokens["viewer"], "GET", _url(team, query))
    assert response.status_code == 200, response.content
    return [m["id"] for m in response.json()["results"]]


def test_it_shows_a_miss(team: Team) -> None:
    wf = workflow(team, "sales")
    run = a_run(team, wf)
    miss = an_sla_miss(team, wf, run=run)
    event = an_event(team, wf, run, type="sla.missed")
    miss.event = event
    miss.task_id = "load"
    miss.save()
    body = send(team.tokens["viewer"], "GET", _url(team, f"{miss.pk}/")).json()
    assert {k: v for k, v in body.items() if k not in ("due_at", "detected_at")} == {
        "id": miss.pk,
        "kind": "run_duration",
        "workflow": "sales",
        "run_id": run.pk,
        "task_id": "load",
        "sla": "run_duration: 1h",
        "event": str(event.uid),
    }
    assert body["due_at"] < body["detected_at"]


def test_it_filters_misses(team: Team, outsider: Team) -> None:
    sales, stock = workflow(team, "sales"), workflow(team, "stock")
    run = a_run(team, sales)
    late_run = an_sla_miss(team, sales, run=run)
    deadline = an_sla_miss(team, sales, kind="deadline")
    task = an_sla_miss(team, stock, kind="task_duration")
    an_sla_miss(outsider)
    assert _ids(team, "") == [task.pk, deadline.pk, late_run.pk]
    assert _ids(team, "?workflow=sales") == [deadline.pk, late_run.pk]
    assert _ids(team, "?kind=task_duration") == [task.pk]
    assert _ids(team, f"?run={run.pk}") == [late_run.pk]
    assert _ids(team, "?workflow=stock&kind=deadline") == []
    first = send(team.tokens["viewer"], "GET", _url(team, "?limit=2")).json()
    assert [m["id"] for m in first["results"]] == [task.pk, deadline.pk]
    assert [
        m["id"] for m in send(team.tokens["viewer"], "GET", first["next"]).json()["results"]
    ] == [late_run.pk]


@pytest.mark.parametrize(("query", "path"), [("?kind=late", "kind"), ("?run=-1", "run")])
def test_it_refuses_a_bad_filter_naming_it(team: Team, query: str, path: str) -> None:
    problem = assert_problem(send(team.tokens["viewer"], "GET", _url(team, query)), 400, path=path)
    if path == "kind":
        assert "run_duration, deadline, task_duration" in problem["detail"]


def test_an_unknown_miss_is_404(team: Team) -> None:
    assert_problem(send(team.tokens["viewer"], "GET", _url(team, "12345678/")), 404)
