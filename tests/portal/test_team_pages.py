"""The team page and its forms: members and roles, quotas with their usage, service
accounts and API tokens. Each form is forged by a role too low (403, nothing changed),
by another tenant (404) and without a CSRF token (403); each success is audited with the
source `portal`; a new token is shown once, works against the REST API, and is revoked
from the portal."""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from django.test import Client

from orchestrator import services, tokens
from orchestrator.actors import Actor
from orchestrator.context import tenant_scope
from orchestrator.models import ApiToken, Membership, Role, ServiceAccount
from runs.services import trigger_run
from tests.harness import (
    Team,
    api,
    audit_count,
    make_member,
    make_team,
    make_teammate,
    make_token,
    new_audit_events,
    tenant_state,
    token_row,
)
from workflows.services import apply_workflow

pytestmark = pytest.mark.django_db

TOKEN = re.compile(r"orc_[a-z0-9]{10}_[A-Za-z0-9_-]{32,128}")
BELOW_ADMIN = ("viewer", "operator", "editor")


def signed_in(client: Client, user: Any) -> Client:
    client.force_login(user)
    return client


def body_of(response: Any) -> str:
    return str(response.content.decode())


def row(body: str, marker: str) -> str:
    """The table row that carries `marker` (e.g. data-quota="max_workflows")."""
    return body.split(marker, 1)[1].split("</tr>", 1)[0]


def prefix(raw: str) -> str:
    found = tokens.parse(raw)
    assert found is not None
    return found


def portal_events(team: Team, since: int) -> list[tuple[str, str]]:
    return [(e.action, e.source) for e in new_audit_events(team.tenant, since)]


# --- forms, forged -----------------------------------------------------------------


@dataclass(frozen=True)
class FormCase:
    """One form: its path under /t/<tenant>/, what a person would post, and the one
    permission (all admin-level) that guards it."""

    name: str
    path: Callable[[Team], str]
    data: Callable[[Team], dict[str, str]]


FORMS = [
    FormCase(
        "member-add",
        lambda team: "team/members/new/",
        lambda team: {"username": make_teammate(team).get_username(), "role": "viewer"},
    ),
    FormCase(
        "member-role",
        lambda team: f"team/members/{team.users['viewer'].get_username()}/role/",
        lambda team: {"role": "operator"},
    ),
    FormCase(
        "member-remove",
        lambda team: f"team/members/{team.users['viewer'].get_username()}/remove/",
        lambda team: {},
    ),
    FormCase(
        "service-account-new",
        lambda team: "team/service-accounts/new/",
        lambda team: {"name": "ci", "description": "", "role": "viewer"},
    ),
    FormCase(
        "token-new",
        lambda team: "team/tokens/new/",
        lambda team: {"name": "deploy", "role": "viewer", "expires_in_days": "30"},
    ),
    FormCase(
        "token-revoke",
        lambda team: f"team/tokens/{prefix(team.tokens['viewer'])}/revoke/",
        lambda team: {},
    ),
]
FORM_IDS = [case.name for case in FORMS]


@pytest.mark.parametrize("case", FORMS, ids=FORM_IDS)
@pytest.mark.parametrize("role", BELOW_ADMIN)
def test_a_role_below_admin_is_refused_every_form(
    client: Client, team: Team, case: FormCase, role: str
) -> None:
    url = f"/t/{team.slug}/{case.path(team)}"
    data = case.data(team)
    before = tenant_state(team.tenant)
    signed_in(client, team.users[role])
    assert client.get(url).status_code == 403
    response = client.post(url, data)
    assert response.status_code == 403
    assert f"you have {role}" in body_of(response)
    assert tenant_state(team.tenant) == before


@pytest.mark.parametrize("case", FORMS, ids=FORM_IDS)
def test_another_tenants_member_gets_404_from_every_form(
    client: Client, team: Team, outsider: Team, case: FormCase
) -> None:
    url = f"/t/{team.slug}/{case.path(team)}"
    data = case.data(team)
    before = tenant_state(team.tenant)
    signed_in(client, outsider.owner)
    assert client.get(url).status_code == 404
    assert client.post(url, data).status_code == 404
    assert tenant_state(team.tenant) == before


@pytest.mark.parametrize("case", FORMS, ids=FORM_IDS)
def test_every_form_needs_its_csrf_token(team: Team, case: FormCase) -> None:
    url = f"/t/{team.slug}/{case.path(team)}"
    data = case.data(team)
    before = tenant_state(team.tenant)
    browser = signed_in(Client(enforce_csrf_checks=True), team.owner)
    page = browser.get(url)
    assert page.status_code == 200
    assert 'name="csrfmiddlewaretoken"' in body_of(page)
    assert browser.post(url, data).status_code == 403
    assert tenant_state(team.tenant) == before


