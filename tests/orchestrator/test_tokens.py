"""API tokens: stored hashed, bound to one tenant, capped at their own role, refused when
expired or revoked, and their last use recorded."""

from __future__ import annotations

import datetime as dt
import hashlib

import pytest
from django.utils import timezone

from orchestrator.models import ApiToken, AuditEvent, Membership
from tests.harness import (
    Team,
    api,
    assert_problem,
    bad_credential,
    make_token,
    send,
    token_row,
)


def test_it_stores_only_a_hash_of_the_token(team: Team) -> None:
    stored = [
        str(value)
        for model in (ApiToken, AuditEvent)
        for row in model.objects.dangerously_unscoped().values()
        for value in row.values()
    ]
    for raw in team.tokens.values():
        row = token_row(raw)
        assert raw.startswith(f"orc_{row.prefix}_")
        assert row.token_hash == hashlib.sha256(raw.encode()).hexdigest()
        secret = raw.split("_", 2)[2]
        assert not any(secret in value for value in stored)


def test_it_acts_with_the_tokens_role_when_that_is_below_its_holders(team: Team) -> None:
    raw = make_token(team.tenant, team.owner, "editor")
    url = f"/api/v1/tenants/{team.slug}/"
    assert send(raw, "GET", url).json()["role"] == "editor"
    assert_problem(send(raw, "PATCH", url, {"name": "Mine"}), 403)
    assert_problem(send(raw, "GET", f"{url}tokens/"), 403)
    body = {"username": "acme-viewer", "role": "viewer"}
    assert_problem(send(raw, "POST", f"{url}members/", body), 403)
    assert send(raw, "GET", f"{url}members/").status_code == 200


def test_it_acts_with_its_holders_role_when_that_was_lowered(team: Team) -> None:
    raw = make_token(team.tenant, team.users["admin"], "admin")
    Membership.objects.dangerously_unscoped().filter(user=team.users["admin"]).update(role="viewer")
    assert_problem(send(raw, "GET", f"/api/v1/tenants/{team.slug}/tokens/"), 403)


def test_it_refuses_an_expired_token(team: Team) -> None:
    raw = bad_credential(team, "expired")
    response = send(raw, "GET", "/api/v1/me")
    assert_problem(response, 401)
    assert response.json()["detail"] == "token expired"
    assert response["WWW-Authenticate"] == 'Bearer realm="orchestrator"'


def test_it_accepts_a_token_until_it_expires(team: Team) -> None:
    raw = make_token(
        team.tenant, team.owner, "viewer", expires_at=timezone.now() + dt.timedelta(minutes=5)
    )
    assert send(raw, "GET", "/api/v1/me").status_code == 200


def test_it_refuses_a_revoked_token(team: Team) -> None:
    raw = bad_credential(team, "revoked")
    assert assert_problem(send(raw, "GET", "/api/v1/me"), 401)["detail"] == "token revoked"


def test_it_refuses_a_token_whose_user_is_deactivated(team: Team) -> None:
    team.users["viewer"].is_active = False
    team.users["viewer"].save()
    assert_problem(send(team.tokens["viewer"], "GET", "/api/v1/me"), 401)


def test_it_refuses_a_token_with_a_known_prefix_and_a_wrong_secret(team: Team) -> None:
    raw = team.tokens["owner"]
    forged = raw[:-4] + ("AAAA" if not raw.endswith("AAAA") else "BBBB")
    assert assert_problem(send(forged, "GET", "/api/v1/me"), 401)["detail"] == "invalid token"


@pytest.mark.parametrize(
    "header", ["Basic dXNlcjpwYXNz", "Bearer", "Bearer orc_short_x", "Token abc", "bearer  "]
)
def test_it_refuses_another_scheme_or_garbage(team: Team, header: str) -> None:
    assert_problem(api(Authorization=header).get("/api/v1/me"), 401)


def test_it_records_the_last_use(team: Team) -> None:
    raw = team.tokens["viewer"]
    assert token_row(raw).last_used_at is None
    started = timezone.now()
    assert send(raw, "GET", "/api/v1/me").status_code == 200
    used = token_row(raw).last_used_at
    assert used is not None
    assert started <= used <= timezone.now()
    send(raw, "GET", "/api/v1/me")
    assert token_row(raw).last_used_at == used  # at most one write per minute


def test_it_records_no_use_of_a_refused_token(team: Team) -> None:
    raw = bad_credential(team, "revoked")
    send(raw, "GET", "/api/v1/me")
    assert token_row(str(raw)).last_used_at is None
