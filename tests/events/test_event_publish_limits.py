"""Publishing's edges: data above EVENT_MAX_BYTES and a well-formed but impossible time are
refused with their paths (nothing stored), a time without a zone is UTC, any JSON is data,
and the audit entry names the event without its data."""

from __future__ import annotations

from typing import Any

import pytest
from django.conf import LazySettings

from orchestrator.models import AuditEvent
from runs.models import Event
from tests.harness import Team, assert_problem, send, tenant_state

pytestmark = pytest.mark.django_db

EVENTS = "/api/v1/tenants/{tenant}/events/"


def _publish(team: Team, body: dict[str, Any]) -> Any:
    return send(team.tokens["operator"], "POST", EVENTS.format(tenant=team.slug), body)


@pytest.mark.parametrize(
    ("extra", "path"),
    [
        ({"data": {"blob": "x" * 300}}, "data"),
        ({"time": "2026-13-01T00:00:00Z"}, "time"),
        ({"subject": "s" * 501}, "subject"),
        ({"id": "i" * 201}, "id"),
    ],
)
def test_it_refuses_what_is_too_large_or_impossible(
    team: Team, settings: LazySettings, extra: dict[str, Any], path: str
) -> None:
    settings.EVENT_MAX_BYTES = 256
    before = tenant_state(team.tenant)
    problem = assert_problem(_publish(team, {"type": "com.acme.x", "source": "/a", **extra}), 400)
    assert [e["path"] for e in problem["errors"]] == [path]
    assert tenant_state(team.tenant) == before


@pytest.mark.parametrize("data", [[1, 2], "text", 3.5, None, {"nested": {"a": [True]}}])
def test_any_json_is_data(team: Team, data: Any) -> None:
    response = _publish(team, {"type": "com.acme.x", "source": "/a", "data": data})
    assert response.status_code == 201, response.content
    assert response.json()["data"] == ({} if data is None else data)


def test_a_time_without_a_zone_is_utc(team: Team) -> None:
    body = {"type": "com.acme.x", "source": "/a", "time": "2026-12-01T10:00:00"}
    response = _publish(team, body)
    assert response.status_code == 201, response.content
    assert response.json()["time"] == "2026-12-01T10:00:00+00:00"


def test_the_audit_entry_names_the_event_but_not_its_data(team: Team) -> None:
    body = {
        "type": "com.acme.x",
        "source": "/a",
        "subject": "s3://b/k",
        "id": "one",
        "data": {"password": "hunter2"},
    }
    response = _publish(team, body)
    assert response.status_code == 201, response.content
    [entry] = AuditEvent.objects.dangerously_unscoped().filter(
        tenant=team.tenant, action="event.publish"
    )
    event = Event.objects.dangerously_unscoped().get(tenant=team.tenant)
    assert (entry.object_type, entry.object_id) == ("event", str(event.pk))
    assert entry.changes["after"] == {
        "type": "com.acme.x",
        "source": "/a",
        "subject": "s3://b/k",
        "id": "one",
    }
    assert "hunter2" not in str(entry.changes)
    assert entry.actor_id == team.users["operator"].pk
