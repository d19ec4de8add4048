"""Secrets, connections and the SSRF guard through real runs on real workers, read back
through the public API the way a user would: a secret printed raw, URL-encoded and
base64-encoded never reaches the log, the result or the rendered task; a blocked address
fails at once; another tenant's connection cannot be used."""

from __future__ import annotations

import base64
from urllib.parse import quote, quote_plus

import pytest
from django.contrib.auth.models import User

from connections import services as conns
from orchestrator import services
from orchestrator.actors import Actor
from orchestrator.models import Role
from runs.models import TaskLog
from tests.harness import send
from tests.runs.engine.helpers import Engine, attempts_of, run_to_end, states

pytestmark = pytest.mark.slow

SECRET = "hunter2-Sup3r/s3cret+value&more"
FORMS = [
    SECRET,
    quote(SECRET, safe=""),
    quote_plus(SECRET),
    base64.b64encode(SECRET.encode()).decode(),
]
LEAK = (
    "import os, base64, urllib.parse as u; s = os.environ['S']; print('raw', s); "
    "print('url', u.quote(s, safe='')); print('plus', u.quote_plus(s)); "
    "print(base64.b64encode(s.encode()).decode())"
)


def _token(engine: Engine) -> str:
    _, raw = services.create_token(
        actor=Actor.cli(), tenant=engine.tenant, name="reader", role=Role.VIEWER, user=engine.user
    )
    return raw


def test_it_masks_a_secret_in_the_log_the_result_and_the_api(engine: Engine) -> None:
    conns.create_secret(actor=engine.actor, tenant=engine.tenant, name="token", value=SECRET)
    spec = {
        "name": "leaky",
        "tasks": {
            "leak": {
                "type": "shell",
                "command": ["python3", "-c", LEAK],
                "env": {"S": "{{ secrets.token }}"},
            }
        },
    }
    run = run_to_end(engine, spec, timeout=60)
    assert states(engine, run) == {"leak": "success"}
    [attempt] = attempts_of(engine, run, "leak")
    assert attempt.uses == {"secrets": ["token"]}
    assert attempt.rendered["env"] == {"S": "***"}
    stored = b"".join(
        TaskLog.objects.dangerously_unscoped()
        .filter(attempt=attempt)
        .order_by("offset")
        .values_list("data", flat=True)
    )
    assert stored.splitlines() == [b"raw ***", b"url ***", b"plus ***", b"***"]

    token = _token(engine)
    base = f"/api/v1/tenants/{engine.tenant.slug}/runs/{run.pk}/tasks/leak/"
    for url in (base, base + "logs/", f"/api/v1/tenants/{engine.tenant.slug}/runs/{run.pk}/"):
        response = send(token, "GET", url)
        assert response.status_code == 200, response.content
        for form in FORMS:
            assert form.encode() not in response.content, (url, form)
    assert send(token, "GET", base).json()["result"] == "***"


@pytest.mark.parametrize(
    "url",
    [
        "http://169.254.169.254/latest/meta-data/",
        "http://[fd00:ec2::254]/latest/",
        "http://[::ffff:127.0.0.1]:9/",
        "http://2130706433:9/",
        "http://0x7f.0.0.1:9/",
        "http://10.0.0.5/",
    ],
)
def test_it_fails_a_request_to_a_blocked_address_without_retrying(engine: Engine, url: str) -> None:
    spec = {"name": "ssrf", "tasks": {"fetch": {"type": "http", "url": url, "retries": 3}}}
    run = run_to_end(engine, spec, timeout=60)
    assert states(engine, run) == {"fetch": "failed"}
    [attempt] = attempts_of(engine, run, "fetch")  # not retried: trying again cannot help
    assert attempt.error.startswith("blocked: "), attempt.error
    assert "allow" in attempt.error  # says how it could be allowed


def test_it_cannot_use_another_tenants_connection(engine: Engine, tmp_path) -> None:  # type: ignore[no-untyped-def]
    other_owner = User.objects.create_user("other-owner")
    other = services.create_tenant(actor=Actor.cli(), slug="other", name="Other", owner=other_owner)
    target = tmp_path / "warehouse.sqlite3"
    target.touch()
    conns.create_connection(
        actor=Actor(user=other_owner, source="api"),
        tenant=other,
        name="warehouse",
        kind="sqlite",
        database=str(target),
    )
    spec = {
        "name": "borrow",
        "tasks": {"q": {"type": "sql", "connection": "warehouse", "sql": "select 1"}},
    }
    run = run_to_end(engine, spec, timeout=60)
    assert states(engine, run) == {"q": "failed"}
    [attempt] = attempts_of(engine, run, "q")
    assert attempt.error == "connection 'warehouse' not found in this tenant"
    assert attempt.uses == {}
