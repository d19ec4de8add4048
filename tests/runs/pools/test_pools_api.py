"""/api/v1/tenants/{tenant}/pools/: every member reads the tenant's pools with their usage,
editors create, resize and delete them (each change audited once), another tenant's pool is
a 404, and a pool that unfinished task instances name cannot be deleted (409, naming them)."""

from __future__ import annotations

from typing import Any

import pytest

from runs.models import Pool
from tests.harness import (
    EndpointCase,
    EndpointSuite,
    Team,
    assert_problem,
    audit_count,
    new_audit_events,
    send,
    tenant_state,
)
from tests.runs.pools.pool_states import a_pool, busy_run, name_pool
from tests.runs.run_states import started_run

POOLS = "/api/v1/tenants/{tenant}/pools/"
POOL = POOLS + "{name}/"


def a_warehouse(team: Team) -> dict[str, str]:
    a_pool(team)
    return {"name": "warehouse"}


class TestPoolsEndpoint(EndpointSuite):
    cases = [
        EndpointCase("list", "GET", POOLS, "viewer"),
        EndpointCase("retrieve", "GET", POOL, "viewer", setup=a_warehouse),
        EndpointCase(
            "create", "POST", POOLS, "editor", status=201, body={"name": "warehouse", "slots": 2},
            audit_action="pool.create",
        ),
        EndpointCase(
            "update", "PATCH", POOL, "editor", setup=a_warehouse, body={"slots": 8},
            audit_action="pool.update",
        ),
        EndpointCase(
            "delete", "DELETE", POOL, "editor", status=204, setup=a_warehouse,
            audit_action="pool.delete",
        ),
    ]  # fmt: skip


def _url(team: Team, name: str = "") -> str:
    return f"/api/v1/tenants/{team.slug}/pools/" + (f"{name}/" if name else "")


def _numbers(body: dict[str, Any]) -> tuple[int, int, int, int, int]:
    return body["slots"], body["used_slots"], body["running"], body["queued"], body["waiting"]


def test_it_creates_reads_resizes_and_deletes_a_pool(team: Team) -> None:
    body = {"name": "warehouse", "slots": 4, "description": "the warehouse's connections"}
    created = send(team.tokens["editor"], "POST", _url(team), body)
    assert created.status_code == 201, created.content
    assert _numbers(created.json()) == (4, 0, 0, 0, 0)
    assert created.json()["description"] == body["description"]
    read = send(team.tokens["viewer"], "GET", _url(team, "warehouse")).json()
    assert (read["name"], read["slots"]) == ("warehouse", 4)
    listed = send(team.tokens["viewer"], "GET", _url(team)).json()
    assert [p["name"] for p in listed["results"]] == ["warehouse"]
    assert listed["next"] is None

    count = audit_count(team.tenant)
    changed = send(team.tokens["editor"], "PATCH", _url(team, "warehouse"), {"slots": 0})
    assert changed.status_code == 200, changed.content
    assert (changed.json()["slots"], changed.json()["description"]) == (0, body["description"])
    [event] = new_audit_events(team.tenant, count)
    assert (event.action, event.object_repr) == ("pool.update", "pool warehouse (0 slots)")
    assert event.changes == {"before": {"slots": 4}, "after": {"slots": 0}}

    count = audit_count(team.tenant)
    assert send(team.tokens["editor"], "DELETE", _url(team, "warehouse")).status_code == 204
    [event] = new_audit_events(team.tenant, count)
    assert event.action == "pool.delete"
    assert event.changes["before"] == {
        "name": "warehouse",
        "slots": 0,
        "description": body["description"],
    }
    gone = assert_problem(send(team.tokens["viewer"], "GET", _url(team, "warehouse")), 404)
    assert gone["detail"] == "pool 'warehouse' not found"  # as PATCH and DELETE say it
    assert not Pool.objects.dangerously_unscoped().filter(tenant=team.tenant).exists()


def test_the_create_event_records_the_new_pool(team: Team) -> None:
    count = audit_count(team.tenant)
    send(team.tokens["editor"], "POST", _url(team), {"name": "gpu", "slots": 1})
    [event] = new_audit_events(team.tenant, count)
    assert event.changes == {
        "before": None,
        "after": {"name": "gpu", "slots": 1, "description": ""},
    }
    assert (event.source, event.object_type) == ("api", "pool")


@pytest.mark.parametrize(
    ("body", "path", "words"),
    [
        ({"name": "Warehouse", "slots": 1}, "name", "lowercase letters, digits, - and _"),
        ({"name": "ware house", "slots": 1}, "name", "not a valid pool name"),
        ({"name": "-lead", "slots": 1}, "name", "starting with a letter or digit"),
        ({"name": "w" * 64, "slots": 1}, "name", "at most 63 characters"),
        ({"name": "warehouse", "slots": -1}, "slots", "an integer from 0 to 10000"),
        ({"name": "warehouse", "slots": 10_001}, "slots", "an integer from 0 to 10000"),
        ({"name": "warehouse", "slots": "many"}, "slots", "an integer from 0 to 10000"),
        ({"name": "warehouse", "slots": True}, "slots", "an integer from 0 to 10000"),
        ({"name": "warehouse", "slots": 1.5}, "slots", "an integer from 0 to 10000"),
        ({"name": "warehouse"}, "slots", "required; accepted: an integer from 0 to 10000"),
        ({"slots": 1}, "name", "required; accepted: lowercase letters"),
        ({"name": "warehouse", "slots": 1, "colour": "red"}, "colour", "accepted: name"),
        ({"name": "warehouse", "slots": 1, "description": "d" * 501}, "description", "500"),
        (
            {"name": "warehouse", "slots": 1, "description": 5},
            "description",
            "expected a string, not a number (5)",
        ),
        ({"name": 7, "slots": 1}, "name", "expected a string, not a number (7)"),
    ],
)
def test_it_refuses_bad_fields_at_their_path_and_changes_nothing(
    team: Team, body: dict[str, Any], path: str, words: str
) -> None:
    before = tenant_state(team.tenant)
    problem = assert_problem(send(team.tokens["editor"], "POST", _url(team), body), 400, path)
    assert words in str(problem["errors"])
    assert tenant_state(team.tenant) == before


