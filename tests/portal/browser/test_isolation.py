"""A viewer of tenant A meets nothing of tenant B: B's run page is a 404 page (as if it did
not exist), and none of the pages A's viewer can open names B or its workflows."""

from __future__ import annotations

import re

import pytest
from django.contrib.auth.models import User
from playwright.sync_api import Page, expect

from orchestrator.actors import Actor
from orchestrator.context import tenant_scope
from orchestrator.models import Tenant
from runs.models import WorkflowRun
from runs.services import trigger_run
from tests.portal.browser.helpers import Watch, person, sign_in, status_of, tenant_with
from workflows.models import Workflow

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

# What would give tenant B away: its name, its slug and its workflows' and tasks' names.
GLOBEX_NAMES = ("Globex", "globex", "fleet-telemetry", "route-planner", "gps_ingest")


def flow(name: str, task: str) -> dict[str, object]:
    return {
        "name": name,
        "tags": ["nightly"],
        "schedule": {"cron": "0 3 * * *", "timezone": "UTC"},
        "tasks": {task: {"type": "shell", "command": ["true"]}},
    }


def started(tenant: Tenant, owner: User, name: str) -> WorkflowRun:
    """A run of the tenant's workflow (no worker is needed for its pages to show it)."""
    with tenant_scope([tenant]):
        workflow = Workflow.objects.get(name=name)
        return trigger_run(actor=Actor(user=owner, source="api"), workflow=workflow).run


def test_a_viewer_of_one_tenant_gets_404_for_anothers_run_and_never_sees_its_names(
    page: Page, watch: Watch
) -> None:
    acme_owner, globex_owner = person("acme-owner"), person("globex-owner")
    acme = tenant_with("acme", "Acme Analytics", acme_owner, [flow("daily-sales", "extract")])
    globex = tenant_with(
        "globex",
        "Globex Logistics",
        globex_owner,
        [flow("fleet-telemetry", "gps_ingest"), flow("route-planner", "plan")],
    )
    ours = started(acme, acme_owner, "daily-sales")
    theirs = started(globex, globex_owner, "fleet-telemetry")
    viewer = person("val", {acme: "viewer"})
    sign_in(page, viewer)
    expect(page).to_have_url(re.compile(r"/t/acme/workflows/$"))

    for path in (
        f"/t/globex/runs/{theirs.pk}/",
        f"/t/acme/runs/{theirs.pk}/",  # B's run under A's name: not A's run either
        "/t/globex/workflows/fleet-telemetry/",
        f"/t/globex/runs/{theirs.pk}/tasks/gps_ingest/",
    ):
        assert status_of(page, path) == 404, path
        expect(page.locator("body")).to_contain_text(re.compile("not found", re.I))
        assert_none_of(GLOBEX_NAMES, page)
    watch.assert_clean(expected="status of 404")

    for path in (
        "/",
        "/tenants/",
        "/t/acme/workflows/",
        "/t/acme/workflows/daily-sales/",
        "/t/acme/workflows/daily-sales/versions/",
        "/t/acme/runs/",
        f"/t/acme/runs/{ours.pk}/",
        f"/t/acme/runs/{ours.pk}/tasks/extract/",
        "/t/acme/backfills/",
    ):
        assert status_of(page, path) == 200, path
        expect(page.locator("main")).to_contain_text(re.compile(r"\w"))
        assert_none_of(GLOBEX_NAMES, page)
    # The viewer's switcher lists only Acme, and the audit log is not theirs to read.
    expect(page.locator("details.switcher .menu-items li")).to_have_count(1)
    assert status_of(page, "/t/acme/audit/") == 403
    assert_none_of(GLOBEX_NAMES, page)
    watch.assert_clean(expected="status of 403")


def assert_none_of(names: tuple[str, ...], page: Page) -> None:
    html = page.content()
    leaked = [name for name in names if name in html]
    assert leaked == [], f"{page.url} shows {leaked}"