def test_another_tenants_objects_are_not_found_in_ones_own(
    client: Client, team: Team, outsider: Team
) -> None:
    before = tenant_state(outsider.tenant)
    signed_in(client, team.owner)
    theirs = [
        f"team/members/{outsider.owner.get_username()}/role/",
        f"team/members/{outsider.owner.get_username()}/remove/",
        f"team/tokens/{prefix(outsider.tokens['owner'])}/revoke/",
    ]
    for path in theirs:
        url = f"/t/{team.slug}/{path}"
        assert client.get(url).status_code == 404, path
        assert client.post(url, {"role": "viewer"}).status_code == 404, path
    assert tenant_state(outsider.tenant) == before


# --- the team page ------------------------------------------------------------------


def test_a_viewer_sees_the_members_and_quotas_but_no_tokens(client: Client, team: Team) -> None:
    response = signed_in(client, team.users["viewer"]).get(f"/t/{team.slug}/team/")
    assert response.status_code == 200
    body = body_of(response)
    for role, user in team.users.items():
        member = row(body, f'data-member="{user.get_username()}"')
        assert f'<span class="role">{role}</span>' in member
        assert "<time" in member  # when they were added
    assert 'id="quotas"' in body
    assert 'id="tokens"' not in body
    assert 'id="service-accounts"' not in body
    assert "/team/members/new/" not in body
    assert "Change role" not in body
    assert "/team/tokens/new/" not in body
    assert 'class="used"' not in row(body, 'data-quota="max_tokens"')  # an admin's number
    for raw in team.tokens.values():
        assert prefix(raw) not in body


def test_an_admin_sees_service_accounts_and_tokens_without_the_tokens_themselves(
    client: Client, team: Team
) -> None:
    services.create_service_account(
        actor=Actor.cli(), tenant=team.tenant, name="ci", role="operator", description="builds"
    )
    response = signed_in(client, team.users["admin"]).get(f"/t/{team.slug}/team/")
    body = body_of(response)
    account = row(body, 'data-service-account="ci"')
    assert "builds" in account
    assert '<span class="role">operator</span>' in account
    for role, raw in team.tokens.items():
        assert raw not in body
        token = row(body, f'data-token="{prefix(raw)}"')
        assert f"orc_{prefix(raw)}_…" in token
        assert f'<span class="role">{role}</span>' in token
        assert "/revoke/" in token
    # Change and remove up to one's own role: not the owner.
    assert "/role/" in row(body, f'data-member="{team.users["admin"].get_username()}"')
    assert "above your role" in row(body, f'data-member="{team.owner.get_username()}"')
    assert '<span class="used">5</span>' in row(body, 'data-quota="max_tokens"')


def test_quotas_show_the_limits_and_what_is_in_use(client: Client, team: Team) -> None:
    spec = {"name": "one-at-a-time", "max_active_runs": 1, "tasks": {"a": {"type": "noop"}}}
    with tenant_scope([team.tenant]):
        workflow = apply_workflow(actor=Actor.cli(), tenant=team.tenant, data=spec).workflow
        apply_workflow(actor=Actor.cli(), tenant=team.tenant, data=spec | {"name": "other"})
        for _ in range(2):
            trigger_run(actor=Actor.cli(), workflow=workflow)
    team.tenant.quotas = {**team.tenant.quotas, "max_workflows": 7}
    team.tenant.save()
    body = body_of(signed_in(client, team.users["viewer"]).get(f"/t/{team.slug}/team/"))
    workflows = row(body, 'data-quota="max_workflows"')
    assert '<td class="num">7</td>' in workflows
    assert '<span class="used">2</span>' in workflows
    assert 'max="7" value="2"' in workflows
    runs = row(body, 'data-quota="max_concurrent_runs"')
    assert '<span class="used">1</span>' in runs
    assert "1 more queued" in runs
    assert 'class="used"' not in row(body, 'data-quota="max_spec_bytes"')  # per spec


def test_the_team_page_count_of_queries_does_not_grow(
    client: Client, team: Team, django_assert_num_queries: Any
) -> None:
    signed_in(client, team.users["admin"])
    url = f"/t/{team.slug}/team/"
    client.get(url)
    # session, user, memberships; members, live and revoked tokens, service accounts;
    # live workflows, running and queued runs
    with django_assert_num_queries(9):
        client.get(url)
    for n in range(3):
        account = services.create_service_account(
            actor=Actor.cli(), tenant=team.tenant, name=f"bot-{n}", role="viewer"
        )
        make_token(team.tenant, account.user, "viewer")
        make_member(team.tenant, "viewer")
    with tenant_scope([team.tenant]):
        services.revoke_token(actor=Actor.cli(), token=token_row(team.tokens["viewer"]))
    with django_assert_num_queries(9):
        body = body_of(client.get(url))
    assert body.count("data-service-account=") == 3
    assert body.count("data-token=") == 7


