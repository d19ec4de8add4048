"""Operating from the portal: the trigger form (made from the workflow's params, typed by
them, errors next to their field by the API's paths, one run per form however often it is
sent, a paused workflow only when forced), pause and unpause, and a run's cancel and retry
and a task's clear and mark, each confirmed on GET with the tasks it touches.

Every form is forged too: by a role too low (403, nothing changed), by another tenant's
member (404), without a CSRF token (403); and done, with its audit event from the portal."""

from __future__ import annotations

import html
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest
from django.test import Client

from orchestrator.actors import Actor
from orchestrator.context import tenant_scope
from orchestrator.models import AuditEvent
from portal.views.operate import as_text, from_text
from runs.models import WorkflowRun
from tests.harness import ROLES, Team, assert_problem, audit_count, new_audit_events, send
from tests.harness import tenant_state as state_of
from tests.runs.run_states import (
    failed_run,
    running_run,
    states,
    succeeded_run,
    unscoped_runs,
)
from workflows.models import Workflow
from workflows.services import apply_workflow, set_paused

pytestmark = pytest.mark.django_db

EXPORT: dict[str, Any] = {
    "name": "export",
    "description": "Export one table",
    "params": {
        "table": {
            "type": "string",
            "required": True,
            "pattern": "^[a-z_]+$",
            "description": "Table to export",
        },
        "format": {"type": "string", "enum": ["csv", "json"], "default": "csv"},
        "limit": {"type": "integer", "minimum": 1, "maximum": 100000, "default": 1000},
        "ratio": {"type": "number"},
        "dry_run": {"type": "boolean", "default": False},
        "columns": {"type": "array"},
        "options": {"type": "object"},
    },
    "tasks": {"export": {"type": "noop"}},
}


# --- helpers ----------------------------------------------------------------------------


def apply(team: Team, spec: dict[str, Any] = EXPORT, paused: bool = False) -> Workflow:
    with tenant_scope([team.tenant]):
        workflow = apply_workflow(actor=Actor.cli(), tenant=team.tenant, data=spec).workflow
        if paused:
            set_paused(actor=Actor.cli(), workflow=workflow, paused=True)
        return workflow


def as_member(team: Team, role: str = "operator", **options: Any) -> Client:
    client = Client(**options)
    client.force_login(team.users[role])
    return client


def runs_of(team: Team, name: str = "export") -> list[WorkflowRun]:
    return list(unscoped_runs().filter(tenant=team.tenant, workflow__name=name).order_by("pk"))


def field_html(body: str, name: str) -> str:
    """The trigger form's field of one param, its markup unescaped."""
    found = re.search(rf'<div class="field[^"]*" id="field-{name}">(.*?)</div>', body, re.S)
    assert found, f"no field {name!r} in the form"
    return html.unescape(found.group(1))


def errors_of(body: str, name: str) -> list[str]:
    """The error messages shown next to a param's field."""
    return re.findall(r"<li>(.*?)</li>", field_html(body, name), re.S)


def above_the_form(body: str) -> str:
    found = re.search(r'<div class="errors" role="alert" id="form-errors">(.*?)</div>', body, re.S)
    return html.unescape(found.group(1)) if found else ""


def trigger(client: Client, team: Team, key: str = "form-1", **fields: str) -> Any:
    body = {"form_key": key} | {f"params.{name}": value for name, value in fields.items()}
    return client.post(f"/t/{team.slug}/workflows/export/trigger/", body)


def portal_events(team: Team, after: int) -> list[tuple[str, str]]:
    return [(e.action, e.source) for e in new_audit_events(team.tenant, after)]


# --- the trigger form: made from the params ---------------------------------------------