def test_it_reports_every_bad_field_at_once(team: Team) -> None:
    body = {"name": "Bad Name", "slots": -1, "description": "d" * 501}
    problem = assert_problem(send(team.tokens["editor"], "POST", _url(team), body), 400)
    assert sorted(e["path"] for e in problem["errors"]) == ["description", "name", "slots"]
    body = {"name": "Bad Name", "slots": -1, "description": 5}  # a type error among them
    problem = assert_problem(send(team.tokens["editor"], "POST", _url(team), body), 400)
    assert sorted(e["path"] for e in problem["errors"]) == ["description", "name", "slots"]


def test_it_refuses_a_bad_change_and_a_name_change(team: Team) -> None:
    a_pool(team)
    before = tenant_state(team.tenant)
    url = _url(team, "warehouse")
    assert_problem(send(team.tokens["editor"], "PATCH", url, {"slots": -2}), 400, "slots")
    assert_problem(send(team.tokens["editor"], "PATCH", url, {"name": "other"}), 400, "name")
    assert tenant_state(team.tenant) == before


def test_a_taken_name_is_a_conflict(team: Team) -> None:
    a_pool(team)
    before = tenant_state(team.tenant)
    response = send(team.tokens["editor"], "POST", _url(team), {"name": "warehouse", "slots": 9})
    assert "pool 'warehouse' exists" in assert_problem(response, 409)["detail"]
    assert tenant_state(team.tenant) == before


def test_the_same_name_in_another_tenant_is_another_pool(team: Team, outsider: Team) -> None:
    a_pool(outsider, slots=7)
    busy_run(outsider)
    created = send(team.tokens["editor"], "POST", _url(team), {"name": "warehouse", "slots": 2})
    assert _numbers(created.json()) == (2, 0, 0, 0, 0)
    assert _numbers(send(team.tokens["viewer"], "GET", _url(team, "warehouse")).json()) == (
        2, 0, 0, 0, 0,
    )  # fmt: skip


def test_a_change_to_the_same_values_audits_nothing(team: Team) -> None:
    a_pool(team, slots=4, description="d")
    before = tenant_state(team.tenant)
    body = {"slots": 4, "description": "d"}
    assert send(team.tokens["editor"], "PATCH", _url(team, "warehouse"), body).status_code == 200
    assert tenant_state(team.tenant) == before


def test_it_shows_what_the_tasks_take_of_each_pool(team: Team) -> None:
    a_pool(team, slots=4)
    a_pool(team, name="gpu", slots=1)
    busy_run(team)
    other = started_run(team)  # a second run of the tenant counts too
    name_pool(other, "extract", "warehouse", "running")
    name_pool(other, "side", "gpu", "scheduled")
    name_pool(other, "transform", "nowhere", "running")  # a pool that does not exist
    read = send(team.tokens["viewer"], "GET", _url(team, "warehouse")).json()
    assert _numbers(read) == (4, 4, 2, 1, 1)
    listed = {
        p["name"]: _numbers(p)
        for p in send(team.tokens["viewer"], "GET", _url(team)).json()["results"]
    }
    assert listed == {"warehouse": (4, 4, 2, 1, 1), "gpu": (1, 0, 0, 0, 1)}


def test_it_refuses_to_delete_a_pool_in_use_naming_the_tasks(team: Team) -> None:
    a_pool(team)
    run = busy_run(team)
    before = tenant_state(team.tenant)
    problem = assert_problem(send(team.tokens["editor"], "DELETE", _url(team, "warehouse")), 409)
    detail = problem["detail"]
    assert "3 unfinished task instance(s)" in detail
    for task_id, state in (("extract", "running"), ("side", "queued"), ("transform", "scheduled")):
        assert f"etl.{task_id} (run {run.pk}, {state})" in detail
    assert "etl.load" not in detail
    assert "etl.report" not in detail
    assert tenant_state(team.tenant) == before
    # Once they have finished, it goes.
    for task_id in ("extract", "side", "transform"):
        name_pool(run, task_id, "warehouse", "success")
    assert send(team.tokens["editor"], "DELETE", _url(team, "warehouse")).status_code == 204


def test_a_refusal_names_the_first_few_and_counts_the_rest(team: Team) -> None:
    a_pool(team)
    for _ in range(2):
        run = started_run(team)
        for task_id in ("extract", "side", "transform", "load"):
            name_pool(run, task_id, "warehouse", "scheduled")
    response = send(team.tokens["editor"], "DELETE", _url(team, "warehouse"))
    detail = assert_problem(response, 409)["detail"]
    assert "8 unfinished task instance(s)" in detail
    assert "and 3 more" in detail
