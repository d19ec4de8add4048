"""Which signing secrets a webhook accepts: a revoked one never again, an older one until
its overlap ends (at once with overlap 0), one of its own webhook only, while its workflow
and tenant live; and where a secret never goes: the audit log, the database in clear."""

from __future__ import annotations

import json
import time
from typing import Any

import pytest
from django.test import Client

from events.models import Webhook, WebhookSecret
from events.webhooks import SIGNATURE_HEADER, create_secret, delete_secret, sign
from orchestrator import crypto
from orchestrator.actors import Actor
from orchestrator.context import tenant_scope
from orchestrator.models import AuditEvent
from orchestrator.services import archive_tenant
from runs.models import WorkflowRun
from tests.harness import Team
from workflows.selectors import get_workflow
from workflows.services import apply_workflow, delete_workflow

pytestmark = pytest.mark.django_db


def spec(name: str) -> dict[str, Any]:
    return {
        "name": name,
        "triggers": [{"webhook": {"name": "uploads"}}, {"webhook": {"name": "manual"}}],
        "tasks": {"load": {"type": "noop"}},
    }


def owner(team: Team) -> Actor:
    return Actor(user=team.owner, source="api")


def new_secret(team: Team, workflow: str = "ingest", name: str = "uploads", **kw: Any) -> Any:
    """(the webhook, its new secret's row, the secret), the workflow applied if need be."""
    with tenant_scope([team.tenant]):
        applied = apply_workflow(actor=owner(team), tenant=team.tenant, data=spec(workflow))
        return create_secret(actor=owner(team), workflow=applied.workflow, name=name, **kw)


def post(webhook: Webhook, secret: str, body: dict[str, Any] | None = None, **kw: str) -> int:
    raw = json.dumps(body or {"id": f"d-{time.monotonic_ns()}"}).encode()
    signature = kw.pop("signature", None) or sign(secret, raw, int(time.time()))
    answer = Client().post(
        f"/hooks/{webhook.uid}",
        raw,
        content_type="application/json",
        headers={SIGNATURE_HEADER: signature},
    )
    return int(answer.status_code)


def runs(team: Team) -> int:
    with tenant_scope([team.tenant]):
        return WorkflowRun.objects.count()


def test_it_refuses_a_revoked_secret_at_once(team: Team) -> None:
    webhook, row, secret = new_secret(team)
    assert post(webhook, secret) == 202
    with tenant_scope([team.tenant]):
        delete_secret(actor=owner(team), secret=row)
    assert post(webhook, secret) == 401
    assert runs(team) == 1


def test_it_stops_the_older_secrets_at_once_with_overlap_0(team: Team) -> None:
    webhook, _, old = new_secret(team)
    _, _, new = new_secret(team, overlap=0)
    assert post(webhook, old) == 401
    assert post(webhook, new) == 202


def test_it_keeps_the_older_secret_for_the_overlap(team: Team) -> None:
    webhook, first, old = new_secret(team)
    _, _, new = new_secret(team, overlap=3600)
    first.refresh_from_db()
    assert first.expires_at is not None
    assert 3590 < (first.expires_at - first.created_at).total_seconds() < 3700
    assert post(webhook, old) == 202
    assert post(webhook, new) == 202


def test_it_accepts_one_valid_signature_among_several(team: Team) -> None:
    webhook, _, secret = new_secret(team)
    raw = json.dumps({"id": "both"}).encode()
    now = int(time.time())
    wrong = sign("whsec_not-this-one", raw, now).split(",")[1]
    right = sign(secret, raw, now).split(",")[1]
    assert post(webhook, secret, {"id": "both"}, signature=f"t={now},{wrong},{right}") == 202


def test_it_accepts_only_its_own_webhooks_secrets(team: Team, outsider: Team) -> None:
    uploads, _, uploads_secret = new_secret(team)
    manual, _, manual_secret = new_secret(team, name="manual")
    elsewhere, _, elsewhere_secret = new_secret(outsider)
    assert post(uploads, manual_secret) == 401
    assert post(manual, uploads_secret) == 401
    assert post(uploads, elsewhere_secret) == 401
    assert post(elsewhere, uploads_secret) == 401
    assert runs(team) == runs(outsider) == 0


def test_it_accepts_nothing_once_the_workflow_is_deleted(team: Team) -> None:
    webhook, _, secret = new_secret(team)
    with tenant_scope([team.tenant]):
        delete_workflow(actor=owner(team), workflow=get_workflow("ingest"), force=True)
    assert post(webhook, secret) == 401


def test_it_accepts_nothing_once_the_tenant_is_archived(team: Team) -> None:
    webhook, _, secret = new_secret(team)
    archive_tenant(actor=owner(team), tenant=team.tenant)
    assert post(webhook, secret) == 401


def test_it_keeps_the_secret_encrypted_and_out_of_the_audit_log(team: Team) -> None:
    webhook, row, secret = new_secret(team)
    _, _, newer = new_secret(team)
    with tenant_scope([team.tenant]):
        delete_secret(actor=owner(team), secret=row)
    stored = WebhookSecret.objects.dangerously_unscoped().filter(webhook=webhook)
    [kept] = stored
    assert crypto.decrypt(kept.secret_encrypted) == newer
    assert newer not in kept.secret_encrypted
    assert kept.prefix == newer[: len(kept.prefix)]
    with tenant_scope([team.tenant]):
        logged = list(AuditEvent.objects.filter(action__startswith="webhook.").order_by("seq"))
    assert [e.action for e in logged] == [
        "webhook.secret_create",
        "webhook.secret_create",
        "webhook.secret_delete",
    ]
    text = json.dumps([e.changes for e in logged])
    assert secret not in text
    assert newer not in text
    assert row.prefix in text