def test_its_form_is_made_from_the_params_with_their_defaults(team: Team) -> None:
    apply(team)
    body = as_member(team).get(f"/t/{team.slug}/workflows/export/trigger/").content.decode()
    table = field_html(body, "table")
    assert 'name="params.table" value=""' in table
    assert 'type="text"' in table
    assert '<span class="required">required</span>' in table
    assert "Table to export" in table
    assert "matching ^[a-z_]+$" in table
    fmt = field_html(body, "format")  # an enum: a select, its default chosen, no empty one
    assert '<select id="param-format" name="params.format"' in fmt
    assert re.findall(r'<option value="([^"]*)"( selected)?>', fmt) == [
        ("csv", " selected"),
        ("json", ""),
    ]
    assert "required" not in fmt
    limit = field_html(body, "limit")
    assert 'value="1000" type="number" step="1" min="1" max="100000"' in limit
    assert "from 1 to 100000" in limit
    assert "default 1000" in limit
    assert 'step="any"' in field_html(body, "ratio")
    dry_run = field_html(body, "dry_run")  # a boolean: true or false
    assert re.findall(r'<option value="([^"]*)"( selected)?>', dry_run) == [
        ("true", ""),
        ("false", " selected"),
    ]
    assert '<textarea id="param-columns" name="params.columns"' in field_html(body, "columns")
    assert "a JSON object" in field_html(body, "options")
    assert re.search(r'<input type="hidden" name="form_key" value="[0-9a-f]{32}">', body)
    assert 'name="csrfmiddlewaretoken"' in body
    assert 'name="force"' not in body  # not paused


def test_the_form_page_is_never_cached(team: Team) -> None:
    apply(team)
    response = as_member(team).get(f"/t/{team.slug}/workflows/export/trigger/")
    assert "no-store" in response["Cache-Control"]


def test_it_converts_each_field_by_its_params_type(team: Team) -> None:
    apply(team)
    before = audit_count(team.tenant)
    response = trigger(
        as_member(team),
        team,
        table="sales",
        format="json",
        limit="42",
        ratio="0.25",
        dry_run="true",
        columns='["id", "total"]',
        options='{"gzip": true}',
    )
    [run] = runs_of(team)
    assert response.status_code == 302
    assert response["Location"] == f"/t/{team.slug}/runs/{run.pk}/"
    assert run.params == {
        "table": "sales",
        "format": "json",
        "limit": 42,
        "ratio": 0.25,
        "dry_run": True,
        "columns": ["id", "total"],
        "options": {"gzip": True},
    }
    assert run.trigger_source == "portal"
    assert portal_events(team, before) == [("run.trigger", "portal")]


def test_an_empty_field_takes_its_default(team: Team) -> None:
    apply(team)
    trigger(as_member(team), team, table="sales", limit="", format="", dry_run="")
    [run] = runs_of(team)
    assert run.params == {"table": "sales", "format": "csv", "limit": 1000, "dry_run": False}


def test_the_run_page_opens_after_with_a_message(team: Team) -> None:
    apply(team)
    client = as_member(team)
    response = client.post(
        f"/t/{team.slug}/workflows/export/trigger/",
        {"form_key": "k", "params.table": "sales"},
        follow=True,
    )
    [run] = runs_of(team)
    assert response.redirect_chain == [(f"/t/{team.slug}/runs/{run.pk}/", 302)]
    assert f"Run #{run.pk} of export triggered." in response.content.decode()


def test_a_missing_required_param_is_shown_next_to_its_field(team: Team) -> None:
    apply(team)
    response = trigger(as_member(team), team, table="", limit="42")
    body = response.content.decode()
    assert response.status_code == 400
    assert errors_of(body, "table") == ["required param missing"]
    assert 'aria-invalid="true"' in field_html(body, "table")
    assert 'value="42"' in field_html(body, "limit")  # what was typed is kept
    assert errors_of(body, "limit") == []
    assert runs_of(team) == []


