"""POST /hooks/<uid>: a request signed with the webhook's secret starts exactly one run,
with the JSON body as its event's data and params rendered from it; everything else is
refused before anything is stored, and an unsigned caller cannot tell an unknown URL from
a bad signature."""

from __future__ import annotations

import datetime as dt
import json
import time
from typing import Any

import pytest
from django.test import Client
from django.utils import timezone

from events.models import WebhookDelivery, WebhookSecret
from events.webhooks import SIGNATURE_HEADER, create_secret, sign
from orchestrator.actors import Actor
from orchestrator.context import tenant_scope
from orchestrator.models import AuditEvent
from runs.models import WorkflowRun
from tests.harness import Team
from workflows.services import apply_workflow, set_paused

pytestmark = pytest.mark.django_db

SPEC = {
    "name": "ingest",
    "params": {
        "region": {"type": "string", "enum": ["eu", "us"], "default": "eu"},
        "rows": {"type": "integer", "default": 0},
    },
    "triggers": [
        {
            "webhook": {
                "name": "uploads",
                "params": {
                    "region": "{{ event.data.region | default('eu') }}",
                    "rows": "{{ event.data.rows | default(0) }}",
                },
            }
        }
    ],
    "tasks": {"load": {"type": "noop"}},
}
BODY = json.dumps({"region": "us", "rows": 120, "file": "s3://in/a.csv"}).encode()


@pytest.fixture
def hook(team: Team) -> tuple[str, str]:
    """(the webhook's path, its secret)."""
    actor = Actor(user=team.owner, source="api")
    with tenant_scope([team.tenant]):
        workflow = apply_workflow(actor=actor, tenant=team.tenant, data=SPEC).workflow
        webhook, _, secret = create_secret(actor=actor, workflow=workflow, name="uploads")
    return f"/hooks/{webhook.uid}", secret


def post(path: str, body: bytes, signature: str | None, **headers: Any) -> Any:
    if signature is not None:
        headers[f"HTTP_{SIGNATURE_HEADER.upper().replace('-', '_')}"] = signature
    return Client().post(path, body, content_type="application/json", **headers)


def runs(team: Team) -> list[WorkflowRun]:
    with tenant_scope([team.tenant]):
        return list(WorkflowRun.objects.filter(workflow__name="ingest").order_by("id"))


def test_a_signed_post_starts_one_run_with_the_body(hook: tuple[str, str], team: Team) -> None:
    path, secret = hook
    response = post(path, BODY, sign(secret, BODY, int(time.time())))
    assert response.status_code == 202, response.content
    answer = response.json()
    [run] = runs(team)
    assert answer == {"run_id": run.pk, "state": run.state, "duplicate": False}
    assert run.trigger_source == "webhook"
    assert run.params == {"region": "us", "rows": 120}
    assert run.event is not None
    assert run.event["type"] == "webhook.received"
    assert run.event["data"] == json.loads(BODY)
    with tenant_scope([team.tenant]):
        audit = AuditEvent.objects.filter(action="run.trigger").order_by("seq").last()
    assert audit is not None
    assert audit.actor_label == "system"
    assert audit.changes["extra"]["event"]["type"] == "webhook.received"


def test_a_replayed_request_starts_nothing_more(hook: tuple[str, str], team: Team) -> None:
    path, secret = hook
    signature = sign(secret, BODY, int(time.time()))
    first = post(path, BODY, signature).json()
    again = post(path, BODY, signature)
    assert again.status_code == 200
    assert again.json() == {"run_id": first["run_id"], "state": "running", "duplicate": True} or (
        again.json()["run_id"] == first["run_id"] and again.json()["duplicate"] is True
    )
    assert len(runs(team)) == 1


def test_a_retried_delivery_is_one_run_by_key_or_body_id(hook: tuple[str, str], team: Team) -> None:
    path, secret = hook
    for _ in range(2):  # new timestamp and signature each time, the same Idempotency-Key
        time.sleep(0.01)
        response = post(
            path, BODY, sign(secret, BODY, int(time.time())), HTTP_IDEMPOTENCY_KEY="delivery-1"
        )
        assert response.status_code in (200, 202)
    with_id = json.dumps({"id": "evt-7", "region": "eu"}).encode()
    for stamp in (int(time.time()) - 5, int(time.time())):
        assert post(path, with_id, sign(secret, with_id, stamp)).status_code in (200, 202)
    assert len(runs(team)) == 2


