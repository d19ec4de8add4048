"""The backfills and audit pages: who may see them, what they show, their filters, paging
and live refresh, and a pinned number of SQL queries however many rows they show."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from django.test import Client

from orchestrator.actors import Actor
from orchestrator.context import tenant_scope
from runs import backfills
from runs.models import Backfill, WorkflowRun
from tests.harness import Team, make_team
from workflows.models import Workflow
from workflows.services import apply_workflow

pytestmark = pytest.mark.django_db

DAILY: dict[str, Any] = {
    "name": "daily-load",
    "schedule": {"cron": "0 2 * * *", "timezone": "UTC"},
    "max_active_runs": 1,
    "tasks": {"a": {"type": "noop"}},
}


def apply(team: Team, name: str = "daily-load") -> Workflow:
    with tenant_scope([team.tenant]):
        spec = DAILY | {"name": name}
        return apply_workflow(actor=Actor.cli(), tenant=team.tenant, data=spec).workflow


def backfill(team: Team, workflow: Workflow, days: int = 3) -> Backfill:
    with tenant_scope([team.tenant]):
        return backfills.create_backfill(
            actor=Actor.cli(),
            workflow=workflow,
            start=dt.date(2026, 1, 1),
            end=dt.date(2026, 1, days),
            max_active_runs=1,
        )


def signed_in(client: Client, team: Team, role: str) -> Client:
    client.force_login(team.users[role])
    return client


def test_it_lists_backfills_with_their_progress(client: Client, team: Team) -> None:
    created = backfill(team, apply(team), days=3)
    body = signed_in(client, team, "viewer").get(f"/t/{team.slug}/backfills/").content.decode()
    assert f'data-backfill="{created.pk}"' in body
    assert "daily-load" in body
    assert f'max="{created.total}" value="{created.position}"' in body
    assert f"{created.position} of {created.total} intervals" in body
    assert "1 ▶ running, 0 … queued" in body  # the feeder's first run, max_active_runs 1
    assert 'hx-trigger="every 5s"' in body  # running: the table refreshes itself


def test_it_stops_refreshing_once_no_backfill_runs(client: Client, team: Team) -> None:
    created = backfill(team, apply(team))
    with tenant_scope([team.tenant]):
        backfills.cancel_backfill(actor=Actor.cli(), backfill=created)
    body = signed_in(client, team, "viewer").get(f"/t/{team.slug}/backfills/").content.decode()
    assert "st-cancelled" in body
    assert "hx-trigger" not in body


def test_its_live_table_answers_204_until_something_changes(client: Client, team: Team) -> None:
    created = backfill(team, apply(team))
    signed_in(client, team, "viewer")
    url = f"/t/{team.slug}/backfills/"
    part = client.get(url, headers={"HX-Request": "true"})
    assert part.status_code == 200
    body = part.content.decode()
    assert body.lstrip().startswith('<div id="backfills-live"')  # the part, not the page
    seen = body.split("seen=", 1)[1].split('"', 1)[0]
    again = client.get(url, {"seen": seen}, headers={"HX-Request": "true"})
    assert again.status_code == 204
    with tenant_scope([team.tenant]):
        WorkflowRun.objects.filter(backfill=created).update(state="success")
    changed = client.get(url, {"seen": seen}, headers={"HX-Request": "true"})
    assert changed.status_code == 200
    assert "1 ✓ succeeded" in changed.content.decode()


def test_it_filters_backfills_by_workflow_and_state(client: Client, team: Team) -> None:
    backfill(team, apply(team, "alpha"))
    backfill(team, apply(team, "beta"))
    signed_in(client, team, "viewer")
    body = client.get(f"/t/{team.slug}/backfills/", {"workflow": "beta"}).content.decode()
    assert "/workflows/beta/" in body
    assert "/workflows/alpha/" not in body
    body = client.get(f"/t/{team.slug}/backfills/", {"state": "completed"}).content.decode()
    assert "No backfills match these filters" in body


def test_backfills_page_count_of_queries_does_not_grow(
    client: Client, team: Team, django_assert_num_queries: Any
) -> None:
    workflow = apply(team)
    backfill(team, workflow)
    signed_in(client, team, "viewer")
    url = f"/t/{team.slug}/backfills/"
    client.get(url)
    with django_assert_num_queries(4):  # session, user, memberships, backfills with counts
        client.get(url)
    for _ in range(4):
        backfill(team, workflow)
    with django_assert_num_queries(4):
        assert client.get(url).content.decode().count("data-backfill=") == 5


def test_audit_log_is_for_admins_and_owners(client: Client, team: Team) -> None:
    url = f"/t/{team.slug}/audit/"
    for role in ("viewer", "operator", "editor"):
        response = signed_in(client, team, role).get(url)
        assert response.status_code == 403, role
        assert "audit.view" in response.content.decode()
        assert (
            'href="/t/acme/audit/"' not in client.get(f"/t/{team.slug}/backfills/").content.decode()
        )
    for role in ("admin", "owner"):
        assert signed_in(client, team, role).get(url).status_code == 200, role


def test_audit_log_shows_changes_and_filters(client: Client, team: Team) -> None:
    apply(team, "alpha")
    apply(team, "beta")
    signed_in(client, team, "admin")
    body = client.get(f"/t/{team.slug}/audit/").content.decode()
    assert "workflow.create" in body or "workflow.apply" in body
    assert "alpha" in body
    assert "beta" in body
    body = client.get(f"/t/{team.slug}/audit/", {"object": "nothing-like-this"}).content.decode()
    assert "No audit events match these filters" in body
    body = client.get(f"/t/{team.slug}/audit/", {"since": "2999-01-01T00:00"}).content.decode()
    assert "No audit events match these filters" in body


def test_audit_log_names_a_bad_time_filter(client: Client, team: Team) -> None:
    response = signed_in(client, team, "owner").get(f"/t/{team.slug}/audit/", {"until": "soon"})
    assert response.status_code == 200
    body = response.content.decode()
    assert '<strong class="mono">until</strong>' in body
    assert "is not a time" in body


def test_audit_log_pages_by_cursor(client: Client, team: Team) -> None:
    for n in range(55):
        apply(team, f"wf-{n:02d}")
    signed_in(client, team, "owner")
    first = client.get(f"/t/{team.slug}/audit/").content.decode()
    assert "wf-54" in first
    assert 'rel="next"' in first
    next_href = first.split('rel="next"', 1)[0].rsplit('href="', 1)[1].split('"', 1)[0]
    second = client.get(f"/t/{team.slug}/audit/" + next_href.replace("&amp;", "&")).content.decode()
    assert "wf-00" in second
    assert "wf-54" not in second


def test_audit_page_count_of_queries(
    client: Client, team: Team, django_assert_num_queries: Any
) -> None:
    apply(team, "alpha")
    signed_in(client, team, "owner")
    url = f"/t/{team.slug}/audit/"
    client.get(url)
    with django_assert_num_queries(4):  # session, user, memberships, one page of events
        client.get(url)
    for n in range(10):
        apply(team, f"more-{n}")
    with django_assert_num_queries(4):
        client.get(url)


def test_another_tenants_pages_are_not_found(client: Client, team: Team, outsider: Team) -> None:
    backfill(team, apply(team))
    signed_in(client, outsider, "owner")
    for page in ("backfills", "audit"):
        response = client.get(f"/t/{team.slug}/{page}/")
        assert response.status_code == 404, page
        assert "daily-load" not in response.content.decode()


def test_a_signed_out_visitor_is_sent_to_sign_in(client: Client, team: Team) -> None:
    response = client.get(f"/t/{team.slug}/backfills/?state=running")
    assert response.status_code == 302
    assert response["Location"] == f"/login/?next=/t/{team.slug}/backfills/%3Fstate%3Drunning"


def test_no_page_shows_another_tenants_names(client: Client, team: Team) -> None:
    other = make_team("initech")
    backfill(other, apply(other, "initech-secret-flow"))
    backfill(team, apply(team))
    signed_in(client, team, "owner")
    for page in ("backfills", "audit"):
        body = client.get(f"/t/{team.slug}/{page}/").content.decode()
        assert "initech" not in body.lower(), page