def test_a_bad_integer_is_shown_next_to_its_field_as_the_api_says_it(team: Team) -> None:
    apply(team)
    response = trigger(as_member(team), team, table="sales", limit="abc")
    assert response.status_code == 400
    shown = errors_of(response.content.decode(), "limit")
    assert shown == ["'abc' is not of type 'integer'"]
    api = send(
        team.tokens["operator"],
        "POST",
        f"/api/v1/tenants/{team.slug}/workflows/export/runs/",
        {"params": {"table": "sales", "limit": "abc"}},
    )
    problem = assert_problem(api, 400, "params.limit")
    assert [e["message"] for e in problem["errors"] if e["path"] == "params.limit"] == shown
    assert runs_of(team) == []


def test_values_out_of_range_or_pattern_are_shown_by_their_fields(team: Team) -> None:
    apply(team)
    response = trigger(as_member(team), team, table="Sales!", limit="0", ratio="x", format="xml")
    body = response.content.decode()
    assert errors_of(body, "limit") == ["0 is less than the minimum of 1.0"]  # the API says so too
    assert errors_of(body, "table") == ["'Sales!' does not match '^[a-z_]+$'"]
    assert errors_of(body, "ratio") == ["'x' is not of type 'number'"]
    assert errors_of(body, "format") == ["'xml' is not one of ['csv', 'json']"]
    assert above_the_form(body) == ""


def test_bad_json_is_shown_next_to_its_field(team: Team) -> None:
    apply(team)
    response = trigger(as_member(team), team, table="sales", columns="[1,", options="[]")
    body = response.content.decode()
    assert errors_of(body, "columns") == [
        "'[1,' is not of type 'array'",
        "not valid JSON: Expecting value (line 1, column 4)",
    ]
    assert errors_of(body, "options") == ["[] is not of type 'object'"]
    assert "[1," in field_html(body, "columns")  # kept as typed


def test_the_same_form_sent_twice_makes_one_run(team: Team) -> None:
    apply(team)
    client = as_member(team)
    first = trigger(client, team, key="double-click", table="sales")
    second = trigger(client, team, key="double-click", table="sales")
    [run] = runs_of(team)
    assert first["Location"] == second["Location"] == f"/t/{team.slug}/runs/{run.pk}/"
    page = client.get(second["Location"]).content.decode()
    assert f"This form was sent already: it triggered run #{run.pk} of export." in page
    trigger(client, team, key="another-form", table="sales")
    assert len(runs_of(team)) == 2


def test_a_form_shown_again_has_a_key_of_its_own(team: Team) -> None:
    apply(team)
    client = as_member(team)
    trigger(client, team, key="sent-form", table="sales")
    # The same key again with another body (a form sent back from an earlier page).
    refused = trigger(client, team, key="sent-form", table="orders")
    assert refused.status_code == 409
    assert "was used for another request body" in above_the_form(refused.content.decode())
    key = re.search(r'name="form_key" value="([0-9a-f]{32})"', refused.content.decode())
    assert key
    assert trigger(client, team, key=key.group(1), table="orders").status_code == 302
    assert [run.params["table"] for run in runs_of(team)] == ["sales", "orders"]


def test_a_damaged_form_key_is_refused(team: Team) -> None:
    apply(team)
    response = trigger(as_member(team), team, key="x" * 256, table="sales")
    assert response.status_code == 400
    assert "the form's key is damaged: reload the form" in above_the_form(response.content.decode())
    assert runs_of(team) == []


def test_a_paused_workflow_is_triggered_only_when_forced(team: Team) -> None:
    apply(team, paused=True)
    client = as_member(team)
    body = client.get(f"/t/{team.slug}/workflows/export/trigger/").content.decode()
    assert "export is paused" in body
    assert '<input type="checkbox" name="force" value="yes">' in body

    refused = trigger(client, team, table="sales")
    assert refused.status_code == 409
    assert "workflow 'export' is paused" in above_the_form(refused.content.decode())
    assert runs_of(team) == []

    before = audit_count(team.tenant)
    forced = client.post(
        f"/t/{team.slug}/workflows/export/trigger/",
        {"form_key": "k-forced", "params.table": "sales", "force": "yes"},
    )
    [run] = runs_of(team)
    assert forced["Location"] == f"/t/{team.slug}/runs/{run.pk}/"
    [event] = new_audit_events(team.tenant, before)
    assert (event.action, event.source) == ("run.trigger", "portal")
    assert event.changes["extra"] == {"forced_while_paused": True}
    page = client.get(forced["Location"]).content.decode()
    assert "triggered although the workflow is paused" in page


