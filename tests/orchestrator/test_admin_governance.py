"""Platform staff suspend a tenant from the admin ("Suspend selected tenants", which asks
for a reason first) and resume it ("Resume selected tenants"), each audited. While it is
suspended no new run starts (trigger_run and the REST trigger are refused with the reason,
the scheduler tick and event triggers pass it by) and its API tokens are refused with the
reason; running work goes on. Resuming lifts all of it. The tenant's admin page shows how
much of its quotas it uses."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse

from orchestrator import services
from orchestrator.actors import Actor
from orchestrator.context import tenant_scope
from orchestrator.errors import Conflict, Forbidden, Invalid
from orchestrator.models import AuditEvent, Tenant
from runs import scheduling
from runs.eventlog import publish_event
from runs.models import WorkflowRun
from runs.services import trigger_run
from tests.events.support import dispatch_pending
from tests.harness import Team, assert_problem, audit_count, gql, new_audit_events, send
from workflows.models import Workflow
from workflows.services import apply_workflow

pytestmark = pytest.mark.django_db

REASON = "invoice 2026-11 unpaid; write to billing@example.com"
UTC = dt.UTC
T0 = dt.datetime(2026, 3, 2, 9, 30, tzinfo=UTC)
HOURLY: dict[str, Any] = {
    "name": "hourly",
    "schedule": {"cron": "0 * * * *", "timezone": "UTC", "catchup": "all"},
    "tasks": {"only": {"type": "noop"}},
}
ON_PING: dict[str, Any] = {
    "name": "on-ping",
    "triggers": [{"event": {"type": "com.acme.ping"}}],
    "tasks": {"only": {"type": "noop"}},
}
CHANGELIST = reverse("admin:orchestrator_tenant_changelist")


def at(hour: int, minute: int = 0) -> dt.datetime:
    return dt.datetime(2026, 3, 2, hour, minute, tzinfo=UTC)


@pytest.fixture
def root(db: None) -> User:
    return User.objects.create_superuser("root", password=None)


@pytest.fixture
def staff(root: User) -> Client:
    client = Client()
    client.force_login(root)
    return client


def apply(team: Team, spec: dict[str, Any]) -> Workflow:
    with tenant_scope([team.tenant]):
        return apply_workflow(actor=Actor.cli(), tenant=team.tenant, data=spec, now=T0).workflow


def fresh(tenant: Tenant) -> Tenant:
    return Tenant.objects.get(pk=tenant.pk)


def trigger(workflow: Workflow) -> WorkflowRun:
    """trigger_run as an operator would, on rows read afresh (as every request reads them)."""
    workflow = Workflow.objects.dangerously_unscoped().select_related("tenant").get(pk=workflow.pk)
    with tenant_scope([workflow.tenant_id]):
        return trigger_run(actor=Actor.cli(), workflow=workflow, params={}).run


def runs_url(team: Team, workflow: Workflow) -> str:
    return f"/api/v1/tenants/{team.slug}/workflows/{workflow.name}/runs/"


def suspend_in_admin(staff: Client, tenant: Tenant, reason: str = REASON) -> Any:
    return staff.post(
        CHANGELIST,
        {"action": "suspend", "_selected_action": [tenant.pk], "reason": reason, "apply": "1"},
    )


def runs_of(workflow: Workflow) -> int:
    return WorkflowRun.objects.dangerously_unscoped().filter(workflow=workflow).count()


# --- the actions ------------------------------------------------------------------------


def test_suspend_asks_for_a_reason_first_and_refuses_none(staff: Client, team: Team) -> None:
    asked = staff.post(CHANGELIST, {"action": "suspend", "_selected_action": [team.tenant.pk]})
    assert asked.status_code == 200
    page = asked.content.decode()
    assert "Suspend tenants" in page
    assert 'name="reason"' in page
    assert f'name="_selected_action" value="{team.tenant.pk}"' in page
    blank = suspend_in_admin(staff, team.tenant, reason="   ")
    assert blank.status_code == 200
    assert "This field is required." in blank.content.decode()
    too_long = suspend_in_admin(staff, team.tenant, reason="x" * 501)
    assert too_long.status_code == 200
    assert "at most 500 characters" in too_long.content.decode()
    assert fresh(team.tenant).suspended_at is None


def test_suspend_and_resume_through_the_admin_are_audited(
    staff: Client, root: User, team: Team
) -> None:
    before = audit_count(team.tenant)
    response = suspend_in_admin(staff, team.tenant)
    assert response.status_code == 302
    tenant = fresh(team.tenant)
    assert tenant.suspended_at is not None
    assert tenant.suspended_reason == REASON
    [event] = new_audit_events(team.tenant, before)
    assert (event.action, event.source, event.actor_id) == ("tenant.suspend", "admin", root.pk)
    assert event.changes["after"]["suspended_reason"] == REASON
    assert (
        event.changes["before"]["suspended_at"],
        event.changes["before"]["suspended_reason"],
    ) == (
        None,
        "",
    )
    listed = staff.get(CHANGELIST, {"suspended_at__isempty": "0"}).content.decode()
    assert REASON in listed

    response = staff.post(CHANGELIST, {"action": "resume", "_selected_action": [team.tenant.pk]})
    assert response.status_code == 302
    tenant = fresh(team.tenant)
    assert (tenant.suspended_at, tenant.suspended_reason) == (None, "")
    resumed = new_audit_events(team.tenant, before)[-1]
    assert (resumed.action, resumed.source) == ("tenant.resume", "admin")
    assert resumed.changes["before"]["suspended_reason"] == REASON
    assert resumed.changes["after"]["suspended_reason"] == ""


def test_a_second_suspend_or_a_resume_of_a_live_tenant_changes_nothing(
    staff: Client, team: Team
) -> None:
    resumed = staff.post(
        CHANGELIST, {"action": "resume", "_selected_action": [team.tenant.pk]}, follow=True
    )
    message = f"{team.slug}: tenant &#x27;{team.slug}&#x27; is not suspended"  # capfirst'd
    assert message in resumed.content.decode().lower()
    suspend_in_admin(staff, team.tenant)
    count = audit_count(team.tenant)
    asked = staff.post(CHANGELIST, {"action": "suspend", "_selected_action": [team.tenant.pk]})
    assert f"{team.slug} ({team.tenant.name}): already suspended" in asked.content.decode()
    again = staff.post(
        CHANGELIST,
        {"action": "suspend", "_selected_action": [team.tenant.pk], "reason": "x", "apply": "1"},
        follow=True,
    )
    assert "already suspended" in again.content.decode()
    assert "0 changed: none" in again.content.decode()
    assert fresh(team.tenant).suspended_reason == REASON
    assert audit_count(team.tenant) == count


# --- the services -----------------------------------------------------------------------


@pytest.mark.parametrize("reason", ["", "   ", "x" * 501])
def test_suspend_refuses_a_missing_or_long_reason(team: Team, reason: str) -> None:
    with pytest.raises(Invalid) as raised:
        services.suspend_tenant(actor=Actor.cli(), tenant=team.tenant, reason=reason)
    assert [path for path, _ in raised.value.errors] == ["reason"]
    assert fresh(team.tenant).suspended_at is None


def test_suspend_and_resume_are_for_platform_staff_only(team: Team) -> None:
    owner = Actor(user=team.owner, source="api")
    with pytest.raises(Forbidden):
        services.suspend_tenant(actor=owner, tenant=team.tenant, reason=REASON)
    services.suspend_tenant(actor=Actor.cli(), tenant=team.tenant, reason=REASON)
    with pytest.raises(Forbidden):
        services.resume_tenant(actor=owner, tenant=team.tenant)
    assert fresh(team.tenant).suspended_at is not None


def test_suspend_refuses_a_suspended_or_archived_tenant(team: Team) -> None:
    with pytest.raises(Conflict, match="is not suspended"):
        services.resume_tenant(actor=Actor.cli(), tenant=team.tenant)
    services.suspend_tenant(actor=Actor.cli(), tenant=team.tenant, reason=REASON)
    with pytest.raises(Conflict, match="already suspended"):
        services.suspend_tenant(actor=Actor.cli(), tenant=team.tenant, reason="again")
    services.resume_tenant(actor=Actor.cli(), tenant=team.tenant)
    services.archive_tenant(actor=Actor.cli(), tenant=team.tenant)
    with pytest.raises(Conflict, match="archived"):
        services.suspend_tenant(actor=Actor.cli(), tenant=team.tenant, reason=REASON)


# --- what a suspension refuses, and a resume gives back -----------------------------------


def test_a_suspended_tenant_starts_no_run_and_its_tokens_are_refused(
    staff: Client, team: Team, outsider: Team
) -> None:
    manual = apply(team, {"name": "manual", "tasks": {"only": {"type": "noop"}}})
    hourly = apply(team, HOURLY)
    apply(team, ON_PING)
    theirs = apply(outsider, {"name": "manual", "tasks": {"only": {"type": "noop"}}})
    running = trigger(manual)
    operator = Client()
    operator.force_login(team.users["operator"])

    assert suspend_in_admin(staff, team.tenant).status_code == 302

    # Triggers: the service, the REST endpoint (with a session: tokens are refused first).
    with pytest.raises(Conflict) as raised:
        trigger(manual)
    assert raised.value.message == f"tenant {team.slug} is suspended: {REASON}"
    refused = operator.post(runs_url(team, manual), {}, content_type="application/json")
    body = assert_problem(refused, 409)
    assert f"is suspended: {REASON}" in body["detail"]
    # Its API tokens, over REST and GraphQL, whatever they ask.
    for token in team.tokens.values():
        response = send(token, "POST", runs_url(team, manual), {})
        assert response.status_code == 401
        assert f"tenant suspended: {REASON}" in response.content.decode()
    listed = send(team.tokens["viewer"], "GET", f"/api/v1/tenants/{team.slug}/workflows/")
    assert listed.status_code == 401
    assert gql(team.tokens["viewer"], "{ __typename }").status_code == 401
    # The scheduler and event triggers pass it by.
    assert scheduling.tick(now=at(10, 0)) == 0
    assert runs_of(hourly) == 0
    publish_event(actor=Actor.cli(), tenant=team.tenant, type="com.acme.ping", source="/t", id="1")
    assert dispatch_pending() == 0
    # Running work goes on; other tenants are untouched.
    assert WorkflowRun.objects.dangerously_unscoped().get(pk=running.pk).state == "running"
    assert send(outsider.tokens["owner"], "POST", runs_url(outsider, theirs), {}).status_code == 201
    assert WorkflowRun.objects.dangerously_unscoped().filter(tenant=team.tenant).count() == 1

    staff.post(CHANGELIST, {"action": "resume", "_selected_action": [team.tenant.pk]})

    assert trigger(manual).state in ("running", "queued")
    response = operator.post(runs_url(team, manual), {}, content_type="application/json")
    assert response.status_code == 201, response.content
    response = send(team.tokens["operator"], "POST", runs_url(team, manual), {})
    assert response.status_code == 201, response.content
    assert gql(team.tokens["viewer"], "{ __typename }").status_code == 200
    assert scheduling.tick(now=at(10, 0)) == 1
    assert runs_of(hourly) == 1
    publish_event(actor=Actor.cli(), tenant=team.tenant, type="com.acme.ping", source="/t", id="2")
    assert dispatch_pending() == 1


# --- quota usage ------------------------------------------------------------------------


def test_the_tenant_page_shows_quota_usage(staff: Client, team: Team) -> None:
    services.update_tenant(
        actor=Actor.cli(), tenant=team.tenant, quotas={"max_workflows": 7, "max_tokens": 9}
    )
    manual = apply(team, {"name": "manual", "tasks": {"only": {"type": "noop"}}})
    apply(team, HOURLY)
    trigger(manual)
    page = staff.get(reverse("admin:orchestrator_tenant_change", args=[team.tenant.pk]))
    assert page.status_code == 200
    text = page.content.decode()
    assert "<td>max_workflows</td><td>2</td><td>7</td>" in text
    assert "<td>max_concurrent_runs</td><td>1</td><td>50</td>" in text
    assert f"<td>max_tokens</td><td>{len(team.tokens)}</td><td>9</td>" in text


def test_only_superusers_see_the_actions(client: Client, team: Team) -> None:
    client.force_login(User.objects.create_user("clerk", password=None, is_staff=True))
    response = client.post(CHANGELIST, {"action": "suspend", "_selected_action": [team.tenant.pk]})
    assert response.status_code == 403
    assert fresh(team.tenant).suspended_at is None
    assert not AuditEvent.objects.dangerously_unscoped().filter(action="tenant.suspend").exists()