def test_the_team_page_is_not_found_for_another_tenant(
    client: Client, team: Team, outsider: Team
) -> None:
    response = signed_in(client, outsider.owner).get(f"/t/{team.slug}/team/")
    assert response.status_code == 404
    assert team.users["viewer"].get_username() not in body_of(response)


# --- members --------------------------------------------------------------------------


def test_an_admin_adds_a_teammate(client: Client, team: Team) -> None:
    teammate = make_teammate(team)
    since = audit_count(team.tenant)
    signed_in(client, team.users["admin"])
    form = body_of(client.get(f"/t/{team.slug}/team/members/new/"))
    assert '<option value="admin"' in form
    assert '<option value="owner"' not in form  # above the admin's own role
    response = client.post(
        f"/t/{team.slug}/team/members/new/",
        {"username": teammate.get_username(), "role": "editor"},
    )
    assert response.status_code == 302
    assert response["Location"] == f"/t/{team.slug}/team/#members"
    with tenant_scope([team.tenant]):
        assert Membership.objects.get(user=teammate).role == "editor"
    assert portal_events(team, since) == [("membership.create", "portal")]
    page = body_of(client.get(response["Location"]))
    assert f"Added {teammate.get_username()} as editor." in page


def test_adding_a_stranger_gets_the_apis_answer_next_to_the_name(
    client: Client, team: Team
) -> None:
    stranger = make_team("initech", roles=["owner"]).owner
    signed_in(client, team.users["admin"])
    for name in (stranger.get_username(), "nobody-at-all"):
        before = tenant_state(team.tenant)
        response = client.post(
            f"/t/{team.slug}/team/members/new/", {"username": name, "role": "viewer"}
        )
        assert response.status_code == 400
        body = body_of(response)
        assert 'id="username-error"' in body
        assert "no user by this name that you can add" in body
        assert f'value="{name}"' in body  # what was typed is kept
        assert tenant_state(team.tenant) == before


def test_an_admin_cannot_make_an_owner_but_an_owner_can(client: Client, team: Team) -> None:
    viewer = team.users["viewer"].get_username()
    before = tenant_state(team.tenant)
    signed_in(client, team.users["admin"])
    for url, data in (
        (f"/t/{team.slug}/team/members/{viewer}/role/", {"role": "owner"}),
        (
            f"/t/{team.slug}/team/members/new/",
            {"username": make_teammate(team).get_username(), "role": "owner"},
        ),
    ):
        response = client.post(url, data)
        assert response.status_code == 403, url
        body = body_of(response)
        assert "cannot grant a role with role owner: above your own role admin" in body
        assert 'role="alert"' in body  # on the form, above it
    assert (
        client.post(f"/t/{team.slug}/team/members/{team.owner.get_username()}/remove/").status_code
        == 403
    )  # removing a member above one's own role
    assert tenant_state(team.tenant) == before

    since = audit_count(team.tenant)
    signed_in(client, team.owner)
    response = client.post(f"/t/{team.slug}/team/members/{viewer}/role/", {"role": "owner"})
    assert response.status_code == 302
    with tenant_scope([team.tenant]):
        assert Membership.objects.get(user=team.users["viewer"]).role == "owner"
    assert portal_events(team, since) == [("membership.update", "portal")]


def test_lowering_a_role_revokes_tokens_above_it(client: Client, team: Team) -> None:
    editor = team.users["editor"]
    since = audit_count(team.tenant)
    signed_in(client, team.users["admin"])
    form = body_of(client.get(f"/t/{team.slug}/team/members/{editor.get_username()}/role/"))
    assert '<option value="editor" selected>' in form
    response = client.post(
        f"/t/{team.slug}/team/members/{editor.get_username()}/role/", {"role": "viewer"}
    )
    assert response.status_code == 302
    assert token_row(team.tokens["editor"]).revoked_at is not None
    assert portal_events(team, since) == [
        ("membership.update", "portal"),
        ("token.revoke", "portal"),
    ]
    assert f"{editor.get_username()} is now viewer." in body_of(client.get(response["Location"]))


