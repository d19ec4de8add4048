"""Backfills from the portal: the form's preview (the API's dry run: nothing stored, nothing
audited) and create (one backfill, audited with the source `portal`), errors next to their
fields, the backfill's page (what it shows, to whom, its live part and a pinned number of
SQL queries however many runs it has), and pause, resume and cancel. Every form is forged
too: by a role too low (403, nothing changed), by another tenant's member (404) and
without a CSRF token (403)."""

from __future__ import annotations

import datetime as dt
import re
from typing import Any

import pytest
from django.test import Client

from orchestrator.actors import Actor
from orchestrator.context import tenant_scope
from orchestrator.models import AuditEvent
from runs import backfills
from runs.models import Backfill, WorkflowRun
from tests.harness import Team
from workflows.models import Workflow
from workflows.services import apply_workflow

pytestmark = pytest.mark.django_db

DAILY: dict[str, Any] = {
    "name": "daily-load",
    "schedule": {"cron": "0 2 * * *", "timezone": "UTC"},
    "max_active_runs": 1,
    "tasks": {"a": {"type": "noop"}},
}
PARAMS: dict[str, Any] = {"region": {"type": "string", "enum": ["eu", "us"], "default": "eu"}}
FORM = {"start": "2026-01-01", "end": "2026-01-03", "reprocess": "none", "max_active_runs": "1"}


def apply(team: Team, spec: dict[str, Any] = DAILY) -> Workflow:
    with tenant_scope([team.tenant]):
        return apply_workflow(actor=Actor.cli(), tenant=team.tenant, data=spec).workflow


def backfill(team: Team, workflow: Workflow, days: int = 3, slots: int = 1) -> Backfill:
    with tenant_scope([team.tenant]):
        return backfills.create_backfill(
            actor=Actor.cli(team.owner),
            workflow=workflow,
            start=dt.date(2026, 1, 1),
            end=dt.date(2026, 1, days),
            max_active_runs=slots,
        )


def signed_in(client: Client, team: Team, role: str) -> Client:
    client.force_login(team.users[role])
    return client


def backfill_rows() -> Any:
    return Backfill.objects.dangerously_unscoped()


def audit(action: str) -> list[AuditEvent]:
    return list(AuditEvent.objects.dangerously_unscoped().filter(action=action))


def state_of(backfill: Backfill) -> str:
    return str(backfill_rows().get(pk=backfill.pk).state)


def error_of(body: str, field: str) -> str:
    """The text of the error list next to a field (`<ul id="bf-<field>-err">`)."""
    found = re.search(rf'<ul class="field-error" id="bf-{field}-err">(.*?)</ul>', body, re.S)
    assert found, f"no error next to {field}"
    return re.sub(r"<[^>]+>", " ", found.group(1))


# --- the form ----------------------------------------------------------------------------


def test_it_shows_the_form_to_operators(client: Client, team: Team) -> None:
    apply(team)
    response = signed_in(client, team, "operator").get(
        f"/t/{team.slug}/workflows/daily-load/backfill/"
    )
    assert response.status_code == 200
    body = response.content.decode()
    for name in ("start", "end", "reprocess", "max_active_runs", "reverse"):
        assert f'name="{name}"' in body, name
    for value in ("none", "failed", "all"):
        assert f'<option value="{value}"' in body
    assert 'name="params"' not in body  # the workflow declares none
    assert 'value="preview"' in body
    assert 'value="create"' in body
    assert "At 02:00, every day" in body
    assert 'name="csrfmiddlewaretoken"' in body


def test_the_workflow_page_links_to_the_form_for_operators_only(client: Client, team: Team) -> None:
    apply(team)
    link = f'href="/t/{team.slug}/workflows/daily-load/backfill/"'
    body = signed_in(client, team, "operator").get(f"/t/{team.slug}/workflows/daily-load/")
    assert link in body.content.decode()
    body = signed_in(client, team, "viewer").get(f"/t/{team.slug}/workflows/daily-load/")
    assert link not in body.content.decode()


def test_a_preview_lists_every_interval_and_stores_nothing(client: Client, team: Team) -> None:
    workflow = apply(team)
    earlier = backfill(team, workflow, days=2, slots=2)  # Jan 1 and 2 have runs already
    runs = dict(
        WorkflowRun.objects.dangerously_unscoped()
        .filter(backfill=earlier)
        .values_list("logical_date__day", "pk")
    )
    audited = len(audit("backfill.create"))
    url = f"/t/{team.slug}/workflows/daily-load/backfill/"
    response = signed_in(client, team, "operator").post(url, FORM | {"intent": "preview"})
    assert response.status_code == 200
    body = response.content.decode()
    rows = re.findall(r'<tr data-interval="([^"]+)" data-action="(\w+)">', body)
    assert rows == [
        ("2026-01-01T02:00:00+00:00", "skip"),
        ("2026-01-02T02:00:00+00:00", "skip"),
        ("2026-01-03T02:00:00+00:00", "create"),
    ]
    for day in (1, 2):  # the interval's run, linked
        assert f'href="/t/{team.slug}/runs/{runs[day]}/"' in body
    assert "1 new run, 0 reruns, 2 skipped" in body
    assert 'value="2026-01-03"' in body  # what was typed is kept
    assert backfill_rows().count() == 1  # only the earlier one
    assert len(audit("backfill.create")) == audited


