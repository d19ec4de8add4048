"""A workflow's page says what starts its runs besides a cron schedule: the datasets of
its dataset schedule (another tenant's named with its tenant) and its event triggers."""

from __future__ import annotations

import pytest
from django.test import Client
from django.urls import reverse

from orchestrator.actors import Actor
from orchestrator.context import tenant_scope
from tests.harness import Team
from workflows.services import apply_workflow

pytestmark = pytest.mark.django_db

SPEC = {
    "name": "forecast",
    "schedule": {"datasets": ["warehouse.sales", {"tenant": "partners", "name": "fx.rates"}]},
    "triggers": [
        {
            "event": {
                "type": "com.acme.file.landed",
                "filter": {"subject": "s3://bucket/in/*"},
            }
        },
        {"event": {"type": "run.succeeded", "workflow": "partners/ingest"}},
    ],
    "tasks": {"fit": {"type": "noop"}},
}


def test_it_shows_the_dataset_schedule_and_the_event_triggers(client: Client, team: Team) -> None:
    with tenant_scope([team.tenant]):
        apply_workflow(actor=Actor(user=team.owner, source="api"), tenant=team.tenant, data=SPEC)
    client.force_login(team.users["viewer"])
    response = client.get(reverse("portal:workflow", args=[team.slug, "forecast"]))
    assert response.status_code == 200
    text = " ".join(response.content.decode().split())
    assert "Runs when each of these datasets has been updated" in text
    assert '<li class="mono">warehouse.sales</li>' in text
    assert '<li class="mono">partners/fx.rates</li>' in text
    assert (
        "each <code>com.acme.file.landed</code> event with subject <code>s3://bucket/in/*</code>"
        in text
    )
    assert (
        "each <code>run.succeeded</code> event of workflow "
        '<span class="mono">partners/ingest</span>' in text
    )
    assert "No schedule" not in text
