"""/api/v1/tenants/{t}/grants/ (and GraphQL's grants, createGrant, deleteGrant): admins
share a workflow's events or a dataset with another tenant, members of both tenants see
the grant, only the granting tenant revokes it; each change is audited. A grant is what
lets a workflow of one tenant start from another's run.succeeded, and revoking it stops
the chain."""

from __future__ import annotations

import pytest

from orchestrator.actors import Actor
from orchestrator.context import tenant_scope
from orchestrator.grants import create_grant
from orchestrator.models import Grant
from runs.models import WorkflowRun
from tests.events.support import dispatch_pending, run_once
from tests.harness import (
    EndpointCase,
    EndpointSuite,
    Team,
    assert_problem,
    gql,
    make_team,
    make_token,
    send,
)
from tests.runs.engine.helpers import Engine
from workflows.services import apply_workflow

GRANTS = "/api/v1/tenants/{tenant}/grants/"


def partners() -> Team:
    return make_team("partners", roles=["owner"])


def a_grant(team: Team) -> dict[str, str]:
    grantee = make_team(f"to-{team.slug}"[:30], roles=["owner"])
    with tenant_scope([team.tenant]):
        grant = create_grant(
            actor=Actor(user=team.owner, source="api"),
            tenant=team.tenant,
            grantee=grantee.slug,
            kind="dataset",
            name="warehouse.sales",
        )
    return {"grant_id": str(grant.pk)}


def new_grantee(team: Team) -> dict[str, str]:
    return {
        "grantee": make_team(f"g-{team.slug}"[:30], roles=["owner"]).slug,
        "kind": "events",
        "name": "*",
    }


class TestGrantEndpoints(EndpointSuite):
    cases = [
        EndpointCase("list", "GET", GRANTS, "viewer"),
        EndpointCase("retrieve", "GET", GRANTS + "{grant_id}/", "viewer", setup=a_grant),
        EndpointCase(
            "create",
            "POST",
            GRANTS,
            "admin",
            status=201,
            body=new_grantee,
            audit_action="grant.create",
        ),
        EndpointCase(
            "delete",
            "DELETE",
            GRANTS + "{grant_id}/",
            "admin",
            status=204,
            setup=a_grant,
            audit_action="grant.delete",
        ),
    ]


@pytest.mark.django_db
def test_both_tenants_see_a_grant_and_only_the_giver_revokes_it(team: Team) -> None:
    other = partners()
    made = send(
        team.tokens["admin"],
        "POST",
        GRANTS.format(tenant=team.slug),
        {"grantee": "partners", "kind": "dataset", "name": "warehouse.sales"},
    )
    assert made.status_code == 201, made.content
    grant = made.json()
    assert (grant["tenant"], grant["grantee"], grant["direction"]) == (
        team.slug,
        "partners",
        "given",
    )
    seen = send(other.tokens["owner"], "GET", GRANTS.format(tenant="partners")).json()["results"]
    assert [(g["id"], g["direction"]) for g in seen] == [(grant["id"], "received")]
    given = send(
        other.tokens["owner"], "GET", GRANTS.format(tenant="partners") + "?direction=given"
    )
    assert given.json()["results"] == []
    url = GRANTS.format(tenant="partners") + f"{grant['id']}/"
    assert_problem(send(other.tokens["owner"], "DELETE", url), 404)
    assert Grant.objects.dangerously_unscoped().count() == 1