def test_removing_a_member_says_what_happens_then_does_it(client: Client, team: Team) -> None:
    operator = team.users["operator"].get_username()
    url = f"/t/{team.slug}/team/members/{operator}/remove/"
    signed_in(client, team.users["admin"])
    confirm = body_of(client.get(url))
    assert f"{operator} will lose access" in confirm
    assert f"orc_{prefix(team.tokens['operator'])}_…" in confirm  # the token that goes too
    since = audit_count(team.tenant)
    response = client.post(url)
    assert response.status_code == 302
    with tenant_scope([team.tenant]):
        assert not Membership.objects.filter(user=team.users["operator"]).exists()
    assert sorted(portal_events(team, since)) == [
        ("membership.delete", "portal"),
        ("token.revoke", "portal"),
    ]
    assert api(team.tokens["operator"]).get("/api/v1/me").status_code == 401


def test_the_last_owner_stays(client: Client, team: Team) -> None:
    before = tenant_state(team.tenant)
    signed_in(client, team.owner)
    response = client.post(f"/t/{team.slug}/team/members/{team.owner.get_username()}/remove/")
    assert response.status_code == 409
    assert "is the last owner" in body_of(response)
    assert tenant_state(team.tenant) == before


def test_a_role_that_is_not_one_is_named(client: Client, team: Team) -> None:
    viewer = team.users["viewer"].get_username()
    signed_in(client, team.owner)
    response = client.post(f"/t/{team.slug}/team/members/{viewer}/role/", {"role": "boss"})
    assert response.status_code == 400
    assert 'id="role-error"' in body_of(response)
    assert "is not a valid choice" in body_of(response)


# --- service accounts and tokens ----------------------------------------------------------


def test_an_admin_creates_a_service_account_then_its_token(client: Client, team: Team) -> None:
    since = audit_count(team.tenant)
    signed_in(client, team.users["admin"])
    response = client.post(
        f"/t/{team.slug}/team/service-accounts/new/",
        {"name": "ci", "description": "the build", "role": "operator"},
    )
    assert response.status_code == 302
    assert response["Location"] == f"/t/{team.slug}/team/#service-accounts"
    with tenant_scope([team.tenant]):
        account = ServiceAccount.objects.get(name="ci")
    form = body_of(client.get(f"/t/{team.slug}/team/tokens/new/?service_account=ci"))
    assert '<option value="ci" selected>service account ci (operator)</option>' in form
    # A token's role is at most its holder's: the service's answer, next to the role.
    too_high = client.post(
        f"/t/{team.slug}/team/tokens/new/",
        {"name": "ci deploy", "role": "editor", "service_account": "ci"},
    )
    assert too_high.status_code == 400
    assert "holds operator" in body_of(too_high)
    made = client.post(
        f"/t/{team.slug}/team/tokens/new/",
        {"name": "ci deploy", "role": "operator", "service_account": "ci", "expires_in_days": ""},
    )
    assert made.status_code == 201
    raw = TOKEN.findall(body_of(made))[0]
    assert token_row(raw).user_id == account.user_id
    assert token_row(raw).expires_at is None
    me = api(raw).get("/api/v1/me").json()
    assert me["username"] == f"sa.{team.slug}.ci"
    assert portal_events(team, since) == [
        ("service_account.create", "portal"),
        ("token.create", "portal"),
    ]


def test_a_service_account_name_is_checked_as_the_api_checks_it(client: Client, team: Team) -> None:
    before = tenant_state(team.tenant)
    signed_in(client, team.users["admin"])
    response = client.post(
        f"/t/{team.slug}/team/service-accounts/new/", {"name": "not a slug!", "role": "viewer"}
    )
    assert response.status_code == 400
    body = body_of(response)
    assert 'id="name-error"' in body
    assert "letters, numbers, underscores or hyphens" in body
    assert 'value="not a slug!"' in body
    assert tenant_state(team.tenant) == before


