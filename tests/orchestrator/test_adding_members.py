"""Adding a member: only a person who already shares a tenant with whoever adds them
(platform staff add anyone), and one answer, word for word, for an unknown name, another
tenant's service account, an inactive user and a person the adder may not add."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client

from orchestrator import services
from orchestrator.actors import Actor
from orchestrator.models import Membership
from tests.harness import (
    Team,
    assert_problem,
    gql,
    make_member,
    make_teammate,
    make_user,
    send,
    tenant_state,
)

ADD_MEMBER = (
    "mutation($t: String!, $u: String!) { addMember(tenant: $t, username: $u, role: "
    '"viewer") { username } }'
)


def _unknown(team: Team, outsider: Team) -> str:
    return "nobody-by-this-name"


def _other_tenants_service_account(team: Team, outsider: Team) -> str:
    account = services.create_service_account(
        actor=Actor.cli(), tenant=outsider.tenant, name="deployer", role="viewer"
    )
    return account.user.get_username()


def _inactive_teammate(team: Team, outsider: Team) -> str:
    user = make_teammate(team)
    User.objects.filter(pk=user.pk).update(is_active=False)
    return user.get_username()


def _stranger(team: Team, outsider: Team) -> str:
    return make_user().get_username()


def _other_tenants_owner(team: Team, outsider: Team) -> str:
    return outsider.owner.get_username()


NOT_ADDABLE: dict[str, Callable[[Team, Team], str]] = {
    "unknown": _unknown,
    "other-tenants-service-account": _other_tenants_service_account,
    "inactive-teammate": _inactive_teammate,
    "stranger": _stranger,
    "other-tenants-owner": _other_tenants_owner,
}


def _is_member(team: Team, username: str) -> bool:
    members = Membership.objects.dangerously_unscoped()
    return members.filter(tenant=team.tenant, user__username=username).exists()


def _rest_answer(team: Team, username: str) -> tuple[int, dict[str, Any]]:
    url = f"/api/v1/tenants/{team.slug}/members/"
    response = send(team.tokens["admin"], "POST", url, {"username": username, "role": "viewer"})
    return response.status_code, response.json()


def test_rest_answers_alike_for_every_user_it_may_not_add(team: Team, outsider: Team) -> None:
    names = {kind: make(team, outsider) for kind, make in NOT_ADDABLE.items()}
    before = tenant_state(team.tenant)
    answers = {kind: _rest_answer(team, name) for kind, name in names.items()}
    assert tenant_state(team.tenant) == before
    first = answers["unknown"]
    assert first[0] == 400
    assert [e["path"] for e in first[1]["errors"]] == ["username"]
    assert "share a tenant with you" in first[1]["errors"][0]["message"]
    assert answers == dict.fromkeys(names, first)


def test_graphql_answers_alike_for_every_user_it_may_not_add(team: Team, outsider: Team) -> None:
    names = {kind: make(team, outsider) for kind, make in NOT_ADDABLE.items()}
    before = tenant_state(team.tenant)
    answers = {}
    for kind, name in names.items():
        body = gql(team.tokens["admin"], ADD_MEMBER, {"t": team.slug, "u": name}).json()
        [error] = body["errors"]
        answers[kind] = (body["data"], error["message"], error["extensions"])
    assert tenant_state(team.tenant) == before
    first = answers["unknown"]
    assert first[2]["code"] == "BAD_USER_INPUT"
    assert answers == dict.fromkeys(names, first)


def test_it_adds_a_person_who_shares_a_tenant_with_the_adder(team: Team) -> None:
    teammate = make_teammate(team).get_username()
    status, body = _rest_answer(team, teammate)
    assert status == 201, body
    assert _is_member(team, teammate)
    graphql_teammate = make_teammate(team).get_username()
    answer = gql(team.tokens["admin"], ADD_MEMBER, {"t": team.slug, "u": graphql_teammate})
    assert answer.json() == {"data": {"addMember": {"username": graphql_teammate}}}
    assert _is_member(team, graphql_teammate)


def test_sharing_an_archived_tenant_does_not_count(team: Team) -> None:
    teammate = make_teammate(team)
    [side] = [m.tenant for m in Membership.objects.dangerously_unscoped().filter(user=teammate)]
    services.archive_tenant(actor=Actor.cli(), tenant=side)
    assert _rest_answer(team, teammate.get_username())[0] == 400
    assert not _is_member(team, teammate.get_username())


def test_a_member_of_this_tenant_is_a_conflict_not_an_unknown_name(team: Team) -> None:
    status, body = _rest_answer(team, "acme-viewer")
    assert status == 409, body


def test_platform_staff_may_add_anyone(team: Team) -> None:
    staff = make_member(team.tenant, "admin")
    User.objects.filter(pk=staff.pk).update(is_staff=True)
    client = Client()
    client.force_login(staff)
    stranger = make_user().get_username()
    url = f"/api/v1/tenants/{team.slug}/members/"
    body = {"username": stranger, "role": "viewer"}
    response = client.post(url, body, content_type="application/json")
    assert response.status_code == 201, response.content
    assert _is_member(team, stranger)


@pytest.mark.parametrize("kind", ["unknown", "stranger"])
def test_a_member_without_member_manage_learns_nothing_of_the_name(
    team: Team, outsider: Team, kind: str
) -> None:
    name = NOT_ADDABLE[kind](team, outsider)
    url = f"/api/v1/tenants/{team.slug}/members/"
    body = {"username": name, "role": "viewer"}
    assert_problem(send(team.tokens["editor"], "POST", url, body), 403)
