"""/api/v1/tenants/{tenant}/deliveries/: every member reads what was sent where and how it
went, filtered and in cursor pages; operators send a failed delivery again (audited once),
and nothing but a failed one."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from django.utils import timezone

from notifications.models import Delivery
from tests.harness import EndpointCase, EndpointSuite, Team, assert_problem, send, tenant_state
from tests.notifications.objects import (
    a_delivery,
    a_failed_delivery,
    a_run,
    an_email_channel,
    an_event,
    workflow,
)

DELIVERIES = "/api/v1/tenants/{tenant}/deliveries/"
DELIVERY = DELIVERIES + "{delivery_id}/"


@pytest.fixture(autouse=True)
def _loopback_allowed(settings: Any) -> None:
    settings.NOTIFY_ALLOWED_HOSTS = ["127.0.0.1"]


class TestDeliveriesEndpoint(EndpointSuite):
    cases = [
        EndpointCase("list", "GET", DELIVERIES, "viewer"),
        EndpointCase("retrieve", "GET", DELIVERY, "viewer", setup=a_failed_delivery),
        EndpointCase(
            "retry", "POST", DELIVERY + "retry/", "operator", setup=a_failed_delivery,
            audit_action="delivery.retry",
        ),
    ]  # fmt: skip


def _url(team: Team, suffix: str = "") -> str:
    return f"/api/v1/tenants/{team.slug}/deliveries/{suffix}"


def _ids(team: Team, query: str) -> list[int]:
    response = send(team.tokens["viewer"], "GET", _url(team, query))
    assert response.status_code == 200, response.content
    return [d["id"] for d in response.json()["results"]]


def test_it_shows_what_was_sent_where(team: Team) -> None:
    wf = workflow(team, "sales")
    run = a_run(team, wf)
    event = an_event(team, wf, run)
    delivery = a_delivery(team, event=event)
    body = send(team.tokens["viewer"], "GET", _url(team, f"{delivery.pk}/")).json()
    created_at = body.pop("created_at")
    assert body == {
        "id": delivery.pk,
        "event": str(event.uid),
        "event_type": "run.failed",
        "workflow": "sales",
        "run_id": run.pk,
        "channel": "team-slack",
        "channel_kind": "slack",
        "rule": None,
        "kind": "event",
        "suppressed_count": 0,
        "status": "failed",
        "attempts": 3,
        "last_error": "HTTP 500 from 127.0.0.1 (gave up after 3 attempts)",
        "response": "",
        "next_attempt_at": None,
        "sent_at": None,
    }
    assert created_at.startswith(str(timezone.now().year))


def test_it_filters_deliveries(team: Team, outsider: Team) -> None:
    an_email_channel(team)
    sales, stock = workflow(team, "sales"), workflow(team, "stock")
    run = a_run(team, sales)
    failed = a_delivery(team, event=an_event(team, sales, run))
    sent = a_delivery(team, status="sent", event=an_event(team, sales, type="run.succeeded"))
    mailed = a_delivery(team, status="sent", event=an_event(team, stock), channel="team-mail")
    a_delivery(outsider)
    assert _ids(team, "") == [mailed.pk, sent.pk, failed.pk]
    assert _ids(team, "?status=failed") == [failed.pk]
    assert _ids(team, "?status=sent") == [mailed.pk, sent.pk]
    assert _ids(team, "?channel=team-mail") == [mailed.pk]
    assert _ids(team, "?type=run.succeeded") == [sent.pk]
    assert _ids(team, "?workflow=sales") == [sent.pk, failed.pk]
    assert _ids(team, f"?run={run.pk}") == [failed.pk]
    assert _ids(team, "?workflow=sales&status=sent") == [sent.pk]
    assert _ids(team, "?workflow=nope") == []
    Delivery.objects.dangerously_unscoped().filter(pk=failed.pk).update(
        created_at=timezone.now() - dt.timedelta(days=2)
    )
    yesterday = (timezone.now() - dt.timedelta(days=1)).isoformat().replace("+00:00", "Z")
    assert _ids(team, f"?created_after={yesterday}") == [mailed.pk, sent.pk]
    assert _ids(team, f"?created_before={yesterday}") == [failed.pk]


@pytest.mark.parametrize(
    ("query", "path"),
    [
        ("?status=lost", "status"),
        ("?run=abc", "run"),
        ("?type=run.exploded", "type"),
        ("?created_after=yesterday", "created_after"),
        ("?limit=0", "limit"),
        ("?cursor=bogus", "cursor"),
    ],
)
def test_it_refuses_a_bad_filter_naming_it(team: Team, query: str, path: str) -> None:
    assert_problem(send(team.tokens["viewer"], "GET", _url(team, query)), 400, path=path)


def test_it_pages_with_a_cursor(team: Team) -> None:
    made = [a_delivery(team).pk for _ in range(3)]
    first = send(team.tokens["viewer"], "GET", _url(team, "?limit=2")).json()
    assert [d["id"] for d in first["results"]] == made[::-1][:2]
    second = send(team.tokens["viewer"], "GET", first["next"]).json()
    assert [d["id"] for d in second["results"]] == [made[0]]
    assert second["next"] is None


def test_a_retry_sends_a_failed_delivery_again(team: Team) -> None:
    delivery = a_delivery(team)
    response = send(team.tokens["operator"], "POST", _url(team, f"{delivery.pk}/retry/"))
    assert response.status_code == 200, response.content
    assert (response.json()["status"], response.json()["attempts"]) == ("pending", 3)
    delivery.refresh_from_db()
    assert (delivery.status, delivery.next_attempt_at, delivery.claimed_at) == (
        "pending",
        None,
        None,
    )


@pytest.mark.parametrize("status", ["pending", "sent", "suppressed"])
def test_only_a_failed_delivery_can_be_retried(team: Team, status: str) -> None:
    delivery = a_delivery(team, status=status)
    before = tenant_state(team.tenant)
    response = send(team.tokens["operator"], "POST", _url(team, f"{delivery.pk}/retry/"))
    assert status in assert_problem(response, 409)["detail"]
    assert tenant_state(team.tenant) == before


@pytest.mark.parametrize("missing", ["0", "99999999", "99999999999999999999999"])
def test_an_unknown_id_is_404(team: Team, missing: str) -> None:
    assert_problem(send(team.tokens["viewer"], "GET", _url(team, f"{missing}/")), 404)
    assert_problem(send(team.tokens["operator"], "POST", _url(team, f"{missing}/retry/")), 404)