def test_a_workflow_without_params_has_a_form_with_none(team: Team) -> None:
    apply(team, {"name": "plain", "tasks": {"a": {"type": "noop"}}})
    client = as_member(team)
    body = client.get(f"/t/{team.slug}/workflows/plain/trigger/").content.decode()
    assert 'id="no-params"' in body
    client.post(f"/t/{team.slug}/workflows/plain/trigger/", {"form_key": "k"})
    assert len(runs_of(team, "plain")) == 1


def test_text_and_values_convert_both_ways() -> None:
    assert from_text("integer", "42") == (42, None)
    assert from_text("integer", "-3") == (-3, None)
    assert from_text("integer", "4.0") == (4, None)
    assert from_text("integer", "4.5") == (4.5, None)  # the service says: not an integer
    assert from_text("integer", "4_2") == ("4_2", None)  # Python would read 42
    assert from_text("number", "1e3") == (1000.0, None)
    assert from_text("number", "nan") == ("nan", None)
    assert from_text("boolean", "true") == (True, None)
    assert from_text("boolean", "yes") == ("yes", None)
    assert from_text("string", " a ") == (" a ", None)
    assert from_text("object", '{"a": 1}') == ({"a": 1}, None)
    for kind, value in [("integer", 7), ("number", 0.5), ("boolean", False), ("array", [1])]:
        assert from_text(kind, as_text(kind, value)) == (value, None)
    assert as_text("string", "eu") == "eu"
    assert as_text("array", None) == ""


# --- the confirmations say what will happen ---------------------------------------------


def test_cancel_names_the_tasks_it_stops_and_those_never_started(team: Team) -> None:
    run = running_run(team)
    body = as_member(team).get(f"/t/{team.slug}/runs/{run.pk}/cancel/").content.decode()
    stopped = re.search(r'id="tasks-stopped">(.*?)</ul>', body, re.S)
    waiting = re.search(r'id="tasks-waiting">(.*?)</ul>', body, re.S)
    assert stopped
    assert waiting
    assert re.findall(r"<code>(\w+)</code>", stopped.group(1)) == ["side", "transform"]
    assert re.findall(r"<code>(\w+)</code>", waiting.group(1)) == ["load", "report"]
    assert "Cancel run #" in body
    assert f'<button type="submit" class="danger">Cancel run #{run.pk}</button>' in body


def test_cancel_of_an_ended_run_says_there_is_nothing_to_cancel(team: Team) -> None:
    run = succeeded_run(team)
    client = as_member(team)
    body = client.get(f"/t/{team.slug}/runs/{run.pk}/cancel/").content.decode()
    assert "has already ended (success): there is nothing to cancel" in body
    assert 'type="submit" class="danger"' not in body
    forged = client.post(f"/t/{team.slug}/runs/{run.pk}/cancel/")  # the service's answer
    assert forged.status_code == 409
    assert f"run {run.pk} is already success; only queued or running runs can be cancelled" in (
        above_the_form(forged.content.decode())
    )


def test_retry_names_the_tasks_that_will_rerun(team: Team) -> None:
    run = failed_run(team)
    body = as_member(team).get(f"/t/{team.slug}/runs/{run.pk}/retry/").content.decode()
    listed = re.search(r'id="tasks-rerun">(.*?)</ul>', body, re.S)
    assert listed
    assert re.findall(r"<code>(\w+)</code>", listed.group(1)) == ["load", "report", "transform"]
    assert "Retry 3 tasks" in body


