"""Webhooks over GraphQL: `webhooks` for any member, `createWebhookSecret` (the secret in
its answer, once) and `deleteWebhookSecret` for editors, through the same services as
REST: a role too low is FORBIDDEN, another tenant NOT_FOUND, each change audited once. The
documents docs/events.md shows run as written."""

from __future__ import annotations

import json
import re
import time
from pathlib import Path
from typing import Any

import pytest
from django.conf import settings as django_settings
from django.test import Client

from events.webhooks import SIGNATURE_HEADER, create_secret, sign
from orchestrator.actors import Actor
from orchestrator.context import tenant_scope
from tests.graphql_harness import MutationCase, MutationSuite
from tests.harness import Team, gql, gql_error
from workflows.selectors import get_workflow
from workflows.services import apply_workflow

pytestmark = pytest.mark.django_db

SPEC = {
    "name": "ingest",
    "params": {"region": {"type": "string", "default": "eu"}},
    "triggers": [
        {"webhook": {"name": "uploads", "params": {"region": "{{ event.data.region }}"}}},
        {"webhook": {"name": "manual"}},
    ],
    "tasks": {"load": {"type": "noop"}},
}
CREATE = """mutation($t: String!, $w: String!, $n: String!, $o: Int! = 86400) {
  createWebhookSecret(tenant: $t, workflow: $w, name: $n, overlap: $o) {
    signingSecret secret { id prefix expiresAt expired } webhook { name url }
  }
}"""
DELETE = """mutation($t: String!, $w: String!, $n: String!, $id: Int!) {
  deleteWebhookSecret(tenant: $t, workflow: $w, name: $n, id: $id)
}"""
WEBHOOKS = """query($t: String!, $w: String!) {
  webhooks(tenant: $t, workflow: $w) {
    name url params deliveries lastDeliveryAt secrets { id prefix createdAt expiresAt expired }
  }
}"""


def a_workflow(team: Team) -> dict[str, Any]:
    with tenant_scope([team.tenant]):
        apply_workflow(actor=Actor(user=team.owner, source="api"), tenant=team.tenant, data=SPEC)
    return {"t": team.slug, "w": "ingest", "n": "uploads"}


def a_secret(team: Team) -> dict[str, Any]:
    variables = a_workflow(team)
    with tenant_scope([team.tenant]):
        _, secret, _ = create_secret(
            actor=Actor(user=team.owner, source="api"),
            workflow=get_workflow("ingest"),
            name="uploads",
        )
    return variables | {"id": secret.pk}


class TestWebhookMutations(MutationSuite):
    cases = [
        MutationCase("createWebhookSecret", CREATE, a_workflow, "editor", "webhook.secret_create"),
        MutationCase("deleteWebhookSecret", DELETE, a_secret, "editor", "webhook.secret_delete"),
    ]


def test_it_shows_the_secret_once_and_its_url_takes_signed_posts(team: Team, settings: Any) -> None:
    settings.PUBLIC_URL = "https://orc.example.com"
    variables = a_workflow(team)
    listed = gql(team.tokens["viewer"], WEBHOOKS, variables).json()["data"]["webhooks"]
    assert [(w["name"], w["url"], w["secrets"], w["deliveries"]) for w in listed] == [
        ("uploads", None, [], 0),
        ("manual", None, [], 0),
    ]
    assert listed[0]["params"] == {"region": "{{ event.data.region }}"}
    made = gql(team.tokens["editor"], CREATE, variables).json()["data"]["createWebhookSecret"]
    secret = made["signingSecret"]
    assert secret.startswith(made["secret"]["prefix"])
    assert made["secret"]["expiresAt"] is None
    assert made["webhook"]["url"].startswith("https://orc.example.com/hooks/")
    uid = made["webhook"]["url"].rsplit("/", 1)[1]
    body = json.dumps({"region": "us"}).encode()
    posted = Client().post(
        f"/hooks/{uid}",
        body,
        content_type="application/json",
        headers={SIGNATURE_HEADER: sign(secret, body, int(time.time()))},
    )
    assert posted.status_code == 202
    answer = gql(team.tokens["viewer"], WEBHOOKS, variables)
    assert secret not in answer.content.decode()
    [uploads, _] = answer.json()["data"]["webhooks"]
    assert uploads["deliveries"] == 1
    assert uploads["lastDeliveryAt"] is not None
    assert [s["prefix"] for s in uploads["secrets"]] == [made["secret"]["prefix"]]


def test_a_rotation_gives_the_older_secret_an_expiry(team: Team) -> None:
    variables = a_workflow(team)
    gql(team.tokens["editor"], CREATE, variables)
    gql(team.tokens["editor"], CREATE, variables | {"o": 0})
    [uploads, _] = gql(team.tokens["viewer"], WEBHOOKS, variables).json()["data"]["webhooks"]
    newest, older = uploads["secrets"]
    assert (newest["expiresAt"], newest["expired"]) == (None, False)
    assert older["expiresAt"] is not None
    assert older["expired"] is True


def test_it_refuses_an_undeclared_webhook_a_bad_overlap_and_another_tenant(
    team: Team, outsider: Team
) -> None:
    variables = a_workflow(team)
    nope = gql(team.tokens["editor"], CREATE, variables | {"n": "nope"})
    error = gql_error(nope)
    assert error["extensions"]["code"] == "NOT_FOUND"
    assert "it declares: uploads, manual" in error["message"]
    bad = gql_error(gql(team.tokens["editor"], CREATE, variables | {"o": -1}))
    assert bad["extensions"]["code"] == "BAD_USER_INPUT"
    assert [e["path"] for e in bad["extensions"]["errors"]] == ["overlap"]
    missing = gql_error(gql(team.tokens["editor"], DELETE, variables | {"id": 999999}))
    assert missing["extensions"]["code"] == "NOT_FOUND"
    hidden = gql(outsider.tokens["owner"], WEBHOOKS, variables)
    assert gql_error(hidden)["extensions"]["code"] == "NOT_FOUND"
    assert hidden.json()["data"] is None


def test_the_documents_in_the_docs_run(team: Team) -> None:
    a_workflow(team)
    text = (Path(django_settings.BASE_DIR) / "docs" / "events.md").read_text()
    start = text.index("\n## Webhooks\n")
    section = text[start : text.index("\n## ", start + 1)]
    [block] = re.findall(r"^```graphql\n(.*?)^```", section, re.S | re.M)
    documents = re.split(r"\n\n(?=mutation|query)", block.strip())
    assert [d.split()[0] for d in documents] == ["mutation", "query", "mutation"]
    assert all(f'tenant: "{team.slug}"' in d for d in documents)
    made = gql(team.tokens["editor"], documents[0]).json()
    assert "errors" not in made, made
    created = made["data"]["createWebhookSecret"]
    assert created["signingSecret"].startswith("whsec_")
    listed = gql(team.tokens["viewer"], documents[1]).json()
    assert "errors" not in listed, listed
    assert listed["data"]["webhooks"][0]["secrets"][0]["id"] == created["secret"]["id"]
    revoke = re.sub(r"id: \d+", f"id: {created['secret']['id']}", documents[2])
    assert gql(team.tokens["editor"], revoke).json() == {"data": {"deleteWebhookSecret": True}}