@pytest.mark.django_db
def test_bad_grants_are_refused_with_their_paths(team: Team) -> None:
    url = GRANTS.format(tenant=team.slug)
    body = {"grantee": team.slug, "kind": "events", "name": "x"}
    assert_problem(send(team.tokens["admin"], "POST", url, body), 400, "grantee")
    body = {"grantee": "no-such-tenant", "kind": "events", "name": "x"}
    assert_problem(send(team.tokens["admin"], "POST", url, body), 400, "grantee")
    partners()
    body = {"grantee": "partners", "kind": "tables", "name": "x"}
    assert_problem(send(team.tokens["admin"], "POST", url, body), 400, "kind")
    body = {"grantee": "partners", "kind": "events", "name": "x", "typo": 1}
    assert_problem(send(team.tokens["admin"], "POST", url, body), 400, "typo")
    body = {"grantee": "partners", "kind": "events", "name": "x"}
    assert send(team.tokens["admin"], "POST", url, body).status_code == 201
    assert_problem(send(team.tokens["admin"], "POST", url, body), 409)


@pytest.mark.django_db
def test_graphql_grants_the_same_way(team: Team) -> None:
    other = partners()
    made = gql(
        team.tokens["admin"],
        """mutation($t: String!) { createGrant(tenant: $t, grantee: "partners", kind: "events",
        name: "ingest") { id direction grantee } }""",
        {"t": team.slug},
    ).json()["data"]["createGrant"]
    assert (made["direction"], made["grantee"]) == ("given", "partners")
    seen = gql(
        other.tokens["owner"], '{ grants(tenant: "partners") { id direction tenant } }'
    ).json()["data"]["grants"]
    assert seen == [{"id": made["id"], "direction": "received", "tenant": team.slug}]
    refused = gql(
        team.tokens["editor"],
        "mutation($t: String!, $id: Int!) { deleteGrant(tenant: $t, id: $id) }",
        {"t": team.slug, "id": made["id"]},
    ).json()
    assert refused["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    deleted = gql(
        team.tokens["admin"],
        "mutation($t: String!, $id: Int!) { deleteGrant(tenant: $t, id: $id) }",
        {"t": team.slug, "id": made["id"]},
    ).json()
    assert deleted["data"]["deleteGrant"] is True


INGEST = {"name": "ingest", "tasks": {"load": {"type": "noop"}}}
FOLLOWER = {
    "name": "follow",
    "triggers": [{"event": {"type": "run.succeeded", "workflow": "eng/ingest"}}],
    "tasks": {"send": {"type": "noop"}},
}


@pytest.mark.django_db(transaction=True)
def test_another_tenants_run_succeeded_starts_a_run_only_under_a_grant(settings: object) -> None:
    engine = Engine(workers=None)
    other = partners()
    with tenant_scope([other.tenant]):
        apply_workflow(
            actor=Actor(user=other.owner, source="api"), tenant=other.tenant, data=FOLLOWER
        )
    ingest = engine.apply(INGEST)

    def follows() -> int:
        with tenant_scope([other.tenant]):
            return WorkflowRun.objects.filter(workflow__name="follow").count()

    run_once(engine, ingest)
    assert dispatch_pending() == 0  # no grant: nothing
    made = send(
        _token(engine, "admin"),
        "POST",
        GRANTS.format(tenant="eng"),
        {"grantee": "partners", "kind": "events", "name": "ingest"},
    )
    assert made.status_code == 201, made.content
    run_once(engine, ingest)
    assert dispatch_pending() == 1
    assert follows() == 1
    with tenant_scope([other.tenant]):
        run = WorkflowRun.objects.get(workflow__name="follow")
    assert run.event is not None
    assert run.event["source"] == "/tenants/eng/workflows/ingest"
    revoked = send(
        _token(engine, "admin"), "DELETE", GRANTS.format(tenant="eng") + f"{made.json()['id']}/"
    )
    assert revoked.status_code == 204
    run_once(engine, ingest)
    assert dispatch_pending() == 0
    assert follows() == 1
    # and the grantee never sees the other tenant's events in its own log
    listed = send(
        other.tokens["owner"], "GET", "/api/v1/tenants/partners/events/?type=run.succeeded"
    )
    assert listed.json()["results"] == []


def _token(engine: Engine, role: str) -> str:
    """An API token of the engine tenant's owner, with `role`."""
    return make_token(engine.tenant, engine.user, role)