def test_create_makes_one_backfill_audited_from_the_portal(client: Client, team: Team) -> None:
    apply(team)
    url = f"/t/{team.slug}/workflows/daily-load/backfill/"
    response = signed_in(client, team, "operator").post(url, FORM | {"intent": "create"})
    created = backfill_rows().get()
    assert response.status_code == 302
    assert response["Location"] == f"/t/{team.slug}/backfills/{created.pk}/"
    assert (created.total, created.max_active_runs, created.reprocess) == (3, 1, "none")
    assert created.created_by == team.users["operator"]
    [event] = audit("backfill.create")
    assert event.source == "portal"
    assert event.actor == team.users["operator"]
    assert event.object_id == str(created.pk)
    page = client.get(response["Location"]).content.decode()
    assert f"Backfill #{created.pk} of daily-load created: 3 intervals." in page


def test_create_passes_reverse_params_and_the_policy(client: Client, team: Team) -> None:
    apply(team, DAILY | {"params": PARAMS})
    url = f"/t/{team.slug}/workflows/daily-load/backfill/"
    signed_in(client, team, "operator")
    assert 'name="params"' in client.get(url).content.decode()
    form = FORM | {"intent": "create", "reverse": "on", "reprocess": "all"}
    response = client.post(url, form | {"params": '{"region": "us"}'})
    assert response.status_code == 302
    created = backfill_rows().get()
    assert created.reverse is True
    assert created.reprocess == "all"
    assert created.params == {"region": "us"}
    assert created.plan[0][0].startswith("2026-01-03")  # newest first


@pytest.mark.parametrize(
    ("change", "field", "said"),
    [
        ({"start": "2026-01-05", "end": "2026-01-02"}, "end", "must not be before start"),
        ({"reprocess": "bogus"}, "reprocess", "accepted: none, failed, all"),
        ({"start": "yesterday"}, "start", "expected a date"),
        ({"max_active_runs": "many"}, "max_active_runs", "expected an integer from 1"),
        ({"max_active_runs": "0"}, "max_active_runs", "expected an integer from 1"),
        ({"start": "2999-01-01", "end": "2999-01-02"}, "start", "no complete interval"),
    ],
)
@pytest.mark.parametrize("intent", ["preview", "create"])
def test_errors_are_shown_next_to_their_field(
    client: Client, team: Team, change: dict[str, str], field: str, said: str, intent: str
) -> None:
    apply(team)
    url = f"/t/{team.slug}/workflows/daily-load/backfill/"
    response = signed_in(client, team, "operator").post(url, FORM | change | {"intent": intent})
    assert response.status_code == 400
    body = response.content.decode()
    assert said in error_of(body, "max" if field == "max_active_runs" else field)
    assert 'aria-invalid="true"' in body
    typed = {k: v for k, v in (FORM | change).items() if v != "bogus"}  # no such option
    for value in typed.values():
        assert f'value="{value}"' in body or f'<option value="{value}" selected' in body
    assert backfill_rows().count() == 0


def test_a_params_error_is_shown_at_the_params_box(client: Client, team: Team) -> None:
    apply(team, DAILY | {"params": PARAMS})
    url = f"/t/{team.slug}/workflows/daily-load/backfill/"
    signed_in(client, team, "operator")
    response = client.post(url, FORM | {"intent": "preview", "params": '{"region": "mars"}'})
    assert response.status_code == 400
    assert "region: " in error_of(response.content.decode(), "params")
    response = client.post(url, FORM | {"intent": "create", "params": "{not json"})
    assert response.status_code == 400
    assert "not JSON" in error_of(response.content.decode(), "params")
    assert "{not json</textarea>" in response.content.decode()
    assert backfill_rows().count() == 0


def test_a_workflow_without_a_schedule_says_so(client: Client, team: Team) -> None:
    apply(team, {"name": "adhoc", "tasks": {"a": {"type": "noop"}}})
    url = f"/t/{team.slug}/workflows/adhoc/backfill/"
    signed_in(client, team, "operator")
    assert 'id="no-schedule"' in client.get(url).content.decode()
    response = client.post(url, FORM | {"intent": "create"})
    assert response.status_code == 400
    assert "has no schedule" in response.content.decode()
    assert backfill_rows().count() == 0


# --- forged posts ------------------------------------------------------------------------


