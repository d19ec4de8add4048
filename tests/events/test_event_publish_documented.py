"""docs/events.md, "The event log and the events API", does what it says: its example
workflow, applied, gets one run from its example event (published twice with the same id)
with the params its templates render, and none from an event whose subject its filter
refuses. The spec and the event are read out of the document, never copied here."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
import yaml
from django.conf import settings

from orchestrator.actors import Actor
from orchestrator.context import tenant_scope
from runs.models import WorkflowRun
from tests.events.support import dispatch_pending
from tests.harness import Team, send
from workflows.services import apply_workflow

pytestmark = pytest.mark.django_db

DOC = Path(settings.BASE_DIR) / "docs" / "events.md"


def section() -> str:
    text = DOC.read_text()
    start = text.index("## The event log and the events API")
    return text[start : text.index("\n## ", start + 1)]


def documented_spec() -> dict[str, Any]:
    block = re.search(r"```yaml\n(.*?)```", section(), re.S)
    assert block is not None
    spec: dict[str, Any] = yaml.safe_load(block.group(1))
    return spec


def documented_event() -> dict[str, Any]:
    body = re.search(r"-d '(\{.*?\})'", section())
    assert body is not None
    event: dict[str, Any] = json.loads(body.group(1))
    return event


def test_the_documented_trigger_runs_once_per_documented_event(team: Team) -> None:
    spec = documented_spec()
    with tenant_scope([team.tenant]):
        apply_workflow(actor=Actor(user=team.owner, source="api"), tenant=team.tenant, data=spec)
    url = f"/api/v1/tenants/{team.slug}/events/"
    event = documented_event()
    assert send(team.tokens["operator"], "POST", url, event).status_code == 201
    assert send(team.tokens["operator"], "POST", url, event).status_code == 200
    elsewhere = {**event, "id": "other", "subject": "s3://bucket/out/x.csv"}
    assert send(team.tokens["operator"], "POST", url, elsewhere).status_code == 201
    assert dispatch_pending() == 1
    with tenant_scope([team.tenant]):
        [run] = WorkflowRun.objects.filter(workflow__name=spec["name"])
    assert run.params == {"path": event["subject"], "size": event["data"]["size"]}
    assert run.trigger_source == "event"
    assert run.event is not None
    assert (run.event["type"], run.event["subject"]) == (event["type"], event["subject"])
