"""/api/v1/tenants/{t}/workflows/{w}/webhooks/: members see a workflow's webhooks (URL,
secrets' prefixes and expiry, deliveries), editors make a signing secret (shown once; the
older ones expire after the overlap) and revoke one; each change is audited."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest

from events.webhooks import create_secret, sign
from orchestrator.actors import Actor
from orchestrator.context import tenant_scope
from tests.harness import (
    EndpointCase,
    EndpointSuite,
    Team,
    api,
    assert_problem,
    send,
)
from workflows.services import apply_workflow

pytestmark = pytest.mark.django_db

SPEC = {
    "name": "ingest",
    "triggers": [{"webhook": {"name": "uploads"}}, {"webhook": {"name": "manual"}}],
    "tasks": {"load": {"type": "noop"}},
}
HOOKS = "/api/v1/tenants/{tenant}/workflows/{workflow}/webhooks/"
SECRETS = HOOKS + "uploads/secrets/"


def a_workflow(team: Team) -> dict[str, str]:
    with tenant_scope([team.tenant]):
        apply_workflow(actor=Actor(user=team.owner, source="api"), tenant=team.tenant, data=SPEC)
    return {"workflow": "ingest"}


def a_secret(team: Team) -> dict[str, str]:
    a_workflow(team)
    with tenant_scope([team.tenant]):
        from workflows.selectors import get_workflow

        _, secret, _ = create_secret(
            actor=Actor(user=team.owner, source="api"),
            workflow=get_workflow("ingest"),
            name="uploads",
        )
    return {"workflow": "ingest", "secret_id": str(secret.pk)}


class TestWebhookEndpoints(EndpointSuite):
    cases = [
        EndpointCase("list", "GET", HOOKS, "viewer", setup=a_workflow),
        EndpointCase(
            "create-secret",
            "POST",
            SECRETS,
            "editor",
            status=201,
            body={"overlap": 60},
            setup=a_workflow,
            audit_action="webhook.secret_create",
        ),
        EndpointCase(
            "delete-secret",
            "DELETE",
            SECRETS + "{secret_id}/",
            "editor",
            status=204,
            setup=a_secret,
            audit_action="webhook.secret_delete",
        ),
    ]


def test_a_secret_is_shown_once_and_the_url_takes_signed_posts(team: Team, settings: Any) -> None:
    settings.PUBLIC_URL = "https://orc.example.com"
    a_workflow(team)
    listed = send(team.tokens["viewer"], "GET", HOOKS.format(tenant=team.slug, workflow="ingest"))
    assert [(w["name"], w["url"], w["secrets"]) for w in listed.json()] == [
        ("uploads", None, []),
        ("manual", None, []),
    ]
    made = send(
        team.tokens["editor"], "POST", SECRETS.format(tenant=team.slug, workflow="ingest"), {}
    )
    assert made.status_code == 201
    created = made.json()
    assert created["secret"].startswith("whsec_")
    assert created["url"].startswith("https://orc.example.com/hooks/")
    assert created["secret"].startswith(created["prefix"])
    listed = send(team.tokens["viewer"], "GET", HOOKS.format(tenant=team.slug, workflow="ingest"))
    [uploads] = [w for w in listed.json() if w["name"] == "uploads"]
    assert created["secret"] not in json.dumps(listed.json())
    assert uploads["secrets"][0]["prefix"] == created["prefix"]
    assert uploads["secrets"][0]["expires_at"] is None
    path = "/hooks/" + created["url"].rsplit("/", 1)[1]
    body = b"{}"
    posted = api().post(
        path,
        body,
        content_type="application/json",
        HTTP_ORC_SIGNATURE=sign(created["secret"], body, int(time.time())),
    )
    assert posted.status_code == 202
    listed = send(team.tokens["viewer"], "GET", HOOKS.format(tenant=team.slug, workflow="ingest"))
    [uploads] = [w for w in listed.json() if w["name"] == "uploads"]
    assert uploads["deliveries"] == 1
    assert uploads["last_delivery_at"] is not None


def test_a_rotation_gives_the_older_secret_an_expiry(team: Team) -> None:
    a_workflow(team)
    url = SECRETS.format(tenant=team.slug, workflow="ingest")
    send(team.tokens["editor"], "POST", url, {})
    send(team.tokens["editor"], "POST", url, {"overlap": 3600})
    listed = send(team.tokens["viewer"], "GET", HOOKS.format(tenant=team.slug, workflow="ingest"))
    [uploads] = [w for w in listed.json() if w["name"] == "uploads"]
    newest, older = uploads["secrets"]
    assert newest["expires_at"] is None
    assert older["expires_at"] is not None


def test_an_undeclared_webhook_and_a_bad_overlap_are_refused(team: Team) -> None:
    a_workflow(team)
    other = HOOKS.format(tenant=team.slug, workflow="ingest") + "nope/secrets/"
    body = assert_problem(send(team.tokens["editor"], "POST", other, {}), 404)
    assert "declares no webhook 'nope'; it declares: uploads, manual" in body["detail"]
    url = SECRETS.format(tenant=team.slug, workflow="ingest")
    assert_problem(send(team.tokens["editor"], "POST", url, {"overlap": -1}), 400, "overlap")