def test_a_viewer_may_neither_see_nor_post_the_form(client: Client, team: Team) -> None:
    apply(team)
    url = f"/t/{team.slug}/workflows/daily-load/backfill/"
    signed_in(client, team, "viewer")
    assert client.get(url).status_code == 403
    for intent in ("preview", "create"):
        response = client.post(url, FORM | {"intent": intent})
        assert response.status_code == 403
        assert "backfill.operate" in response.content.decode()
    assert backfill_rows().count() == 0


def test_another_tenants_member_gets_404s(client: Client, team: Team, outsider: Team) -> None:
    created = backfill(team, apply(team))
    signed_in(client, outsider, "owner")
    assert client.post(f"/t/{team.slug}/workflows/daily-load/backfill/", FORM).status_code == 404
    assert client.get(f"/t/{team.slug}/backfills/{created.pk}/").status_code == 404
    for action in ("pause", "resume", "cancel"):
        url = f"/t/{team.slug}/backfills/{created.pk}/{action}/"
        assert client.post(url).status_code == 404, action
    # ... and through their own tenant the backfill does not exist
    assert client.get(f"/t/{outsider.slug}/backfills/{created.pk}/").status_code == 404
    assert client.post(f"/t/{outsider.slug}/backfills/{created.pk}/cancel/").status_code == 404
    assert (
        client.post(f"/t/{outsider.slug}/workflows/daily-load/backfill/", FORM).status_code == 404
    )
    assert state_of(created) == "running"
    assert backfill_rows().count() == 1


def test_a_post_without_a_csrf_token_is_refused(team: Team) -> None:
    created = backfill(team, apply(team))
    client = signed_in(Client(enforce_csrf_checks=True), team, "owner")
    url = f"/t/{team.slug}/workflows/daily-load/backfill/"
    assert client.post(url, FORM | {"intent": "create"}).status_code == 403
    for action in ("pause", "cancel"):
        assert client.post(f"/t/{team.slug}/backfills/{created.pk}/{action}/").status_code == 403
    assert state_of(created) == "running"
    assert backfill_rows().count() == 1


def test_a_viewer_may_not_pause_resume_or_cancel(client: Client, team: Team) -> None:
    created = backfill(team, apply(team))
    signed_in(client, team, "viewer")
    for action in ("pause", "resume", "cancel"):
        url = f"/t/{team.slug}/backfills/{created.pk}/{action}/"
        assert client.get(url).status_code == 403, action
        assert client.post(url).status_code == 403, action
    assert state_of(created) == "running"
    assert audit("backfill.pause") == audit("backfill.cancel") == []


# --- pause, resume, cancel ---------------------------------------------------------------


def test_pause_and_resume_go_through_the_services(client: Client, team: Team) -> None:
    created = backfill(team, apply(team))
    signed_in(client, team, "operator")
    base = f"/t/{team.slug}/backfills/{created.pk}/"
    confirm = client.get(base + "pause/").content.decode()
    assert "No new runs will be created until it is resumed" in confirm
    response = client.post(base + "pause/")
    assert response.status_code == 302
    assert response["Location"] == base
    assert state_of(created) == "paused"
    assert "paused: no new runs" in client.get(base).content.decode()
    assert client.post(base + "resume/").status_code == 302
    assert state_of(created) == "running"
    for action in ("backfill.pause", "backfill.resume"):
        [event] = audit(action)
        assert (event.source, event.actor) == ("portal", team.users["operator"])


def test_cancel_says_how_many_runs_it_cancels(client: Client, team: Team) -> None:
    created = backfill(team, apply(team, DAILY | {"max_active_runs": 2}), days=5, slots=2)
    active = list(
        WorkflowRun.objects.dangerously_unscoped()
        .filter(backfill=created, state__in=("queued", "running"))
        .values_list("pk", flat=True)
    )
    assert len(active) == 2
    signed_in(client, team, "operator")
    url = f"/t/{team.slug}/backfills/{created.pk}/cancel/"
    confirm = client.get(url).content.decode()
    assert "2 runs queued or running will be cancelled" in confirm
    assert "3 intervals not reached yet will not run" in confirm
    for pk in active:
        assert f'href="/t/{team.slug}/runs/{pk}/"' in confirm
    assert state_of(created) == "running"  # a GET changes nothing
    assert client.post(url).status_code == 302
    assert state_of(created) == "cancelled"
    states = WorkflowRun.objects.dangerously_unscoped().filter(pk__in=active)
    assert set(states.values_list("state", flat=True)) == {"cancelled"}
    [event] = audit("backfill.cancel")
    assert event.source == "portal"
    assert sorted(event.changes["extra"]["cancelled_runs"]) == sorted(active)


