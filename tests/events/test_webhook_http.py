"""/hooks/<uid> as HTTP: POST only (any other method a 405 problem, the same for an unknown
URL), no CSRF token, session or API token needed or used, and no cookie set."""

from __future__ import annotations

import json
import time

import pytest
from django.test import Client

from events.webhooks import SIGNATURE_HEADER, create_secret, sign
from orchestrator.actors import Actor
from orchestrator.context import tenant_scope
from tests.harness import Team
from workflows.services import apply_workflow

pytestmark = pytest.mark.django_db

SPEC = {
    "name": "ingest",
    "triggers": [{"webhook": {"name": "uploads"}}],
    "tasks": {"load": {"type": "noop"}},
}


def a_webhook(team: Team) -> tuple[str, str]:
    actor = Actor(user=team.owner, source="api")
    with tenant_scope([team.tenant]):
        workflow = apply_workflow(actor=actor, tenant=team.tenant, data=SPEC).workflow
        webhook, _, secret = create_secret(actor=actor, workflow=workflow, name="uploads")
    return f"/hooks/{webhook.uid}", secret


@pytest.mark.parametrize("method", ["GET", "PUT", "DELETE", "PATCH"])
def test_it_takes_post_only(team: Team, method: str) -> None:
    path, _ = a_webhook(team)
    known = Client().generic(method, path)
    unknown = Client().generic(method, "/hooks/not-a-webhook")
    for answer in (known, unknown):
        assert answer.status_code == 405
        assert answer["Allow"] == "POST"
        assert answer["Content-Type"] == "application/problem+json"
    assert known.json() == unknown.json()


def test_it_needs_no_csrf_token_session_or_api_token_and_sets_no_cookie(team: Team) -> None:
    path, secret = a_webhook(team)
    browser = Client(enforce_csrf_checks=True)
    browser.force_login(team.users["viewer"])  # a session cookie is sent, and ignored
    body = json.dumps({"id": "csrf"}).encode()
    answer = browser.post(
        path,
        body,
        content_type="application/json",
        headers={SIGNATURE_HEADER: sign(secret, body, int(time.time()))},
    )
    assert answer.status_code == 202, answer.content
    assert not answer.cookies
    unsigned = Client(enforce_csrf_checks=True).post(path, body, content_type="application/json")
    assert unsigned.status_code == 401
    assert not unsigned.cookies