def test_retry_of_a_running_run_shows_the_services_refusal(team: Team) -> None:
    run = running_run(team)
    client = as_member(team)
    assert (
        "retry it once it has ended"
        in client.get(f"/t/{team.slug}/runs/{run.pk}/retry/").content.decode()
    )
    refused = client.post(f"/t/{team.slug}/runs/{run.pk}/retry/")
    assert refused.status_code == 409
    assert f"run {run.pk} is still running" in above_the_form(refused.content.decode())


def test_clear_lists_the_downstream_it_would_clear_too(team: Team) -> None:
    run = failed_run(team)
    url = f"/t/{team.slug}/runs/{run.pk}/tasks/extract/clear/"
    body = as_member(team).get(url).content.decode()
    listed = re.search(r'id="tasks-downstream">(.*?)</ul>', body, re.S)
    assert listed
    assert re.findall(r"<code>(\w+)</code>", listed.group(1)) == [
        "load",
        "report",
        "side",
        "transform",
    ]
    assert 'name="downstream" value="no"' in body
    assert "Clear extract and 4 downstream tasks" in body


def test_clear_leaves_unfinished_downstream_alone_and_refuses_an_unfinished_task(
    team: Team,
) -> None:
    run = running_run(team)
    client = as_member(team)
    body = client.get(f"/t/{team.slug}/runs/{run.pk}/tasks/extract/clear/").content.decode()
    assert 'id="tasks-downstream"' not in body
    unfinished = re.search(r'id="tasks-unfinished">(.*?)</ul>', body, re.S)
    assert unfinished
    assert re.findall(r"<code>(\w+)</code>", unfinished.group(1)) == [
        "load",
        "report",
        "side",
        "transform",
    ]
    page = client.get(f"/t/{team.slug}/runs/{run.pk}/tasks/transform/clear/").content.decode()
    assert "is running: only a finished task can be cleared" in page
    assert 'name="downstream"' not in page


def test_mark_names_the_tasks_decided_again(team: Team) -> None:
    run = failed_run(team)
    body = (
        as_member(team).get(f"/t/{team.slug}/runs/{run.pk}/tasks/transform/mark/").content.decode()
    )
    listed = re.search(r'id="tasks-decided">(.*?)</ul>', body, re.S)
    assert listed
    assert re.findall(r"<code>(\w+)</code>", listed.group(1)) == ["load", "report"]
    assert "Mark failed (it is already)" in body


def test_mark_says_a_running_try_is_cancelled(team: Team) -> None:
    run = running_run(team)
    body = (
        as_member(team).get(f"/t/{team.slug}/runs/{run.pk}/tasks/transform/mark/").content.decode()
    )
    assert "<strong>It is running now:</strong> its running try is cancelled." in body


def test_a_bad_mark_state_is_refused_with_the_services_message(team: Team) -> None:
    run = failed_run(team)
    response = as_member(team).post(
        f"/t/{team.slug}/runs/{run.pk}/tasks/transform/mark/", {"state": "bogus"}
    )
    assert response.status_code == 400
    assert "state: accepted: success, failed" in above_the_form(response.content.decode())


def test_an_unknown_task_is_not_found(team: Team) -> None:
    run = failed_run(team)
    client = as_member(team)
    for action in ("clear", "mark"):
        assert client.get(f"/t/{team.slug}/runs/{run.pk}/tasks/nope/{action}/").status_code == 404


def test_pause_is_post_only(team: Team) -> None:
    apply(team)
    response = as_member(team).get(f"/t/{team.slug}/workflows/export/pause/")
    assert response.status_code == 405


# --- every form: forged, refused, done --------------------------------------------------


@dataclass(frozen=True)
class Target:
    url: str
    body: dict[str, str]
    done: Callable[[], bool]  # whether the form's effect happened


def _workflow_paused(team: Team, name: str) -> bool:
    return bool(
        Workflow.objects.dangerously_unscoped()
        .filter(tenant=team.tenant, name=name)
        .values_list("paused", flat=True)
        .get()
    )


def _run_state(run: WorkflowRun) -> str:
    return str(unscoped_runs().filter(pk=run.pk).values_list("state", flat=True).get())


