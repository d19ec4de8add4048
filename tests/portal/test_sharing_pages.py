"""The sharing page (/t/<tenant>/sharing/): members of both tenants see a grant (given,
received); an admin of the granting tenant shares and revokes through the forms (the
services the API calls, audited with the source `portal`); a viewer gets no form and a 403
on POST, the grantee's admin no revoke button and a 404 on the revoke page, a tenant the
user is not in a 404."""

from __future__ import annotations

import pytest
from django.test import Client

from orchestrator.actors import Actor
from orchestrator.context import tenant_scope
from orchestrator.grants import create_grant
from orchestrator.models import AuditEvent, Grant
from tests.harness import Team, make_team, tenant_state

pytestmark = pytest.mark.django_db

SHARING = "/t/{tenant}/sharing/"
NEW = "/t/{tenant}/sharing/new/"
REVOKE = "/t/{tenant}/sharing/{grant}/revoke/"


def partners() -> Team:
    return make_team("partners", roles=["owner", "admin", "viewer"])


def a_grant(team: Team, grantee: Team, kind: str = "events", name: str = "ingest") -> Grant:
    with tenant_scope([team.tenant]):
        return create_grant(
            actor=Actor(user=team.owner, source="api"),
            tenant=team.tenant,
            grantee=grantee.slug,
            kind=kind,
            name=name,
        )


def test_both_tenants_see_a_grant_and_a_viewer_gets_no_form(client: Client, team: Team) -> None:
    other = partners()
    grant = a_grant(team, other)
    client.force_login(team.users["viewer"])
    mine = client.get(SHARING.format(tenant=team.slug)).content.decode()
    assert f'data-grant="{grant.pk}"' in mine
    assert "partners" in mine
    assert "Share with another tenant" not in mine
    assert "Revoke" not in mine
    assert 'href="/t/acme/sharing/"' in mine  # the nav link
    client.force_login(other.users["admin"])
    theirs = client.get(SHARING.format(tenant=other.slug)).content.decode()
    assert f'data-grant="{grant.pk}"' in theirs
    assert "Shared with Partners" in theirs
    assert "acme" in theirs
    assert REVOKE.format(tenant=other.slug, grant=grant.pk) not in theirs  # not theirs to revoke


def test_an_admin_shares_through_the_form_and_it_is_audited(client: Client, team: Team) -> None:
    partners()
    client.force_login(team.users["admin"])
    assert (
        "Share with another tenant" in client.get(SHARING.format(tenant=team.slug)).content.decode()
    )
    form = {"grantee": "partners", "kind": "events", "name": "ingest"}
    done = client.post(NEW.format(tenant=team.slug), form, follow=True)
    assert done.status_code == 200
    assert "partners now sees the events of ingest." in done.content.decode()
    grant = Grant.objects.dangerously_unscoped().get(tenant=team.tenant)
    assert (grant.grantee.slug, grant.kind, grant.name) == ("partners", "events", "ingest")
    [entry] = AuditEvent.objects.dangerously_unscoped().filter(
        tenant=team.tenant, action="grant.create"
    )
    assert (entry.source, entry.actor_id) == ("portal", team.users["admin"].pk)
    assert entry.changes["after"] == {"grantee": "partners", "kind": "events", "name": "ingest"}


def test_an_admin_revokes_after_a_confirmation(client: Client, team: Team) -> None:
    grant = a_grant(team, partners(), kind="dataset", name="*")
    client.force_login(team.users["admin"])
    url = REVOKE.format(tenant=team.slug, grant=grant.pk)
    confirm = client.get(url)
    assert confirm.status_code == 200
    assert "every dataset of Acme" in confirm.content.decode()
    done = client.post(url, follow=True)
    assert "partners no longer sees dataset *." in done.content.decode()
    assert not Grant.objects.dangerously_unscoped().exists()
    [entry] = AuditEvent.objects.dangerously_unscoped().filter(
        tenant=team.tenant, action="grant.delete"
    )
    assert entry.source == "portal"


@pytest.mark.parametrize(
    ("form", "field", "said"),
    [
        ({"grantee": "nobody", "kind": "events", "name": "x"}, "f-grantee", "no other tenant"),
        ({"grantee": "acme", "kind": "events", "name": "x"}, "f-grantee", "no other tenant"),
        ({"grantee": "partners", "kind": "tables", "name": "x"}, "f-kind", "accepted: events"),
        ({"grantee": "partners", "kind": "events", "name": ""}, "f-name", "or &quot;*&quot;"),
    ],
)
def test_a_bad_grant_is_shown_again_with_its_error(
    client: Client, team: Team, form: dict[str, str], field: str, said: str
) -> None:
    partners()
    client.force_login(team.users["admin"])
    before = tenant_state(team.tenant)
    response = client.post(NEW.format(tenant=team.slug), form)
    assert response.status_code == 400
    text = response.content.decode()
    assert said in text
    assert f'id="{field}-error"' in text
    assert tenant_state(team.tenant) == before


def test_the_same_grant_twice_is_a_conflict(client: Client, team: Team) -> None:
    other = partners()
    a_grant(team, other)
    client.force_login(team.users["admin"])
    form = {"grantee": "partners", "kind": "events", "name": "ingest"}
    response = client.post(NEW.format(tenant=team.slug), form)
    assert response.status_code == 409
    assert "already shares" in response.content.decode()


def test_roles_too_low_get_403_and_others_404(client: Client, team: Team, outsider: Team) -> None:
    other = partners()
    given = a_grant(team, other)
    received = a_grant(other, team, kind="dataset", name="warehouse.sales")
    before = tenant_state(team.tenant), tenant_state(other.tenant)
    form = {"grantee": "partners", "kind": "events", "name": "*"}
    client.force_login(team.users["editor"])
    assert client.post(NEW.format(tenant=team.slug), form).status_code == 403
    assert client.post(REVOKE.format(tenant=team.slug, grant=given.pk)).status_code == 403
    client.force_login(team.users["admin"])  # a grant received is not this tenant's to revoke
    for grant in (received.pk, "x", 2**70):
        url = REVOKE.format(tenant=team.slug, grant=grant)
        assert client.get(url).status_code == 404
        assert client.post(url).status_code == 404
    client.force_login(outsider.owner)
    assert client.get(SHARING.format(tenant=team.slug)).status_code == 404
    assert client.post(NEW.format(tenant=team.slug), form).status_code == 404
    assert client.post(REVOKE.format(tenant=team.slug, grant=given.pk)).status_code == 404
    assert (tenant_state(team.tenant), tenant_state(other.tenant)) == before
