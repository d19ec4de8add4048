"""A caller's X-Request-ID is kept only when the whole value is a well-formed id: 1 to 64
ASCII letters, digits and `.`, `_`, `:`, `-`. Anything else is replaced by a new id."""

from __future__ import annotations

import re

import pytest

from tests.harness import Team, api, new_audit_events

NEW_ID = re.compile(r"[0-9a-f]{32}")


@pytest.mark.parametrize(
    "incoming",
    [
        "a",
        "A" * 64,
        "00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-01",  # a W3C traceparent
        "deploy_42.retry:3",
    ],
)
def test_it_keeps_a_well_formed_request_id(team: Team, incoming: str) -> None:
    response = api(team.tokens["viewer"], **{"X-Request-ID": incoming}).get("/api/v1/me")
    assert response.status_code == 200
    assert response["X-Request-ID"] == incoming


@pytest.mark.parametrize(
    "incoming",
    [
        "a" * 65,
        "abc\n",  # a trailing newline: a forged log line
        "abc\x00",
        "ab\tc",
        "ab c",
        "caf\u00e9",
        "\u00b2",  # a Unicode digit
        "a/b",
        "<script>",
    ],
    ids=[
        "too-long",
        "newline",
        "nul",
        "tab",
        "space",
        "non-ascii",
        "unicode-digit",
        "slash",
        "markup",
    ],
)
def test_it_replaces_a_malformed_request_id(team: Team, incoming: str) -> None:
    response = api(team.tokens["viewer"], **{"X-Request-ID": incoming}).get("/api/v1/me")
    assert response.status_code == 200
    assert NEW_ID.fullmatch(response["X-Request-ID"])


def test_the_audit_log_records_the_replacement_not_the_malformed_id(team: Team) -> None:
    count = len(new_audit_events(team.tenant, 0))
    client = api(team.tokens["admin"], **{"X-Request-ID": "deploy-42\n"})
    url = f"/api/v1/tenants/{team.slug}/tokens/"
    response = client.post(url, {"name": "x", "role": "viewer"}, content_type="application/json")
    assert response.status_code == 201
    [event] = new_audit_events(team.tenant, count)
    assert event.request_id == response["X-Request-ID"]
    assert NEW_ID.fullmatch(event.request_id)
