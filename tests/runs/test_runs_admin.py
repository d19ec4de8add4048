"""The admin shows platform staff every tenant's runs, task instances and attempts,
read-only (no add, no change, no delete), searchable by workflow name, tenant slug and run
id, each linking to the tenant's admin page and the portal's run page; a member who is
not a superuser sees none of it. "Cancel selected runs" cancels the unfinished ones
through the run service, audited as the staff member's, and leaves finished ones be."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.contrib.auth.models import User
from django.test import Client
from django.urls import reverse

from orchestrator.models import AuditEvent
from runs.models import TaskAttempt, TaskInstance, WorkflowRun
from tests.harness import Team, audit_count, new_audit_events
from tests.runs.run_states import run_row, running_run, started_run, states, succeeded_run

pytestmark = pytest.mark.django_db

MODELS: list[Any] = [WorkflowRun, TaskInstance, TaskAttempt]
RUNS = reverse("admin:runs_workflowrun_changelist")


def url(model: Any, view: str, *args: Any) -> str:
    return reverse(f"admin:{model._meta.app_label}_{model._meta.model_name}_{view}", args=args)


@pytest.fixture
def root(db: None) -> User:
    return User.objects.create_superuser("root", password=None)


@pytest.fixture
def staff(client: Client, root: User) -> Client:
    client.force_login(root)
    return client


def listed_runs(staff: Client, **query: str) -> list[int]:
    page = staff.get(RUNS, query)
    assert page.status_code == 200
    return sorted(int(pk) for pk in re.findall(r'name="_selected_action" value="(\d+)"', page.text))


def test_staff_see_runs_instances_and_attempts_read_only(staff: Client, team: Team) -> None:
    run = running_run(team)
    rows = {
        WorkflowRun: run,
        TaskInstance: TaskInstance.objects.dangerously_unscoped().get(run=run, task_id="transform"),
        TaskAttempt: TaskAttempt.objects.dangerously_unscoped()
        .filter(task_instance__run=run, task_instance__task_id="transform")
        .get(),
    }
    portal = reverse("portal:run", kwargs={"tenant": team.slug, "run": run.pk})
    tenant_page = reverse("admin:orchestrator_tenant_change", args=[team.tenant.pk])
    for model, obj in rows.items():
        for view, args in (("changelist", ()), ("change", (obj.pk,))):
            response = staff.get(url(model, view, *args))
            assert response.status_code == 200, (model, view)
        page = response.text  # the change page
        assert f'href="{tenant_page}"' in page
        assert portal in page  # the run's page, or one of its tasks' pages under it
        assert staff.get(url(model, "add")).status_code == 403
        assert staff.get(url(model, "delete", obj.pk)).status_code == 403
        assert staff.post(url(model, "change", obj.pk), {}).status_code == 403
    assert f'href="{portal}"' in staff.get(url(WorkflowRun, "change", run.pk)).text
    # The attempt's claim token is nobody's business.
    assert "claim_token" not in staff.get(url(TaskAttempt, "change", rows[TaskAttempt].pk)).text


def test_they_search_and_filter_runs(staff: Client, team: Team, outsider: Team) -> None:
    ours = running_run(team)
    theirs = started_run(outsider)
    assert listed_runs(staff) == sorted([ours.pk, theirs.pk])
    assert listed_runs(staff, q=team.slug) == [ours.pk]
    assert listed_runs(staff, q=str(theirs.pk)) == [theirs.pk]
    assert listed_runs(staff, q="etl") == sorted([ours.pk, theirs.pk])  # the workflow's name
    assert listed_runs(staff, q="no-such-workflow") == []
    assert listed_runs(staff, tenant__id__exact=str(outsider.tenant.pk)) == [theirs.pk]
    assert listed_runs(staff, state__exact="running") == sorted([ours.pk, theirs.pk])
    assert listed_runs(staff, state__exact="success") == []
    for model in (TaskInstance, TaskAttempt):
        page = staff.get(url(model, "changelist"), {"q": str(ours.pk)})
        assert page.status_code == 200
        page = staff.get(url(model, "changelist"), {"state__exact": "running", "q": "acme"})
        assert page.status_code == 200
        assert "transform" in page.text


def test_members_who_are_not_superusers_see_none_of_it(client: Client, team: Team) -> None:
    run = running_run(team)
    client.force_login(team.owner)
    for model in MODELS:
        assert client.get(url(model, "changelist")).status_code == 302  # to the admin's login
    client.force_login(User.objects.create_user("clerk", password=None, is_staff=True))
    for model in MODELS:
        assert client.get(url(model, "changelist")).status_code == 403
    refused = client.post(RUNS, {"action": "cancel", "_selected_action": [run.pk]})
    assert refused.status_code == 403
    assert run_row(run)["state"] == "running"


def test_cancel_cancels_the_selected_unfinished_runs_and_audits_each(
    staff: Client, root: User, team: Team
) -> None:
    running = running_run(team)
    done = succeeded_run(team)
    other = running_run(team)  # not selected
    before = audit_count(team.tenant)
    response = staff.post(
        RUNS, {"action": "cancel", "_selected_action": [running.pk, done.pk]}, follow=True
    )
    assert response.status_code == 200
    assert f"1 run(s) cancelled: {running.pk}" in response.text
    assert run_row(running)["state"] == "cancelled"
    assert states(running)["transform"] == ("cancelled", 1)
    assert run_row(done)["state"] == "success"
    assert run_row(other)["state"] == "running"
    [event] = new_audit_events(team.tenant, before)
    assert (event.action, event.source, event.actor_id) == ("run.cancel", "admin", root.pk)
    assert event.object_id == str(running.pk)
    assert event.changes == {
        "before": {"state": "running"},
        "after": {"state": "cancelled"},
    }
    cancels = AuditEvent.objects.dangerously_unscoped().filter(action="run.cancel")
    assert list(cancels.values_list("object_id", flat=True)) == [str(running.pk)]