def test_a_new_token_is_shown_once_and_works_until_revoked(client: Client, team: Team) -> None:
    admin = team.users["admin"]
    signed_in(client, admin)
    since = audit_count(team.tenant)
    response = client.post(
        f"/t/{team.slug}/team/tokens/new/",
        {"name": "laptop", "role": "editor", "expires_in_days": "30"},
    )
    assert response.status_code == 201
    assert "no-store" in response["Cache-Control"]
    body = body_of(response)
    [raw] = TOKEN.findall(body)
    assert body.count(raw) == 1
    assert f'<code id="new-token" class="token">{raw}</code>' in body
    assert 'data-copy-target="new-token"' in body
    assert "/static/portal/copy.js" in body
    row_ = token_row(raw)
    assert (row_.name, row_.role, row_.user_id) == ("laptop", "editor", admin.pk)
    assert row_.expires_at is not None
    assert portal_events(team, since) == [("token.create", "portal")]

    me = api(raw).get("/api/v1/me")
    assert me.status_code == 200
    assert me.json()["username"] == admin.get_username()
    assert me.json()["token"]["role"] == "editor"

    # Nowhere again: no later page, no message, not in the session.
    for path in ("team/", "team/tokens/new/", "audit/", f"team/tokens/{row_.prefix}/revoke/"):
        later = client.get(f"/t/{team.slug}/{path}")
        assert later.status_code == 200, path
        assert raw not in body_of(later), path
        assert raw.split("_", 2)[2] not in body_of(later), path
    assert raw not in repr(dict(client.session.items()))

    revoked = client.post(f"/t/{team.slug}/team/tokens/{row_.prefix}/revoke/")
    assert revoked.status_code == 302
    assert api(raw).get("/api/v1/me").status_code == 401
    assert portal_events(team, since)[-1] == ("token.revoke", "portal")
    page = body_of(client.get(revoked["Location"]))
    assert f'data-revoked-token="{row_.prefix}"' in page
    assert "revoked: it is refused from now on" in page


def test_a_token_above_ones_own_role_is_refused(client: Client, team: Team) -> None:
    before = tenant_state(team.tenant)
    signed_in(client, team.users["admin"])
    response = client.post(f"/t/{team.slug}/team/tokens/new/", {"name": "x", "role": "owner"})
    assert response.status_code == 403
    assert "cannot create a token with role owner" in body_of(response)
    assert TOKEN.search(body_of(response)) is None
    assert tenant_state(team.tenant) == before


def test_a_token_form_names_each_mistake_and_keeps_what_was_typed(
    client: Client, team: Team
) -> None:
    before = tenant_state(team.tenant)
    signed_in(client, team.users["admin"])
    response = client.post(
        f"/t/{team.slug}/team/tokens/new/",
        {"name": "", "role": "viewer", "expires_in_days": "soon", "service_account": "ghost"},
    )
    assert response.status_code == 400
    body = body_of(response)
    assert 'id="name-error"' in body
    assert "may not be blank" in body
    assert 'id="expires_in_days-error"' in body
    assert "&#x27;soon&#x27;: expected a whole number of days" in body
    assert 'value="soon"' in body
    response = client.post(
        f"/t/{team.slug}/team/tokens/new/",
        {"name": "x", "role": "viewer", "service_account": "ghost"},
    )
    assert response.status_code == 400
    assert "no service account named &#x27;ghost&#x27; here" in body_of(response)
    assert tenant_state(team.tenant) == before


def test_revoking_a_revoked_token_is_a_conflict(client: Client, team: Team) -> None:
    viewer_token = prefix(team.tokens["viewer"])
    with tenant_scope([team.tenant]):
        services.revoke_token(actor=Actor.cli(), token=ApiToken.objects.get(prefix=viewer_token))
    signed_in(client, team.users["admin"])
    url = f"/t/{team.slug}/team/tokens/{viewer_token}/revoke/"
    confirm = body_of(client.get(url))
    assert "It was revoked" in confirm
    assert 'id="token-revoke"' not in confirm  # no button
    response = client.post(url)
    assert response.status_code == 409
    assert "is already revoked" in body_of(response)


def test_roles_offered_are_up_to_ones_own(client: Client, team: Team) -> None:
    signed_in(client, team.owner)
    for path in ("team/members/new/", "team/service-accounts/new/", "team/tokens/new/"):
        form = body_of(client.get(f"/t/{team.slug}/{path}"))
        assert [r for r in Role if f'<option value="{r.value}"' in form] == list(Role), path


def test_reloading_the_token_page_makes_no_second_token(client: Client, team: Team) -> None:
    """The token is shown on the POST's own answer; a reload sends the form again, with the
    key its rendering carried, and is refused instead of minting another token."""
    signed_in(client, team.users["admin"])
    form = body_of(client.get(f"/t/{team.slug}/team/tokens/new/"))
    key = re.search(r'name="form_key" value="([0-9a-f]{32})"', form)
    assert key
    fields = {"name": "laptop", "role": "viewer", "form_key": key.group(1)}
    first = client.post(f"/t/{team.slug}/team/tokens/new/", fields)
    assert first.status_code == 201
    again = client.post(f"/t/{team.slug}/team/tokens/new/", fields)
    assert again.status_code == 409
    assert "this form was sent already" in body_of(again)
    assert not TOKEN.findall(body_of(again))
    with tenant_scope([team.tenant]):
        assert ApiToken.objects.filter(name="laptop").count() == 1
