"""GraphQL errors the caller caused carry `extensions.classification` BAD_REQUEST beside
their code (docs/api.md, "Fuzzing"), so generic clients and fuzzers do not take them for
failures of the server; and a query that does not validate is not logged as an error."""

from __future__ import annotations

import logging

import pytest

from tests.harness import Team, api, gql, gql_error


def test_a_not_found_is_classified_as_the_callers_error(team: Team) -> None:
    response = gql(team.tokens["viewer"], '{ workflow(tenant: "nowhere", name: "x") { name } }')
    assert gql_error(response)["extensions"] == {
        "code": "NOT_FOUND",
        "classification": "BAD_REQUEST",
    }


def test_bad_input_is_classified_as_the_callers_error(team: Team) -> None:
    response = gql(
        team.tokens["viewer"], f'{{ workflows(tenant: "{team.slug}", limit: 0) {{ name }} }}'
    )
    error = gql_error(response)
    assert (error["extensions"]["code"], error["extensions"]["classification"]) == (
        "BAD_USER_INPUT",
        "BAD_REQUEST",
    )


def test_a_refused_token_is_classified_as_the_callers_error(db: None) -> None:
    response = api("orc_not-a-token").post(
        "/graphql", {"query": "{ me { username } }"}, content_type="application/json"
    )
    assert response.status_code == 401
    assert gql_error(response)["extensions"] == {
        "code": "UNAUTHENTICATED",
        "classification": "BAD_REQUEST",
    }


def test_a_query_that_does_not_validate_logs_no_error(
    team: Team, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.ERROR):
        response = gql(team.tokens["viewer"], "{ workflows(tenant: 40) { name } }")
    assert "errors" in response.json()
    assert [r for r in caplog.records if r.levelno >= logging.ERROR] == []
