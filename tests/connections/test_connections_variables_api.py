"""/api/v1/tenants/{tenant}/variables/: plain values; editors manage, viewers read."""

from __future__ import annotations

import pytest

from connections import services
from orchestrator.actors import Actor
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

VARIABLES = "/api/v1/tenants/{tenant}/variables/"
VARIABLE = VARIABLES + "{name}/"


def a_variable(team: Team) -> dict[str, str]:
    services.create_variable(actor=Actor.cli(), tenant=team.tenant, name="region", value="eu")
    return {"name": "region"}


class TestVariablesEndpoint(EndpointSuite):
    cases = [
        EndpointCase("list", "GET", VARIABLES, "viewer"),
        EndpointCase("retrieve", "GET", VARIABLE, "viewer", setup=a_variable),
        EndpointCase(
            "create", "POST", VARIABLES, "editor", status=201,
            body={"name": "region", "value": "eu"}, audit_action="variable.create",
        ),
        EndpointCase(
            "update", "PATCH", VARIABLE, "editor", setup=a_variable, body={"value": "us"},
            audit_action="variable.update",
        ),
        EndpointCase(
            "delete", "DELETE", VARIABLE, "editor", status=204, setup=a_variable,
            audit_action="variable.delete",
        ),
    ]  # fmt: skip


def _url(team: Team, name: str = "") -> str:
    return f"/api/v1/tenants/{team.slug}/variables/" + (f"{name}/" if name else "")


def test_it_creates_reads_changes_and_deletes_a_variable(team: Team) -> None:
    body = {"name": "Region_1", "value": " eu \n", "description": "where we sell"}
    response = send(team.tokens["editor"], "POST", _url(team), body)
    assert response.status_code == 201, response.content
    read = send(team.tokens["viewer"], "GET", _url(team, "Region_1")).json()
    assert (read["name"], read["value"], read["description"]) == (
        "Region_1",
        " eu \n",
        body["description"],
    )
    assert [
        v["name"] for v in send(team.tokens["viewer"], "GET", _url(team)).json()["results"]
    ] == ["Region_1"]
    count = audit_count(team.tenant)
    changed = send(team.tokens["editor"], "PATCH", _url(team, "Region_1"), {"value": "us"})
    assert (changed.json()["value"], changed.json()["description"]) == ("us", "where we sell")
    [event] = new_audit_events(team.tenant, count)
    assert event.changes["before"] == {"value": " eu \n"}
    assert event.changes["after"] == {"value": "us"}
    assert send(team.tokens["editor"], "DELETE", _url(team, "Region_1")).status_code == 204
    assert_problem(send(team.tokens["viewer"], "GET", _url(team, "Region_1")), 404)


def test_it_changes_nothing_and_audits_nothing_for_the_same_value(team: Team) -> None:
    a_variable(team)
    before = tenant_state(team.tenant)
    response = send(team.tokens["editor"], "PATCH", _url(team, "region"), {"value": "eu"})
    assert response.status_code == 200
    assert tenant_state(team.tenant) == before


@pytest.mark.parametrize(
    ("name", "accepted"),
    [("1st", "letters, digits and _"), ("my-var", "letters, digits and _"), ("x" * 64, "63")],
    ids=["leading-digit", "hyphen", "too-long"],
)
def test_it_refuses_a_name_templates_cannot_use(team: Team, name: str, accepted: str) -> None:
    before = tenant_state(team.tenant)
    response = send(team.tokens["editor"], "POST", _url(team), {"name": name, "value": "x"})
    body = assert_problem(response, 400, path="name")
    assert accepted in body["detail"]
    assert tenant_state(team.tenant) == before
