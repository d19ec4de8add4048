"""Publishing an event may start runs, so it draws on the trigger budgets (docs/api.md,
"Rate limits") wherever it comes from: REST's POST events/, GraphQL's publishEvent and the
portal's form; past the budget nothing is stored."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

from runs.models import Event
from tests.harness import Team, assert_problem, gql, send, set_policy
from tests.orchestrator.test_rate_limits import limits, redis_cache

pytestmark = pytest.mark.django_db

__all__ = ["redis_cache"]  # the fixture, for the tests here

PUBLISH = """mutation($t: String!, $id: String!) {
  publishEvent(tenant: $t, type: "com.acme.x", source: "/acme", id: $id) { uid }
}"""


def stored(team: Team) -> int:
    return Event.objects.dangerously_unscoped().filter(tenant=team.tenant).count()


def test_rest_graphql_and_the_portal_share_the_trigger_budget(
    team: Team, redis_cache: str, client: Client
) -> None:
    set_policy(team.tenant, rate_limits=limits(triggers={"per_tenant": 3}))
    url = f"/api/v1/tenants/{team.slug}/events/"
    body: dict[str, Any] = {"type": "com.acme.x", "source": "/acme", "id": "rest"}
    assert send(team.tokens["operator"], "POST", url, body).status_code == 201
    answer = gql(team.tokens["operator"], PUBLISH, {"t": team.slug, "id": "gql"})
    assert answer.json()["data"]["publishEvent"]["uid"]
    client.force_login(team.users["operator"])
    form = {"type": "com.acme.x", "source": "/acme", "id": "portal"}
    assert client.post(f"/t/{team.slug}/events/publish/", form).status_code == 302
    assert stored(team) == 3

    assert_problem(send(team.tokens["operator"], "POST", url, {**body, "id": "4"}), 429)
    refused = gql(team.tokens["operator"], PUBLISH, {"t": team.slug, "id": "5"})
    assert refused.json()["errors"][0]["extensions"]["code"] == "RATE_LIMITED"
    assert client.post(f"/t/{team.slug}/events/publish/", {**form, "id": "6"}).status_code == 429
    assert stored(team) == 3
