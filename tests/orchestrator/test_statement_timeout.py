"""On PostgreSQL, a query of an API request that runs past API_STATEMENT_TIMEOUT_MS is
cancelled: REST answers 503 problem+json, GraphQL a TIMEOUT error, and the web process's
connection, reused by the next request, is back to no timeout."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import psycopg2
import pytest
from django.db import connection

from tests.harness import assert_problem, gql, make_team, send

pytestmark = pytest.mark.django_db(transaction=True)


@pytest.fixture
def workflows_locked() -> Iterator[None]:
    """Another session holds the workflows table, so any read of it waits (and times out)."""
    params = connection.get_connection_params()
    other = psycopg2.connect(**params)
    try:
        with other.cursor() as cursor:
            cursor.execute("BEGIN; LOCK TABLE workflows_workflow IN ACCESS EXCLUSIVE MODE")
        yield
    finally:
        other.rollback()
        other.close()


def server_timeout() -> str:
    with connection.cursor() as cursor:
        cursor.execute("SHOW statement_timeout")
        return str(cursor.fetchone()[0])


def test_a_slow_rest_query_is_a_503_and_the_timeout_does_not_stay(
    settings: Any, workflows_locked: None
) -> None:
    team = make_team("slow")
    settings.API_STATEMENT_TIMEOUT_MS = 300
    response = send(team.tokens["viewer"], "GET", f"/api/v1/tenants/{team.slug}/workflows/")
    body = assert_problem(response, 503)
    assert body["type"] == "urn:orchestrator:problem:statement-timeout"
    assert "longer than 300 ms" in body["detail"]
    assert server_timeout() == "0"  # the connection the next request reuses


def test_a_slow_graphql_query_is_a_timeout_error(settings: Any, workflows_locked: None) -> None:
    team = make_team("slowgql")
    settings.API_STATEMENT_TIMEOUT_MS = 300
    body = gql(team.tokens["viewer"], '{ workflows(tenant: "slowgql") { name } }').json()
    [error] = body["errors"]
    assert error["extensions"]["code"] == "TIMEOUT"
    assert "longer than 300 ms" in error["message"]
    assert server_timeout() == "0"


def test_requests_within_the_timeout_run_with_it_set(settings: Any) -> None:
    team = make_team("quick")
    settings.API_STATEMENT_TIMEOUT_MS = 4321
    seen: list[str] = []

    def spy(execute: Any, sql: str, params: Any, many: bool, context: Any) -> Any:
        if "workflows_workflow" in sql:
            with connection.cursor() as cursor:
                cursor.cursor.execute("SHOW statement_timeout")
                seen.append(str(cursor.cursor.fetchone()[0]))
        return execute(sql, params, many, context)

    with connection.execute_wrapper(spy):
        response = send(team.tokens["viewer"], "GET", f"/api/v1/tenants/{team.slug}/workflows/")
    assert response.status_code == 200
    assert seen
    assert set(seen) == {"4321ms"}
    assert server_timeout() == "0"