def test_an_operation_in_the_wrong_state_is_a_409_on_the_form(client: Client, team: Team) -> None:
    created = backfill(team, apply(team))
    signed_in(client, team, "operator")
    response = client.post(f"/t/{team.slug}/backfills/{created.pk}/resume/")
    assert response.status_code == 409
    assert "only a paused backfill can be resumed" in response.content.decode()
    assert audit("backfill.resume") == []


# --- the backfill's page -----------------------------------------------------------------


def test_the_page_shows_the_backfill(client: Client, team: Team) -> None:
    workflow = apply(team, DAILY | {"params": PARAMS})
    created = backfill(team, workflow)
    [run] = WorkflowRun.objects.dangerously_unscoped().filter(backfill=created)
    response = signed_in(client, team, "viewer").get(f"/t/{team.slug}/backfills/{created.pk}/")
    assert response.status_code == 200
    body = response.content.decode()
    assert f"Backfill #{created.pk}" in body
    assert f'href="/t/{team.slug}/workflows/daily-load/"' in body
    assert "2026-01-01 00:00:00 UTC" in body
    assert "2026-01-03 23:59:59 UTC" in body
    assert f"by {team.owner.username}" in body
    assert '<progress id="backfill-progress" max="3" value="0"' in body
    assert "0 of 3 intervals done" in body
    assert "1 ▶ running" in body
    assert f'href="/t/{team.slug}/runs/{run.pk}/"' in body
    assert "&quot;region&quot;: &quot;eu&quot;" in body
    assert 'hx-trigger="every 5s"' in body
    assert "backfill-actions" not in body  # a viewer sees no controls
    assert "/pause/" not in body


def test_operators_see_the_controls_a_state_allows(client: Client, team: Team) -> None:
    created = backfill(team, apply(team))
    url = f"/t/{team.slug}/backfills/{created.pk}/"
    body = signed_in(client, team, "operator").get(url).content.decode()
    assert f'action="{url}pause/"' in body
    assert f'href="{url}cancel/"' in body
    assert f'action="{url}resume/"' not in body
    with tenant_scope([team.tenant]):
        backfills.pause_backfill(actor=Actor.cli(), backfill=created)
    body = client.get(url).content.decode()
    assert f'action="{url}resume/"' in body
    assert f'action="{url}pause/"' not in body
    with tenant_scope([team.tenant]):
        backfills.cancel_backfill(actor=Actor.cli(), backfill=created)
    body = client.get(url).content.decode()
    assert "backfill-actions" not in body  # nothing to do with an ended backfill
    assert "hx-trigger" not in body  # and nothing to refresh


def test_its_live_part_answers_204_until_something_changes(client: Client, team: Team) -> None:
    created = backfill(team, apply(team))
    signed_in(client, team, "viewer")
    url = f"/t/{team.slug}/backfills/{created.pk}/"
    part = client.get(url, headers={"HX-Request": "true"})
    body = part.content.decode()
    assert body.startswith('<div id="backfill-live"')  # the part, not the page
    seen = body.split("seen=", 1)[1].split('"', 1)[0]
    assert client.get(url, {"seen": seen}, headers={"HX-Request": "true"}).status_code == 204
    WorkflowRun.objects.dangerously_unscoped().filter(backfill=created).update(state="success")
    changed = client.get(url, {"seen": seen}, headers={"HX-Request": "true"})
    assert changed.status_code == 200
    assert "1 ✓ succeeded" in changed.content.decode()


def test_the_backfills_list_links_to_each_backfill(client: Client, team: Team) -> None:
    created = backfill(team, apply(team))
    body = signed_in(client, team, "viewer").get(f"/t/{team.slug}/backfills/").content.decode()
    assert f'href="/t/{team.slug}/backfills/{created.pk}/">#{created.pk}</a>' in body


def test_an_unknown_backfill_is_not_found(client: Client, team: Team) -> None:
    signed_in(client, team, "owner")
    assert client.get(f"/t/{team.slug}/backfills/999999/").status_code == 404
    assert client.post(f"/t/{team.slug}/backfills/999999/pause/").status_code == 404


def test_the_page_count_of_queries_does_not_grow_with_runs(
    client: Client, team: Team, django_assert_num_queries: Any
) -> None:
    small = backfill(team, apply(team))
    big = backfill(team, apply(team, DAILY | {"name": "big", "max_active_runs": 20}), 20, 20)
    assert WorkflowRun.objects.dangerously_unscoped().filter(backfill=big).count() == 20
    signed_in(client, team, "operator")
    for created in (small, big):
        url = f"/t/{team.slug}/backfills/{created.pk}/"
        client.get(url)
        # session, user, memberships, the backfill with its run counts, its newest runs
        with django_assert_num_queries(5):
            response = client.get(url)
        runs = WorkflowRun.objects.dangerously_unscoped().filter(backfill=created).count()
        assert response.content.decode().count("<tr data-run=") == runs
