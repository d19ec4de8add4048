"""Every REST error is application/problem+json naming what was wrong and what would be
accepted; bad input changes nothing; every response carries an X-Request-ID."""

from __future__ import annotations

import re

import pytest
from django.test import Client

from tests.harness import Team, api, assert_problem, new_audit_events, send, tenant_state


@pytest.mark.parametrize(
    ("body", "path"),
    [
        ('{"name": ', ""),
        ("[1, 2]", ""),
        ('"just a string"', ""),
    ],
    ids=["malformed-json", "a-list", "a-string"],
)
def test_it_refuses_a_body_that_is_not_a_json_object(team: Team, body: str, path: str) -> None:
    before = tenant_state(team.tenant)
    url = f"/api/v1/tenants/{team.slug}/"
    problem = assert_problem(send(team.tokens["owner"], "PATCH", url, body), 400)
    assert problem["detail"]
    assert tenant_state(team.tenant) == before


def test_it_names_an_unknown_field_and_the_accepted_ones(team: Team) -> None:
    before = tenant_state(team.tenant)
    url = f"/api/v1/tenants/{team.slug}/tokens/"
    body = {"name": "x", "role": "viewer", "scopes": ["all"]}
    problem = assert_problem(send(team.tokens["admin"], "POST", url, body), 400, path="scopes")
    [error] = problem["errors"]
    assert error["message"].startswith("unknown field; accepted: name, role, service_account")
    assert "scopes" in problem["detail"]
    assert tenant_state(team.tenant) == before


def test_it_refuses_an_over_long_string_with_its_path(team: Team) -> None:
    before = tenant_state(team.tenant)
    url = f"/api/v1/tenants/{team.slug}/"
    problem = assert_problem(
        send(team.tokens["owner"], "PATCH", url, {"name": "x" * 201}), 400, path="name"
    )
    assert "200" in problem["errors"][0]["message"]
    assert tenant_state(team.tenant) == before


@pytest.mark.parametrize(
    ("value", "called"),
    [(5, "a number (5)"), (True, "a boolean"), (["x"], "a list"), ({"x": 1}, "an object")],
    ids=["number", "boolean", "list", "object"],
)
def test_it_refuses_what_is_not_a_string_in_a_text_field(
    team: Team, value: object, called: str
) -> None:
    """DRF alone stores the number 5 as "5": a client's mistake would pass unseen."""
    before = tenant_state(team.tenant)
    url = f"/api/v1/tenants/{team.slug}/"
    problem = assert_problem(
        send(team.tokens["owner"], "PATCH", url, {"name": value}), 400, path="name"
    )
    assert problem["errors"][0]["message"] == f"expected a string, not {called}"
    assert tenant_state(team.tenant) == before


def test_it_reports_nested_paths_with_dots(team: Team) -> None:
    url = f"/api/v1/tenants/{team.slug}/"
    body = {"quotas": {"max_tokens": "many"}}
    assert_problem(send(team.tokens["owner"], "PATCH", url, body), 400, path="quotas.max_tokens")


def test_it_has_the_problem_shape(team: Team) -> None:
    url = f"/api/v1/tenants/{team.slug}/tokens/"
    problem = assert_problem(send(team.tokens["admin"], "POST", url, {"role": "viewer"}), 400)
    assert set(problem) == {"type", "title", "status", "detail", "errors"}
    assert problem["type"] == "urn:orchestrator:problem:validation-error"
    assert problem["title"] == "Bad Request"
    assert problem["errors"] == [{"path": "name", "message": "This field is required."}]


@pytest.mark.parametrize(
    ("method", "url", "status", "kind"),
    [
        ("GET", "/api/v1/tenants/nowhere/", 404, "not-found"),
        ("GET", "/api/v1/tenants/acme/members/nobody/", 404, "not-found"),
        ("PUT", "/api/v1/tenants/acme/", 405, "method-not-allowed"),
        ("PATCH", "/api/v1/tenants/acme/", 403, "permission-denied"),
    ],
)
def test_it_answers_every_error_with_a_problem(
    team: Team, method: str, url: str, status: int, kind: str
) -> None:
    problem = assert_problem(send(team.tokens["viewer"], method, url, {}), status)
    assert set(problem) == {"type", "title", "status", "detail"}
    assert problem["type"] == f"urn:orchestrator:problem:{kind}"


@pytest.mark.django_db
def test_it_authenticates_before_it_parses_the_body() -> None:
    response = api().generic("POST", "/api/v1/tenants/", "{", content_type="application/json")
    assert_problem(response, 401)


def test_it_refuses_a_body_that_is_not_json(team: Team) -> None:
    url = f"/api/v1/tenants/{team.slug}/"
    response = api(team.tokens["owner"]).generic("PATCH", url, "name=x", content_type="text/plain")
    refused = assert_problem(response, 415)
    assert refused["detail"].endswith("; accepted: application/json")


def test_it_sends_a_request_id_with_every_response(team: Team) -> None:
    ok = send(team.tokens["viewer"], "GET", "/api/v1/me")
    failed = send(None, "GET", "/api/v1/me")
    for response in (ok, failed):
        assert re.fullmatch(r"[0-9a-f]{32}", response["X-Request-ID"])
    assert ok["X-Request-ID"] != failed["X-Request-ID"]


def test_it_keeps_a_well_formed_request_id_and_replaces_a_malformed_one(team: Team) -> None:
    kept = api(team.tokens["viewer"], **{"X-Request-ID": "caller-1234.5:a"}).get("/api/v1/me")
    assert kept["X-Request-ID"] == "caller-1234.5:a"
    replaced = api(team.tokens["viewer"], **{"X-Request-ID": "bad id; drop"}).get("/api/v1/me")
    assert re.fullmatch(r"[0-9a-f]{32}", replaced["X-Request-ID"])
    too_long = api(team.tokens["viewer"], **{"X-Request-ID": "a" * 129}).get("/api/v1/me")
    assert too_long["X-Request-ID"] != "a" * 129


def test_it_audits_with_the_callers_request_id(team: Team) -> None:
    count = len(new_audit_events(team.tenant, 0))
    client = api(team.tokens["admin"], **{"X-Request-ID": "deploy-42"})
    url = f"/api/v1/tenants/{team.slug}/tokens/"
    response = client.post(url, {"name": "x", "role": "viewer"}, content_type="application/json")
    assert response.status_code == 201
    [event] = new_audit_events(team.tenant, count)
    assert event.request_id == "deploy-42"


def test_it_answers_an_unknown_api_path_with_problem_json(client: Client) -> None:
    response = client.get("/api/v1/nothing-here/")
    assert response.status_code == 404
    assert response["Content-Type"] == "application/problem+json"
    assert response.json()["detail"] == "no API endpoint at /api/v1/nothing-here/"