@pytest.mark.parametrize(
    "case", ["wrong-secret", "stale", "future", "no-header", "garbage", "unknown-url"]
)
def test_bad_signatures_and_unknown_urls_get_the_same_401(
    hook: tuple[str, str], team: Team, case: str
) -> None:
    path, secret = hook
    now = int(time.time())
    signature: str | None = {
        "wrong-secret": sign("whsec_other", BODY, now),
        "stale": sign(secret, BODY, now - 301),
        # Well past the tolerance: on a busy machine a second or more goes by before the
        # server reads its clock, which brings a timestamp 301 s ahead back within it.
        "future": sign(secret, BODY, now + 360),
        "no-header": None,
        "garbage": "v1=abc",
        "unknown-url": sign(secret, BODY, now),
    }[case]
    target = "/hooks/not-a-webhook-uid" if case == "unknown-url" else path
    response = post(target, BODY, signature)
    assert response.status_code == 401
    assert response["Content-Type"] == "application/problem+json"
    reference = post("/hooks/another-unknown-one", BODY, sign(secret, BODY, now))
    assert response.json() == reference.json()  # nothing tells the two apart
    assert runs(team) == []
    assert not WebhookDelivery.objects.dangerously_unscoped().exists()


def test_a_huge_body_is_413_and_not_a_json_object_is_400(
    hook: tuple[str, str], settings: Any
) -> None:
    path, secret = hook
    settings.WEBHOOK_MAX_BYTES = 1000
    huge = json.dumps({"x": "a" * 2000}).encode()
    assert post(path, huge, sign(secret, huge, int(time.time()))).status_code == 413
    text = b"region=us"
    response = post(path, text, sign(secret, text, int(time.time())))
    assert response.status_code == 400
    assert "not JSON" in response.json()["detail"]
    listed = b'[{"region": "us"}]'
    response = post(path, listed, sign(secret, listed, int(time.time())))
    assert response.status_code == 400
    assert "must be a JSON object, not list" in response.json()["detail"]
    assert not WebhookDelivery.objects.dangerously_unscoped().exists()


def test_params_that_do_not_fit_are_400_with_their_path(hook: tuple[str, str], team: Team) -> None:
    path, secret = hook
    body = json.dumps({"region": "mars", "rows": 1}).encode()
    response = post(path, body, sign(secret, body, int(time.time())))
    assert response.status_code == 400
    assert [e["path"] for e in response.json()["errors"]] == ["params.region"]
    assert runs(team) == []
    assert not WebhookDelivery.objects.dangerously_unscoped().exists()


def test_rotation_keeps_the_old_secret_for_the_overlap(hook: tuple[str, str], team: Team) -> None:
    path, old = hook
    actor = Actor(user=team.owner, source="api")
    with tenant_scope([team.tenant]):
        from workflows.selectors import get_workflow

        _, _, new = create_secret(actor=actor, workflow=get_workflow("ingest"), name="uploads")
    one = json.dumps({"id": "a"}).encode()
    two = json.dumps({"id": "b"}).encode()
    assert post(path, one, sign(old, one, int(time.time()))).status_code == 202
    assert post(path, two, sign(new, two, int(time.time()))).status_code == 202
    WebhookSecret.objects.dangerously_unscoped().exclude(expires_at=None).update(
        expires_at=timezone.now() - dt.timedelta(seconds=1)
    )
    three = json.dumps({"id": "c"}).encode()
    assert post(path, three, sign(old, three, int(time.time()))).status_code == 401
    assert post(path, three, sign(new, three, int(time.time()))).status_code == 202


def test_a_paused_workflow_is_409(hook: tuple[str, str], team: Team) -> None:
    path, secret = hook
    with tenant_scope([team.tenant]):
        from workflows.selectors import get_workflow

        set_paused(
            actor=Actor(user=team.owner, source="api"), workflow=get_workflow("ingest"), paused=True
        )
    response = post(path, BODY, sign(secret, BODY, int(time.time())))
    assert response.status_code == 409
    assert runs(team) == []


def test_a_webhook_the_workflow_no_longer_declares_accepts_nothing(
    hook: tuple[str, str], team: Team
) -> None:
    path, secret = hook
    with tenant_scope([team.tenant]):
        apply_workflow(
            actor=Actor(user=team.owner, source="api"),
            tenant=team.tenant,
            data={**SPEC, "triggers": []},
        )
    assert post(path, BODY, sign(secret, BODY, int(time.time()))).status_code == 401


def test_the_url_is_rate_limited(hook: tuple[str, str], settings: Any) -> None:
    path, secret = hook
    settings.WEBHOOK_RATE_LIMIT = 2
    codes = []
    for index in range(3):
        body = json.dumps({"id": f"r{index}"}).encode()
        codes.append(post(path, body, sign(secret, body, int(time.time()))))
    assert [c.status_code for c in codes] == [202, 202, 429]
    assert int(codes[-1]["Retry-After"]) >= 1
    unknown = post("/hooks/nope", b"{}", None)
    assert unknown.status_code == 401  # another URL: its own budget
