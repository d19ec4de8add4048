"""/api/v1/tenants/{tenant}/members/: members read, admins manage up to their own role,
anyone may leave, the last owner stays; demoted or removed members lose their tokens."""

from __future__ import annotations

from typing import Any

import pytest

from orchestrator import services
from orchestrator.actors import Actor
from orchestrator.models import ApiToken, Membership
from tests.harness import (
    EndpointCase,
    EndpointSuite,
    Team,
    assert_problem,
    make_member,
    make_teammate,
    make_token,
    make_user,
    new_audit_events,
    send,
    tenant_state,
    token_row,
)

MEMBERS = "/api/v1/tenants/{tenant}/members/"
MEMBER = MEMBERS + "{username}/"


def a_viewer(team: Team) -> dict[str, str]:
    return {"username": make_member(team.tenant, "viewer").username}


def a_teammate(team: Team) -> dict[str, Any]:
    return {"username": make_teammate(team).username, "role": "viewer"}


class TestMembersEndpoint(EndpointSuite):
    cases = [
        EndpointCase("list", "GET", MEMBERS, "viewer"),
        EndpointCase("retrieve", "GET", MEMBER, "viewer", setup=a_viewer),
        EndpointCase(
            "add", "POST", MEMBERS, "admin", status=201, body=a_teammate,
            audit_action="membership.create",
        ),
        EndpointCase(
            "change-role", "PATCH", MEMBER, "admin", setup=a_viewer, body={"role": "operator"},
            audit_action="membership.update",
        ),
        EndpointCase(
            "remove", "DELETE", MEMBER, "admin", status=204, setup=a_viewer,
            audit_action="membership.delete",
        ),
    ]  # fmt: skip


def _role(team: Team, username: str) -> str | None:
    row = Membership.objects.dangerously_unscoped().filter(
        tenant=team.tenant, user__username=username
    )
    return row.values_list("role", flat=True).first()


def test_it_lists_members_with_their_roles(team: Team, outsider: Team) -> None:
    body = send(team.tokens["viewer"], "GET", f"/api/v1/tenants/{team.slug}/members/").json()
    listed = {m["username"]: m["role"] for m in body["results"]}
    assert listed == {f"acme-{r}": r for r in ("viewer", "operator", "editor", "admin", "owner")}
    assert body["next"] is None


@pytest.mark.parametrize("role", ["viewer", "operator", "editor", "admin"])
def test_it_lets_any_member_leave(team: Team, role: str) -> None:
    url = f"/api/v1/tenants/{team.slug}/members/acme-{role}/"
    count = len(new_audit_events(team.tenant, 0))
    response = send(team.tokens[role], "DELETE", url)
    assert response.status_code == 204, response.content
    assert _role(team, f"acme-{role}") is None
    actions = [e.action for e in new_audit_events(team.tenant, count)]
    assert actions == ["token.revoke", "membership.delete"]


def test_it_keeps_the_last_owner(team: Team) -> None:
    before = tenant_state(team.tenant)
    url = f"/api/v1/tenants/{team.slug}/members/acme-owner/"
    assert_problem(send(team.tokens["owner"], "DELETE", url), 409)
    assert_problem(send(team.tokens["owner"], "PATCH", url, {"role": "admin"}), 409)
    assert tenant_state(team.tenant) == before


def test_it_lets_an_owner_go_once_another_owner_remains(team: Team) -> None:
    make_member(team.tenant, "owner", "acme-owner2")
    url = f"/api/v1/tenants/{team.slug}/members/acme-owner/"
    response = send(team.tokens["owner"], "PATCH", url, {"role": "admin"})
    assert response.status_code == 200, response.content
    assert _role(team, "acme-owner") == "admin"


