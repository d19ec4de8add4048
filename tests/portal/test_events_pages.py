"""The events page (/t/<tenant>/events/): every member reads the tenant's event log, the
engine's events and published ones, filtered by type, with the runs each one started; an
operator publishes through the form (the service the API calls: the same checks, audited
with the source `portal`); a viewer gets no form and a 403 on POST, another tenant a 404."""

from __future__ import annotations

from typing import Any

import pytest
from django.test import Client

from orchestrator.actors import Actor
from orchestrator.context import tenant_scope
from orchestrator.models import AuditEvent
from runs.eventlog import publish_event
from runs.models import Event, WorkflowRun
from tests.events.support import dispatch_pending
from tests.harness import Team, tenant_state
from tests.notifications.objects import an_event, workflow
from workflows.services import apply_workflow

pytestmark = pytest.mark.django_db

EVENTS = "/t/{tenant}/events/"
PUBLISH = "/t/{tenant}/events/publish/"
ON_FILE = {
    "name": "on-file",
    "params": {"path": {"type": "string", "default": ""}},
    "triggers": [
        {
            "event": {
                "type": "com.acme.file.landed",
                "filter": {"subject": "s3://bucket/in/*"},
                "params": {"path": "{{ event.subject }}"},
            }
        }
    ],
    "tasks": {"load": {"type": "noop"}},
}


def signed_in(client: Client, team: Team, role: str) -> Client:
    client.force_login(team.users[role])
    return client


def published(team: Team, **fields: Any) -> Event:
    with tenant_scope([team.tenant]):
        event, _ = publish_event(
            actor=Actor(user=team.owner, source="api"),
            tenant=team.tenant,
            **({"type": "com.acme.file.landed", "source": "/acme/uploader"} | fields),
        )
    return event


def test_a_viewer_reads_the_log_filtered_by_type_without_the_form(
    client: Client, team: Team
) -> None:
    an_event(team, workflow(team, "sales"), type="run.failed")
    published(team, subject="s3://bucket/in/a.csv", data={"size": 120})
    signed_in(client, team, "viewer")
    page = client.get(EVENTS.format(tenant=team.slug))
    assert page.status_code == 200
    text = page.content.decode()
    assert "com.acme.file.landed" in text
    assert "s3://bucket/in/a.csv" in text
    assert "/acme/uploader" in text
    assert "run.failed" in text
    assert "&quot;size&quot;: 120" in text  # the CloudEvent, shown whole
    assert "Publish an event" not in text
    assert 'href="/t/acme/events/"' in text  # the nav link
    only = client.get(EVENTS.format(tenant=team.slug) + "?type=run.failed").content.decode()
    assert "run.failed" in only
    assert "/acme/uploader" not in only
    bad = client.get(EVENTS.format(tenant=team.slug) + "?type=-x")
    assert bad.status_code == 200
    assert "is not an event type" in bad.content.decode()


def test_the_log_shows_the_runs_an_event_started(client: Client, team: Team) -> None:
    with tenant_scope([team.tenant]):
        apply_workflow(actor=Actor(user=team.owner, source="api"), tenant=team.tenant, data=ON_FILE)
    event = published(team, subject="s3://bucket/in/a.csv", id="one")
    assert dispatch_pending() == 1
    with tenant_scope([team.tenant]):
        run = WorkflowRun.objects.get(workflow__name="on-file")
    text = signed_in(client, team, "viewer").get(EVENTS.format(tenant=team.slug)).content.decode()
    assert f'data-event="{event.uid}"' in text
    assert f'href="/t/acme/runs/{run.pk}/"' in text


def test_an_operator_publishes_through_the_form(client: Client, team: Team) -> None:
    signed_in(client, team, "operator")
    assert "Publish an event" in client.get(EVENTS.format(tenant=team.slug)).content.decode()
    form = {
        "type": "com.acme.file.landed",
        "source": "/acme/portal",
        "subject": "s3://bucket/in/b.csv",
        "id": "b-1",
        "data": '{"rows": 3}',
    }
    done = client.post(PUBLISH.format(tenant=team.slug), form, follow=True)
    assert done.status_code == 200
    assert "Event com.acme.file.landed published." in done.content.decode()
    event = Event.objects.dangerously_unscoped().get(tenant=team.tenant)
    assert (event.type, event.source, event.subject, event.external_id, event.data) == (
        "com.acme.file.landed",
        "/acme/portal",
        "s3://bucket/in/b.csv",
        "b-1",
        {"rows": 3},
    )
    [entry] = AuditEvent.objects.dangerously_unscoped().filter(
        tenant=team.tenant, action="event.publish"
    )
    assert (entry.source, entry.actor_id) == ("portal", team.users["operator"].pk)
    again = client.post(PUBLISH.format(tenant=team.slug), form, follow=True)
    assert "nothing new was published" in again.content.decode()
    assert Event.objects.dangerously_unscoped().filter(tenant=team.tenant).count() == 1


@pytest.mark.parametrize(
    ("changes", "said"),
    [
        ({"data": "{rows: 3"}, "not JSON"),
        ({"type": "run.succeeded"}, "reserved for the service"),
        ({"source": ""}, "required"),
    ],
)
def test_a_bad_form_is_shown_again_with_its_error_and_stores_nothing(
    client: Client, team: Team, changes: dict[str, str], said: str
) -> None:
    signed_in(client, team, "operator")
    before = tenant_state(team.tenant)
    form = {"type": "com.acme.x", "source": "/acme", "data": "{}"} | changes
    response = client.post(PUBLISH.format(tenant=team.slug), form)
    assert response.status_code == 400
    text = response.content.decode()
    assert said in text
    assert 'aria-invalid="true"' in text
    assert tenant_state(team.tenant) == before


def test_a_viewer_cannot_publish_and_another_tenant_sees_nothing(
    client: Client, team: Team, outsider: Team
) -> None:
    event = published(team)
    before = tenant_state(team.tenant)
    form = {"type": "com.acme.x", "source": "/acme"}
    signed_in(client, team, "viewer")
    assert client.post(PUBLISH.format(tenant=team.slug), form).status_code == 403
    assert client.get(PUBLISH.format(tenant=team.slug)).status_code == 403
    client.force_login(outsider.owner)
    assert client.get(EVENTS.format(tenant=team.slug)).status_code == 404
    assert client.post(PUBLISH.format(tenant=team.slug), form).status_code == 404
    theirs = client.get(EVENTS.format(tenant=outsider.slug)).content.decode()
    assert f'data-event="{event.uid}"' not in theirs
    assert tenant_state(team.tenant) == before


def test_a_post_without_a_csrf_token_is_403(team: Team) -> None:
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(team.users["operator"])
    response = browser.post(
        PUBLISH.format(tenant=team.slug), {"type": "com.acme.x", "source": "/a"}
    )
    assert response.status_code == 403
    assert not Event.objects.dangerously_unscoped().filter(tenant=team.tenant).exists()
