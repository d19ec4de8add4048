"""/api/v1/tenants/{tenant}/audit-events/: admins read the log, filtered and paged."""

from __future__ import annotations

import datetime as dt
from urllib.parse import urlencode

import pytest
from django.utils import timezone

from orchestrator.models import AuditEvent
from tests.harness import (
    EndpointCase,
    EndpointSuite,
    Team,
    assert_problem,
    send,
    token_row,
)

EVENTS = "/api/v1/tenants/{tenant}/audit-events/"


def an_event(team: Team) -> dict[str, str]:
    event = AuditEvent.objects.dangerously_unscoped().filter(tenant=team.tenant).first()
    assert event is not None
    return {"id": str(event.pk)}


class TestAuditEventsEndpoint(EndpointSuite):
    cases = [
        EndpointCase("list", "GET", EVENTS, "admin"),
        EndpointCase("retrieve", "GET", EVENTS + "{id}/", "admin", setup=an_event),
    ]


def _events(team: Team, **params: object) -> list[dict[str, object]]:
    url = f"/api/v1/tenants/{team.slug}/audit-events/?{urlencode(params)}"
    response = send(team.tokens["admin"], "GET", url)
    assert response.status_code == 200, response.content
    results: list[dict[str, object]] = response.json()["results"]
    return results


@pytest.fixture
def history(team: Team) -> dict[str, object]:
    """A few changes over the API after the team was made: two tokens, one revoked."""
    tokens_url = f"/api/v1/tenants/{team.slug}/tokens/"
    started = timezone.now()
    first = send(team.tokens["admin"], "POST", tokens_url, {"name": "a", "role": "viewer"})
    second = send(team.tokens["owner"], "POST", tokens_url, {"name": "b", "role": "viewer"})
    send(team.tokens["admin"], "DELETE", f"{tokens_url}{first.json()['prefix']}/")
    return {"started": started, "first": first.json(), "second": second.json()}


def test_it_lists_the_tenants_events_newest_first(team: Team, outsider: Team) -> None:
    events = _events(team, limit=500)
    seqs = [e["seq"] for e in events]
    assert seqs == sorted(seqs, reverse=True)
    assert seqs[-1] == 1
    assert (
        len(events) == AuditEvent.objects.dangerously_unscoped().filter(tenant=team.tenant).count()
    )
    assert not {e["id"] for e in events} & set(
        AuditEvent.objects.dangerously_unscoped()
        .filter(tenant=outsider.tenant)
        .values_list("id", flat=True)
    )


def test_it_filters_by_actor(team: Team, history: dict[str, object]) -> None:
    events = _events(team, actor="acme-admin")
    assert [e["action"] for e in events] == ["token.revoke", "token.create"]
    assert {e["actor"] for e in events} == {"acme-admin"}


def test_it_filters_by_action_exactly_or_by_prefix(team: Team, history: dict[str, object]) -> None:
    created = _events(team, action="token.create")
    assert {e["action"] for e in created} == {"token.create"}
    assert len(created) == 5 + 2  # one per role when the team was made, then two
    everything_token = _events(team, action="token.")
    assert {e["action"] for e in everything_token} == {"token.create", "token.revoke"}
    assert len(everything_token) == len(created) + 1
    assert _events(team, action="token") == []


def test_it_filters_by_object_type_and_id(team: Team, history: dict[str, object]) -> None:
    token_id = token_row(str(history["first"]["token"])).pk  # type: ignore[index]
    by_type = _events(team, object="apitoken")
    assert len(by_type) == 5 + 2 + 1
    by_id = _events(team, object=f"apitoken:{token_id}")
    assert [e["action"] for e in by_id] == ["token.revoke", "token.create"]
    assert {e["object_id"] for e in by_id} == {str(token_id)}


def test_it_filters_by_time(team: Team, history: dict[str, object]) -> None:
    since = history["started"]
    assert isinstance(since, dt.datetime)
    assert len(_events(team, since=since.isoformat())) == 3
    assert _events(team, since=(timezone.now() + dt.timedelta(hours=1)).isoformat()) == []
    assert len(_events(team, until=since.isoformat())) == len(_events(team)) - 3


def test_it_pages_with_a_cursor(team: Team) -> None:
    url = f"/api/v1/tenants/{team.slug}/audit-events/?limit=4"
    seen: list[int] = []
    pages = 0
    while url:
        body = send(team.tokens["admin"], "GET", url).json()
        assert len(body["results"]) <= 4
        seen += [e["seq"] for e in body["results"]]
        url, pages = body["next"], pages + 1
    total = AuditEvent.objects.dangerously_unscoped().filter(tenant=team.tenant).count()
    assert seen == list(range(total, 0, -1))
    assert pages == -(-total // 4)


@pytest.mark.parametrize(
    ("params", "path"),
    [
        ({"limit": "0"}, "limit"),
        ({"limit": "501"}, "limit"),
        ({"limit": "ten"}, "limit"),
        ({"cursor": "not-a-cursor"}, "cursor"),
        ({"since": "yesterday"}, "since"),
        ({"since": "2026-01-01T08:00:00"}, "since"),
        ({"until": "soon"}, "until"),
    ],
    ids=["zero", "too-many", "not-a-number", "bad-cursor", "bad-since", "naive-since", "bad-until"],
)
def test_it_refuses_bad_query_parameters(team: Team, params: dict[str, str], path: str) -> None:
    url = f"/api/v1/tenants/{team.slug}/audit-events/?{urlencode(params)}"
    assert_problem(send(team.tokens["admin"], "GET", url), 400, path=path)


def test_it_masks_secrets_in_the_changes(team: Team, history: dict[str, object]) -> None:
    [event] = _events(team, action="token.create", actor="acme-owner")
    after = event["changes"]["after"]  # type: ignore[index]
    assert after["token_hash"] == "********"
    assert after["name"] == "b"
