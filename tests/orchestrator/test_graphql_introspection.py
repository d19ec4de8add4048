"""GRAPHQL_INTROSPECTION decides who may read the schema: "on" anyone, "authenticated"
(the default without DEBUG) a token or a session, "off" nobody. `__typename` always works."""

from __future__ import annotations

import os
import subprocess
import sys
from typing import Any

import pytest

from tests.harness import Team, gql

INTROSPECT = "{ __schema { queryType { name } } }"
TYPE = '{ __type(name: "RunType") { name } }'


def test_the_default_is_authenticated_without_debug_and_on_with_it() -> None:
    code = "from django.conf import settings; print(settings.GRAPHQL_INTROSPECTION)"
    for debug, expected in (("0", "authenticated"), ("1", "on")):
        env = {**os.environ, "DEBUG": debug, "DJANGO_SETTINGS_MODULE": "orchestrator.settings"}
        env.pop("GRAPHQL_INTROSPECTION", None)
        out = subprocess.run(
            [sys.executable, "-c", f"import django; django.setup(); {code}"],
            env=env,
            capture_output=True,
            text=True,
            check=True,
        )
        assert out.stdout.strip() == expected


@pytest.mark.parametrize("document", [INTROSPECT, TYPE])
def test_anonymous_callers_cannot_introspect_when_authenticated(
    team: Team, settings: Any, document: str
) -> None:
    settings.GRAPHQL_INTROSPECTION = "authenticated"
    body = gql(None, document).json()
    assert body["data"] is None
    assert body["errors"][0]["extensions"]["code"] == "UNAUTHENTICATED"
    assert "introspection" in body["errors"][0]["message"]
    signed_in = gql(team.tokens["viewer"], document).json()
    assert "errors" not in signed_in, signed_in


def test_off_refuses_everyone(team: Team, settings: Any) -> None:
    settings.GRAPHQL_INTROSPECTION = "off"
    body = gql(team.tokens["owner"], INTROSPECT).json()
    assert body["errors"][0]["extensions"]["code"] == "FORBIDDEN"
    assert gql(team.tokens["owner"], "{ me { __typename username } }").json()["data"]["me"] == {
        "__typename": "MeType",
        "username": "acme-owner",
    }


def test_on_lets_anyone_introspect(db: None, settings: Any) -> None:
    settings.GRAPHQL_INTROSPECTION = "on"
    body = gql(None, INTROSPECT).json()
    assert body["data"]["__schema"]["queryType"]["name"] == "Query"
