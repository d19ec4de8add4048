"""A backfill from the browser, as an operator would make one: from a scheduled workflow's
page to the backfill form, a range with a mistake (shown next to its field), a preview of
every interval (nothing created yet), then the backfill itself, whose page follows its
progress, without a reload, until real workers have run every interval. The screenshots
`backfill-form` (with the preview) and `backfill` are docs/portal.md's."""

from __future__ import annotations

import re

import pytest
from django.contrib.auth.models import User
from playwright.sync_api import Page, expect

from orchestrator.models import Tenant
from runs.models import Backfill, WorkflowRun
from tests.portal.browser.helpers import Watch, person, screenshot, sign_in, tenant_with
from tests.workers import Workers

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

NIGHTLY = {
    "name": "nightly-rollup",
    "description": "Roll up yesterday's events into the daily tables",
    "schedule": {"cron": "0 3 * * *", "timezone": "UTC"},
    "max_active_runs": 2,
    "tasks": {
        "extract": {"type": "noop"},
        "rollup": {"type": "noop", "depends_on": ["extract"]},
    },
}
MARK = "() => { window.openedOnce = 'yes'; }"
MARKED = "() => window.openedOnce"


@pytest.fixture
def operator(running: Workers) -> tuple[Tenant, User]:
    owner = person("olivia")
    tenant = tenant_with("acme", "Acme Analytics", owner, [NIGHTLY])
    return tenant, person("oscar", {tenant: "operator"})


def test_an_operator_previews_then_creates_a_backfill(
    page: Page, watch: Watch, operator: tuple[Tenant, User], running: Workers
) -> None:
    sign_in(page, operator[1])
    page.goto("/t/acme/workflows/nightly-rollup/")
    page.get_by_role("link", name="Backfill", exact=True).click()
    expect(page).to_have_url(re.compile(r"/t/acme/workflows/nightly-rollup/backfill/$"))

    page.get_by_label("Start (first logical date)").fill("2026-01-03")
    page.get_by_label("End (last logical date, included)").fill("2026-01-01")
    page.get_by_role("button", name="Preview").click()
    expect(page.locator("#bf-end-err")).to_contain_text("must not be before start")
    expect(page.get_by_label("Start (first logical date)")).to_have_value("2026-01-03")
    watch.assert_clean(expected=r"status of 400 \(Bad Request\)")  # the form's answer

    page.get_by_label("Start (first logical date)").fill("2026-01-01")
    page.get_by_label("End (last logical date, included)").fill("2026-01-03")
    page.get_by_label("Runs at once (max active runs)").fill("2")
    page.get_by_role("button", name="Preview").click()
    rows = page.locator("#preview tbody tr")
    expect(rows).to_have_count(3)
    expect(rows.nth(0)).to_contain_text("create a run")
    expect(page.locator("#preview-heading")).to_contain_text("3 intervals")
    assert Backfill.objects.dangerously_unscoped().count() == 0  # a preview creates nothing
    screenshot(page, "backfill-form")

    page.get_by_role("button", name="Create this backfill").click()
    expect(page).to_have_url(re.compile(r"/t/acme/backfills/\d+/$"))
    expect(page.locator(".messages")).to_contain_text("created: 3 intervals")
    backfill = Backfill.objects.dangerously_unscoped().get()
    page.evaluate(MARK)
    state = page.locator("#backfill-state")
    expect(state).to_contain_text("completed", timeout=60_000)
    expect(page.locator("#backfill-done")).to_contain_text("3 of 3 intervals done")
    expect(page.locator("#backfill-progress")).to_have_attribute("value", "3")
    expect(page.locator("tr[data-run]")).to_have_count(3)
    expect(page.locator("#backfill-actions")).to_have_count(0)  # nothing left to do
    assert page.evaluate(MARKED) == "yes", "the page was reloaded"
    runs = WorkflowRun.objects.dangerously_unscoped().filter(backfill=backfill)
    assert sorted(runs.values_list("state", flat=True)) == ["success"] * 3
    screenshot(page, "backfill")
    watch.assert_clean()
