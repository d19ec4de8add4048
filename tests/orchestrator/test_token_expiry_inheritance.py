"""A token never outlives the token that minted it: an expiring token mints only tokens
that expire too, at or before its own expiry (refused, naming `expires_at`, otherwise),
through REST and GraphQL alike."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from django.utils import timezone

from orchestrator.models import ApiToken
from tests.harness import Team, assert_problem, gql, make_token, send, tenant_state, token_row

CREATE_TOKEN = (
    'mutation($t: String!, $e: DateTime) { createToken(tenant: $t, name: "child", '
    'role: "viewer", expiresAt: $e) { apiToken { prefix expiresAt } } }'
)


def _expiring_admin_token(team: Team, seconds: int = 3600) -> tuple[str, dt.datetime]:
    expires_at = timezone.now() + dt.timedelta(seconds=seconds)
    raw = make_token(team.tenant, team.users["admin"], "admin", expires_at=expires_at)
    return raw, expires_at


def _post(raw: str, team: Team, expires_at: dt.datetime | None) -> Any:
    body: dict[str, Any] = {"name": "child", "role": "viewer"}
    if expires_at is not None:
        body["expires_at"] = expires_at.isoformat()
    return send(raw, "POST", f"/api/v1/tenants/{team.slug}/tokens/", body)


@pytest.mark.parametrize("seconds", [4, 3600])
def test_an_expiring_token_cannot_mint_a_token_without_expiry(team: Team, seconds: int) -> None:
    parent, parent_expiry = _expiring_admin_token(team, seconds)
    before = tenant_state(team.tenant)
    body = assert_problem(_post(parent, team, None), 400, path="expires_at")
    [error] = body["errors"]
    assert parent_expiry.isoformat() in error["message"]
    assert tenant_state(team.tenant) == before


def test_an_expiring_token_cannot_mint_a_token_that_outlives_it(team: Team) -> None:
    parent, parent_expiry = _expiring_admin_token(team)
    before = tenant_state(team.tenant)
    later = parent_expiry + dt.timedelta(seconds=1)
    assert_problem(_post(parent, team, later), 400, path="expires_at")
    assert tenant_state(team.tenant) == before


def test_an_expiring_token_mints_a_token_that_expires_with_it_or_before(team: Team) -> None:
    parent, parent_expiry = _expiring_admin_token(team)
    for expires_at in (parent_expiry, parent_expiry - dt.timedelta(minutes=5)):
        response = _post(parent, team, expires_at)
        assert response.status_code == 201, response.content
        assert token_row(response.json()["token"]).expires_at == expires_at


def test_a_token_without_expiry_mints_one_without_expiry(team: Team) -> None:
    response = _post(team.tokens["admin"], team, None)
    assert response.status_code == 201, response.content
    assert token_row(response.json()["token"]).expires_at is None


def test_graphql_applies_the_same_rule(team: Team) -> None:
    parent, parent_expiry = _expiring_admin_token(team)
    before = tenant_state(team.tenant)
    for expires_at in (None, (parent_expiry + dt.timedelta(days=1)).isoformat()):
        body = gql(parent, CREATE_TOKEN, {"t": team.slug, "e": expires_at}).json()
        [error] = body["errors"]
        assert error["extensions"]["code"] == "BAD_USER_INPUT"
        assert [e["path"] for e in error["extensions"]["errors"]] == ["expires_at"]
    assert tenant_state(team.tenant) == before
    body = gql(parent, CREATE_TOKEN, {"t": team.slug, "e": parent_expiry.isoformat()}).json()
    prefix = body["data"]["createToken"]["apiToken"]["prefix"]
    assert ApiToken.objects.dangerously_unscoped().get(prefix=prefix).expires_at == parent_expiry
