"""docs/events.md, "Webhooks", works as written: its spec applies, its Python example and
its shell example (openssl and curl) each start one run over real HTTP against a live
server, and its REST requests answer as it says. The examples are read out of the text,
never copied here."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
from pathlib import Path
from typing import Any

import pytest
import yaml
from django.conf import settings as django_settings

from events.webhooks import create_secret
from orchestrator.actors import Actor
from orchestrator.context import tenant_scope
from runs.models import WorkflowRun
from tests.harness import Team, send
from workflows.services import apply_workflow

DOCS = Path(django_settings.BASE_DIR) / "docs" / "events.md"
FENCE = re.compile(r"^```(\w*)\n(.*?)^```", re.S | re.M)


def section() -> str:
    text = DOCS.read_text()
    start = text.index("\n## Webhooks\n")
    end = text.index("\n## ", start + 1)
    return text[start:end]


def blocks(language: str) -> list[str]:
    return [body for lang, body in FENCE.findall(section()) if lang == language]


def a_webhook(team: Team) -> tuple[str, str]:
    """The docs' spec applied in the team's tenant and a secret of its webhook: (URL, secret)."""
    [spec] = blocks("yaml")
    actor = Actor(user=team.owner, source="api")
    with tenant_scope([team.tenant]):
        workflow = apply_workflow(actor=actor, tenant=team.tenant, data=yaml.safe_load(spec))
        webhook = yaml.safe_load(spec)["triggers"][0]["webhook"]["name"]
        hook, _, secret = create_secret(actor=actor, workflow=workflow.workflow, name=webhook)
    return f"{django_settings.PUBLIC_URL}/hooks/{hook.uid}", secret


def the_run(team: Team, run_id: int) -> WorkflowRun:
    with tenant_scope([team.tenant]):
        return WorkflowRun.objects.get(pk=run_id)


def run_count(team: Team) -> int:
    with tenant_scope([team.tenant]):
        return WorkflowRun.objects.count()


def test_it_reads_one_spec_one_python_and_one_shell_example() -> None:
    assert len(blocks("yaml")) == 1
    assert len(blocks("python")) == 1
    assert len(blocks("sh")) == 1
    assert "openssl dgst -sha256 -hmac" in blocks("sh")[0]


def test_it_starts_one_run_from_the_python_example(
    transactional_db: None, team: Team, live_server: Any, settings: Any
) -> None:
    settings.PUBLIC_URL = live_server.url
    url, secret = a_webhook(team)
    [example] = blocks("python")
    printed: list[Any] = []
    namespace: dict[str, Any] = {"url": url, "secret": secret, "print": printed.append}
    exec(compile(example, "docs/events.md", "exec"), namespace)  # noqa: S102 (the docs' own code)
    [answer] = printed
    assert answer["duplicate"] is False
    run = the_run(team, answer["run_id"])
    assert run.params == {"region": "us", "rows": 120}
    assert run.trigger_source == "webhook"
    assert run.event is not None
    assert run.event["id"] == "upload-42"
    assert run.event["data"] == {"id": "upload-42", "region": "us", "rows": 120}
    again = namespace["post"](url, secret, {"id": "upload-42", "region": "us", "rows": 120})
    assert again == {"run_id": run.pk, "state": run.state, "duplicate": True}
    assert run_count(team) == 1


@pytest.mark.skipif(
    shutil.which("curl") is None or shutil.which("openssl") is None,
    reason="needs the curl and openssl binaries",
)
def test_it_starts_one_run_from_the_shell_example(
    transactional_db: None, team: Team, live_server: Any, settings: Any
) -> None:
    settings.PUBLIC_URL = live_server.url
    url, secret = a_webhook(team)
    [example] = blocks("sh")
    script = re.sub(r"^secret=.*$", f"secret='{secret}'", example, count=1, flags=re.M)
    script = re.sub(r"^url=.*$", f"url='{url}'", script, count=1, flags=re.M)
    assert script != example
    done = subprocess.run(
        ["bash", "-euo", "pipefail", "-c", script],
        env={"PATH": "/usr/bin:/bin"},
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout)
    assert answer["duplicate"] is False, answer
    run = the_run(team, answer["run_id"])
    assert run.params == {"region": "eu", "rows": 7}
    assert run.event is not None
    assert run.event["data"] == {"id": "upload-43", "region": "eu", "rows": 7}
    assert run_count(team) == 1


@pytest.mark.django_db
def test_its_rest_requests_answer_as_it_says(team: Team, settings: Any) -> None:
    settings.PUBLIC_URL = "https://orc.example.com"
    [spec] = blocks("yaml")
    with tenant_scope([team.tenant]):
        apply_workflow(
            actor=Actor(user=team.owner, source="api"),
            tenant=team.tenant,
            data=yaml.safe_load(spec),
        )
    requests = blocks("text")[0]
    lines = [line.split() for line in requests.splitlines()]
    assert [method for method, _ in lines] == ["GET", "POST", "DELETE"]
    fill = {"{tenant}": team.slug, "{workflow}": "ingest", "{name}": "uploads"}

    def url(template: str, **more: str) -> str:
        for placeholder, value in {**fill, **more}.items():
            template = template.replace(placeholder, value)
        return template

    made = send(team.tokens["editor"], "POST", url(lines[1][1]), {"overlap": 86400})
    assert made.status_code == 201, made.content
    created = made.json()
    assert set(created) == {"name", "url", "id", "prefix", "secret"}
    assert created["url"].startswith("https://orc.example.com/hooks/")
    listed = send(team.tokens["viewer"], "GET", url(lines[0][1]))
    assert listed.status_code == 200
    [uploads] = listed.json()
    assert set(uploads) == {
        "name",
        "url",
        "params",
        "secrets",
        "deliveries",
        "last_delivery_at",
    }
    assert set(uploads["secrets"][0]) == {"id", "prefix", "created_at", "expires_at"}
    deleted = send(
        team.tokens["editor"], "DELETE", url(lines[2][1], **{"{id}": str(created["id"])})
    )
    assert deleted.status_code == 204