def test_it_revokes_the_tokens_above_a_demoted_members_new_role(team: Team) -> None:
    editor = team.users["editor"]
    viewer_token = make_token(team.tenant, editor, "viewer")
    count = len(new_audit_events(team.tenant, 0))
    url = f"/api/v1/tenants/{team.slug}/members/acme-editor/"
    response = send(team.tokens["admin"], "PATCH", url, {"role": "operator"})
    assert response.status_code == 200, response.content
    assert token_row(team.tokens["editor"]).revoked_at is not None
    assert token_row(viewer_token).revoked_at is None
    events = new_audit_events(team.tenant, count)
    assert [e.action for e in events] == ["membership.update", "token.revoke"]
    changes = events[0].changes
    assert (changes["before"]["role"], changes["after"]["role"]) == ("editor", "operator")
    members = f"/api/v1/tenants/{team.slug}/members/"
    assert_problem(send(team.tokens["editor"], "GET", members), 401)
    assert send(viewer_token, "GET", members).status_code == 200


def test_it_revokes_every_token_of_a_removed_member(team: Team) -> None:
    editor = team.users["editor"]
    make_token(team.tenant, editor, "viewer")
    url = f"/api/v1/tenants/{team.slug}/members/acme-editor/"
    assert send(team.tokens["admin"], "DELETE", url).status_code == 204
    live = ApiToken.objects.dangerously_unscoped().filter(user=editor, revoked_at__isnull=True)
    assert not live.exists()
    assert ApiToken.objects.dangerously_unscoped().filter(user=editor).count() == 2


@pytest.mark.parametrize(
    ("method", "username", "body"),
    [
        ("POST", "", {"username": "newcomer", "role": "owner"}),
        ("PATCH", "acme-viewer/", {"role": "owner"}),
        ("PATCH", "acme-owner/", {"role": "viewer"}),
        ("DELETE", "acme-owner/", None),
    ],
    ids=["add-an-owner", "promote-to-owner", "demote-an-owner", "remove-an-owner"],
)
def test_it_refuses_an_admin_acting_above_their_role(
    team: Team, method: str, username: str, body: Any
) -> None:
    make_user("newcomer")
    make_member(team.tenant, "owner")  # so that the last-owner rule is not what refuses
    before = tenant_state(team.tenant)
    url = f"/api/v1/tenants/{team.slug}/members/{username}"
    assert_problem(send(team.tokens["admin"], method, url, body), 403)
    assert tenant_state(team.tenant) == before


@pytest.mark.parametrize(
    ("body", "path"),
    [
        ({"username": "nobody", "role": "viewer"}, "username"),
        ({"username": "acme-viewer", "role": "superuser"}, "role"),
        ({"role": "viewer"}, "username"),
    ],
)
def test_it_refuses_bad_input(team: Team, body: dict[str, str], path: str) -> None:
    before = tenant_state(team.tenant)
    url = f"/api/v1/tenants/{team.slug}/members/"
    assert_problem(send(team.tokens["admin"], "POST", url, body), 400, path=path)
    assert tenant_state(team.tenant) == before


def test_it_refuses_a_member_twice(team: Team) -> None:
    url = f"/api/v1/tenants/{team.slug}/members/"
    body = {"username": "acme-viewer", "role": "editor"}
    assert_problem(send(team.tokens["admin"], "POST", url, body), 409)
    assert _role(team, "acme-viewer") == "viewer"


def test_it_adds_a_member_of_another_tenant_without_touching_that_tenant(
    team: Team, outsider: Team
) -> None:
    services.add_member(
        actor=Actor.cli(), tenant=outsider.tenant, user=team.users["admin"], role="viewer"
    )  # so that acme's admin may add globex's owner, a teammate
    before = tenant_state(outsider.tenant)
    url = f"/api/v1/tenants/{team.slug}/members/"
    body = {"username": "globex-owner", "role": "viewer"}
    assert send(team.tokens["admin"], "POST", url, body).status_code == 201
    assert _role(team, "globex-owner") == "viewer"
    assert tenant_state(outsider.tenant) == before
