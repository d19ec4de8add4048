"""/api/v1/tenants/{tenant}/events/: the outbox, as the CloudEvents webhooks receive, with
the workflow, the run and when it was routed; newest first, filtered by type (repeated or
comma-separated), workflow, run and time, and only the tenant's own."""

from __future__ import annotations

import datetime as dt
from urllib.parse import quote

import pytest
from django.utils import timezone

from runs.models import Event
from tests.harness import EndpointCase, EndpointSuite, Team, assert_problem, send
from tests.notifications.objects import a_run, an_event, workflow

EVENTS = "/api/v1/tenants/{tenant}/events/"


def a_run_event(team: Team) -> dict[str, str]:
    return {"event": str(an_event(team, workflow(team)).uid)}


class TestEventsEndpoint(EndpointSuite):
    cases = [
        EndpointCase("list", "GET", EVENTS, "viewer"),
        EndpointCase("retrieve", "GET", EVENTS + "{event}/", "viewer", setup=a_run_event),
    ]


def _url(team: Team, suffix: str = "") -> str:
    return f"/api/v1/tenants/{team.slug}/events/{suffix}"


def _ids(team: Team, query: str) -> list[str]:
    response = send(team.tokens["viewer"], "GET", _url(team, query))
    assert response.status_code == 200, response.content
    return [e["id"] for e in response.json()["results"]]


def _when(value: dt.datetime) -> str:
    return quote(value.isoformat())


def test_an_event_reads_as_its_cloudevent(team: Team) -> None:
    wf = workflow(team, "sales")
    run = a_run(team, wf)
    event = an_event(team, wf, run)
    body = send(team.tokens["viewer"], "GET", _url(team, f"{event.uid}/")).json()
    assert body == {
        "specversion": "1.0",
        "id": str(event.uid),
        "source": "/tenants/acme/workflows/sales",
        "type": "run.failed",
        "subject": f"runs/{run.pk}",
        "time": event.time.isoformat(),
        "datacontenttype": "application/json",
        "tenant": "acme",
        "data": {
            "tenant": "acme",
            "workflow": "sales",
            "run": {"id": run.pk, "state": "failed"},
            "url": event.data["url"],
        },
        "workflow": "sales",
        "run_id": run.pk,
        "routed_at": None,
    }
    [listed] = send(team.tokens["viewer"], "GET", _url(team)).json()["results"]
    assert listed == body
    assert body["data"]["url"].endswith(f"/t/acme/runs/{run.pk}/")


def test_a_task_event_names_the_task_and_an_event_without_a_run_has_no_subject(
    team: Team,
) -> None:
    wf = workflow(team, "sales")
    run = a_run(team, wf)
    Event.objects.dangerously_unscoped().create(
        tenant=team.tenant, type="task.retrying", workflow=wf, run=run, task_id="load", data={}
    )
    deadline = an_event(team, wf, type="sla.missed")
    Event.objects.dangerously_unscoped().filter(pk=deadline.pk).update(routed_at=timezone.now())
    got = {e["type"]: e for e in send(team.tokens["viewer"], "GET", _url(team)).json()["results"]}
    assert got["task.retrying"]["subject"] == f"runs/{run.pk}/tasks/load"
    assert "subject" not in got["sla.missed"]
    assert got["sla.missed"]["run_id"] is None
    assert got["sla.missed"]["routed_at"] is not None


def test_it_filters_events(team: Team, outsider: Team) -> None:
    sales, stock = workflow(team, "sales"), workflow(team, "stock")
    run = a_run(team, sales)
    now = timezone.now()
    old = an_event(team, sales, run, time=now - dt.timedelta(days=2))
    ok = an_event(team, sales, type="run.succeeded", time=now - dt.timedelta(hours=1))
    late = an_event(team, stock, type="sla.missed", time=now)
    an_event(outsider, workflow(outsider))
    ids = [str(e.uid) for e in (late, ok, old)]  # newest first
    assert _ids(team, "") == ids
    assert _ids(team, "?type=run.failed") == [ids[2]]
    assert _ids(team, "?type=run.failed&type=sla.missed") == [ids[0], ids[2]]
    assert _ids(team, "?type=run.failed,run.succeeded") == [ids[1], ids[2]]
    assert _ids(team, "?workflow=sales") == [ids[1], ids[2]]
    assert _ids(team, f"?run={run.pk}") == [ids[2]]
    assert _ids(team, f"?since={_when(now - dt.timedelta(days=1))}") == ids[:2]
    assert _ids(team, f"?until={_when(now - dt.timedelta(minutes=1))}") == ids[1:]
    assert _ids(team, "?workflow=stock&type=run.failed") == []
    first = send(team.tokens["viewer"], "GET", _url(team, "?limit=2")).json()
    assert [e["id"] for e in first["results"]] == ids[:2]
    assert [
        e["id"] for e in send(team.tokens["viewer"], "GET", first["next"]).json()["results"]
    ] == [ids[2]]


@pytest.mark.parametrize(
    ("query", "path"),
    [
        ("?type=run%20exploded", "type"),  # not an event type (a published one may be any)
        ("?type=run.failed,-nope", "type"),
        ("?run=x", "run"),
        ("?since=2026-01-01", "since"),
        ("?until=later", "until"),
    ],
)
def test_it_refuses_a_bad_filter_naming_it(team: Team, query: str, path: str) -> None:
    problem = assert_problem(send(team.tokens["viewer"], "GET", _url(team, query)), 400, path=path)
    if path == "type":
        assert "run.recovered" in problem["detail"]  # names what is accepted


@pytest.mark.parametrize("uid", ["not-a-uuid", "00000000-0000-0000-0000-000000000000", "12"])
def test_an_unknown_event_is_404(team: Team, uid: str) -> None:
    assert_problem(send(team.tokens["viewer"], "GET", _url(team, f"{uid}/")), 404)
