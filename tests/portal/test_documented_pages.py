"""Every portal path README.md and docs/portal.md name opens for a signed-in member: read
out of the text (code spans starting with a portal path), never copied here, with
`<tenant>`, `<name>`, `<id>` and `<task>` filled with real objects."""

from __future__ import annotations

import datetime as dt
import re
from pathlib import Path

import pytest
from django.conf import settings
from django.test import Client

from orchestrator.actors import Actor
from orchestrator.context import tenant_scope
from runs.backfills import create_backfill
from runs.models import Backfill
from tests.harness import Team
from tests.runs.run_states import SPEC, failed_run
from workflows.services import apply_workflow

ROOT = Path(settings.BASE_DIR)
DOCUMENTS = [ROOT / "README.md", ROOT / "docs" / "portal.md", ROOT / "docs" / "deployment.md"]
PORTAL_ROOTS = ("/t/", "/login/", "/logout/", "/account/", "/password-reset/", "/tenants/")
CODE_SPAN = re.compile(r"`(/[^`\s]*)`")


def a_backfill(team: Team) -> Backfill:
    spec = {"name": "daily", "schedule": {"cron": "0 2 * * *"}, "tasks": {"a": {"type": "noop"}}}
    with tenant_scope([team.tenant]):
        workflow = apply_workflow(actor=Actor.cli(), tenant=team.tenant, data=spec).workflow
        return create_backfill(
            actor=Actor.cli(), workflow=workflow, start=dt.date(2026, 1, 1), end=dt.date(2026, 1, 2)
        )


def documented_pages() -> list[tuple[str, str]]:
    found = []
    for document in DOCUMENTS:
        for span in CODE_SPAN.findall(document.read_text()):
            if span == "/" or span.startswith(PORTAL_ROOTS):
                found.append((document.name, span))
    return found


def test_the_docs_name_the_portals_pages() -> None:
    spans = {span for _, span in documented_pages()}
    assert "/login/" in spans
    assert "/t/<tenant>/runs/<id>/" in spans
    assert len(spans) >= 12


@pytest.mark.django_db
@pytest.mark.parametrize(("document", "span"), documented_pages())
def test_a_documented_page_opens(client: Client, team: Team, document: str, span: str) -> None:
    run = failed_run(team)
    task = next(iter(SPEC["tasks"]))
    if "/backfills/<id>/" in span:
        span = span.replace("<id>", str(a_backfill(team).pk))
    path = (
        span.split("?", 1)[0]
        .replace("<tenant>", team.slug)
        .replace("<name>", run.workflow.name)
        .replace("<id>", str(run.pk))
        .replace("<task>", task)
    )
    client.force_login(team.owner)
    response = client.get(path)
    if path == "/logout/":
        assert response.status_code == 405  # signing out is a POST (the menu's button)
        assert client.post(path).status_code == 302
        return
    assert response.status_code in (200, 302), f"{document}: {span} -> {response.status_code}"
    if response.status_code == 302:  # `/`, and /login/ for someone signed in already
        assert client.get(path, follow=True).status_code == 200, span


def test_every_screenshot_the_portal_page_shows_is_there() -> None:
    """docs/portal.md shows the browser tests' screenshots, copied from var/screenshots/."""
    text = (ROOT / "docs" / "portal.md").read_text()
    images = re.findall(r"\]\((images/portal/[a-z-]+\.png)\)", text)
    assert len(images) == 28
    for image in images:
        data = (ROOT / "docs" / image).read_bytes()
        assert data.startswith(b"\x89PNG"), image
