"""The GraphQL endpoint refuses documents too deep, with too many aliases or too many
tokens, before running them."""

from __future__ import annotations

from typing import Any

import strawberry
from django.conf import settings
from strawberry.extensions import MaxAliasesLimiter, MaxTokensLimiter, QueryDepthLimiter

from orchestrator.graphql.schema import schema
from tests.harness import Team, gql


def _limiters() -> dict[type[Any], Any]:
    made = [factory() for factory in schema.extensions]  # type: ignore[operator]
    return {type(extension): extension for extension in made}


def test_it_runs_the_three_limiters_from_the_settings() -> None:
    limiters = _limiters()
    assert {QueryDepthLimiter, MaxAliasesLimiter, MaxTokensLimiter} <= set(limiters)
    assert limiters[MaxTokensLimiter].max_token_count == settings.GRAPHQL_MAX_TOKENS


def test_it_refuses_more_aliases_than_allowed(team: Team) -> None:
    allowed = settings.GRAPHQL_MAX_ALIASES
    fine = " ".join(f"a{i}: me {{ id }}" for i in range(allowed))
    assert len(gql(team.tokens["viewer"], f"{{ {fine} }}").json()["data"]) == allowed
    too_many = " ".join(f"a{i}: me {{ id }}" for i in range(allowed + 1))
    body = gql(team.tokens["viewer"], f"{{ {too_many} }}").json()
    assert body["data"] is None
    assert f"{allowed + 1} aliases found" in body["errors"][0]["message"]


def test_it_refuses_more_tokens_than_allowed(team: Team) -> None:
    fields = " ".join(["id"] * settings.GRAPHQL_MAX_TOKENS)
    body = gql(team.tokens["viewer"], f"{{ me {{ {fields} }} }}").json()
    assert body["data"] is None
    assert "token" in body["errors"][0]["message"].lower()


@strawberry.type
class Node:
    @strawberry.field
    def child(self) -> Node:
        return Node()

    @strawberry.field
    def leaf(self) -> int:
        return 1


@strawberry.type
class DeepQuery:
    @strawberry.field
    def node(self) -> Node:
        return Node()


def test_it_refuses_a_query_deeper_than_allowed() -> None:
    """The real schema is too shallow to exceed the limit: run its extensions on a schema
    that can nest without end."""
    deep = strawberry.Schema(query=DeepQuery, extensions=schema.extensions)
    limit = settings.GRAPHQL_MAX_DEPTH

    def nested(depth: int) -> str:
        return "{ node { " + "child { " * (depth - 1) + "leaf" + " }" * depth + " }"

    assert deep.execute_sync(nested(limit)).errors is None
    result = deep.execute_sync(nested(limit + 1))
    assert result.errors is not None
    assert f"exceeds maximum operation depth of {limit}" in result.errors[0].message
