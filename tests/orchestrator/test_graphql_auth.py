"""/graphql authenticates as REST does: a bad bearer token is an HTTP 401, no credentials
is UNAUTHENTICATED, a browser session must pass the CSRF check."""

from __future__ import annotations

import pytest
from django.test import Client

from tests.harness import BAD_CREDENTIALS, Team, bad_credential, gql, tenant_state

ADD_MEMBER = 'mutation { addMember(tenant: "acme", username: "acme-viewer", role: "owner") { id } }'


@pytest.mark.parametrize("kind", [k for k in BAD_CREDENTIALS if k != "missing"])
def test_it_refuses_a_bad_token_with_401(team: Team, kind: str) -> None:
    raw = bad_credential(team, kind)
    before = tenant_state(team.tenant)
    for document in ("{ me { username } }", ADD_MEMBER):
        response = gql(raw, document)
        assert response.status_code == 401
        body = response.json()
        assert body["data"] is None
        assert body["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
    assert tenant_state(team.tenant) == before


@pytest.mark.parametrize("document", ["{ me { username } }", "{ tenants { slug } }", ADD_MEMBER])
def test_it_answers_unauthenticated_without_credentials(team: Team, document: str) -> None:
    before = tenant_state(team.tenant)
    body = gql(None, document).json()
    assert body["data"] is None
    assert body["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
    assert tenant_state(team.tenant) == before


def test_it_accepts_a_session_that_passes_the_csrf_check(team: Team) -> None:
    client = Client()
    client.force_login(team.users["viewer"])
    response = client.post(
        "/graphql", {"query": "{ me { username } }"}, content_type="application/json"
    )
    assert response.json()["data"]["me"]["username"] == "acme-viewer"


def test_it_refuses_a_session_without_a_csrf_token(team: Team) -> None:
    client = Client(enforce_csrf_checks=True)
    client.force_login(team.users["admin"])
    before = tenant_state(team.tenant)
    response = client.post("/graphql", {"query": ADD_MEMBER}, content_type="application/json")
    assert response.status_code == 403
    assert response.json()["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    assert tenant_state(team.tenant) == before
