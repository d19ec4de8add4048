"""POST /api/v1/tenants/{t}/events/ (and GraphQL's publishEvent): an operator, or a
service account's token with the operator role, publishes a CloudEvent-shaped event into
the tenant's log; bad fields are refused with their paths and nothing stored; the same
`id` from the same source is one event, and so starts one run of a subscribed workflow."""

from __future__ import annotations

from typing import Any

import pytest

from orchestrator import services
from orchestrator.actors import Actor
from orchestrator.context import tenant_scope
from runs.models import Event, WorkflowRun
from tests.events.support import dispatch_pending
from tests.harness import (
    EndpointCase,
    EndpointSuite,
    Team,
    assert_problem,
    gql,
    send,
    tenant_state,
)
from workflows.services import apply_workflow

pytestmark = pytest.mark.django_db

EVENTS = "/api/v1/tenants/{tenant}/events/"
LANDED = {
    "specversion": "1.0",
    "type": "com.acme.file.landed",
    "source": "/acme/uploader",
    "subject": "s3://bucket/in/a.csv",
    "id": "upload-1",
    "data": {"size": 120},
}
ON_FILE = {
    "name": "on-file",
    "params": {"path": {"type": "string", "default": ""}},
    "triggers": [
        {
            "event": {
                "type": "com.acme.file.landed",
                "filter": {"subject": "s3://bucket/in/*"},
                "params": {"path": "{{ event.subject }}"},
            }
        }
    ],
    "tasks": {"load": {"type": "noop"}},
}


class TestPublishEndpoint(EndpointSuite):
    cases = [
        EndpointCase(
            "publish",
            "POST",
            EVENTS,
            "operator",
            status=201,
            body={"type": "com.acme.x", "source": "/acme"},
            audit_action="event.publish",
        ),
    ]


def test_a_published_event_starts_one_run_per_id(team: Team) -> None:
    with tenant_scope([team.tenant]):
        apply_workflow(actor=Actor(user=team.owner, source="api"), tenant=team.tenant, data=ON_FILE)
    url = EVENTS.format(tenant=team.slug)
    first = send(team.tokens["operator"], "POST", url, LANDED)
    assert first.status_code == 201, first.content
    published = first.json()
    assert (published["type"], published["subject"], published["source"]) == (
        "com.acme.file.landed",
        "s3://bucket/in/a.csv",
        "/acme/uploader",
    )
    again = send(team.tokens["operator"], "POST", url, LANDED)
    assert again.status_code == 200
    assert again.json()["id"] == published["id"]
    assert dispatch_pending() == 1
    with tenant_scope([team.tenant]):
        [run] = WorkflowRun.objects.filter(workflow__name="on-file")
    assert run.params == {"path": "s3://bucket/in/a.csv"}
    assert run.trigger_source == "event"
    assert run.event is not None
    assert run.event["data"] == {"size": 120}
    other = send(
        team.tokens["operator"],
        "POST",
        url,
        {**LANDED, "id": "upload-2", "subject": "s3://bucket/out/b"},
    )
    assert other.status_code == 201
    assert dispatch_pending() == 0  # its subject does not match the filter
    listed = send(team.tokens["viewer"], "GET", url + "?type=com.acme.file.landed")
    assert [e["subject"] for e in listed.json()["results"]] == [
        "s3://bucket/out/b",
        "s3://bucket/in/a.csv",
    ]


@pytest.mark.parametrize(
    ("body", "path", "fragment"),
    [
        ({"source": "/a"}, "type", "required"),
        ({"type": "run.succeeded", "source": "/a"}, "type", "reserved for the service's own"),
        ({"type": "dataset.updated", "source": "/a"}, "type", "reserved"),
        ({"type": "com acme", "source": "/a"}, "type", "letters, digits"),
        ({"type": "com.acme.x"}, "source", "required"),
        ({"type": "com.acme.x", "source": "/a", "id": ""}, "id", "1 to 200"),
        ({"type": "com.acme.x", "source": "/a", "time": "yesterday"}, "time", "ISO 8601"),
        ({"type": "com.acme.x", "source": "/a", "typo": 1}, "typo", "unknown field"),
        ({"type": "com.acme.x", "source": "/a", "specversion": "0.3"}, "specversion", ""),
    ],
)
def test_bad_events_are_refused_with_their_paths(
    team: Team, body: dict[str, Any], path: str, fragment: str
) -> None:
    before = tenant_state(team.tenant)
    response = send(team.tokens["operator"], "POST", EVENTS.format(tenant=team.slug), body)
    problem = assert_problem(response, 400, path)
    assert fragment in str(problem["errors"])
    assert tenant_state(team.tenant) == before


def test_a_service_account_token_with_the_operator_role_publishes(team: Team) -> None:
    actor = Actor(user=team.owner, source="api")
    with tenant_scope([team.tenant]):
        account = services.create_service_account(
            actor=actor, tenant=team.tenant, name="uploader", role="operator"
        )
        _, token = services.create_token(
            actor=actor, tenant=team.tenant, name="ci", role="operator", user=account.user
        )
    response = send(token, "POST", EVENTS.format(tenant=team.slug), LANDED)
    assert response.status_code == 201


def test_graphql_publishes_the_same_way(team: Team, outsider: Team) -> None:
    query = """mutation($t: String!) { publishEvent(tenant: $t, type: "com.acme.x",
      source: "/acme", subject: "s", id: "g1", data: {n: 1}) { type uid cloudevent } }"""
    answer = gql(team.tokens["operator"], query, {"t": team.slug}).json()
    assert answer["data"]["publishEvent"]["type"] == "com.acme.x"
    assert answer["data"]["publishEvent"]["cloudevent"]["subject"] == "s"
    again = gql(team.tokens["operator"], query, {"t": team.slug}).json()
    assert again["data"]["publishEvent"]["uid"] == answer["data"]["publishEvent"]["uid"]
    refused = gql(team.tokens["viewer"], query, {"t": team.slug}).json()
    assert refused["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    hidden = gql(outsider.tokens["owner"], query, {"t": team.slug}).json()
    assert hidden["errors"][0]["extensions"]["code"] == "NOT_FOUND"
    assert Event.objects.dangerously_unscoped().filter(type="com.acme.x").count() == 1
