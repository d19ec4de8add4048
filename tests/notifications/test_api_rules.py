"""/api/v1/tenants/{tenant}/notification-rules/: editors decide who hears what; every member
reads the rules. Names of event types and channels are checked with their paths, only the
tenant's own channels can be named, and apply refuses a spec whose notify names a channel
the tenant does not have."""

from __future__ import annotations

from typing import Any

import pytest

from notifications.models import Rule
from orchestrator.actors import Actor
from orchestrator.context import tenant_scope
from orchestrator.errors import Invalid
from tests.harness import EndpointCase, EndpointSuite, Team, assert_problem, send, tenant_state
from tests.notifications.objects import a_rule, a_slack_channel, an_email_channel, workflow
from workflows.services import apply_workflow

RULES = "/api/v1/tenants/{tenant}/notification-rules/"
RULE = RULES + "{rule}/"


@pytest.fixture(autouse=True)
def _loopback_allowed(settings: Any) -> None:
    settings.NOTIFY_ALLOWED_HOSTS = ["127.0.0.1"]


def _new_rule(team: Team) -> dict[str, Any]:
    a_slack_channel(team)
    return {"name": "failures", "event_types": ["run.failed"], "channels": ["team-slack"]}


class TestRulesEndpoint(EndpointSuite):
    cases = [
        EndpointCase("list", "GET", RULES, "viewer"),
        EndpointCase("retrieve", "GET", RULE, "viewer", setup=a_rule),
        EndpointCase(
            "create", "POST", RULES, "editor", status=201, setup=lambda t: {}, body=_new_rule,
            audit_action="notification_rule.create",
        ),
        EndpointCase(
            "update", "PATCH", RULE, "editor", setup=a_rule, body={"quiet_period": "15m"},
            audit_action="notification_rule.update",
        ),
        EndpointCase(
            "delete", "DELETE", RULE, "editor", status=204, setup=a_rule,
            audit_action="notification_rule.delete",
        ),
    ]  # fmt: skip


def _url(team: Team, name: str = "") -> str:
    return f"/api/v1/tenants/{team.slug}/notification-rules/" + (f"{name}/" if name else "")


def test_it_creates_a_rule_and_reads_it_back(team: Team) -> None:
    a_slack_channel(team)
    an_email_channel(team)
    body = {
        "name": "nightly-failures",
        "description": "the nightly loads",
        "event_types": ["run.failed", "sla.missed"],
        "workflows": ["sales"],
        "tags": ["nightly"],
        "channels": ["team-slack", "team-mail"],
        "quiet_period": "15m",
    }
    response = send(team.tokens["editor"], "POST", _url(team), body)
    assert response.status_code == 201, response.content
    expected = {**body, "channels": ["team-mail", "team-slack"], "quiet_period": 900}
    got = response.json()
    assert {k: got[k] for k in expected} == expected
    assert got["enabled"] is True
    assert send(team.tokens["viewer"], "GET", _url(team, "nightly-failures")).json() == got
    [listed] = send(team.tokens["viewer"], "GET", _url(team)).json()["results"]
    assert listed == got
    rule = Rule.objects.dangerously_unscoped().get(tenant=team.tenant)
    assert rule.quiet_period == 900


def test_it_changes_only_what_is_given(team: Team) -> None:
    a_rule(team, tags=["finance"])
    an_email_channel(team)
    body = {"channels": ["team-mail"], "enabled": False, "quiet_period": 60}
    response = send(team.tokens["editor"], "PATCH", _url(team, "failures"), body)
    assert response.status_code == 200, response.content
    got = response.json()
    assert (got["channels"], got["enabled"], got["quiet_period"]) == (["team-mail"], False, 60)
    assert (got["event_types"], got["tags"]) == (["run.failed"], ["finance"])


@pytest.mark.parametrize(
    ("fields", "paths", "words"),
    [
        ({"event_types": ["run.failed", "run.exploded"]}, ["event_types[1]"], "sla.missed"),
        ({"channels": ["team-slack", "nowhere"]}, ["channels[1]"], "channels: team-slack"),
        ({"channels": []}, ["channels"], "at least one channel"),
        ({"quiet_period": "soon"}, ["quiet_period"], "10m"),
        ({"quiet_period": 86401}, ["quiet_period"], "86400"),
        ({"quiet_period": [1]}, ["quiet_period"], "seconds"),
        ({"event_types": "run.failed"}, ["event_types"], "list"),
        ({"name": "Nightly!"}, ["name"], "lowercase letters"),
        ({"when": "always"}, ["when"], "accepted: name"),
    ],
    ids=[
        "unknown-event-type",
        "unknown-channel",
        "no-channel",
        "bad-duration",
        "quiet-longer-than-a-day",
        "quiet-not-a-number",
        "types-not-a-list",
        "bad-name",
        "unknown-field",
    ],
)
def test_it_refuses_bad_input_naming_the_field(
    team: Team, fields: dict[str, Any], paths: list[str], words: str
) -> None:
    body = {**_new_rule(team), **fields}
    before = tenant_state(team.tenant)
    problem = assert_problem(send(team.tokens["editor"], "POST", _url(team), body), 400)
    assert sorted(e["path"] for e in problem["errors"]) == paths
    assert words in problem["detail"]
    assert tenant_state(team.tenant) == before


def test_it_refuses_another_tenants_channel(team: Team, outsider: Team) -> None:
    a_slack_channel(outsider, name="their-slack")
    body = {"name": "r", "channels": ["their-slack"]}
    before = tenant_state(team.tenant)
    problem = assert_problem(send(team.tokens["editor"], "POST", _url(team), body), 400)
    assert problem["errors"][0]["path"] == "channels[0]"
    assert "no channels yet" in problem["detail"]
    assert tenant_state(team.tenant) == before


def test_it_refuses_a_name_that_exists(team: Team) -> None:
    a_rule(team)
    body = {"name": "failures", "channels": ["failures-slack"]}
    before = tenant_state(team.tenant)
    assert_problem(send(team.tokens["editor"], "POST", _url(team), body), 409)
    assert tenant_state(team.tenant) == before


def test_apply_refuses_a_notify_channel_the_tenant_does_not_have(team: Team) -> None:
    a_slack_channel(team)
    spec = {
        "name": "nightly",
        "tasks": {"a": {"type": "noop"}},
        "notify": {"on": ["run.failed"], "channels": ["team-slack", "team-slak"]},
    }
    with tenant_scope([team.tenant]), pytest.raises(Invalid) as refused:
        apply_workflow(actor=Actor.cli(), tenant=team.tenant, data=spec)
    [(path, message)] = refused.value.errors
    assert path == "notify.channels[1]"
    assert "'team-slak'" in message
    assert "team-slack" in message  # the channels that exist
    response = send(
        team.tokens["editor"],
        "PUT",
        f"/api/v1/tenants/{team.slug}/workflows/other/",
        {**spec, "name": "other", "notify": {"on": ["run.failed"], "channels": ["nope"]}},
    )
    assert_problem(response, 400, path="notify.channels[0]")
    workflow(team, "ok", notify={"on": ["run.failed"], "channels": ["team-slack"]})