def trigger_form(team: Team) -> Target:
    apply(team)
    return Target(
        f"/t/{team.slug}/workflows/export/trigger/",
        {"form_key": "k", "params.table": "sales"},
        lambda: len(runs_of(team)) == 1,
    )


def pause_button(team: Team) -> Target:
    apply(team)
    return Target(
        f"/t/{team.slug}/workflows/export/pause/", {}, lambda: _workflow_paused(team, "export")
    )


def unpause_button(team: Team) -> Target:
    apply(team, paused=True)
    return Target(
        f"/t/{team.slug}/workflows/export/unpause/",
        {},
        lambda: not _workflow_paused(team, "export"),
    )


def cancel_form(team: Team) -> Target:
    run = running_run(team)
    return Target(
        f"/t/{team.slug}/runs/{run.pk}/cancel/", {}, lambda: _run_state(run) == "cancelled"
    )


def retry_form(team: Team) -> Target:
    run = failed_run(team)
    return Target(
        f"/t/{team.slug}/runs/{run.pk}/retry/",
        {},
        lambda: states(run)["transform"][0] != "failed",
    )


def clear_form(team: Team) -> Target:
    run = failed_run(team)
    return Target(
        f"/t/{team.slug}/runs/{run.pk}/tasks/side/clear/",
        {"downstream": "yes"},
        lambda: states(run)["side"][0] != "success",
    )


def mark_form(team: Team) -> Target:
    run = failed_run(team)
    return Target(
        f"/t/{team.slug}/runs/{run.pk}/tasks/transform/mark/",
        {"state": "success"},
        lambda: states(run)["transform"][0] == "success",
    )


FORMS: dict[str, tuple[Callable[[Team], Target], str]] = {
    "trigger": (trigger_form, "run.trigger"),
    "pause": (pause_button, "workflow.pause"),
    "unpause": (unpause_button, "workflow.unpause"),
    "cancel": (cancel_form, "run.cancel"),
    "retry": (retry_form, "run.retry"),
    "clear": (clear_form, "task.clear"),
    "mark": (mark_form, "task.mark_success"),
}
every_form = pytest.mark.parametrize("form", list(FORMS))


@every_form
def test_a_viewers_forged_post_is_refused_and_changes_nothing(team: Team, form: str) -> None:
    target = FORMS[form][0](team)
    before = state_of(team.tenant)
    response = as_member(team, "viewer").post(target.url, target.body)
    assert response.status_code == 403
    assert "Not allowed" in response.content.decode()
    assert state_of(team.tenant) == before
    assert not target.done()


@every_form
def test_another_tenants_member_gets_404_and_changes_nothing(
    team: Team, outsider: Team, form: str
) -> None:
    target = FORMS[form][0](team)
    before = state_of(team.tenant)
    # Not a member of the tenant in the URL.
    assert as_member(outsider, "owner").post(target.url, target.body).status_code == 404
    # A member of their own tenant, naming the other tenant's object in its URL.
    theirs = target.url.replace(f"/t/{team.slug}/", f"/t/{outsider.slug}/")
    assert as_member(outsider, "owner").post(theirs, target.body).status_code == 404
    assert state_of(team.tenant) == before
    assert not target.done()


@every_form
def test_a_post_without_a_csrf_token_is_refused(team: Team, form: str) -> None:
    target = FORMS[form][0](team)
    before = state_of(team.tenant)
    response = as_member(team, enforce_csrf_checks=True).post(target.url, target.body)
    assert response.status_code == 403
    assert state_of(team.tenant) == before
    assert not target.done()


@every_form
@pytest.mark.parametrize("role", ROLES[1:])
def test_an_operator_and_above_do_it_audited_as_from_the_portal(
    team: Team, form: str, role: str
) -> None:
    target = FORMS[form][0](team)
    before = audit_count(team.tenant)
    response = as_member(team, role).post(target.url, target.body)
    assert response.status_code == 302, response.content.decode()[:2000]
    assert target.done()
    [event] = new_audit_events(team.tenant, before)
    assert (event.action, event.source) == (FORMS[form][1], "portal")
    assert event.actor_id == team.users[role].pk


@pytest.mark.parametrize("form", ["trigger", "cancel", "retry", "clear", "mark"])
def test_a_viewer_cannot_even_open_a_form(team: Team, form: str) -> None:
    target = FORMS[form][0](team)
    assert as_member(team, "viewer").get(target.url).status_code == 403


def test_each_operation_says_what_it_did(team: Team) -> None:
    client = as_member(team)
    failed = failed_run(team)
    response = client.post(f"/t/{team.slug}/runs/{failed.pk}/retry/", follow=True)
    assert f"Run #{failed.pk}: retrying load, report, transform." in response.content.decode()
    running = running_run(team)
    response = client.post(f"/t/{team.slug}/runs/{running.pk}/cancel/", follow=True)
    assert (
        f"Run #{running.pk} cancelled: stopped side, transform; not started: load, report."
        in response.content.decode()
    )
    other = failed_run(team)
    url = f"/t/{team.slug}/runs/{other.pk}/tasks/transform/clear/"
    response = client.post(url, {"downstream": "no"}, follow=True)
    assert f"Cleared transform in run #{other.pk}: they run again." in response.content.decode()
    assert states(other)["load"][0] == "upstream_failed"  # only the task
    url = f"/t/{team.slug}/runs/{other.pk}/tasks/side/mark/"
    response = client.post(url, {"state": "failed"}, follow=True)
    assert f"Marked side failed in run #{other.pk}." in response.content.decode()
    apply(team)
    response = client.post(f"/t/{team.slug}/workflows/export/pause/", follow=True)
    assert "Paused export: its schedule starts no run until unpaused." in (
        response.content.decode()
    )
    response = client.post(f"/t/{team.slug}/workflows/export/pause/", follow=True)
    assert "export was paused already." in response.content.decode()
    assert (
        AuditEvent.objects.dangerously_unscoped()
        .filter(tenant=team.tenant, action="workflow.pause")
        .count()
        == 1
    )


# --- the controls on the read pages -----------------------------------------------------


# The links and buttons to this module's pages, as the read pages write them.
CONTROLS = ('/trigger/"', '/pause/"', '/cancel/"', '/clear/"', '/mark/"')


@pytest.mark.parametrize("role", ROLES)
def test_only_operators_and_above_see_the_controls(team: Team, role: str) -> None:
    apply(team)
    run = running_run(team)
    client = as_member(team, role)
    pages = "".join(
        client.get(url).content.decode()
        for url in (
            f"/t/{team.slug}/workflows/export/",
            f"/t/{team.slug}/runs/{run.pk}/",
            f"/t/{team.slug}/runs/{run.pk}/tasks/transform/",
        )
    )
    shown = [control for control in CONTROLS if control in pages]
    assert shown == ([] if role == "viewer" else list(CONTROLS))


def test_the_trigger_form_draws_on_the_apis_trigger_budget(team: Team) -> None:
    """A browser is no way around the API's rate limits: the tenant's trigger budget
    (its policy's rate_limits) refuses the form once spent, with the API's message."""
    from orchestrator import services as platform

    policy = {**team.tenant.policy, "rate_limits": {"triggers": {"per_tenant": 1}}}
    with tenant_scope([team.tenant]):
        platform.update_tenant(actor=Actor.cli(), tenant=team.tenant, policy=policy)
    apply(team)
    client = as_member(team)
    assert trigger(client, team, key="form-1", table="orders").status_code == 302
    refused = trigger(client, team, key="form-2", table="orders")
    assert refused.status_code == 429
    assert int(refused["Retry-After"]) >= 1
    assert "rate limit of 1 trigger requests per minute per tenant (acme)" in above_the_form(
        refused.content.decode()
    )
    assert len(runs_of(team)) == 1
