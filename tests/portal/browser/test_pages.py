"""Every page of a tenant with realistic data, as its owner sees it at 1280x800 and on a
phone: each shows its key content, the browser reports no error (no Content-Security-
Policy violation, no uncaught exception) and nothing is fetched from another host. The
full-page screenshots saved on the way (var/screenshots/) are the ones docs/portal.md shows.

The data: five workflows with tags and schedules (one paused, one with two versions), a
finished run of `daily-sales` with a task that failed, one that needed a second try and
one that never ran, a few runs of the others, and a backfill, all run by real workers.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import dataclass
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from django.contrib.auth.models import User
from playwright.sync_api import Locator, Page, expect

from orchestrator.actors import Actor
from orchestrator.context import tenant_scope
from orchestrator.models import Tenant
from runs import backfills
from runs.models import Backfill, WorkflowRun
from runs.services import trigger_run
from tests.portal.browser.helpers import (
    PHONE,
    Watch,
    apply,
    assert_no_horizontal_overflow,
    person,
    screenshot,
    sign_in,
    status_of,
    tenant_with,
)
from tests.workers import Workers, wait_for
from workflows.models import Workflow
from workflows.services import set_paused

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

# Fails its first try (the shop API "answers 503"), succeeds on the second.
FLAKY_EXTRACT = (
    'echo "try $ORCHESTRATOR_TRY_NUMBER: fetching sales for region {{ params.region }}"; '
    '[ "$ORCHESTRATOR_TRY_NUMBER" -ge 2 ] || { echo "shop API answered 503" >&2; exit 1; }; '
    'echo "1250 rows fetched"'
)
DAILY_SALES: dict[str, Any] = {
    "name": "daily-sales",
    "description": "Load yesterday's sales from the shop API into the warehouse, then report",
    "tags": ["sales", "etl"],
    "schedule": {"cron": "0 2 * * *", "timezone": "Europe/Berlin"},
    "params": {
        "region": {
            "type": "string",
            "enum": ["eu", "us"],
            "default": "eu",
            "description": "Sales region",
        }
    },
    "max_active_runs": 1,
    "tasks": {
        "extract": {
            "type": "shell",
            "command": ["sh", "-c", FLAKY_EXTRACT],
            "retries": 2,
            "retry_delay": 0,
        },
        "transform": {
            "type": "python",
            "callable": "runs.library:echo",
            "kwargs": {"rows": 1250, "region": "{{ params.region }}"},
            "depends_on": ["extract"],
        },
        "load": {
            "type": "python",
            "callable": "runs.library:fail",
            "kwargs": {"message": 'relation "staging.sales" does not exist'},
            "depends_on": ["transform"],
        },
        "report": {"type": "shell", "command": ["echo", "sales report"], "depends_on": ["load"]},
    },
}
# Version 2 adds a clean-up that runs whatever happened.
DAILY_SALES_V2: dict[str, Any] = DAILY_SALES | {
    "tasks": DAILY_SALES["tasks"]
    | {
        "cleanup": {
            "type": "shell",
            "command": ["echo", "removing scratch tables"],
            "depends_on": ["load", "report"],
            "trigger_rule": "all_done",
        }
    }
}
OTHERS: list[dict[str, Any]] = [
    {
        "name": "hourly-cleanup",
        "description": "Remove scratch files older than a day",
        "tags": ["maintenance"],
        "schedule": {"cron": "15 * * * *", "timezone": "America/New_York", "catchup": "none"},
        "tasks": {
            "sweep": {"type": "shell", "command": ["echo", "sweeping"]},
            "report": {
                "type": "shell",
                "command": ["echo", "cleanup finished"],
                "depends_on": ["sweep"],
                "trigger_rule": "all_done",
            },
        },
    },
    {
        "name": "fan-in-report",
        "description": "Collect three sources in parallel, publish when one succeeded",
        "tags": ["reports"],
        "tasks": {
            "start": {"type": "noop"},
            **{
                source: {
                    "type": "shell",
                    "command": ["echo", f"{source}: ok"],
                    "depends_on": ["start"],
                }
                for source in ("orders", "refunds", "inventory")
            },
            "publish": {
                "type": "noop",
                "depends_on": ["orders", "refunds", "inventory"],
                "trigger_rule": "none_failed_min_one_success",
            },
        },
    },
    {
        "name": "daily-inventory",
        "description": "Count the stock of every warehouse",
        "tags": ["inventory", "etl"],
        "schedule": {"cron": "30 4 * * *", "timezone": "UTC"},
        "max_active_runs": 2,
        "tasks": {"count": {"type": "shell", "command": ["echo", "counting stock for {{ ds }}"]}},
    },
    {
        "name": "ml-features",
        "description": "Refresh the recommendation model's features",
        "tags": ["ml"],
        "schedule": {"cron": "0 */6 * * *", "timezone": "UTC"},
        "tasks": {"refresh": {"type": "noop"}},
    },
]
BACKFILL_DAYS = 5
RUNS = 1 + 2 + 1 + BACKFILL_DAYS  # daily-sales, hourly-cleanup twice, fan-in-report, the backfill


def quiet(spec: dict[str, Any]) -> dict[str, Any]:
    """The spec with its schedule moved to where it cannot fire while the test runs (a run
    it made would change what the pages show): a daily time to twelve hours from now, an
    hourly minute to half an hour from now, in the schedule's timezone."""
    schedule = spec.get("schedule")
    if not schedule:
        return spec
    now = dt.datetime.now(ZoneInfo(schedule["timezone"]))
    minute, hour, *rest = schedule["cron"].split()
    if hour == "*":
        minute = str((now + dt.timedelta(minutes=30)).minute)
    elif hour.isdigit():
        hour = str((now + dt.timedelta(hours=12)).hour)
    return spec | {"schedule": schedule | {"cron": " ".join([minute, hour, *rest])}}


@dataclass
class Acme:
    tenant: Tenant
    owner: User
    run: WorkflowRun  # of daily-sales: failed, with a task retried and one never run
    sales_cron: str


def realistic_tenant(workers: Workers) -> Acme:
    """Acme's workflows, runs and backfill, every run finished."""
    owner = person("olivia")
    acme = tenant_with("acme", "Acme Analytics", owner, [quiet(s) for s in [DAILY_SALES, *OTHERS]])
    person("victor", {acme: "viewer"})
    actor = Actor(user=owner, source="api")
    sales_v2 = quiet(DAILY_SALES_V2)
    [sales] = apply(acme, owner, sales_v2)
    with tenant_scope([acme]):
        flows = {w.name: w for w in Workflow.objects.all()}
        set_paused(actor=actor, workflow=flows["ml-features"], paused=True)
        run = trigger_run(actor=actor, workflow=sales, params={"region": "us"}).run
        for name in ("hourly-cleanup", "hourly-cleanup", "fan-in-report"):
            trigger_run(actor=actor, workflow=flows[name])
        backfills.create_backfill(
            actor=actor,
            workflow=flows["daily-inventory"],
            start=dt.date(2026, 1, 1),
            end=dt.date(2026, 1, BACKFILL_DAYS),
            max_active_runs=2,
        )

    def all_finished() -> bool:
        runs = WorkflowRun.objects.dangerously_unscoped().filter(tenant=acme)
        done = runs.filter(state__in=WorkflowRun.FINISHED).count() == RUNS == runs.count()
        return done and not Backfill.objects.dangerously_unscoped().filter(state="running").exists()

    wait_for(all_finished, 90, "Acme's runs and backfill to finish", workers)
    run.refresh_from_db()
    assert run.state == "failed"
    return Acme(acme, owner, run, sales_v2["schedule"]["cron"])


def test_every_page_shows_its_content_without_a_browser_error(
    page: Page, watch: Watch, running: Workers
) -> None:
    acme = realistic_tenant(running)
    run = acme.run
    sign_in(page, acme.owner)
    t = f"/t/{acme.tenant.slug}"

    def visit(path: str, shot: str) -> None:
        assert status_of(page, path) == 200, path
        expect(page.locator("main")).to_be_visible()
        watch.assert_clean()
        screenshot(page, shot)

    visit(f"{t}/workflows/", "workflows")
    rows = page.locator("table.workflows tbody tr")
    expect(rows).to_have_count(5)
    sales = rows.filter(has_text="daily-sales")
    expect(sales.locator(".tag")).to_have_text(["sales", "etl"])
    sales_hour = int(acme.sales_cron.split()[1])
    expect(sales).to_contain_text(f"At {sales_hour:02d}:00, every day")

    def strip(name: str) -> Locator:  # the squares of the workflow's last runs
        return rows.filter(has_text=name).locator(".strip .cell")

    expect(strip("daily-sales").and_(page.locator(".st-failed"))).to_have_count(1)
    expect(strip("hourly-cleanup").and_(page.locator(".st-success"))).to_have_count(2)
    expect(strip("daily-inventory")).to_have_count(BACKFILL_DAYS)
    expect(rows.filter(has_text="ml-features")).to_contain_text("paused")
    expect(rows.filter(has_text="fan-in-report")).to_contain_text("Triggered only")

    visit(f"{t}/workflows/daily-sales/", "workflow")
    graph = page.locator("svg.dag")
    expect(graph.locator("g.node")).to_have_count(5)
    expect(graph.locator("g.node.st-failed")).to_have_count(1)
    expect(graph.locator("g.node.st-upstream_failed")).to_have_count(1)
    expect(graph).to_contain_text("all_done")  # cleanup's trigger rule, under its type
    expect(page.locator("table.fire-times tbody tr")).to_have_count(10)
    expect(page.locator("table.params")).to_contain_text("region")
    expect(page.locator("table.run-grid a.cell.st-failed")).to_have_count(2)  # the run, and load

    visit(f"{t}/workflows/daily-sales/versions/", "versions")
    expect(page.locator("#diff-heading")).to_have_text("Version 1 → version 2")
    expect(page.locator("table.diff tr.add")).not_to_have_count(0)
    expect(page.locator("table.diff")).to_contain_text("removing scratch tables")
    expect(page.locator("table.versions tbody tr")).to_have_count(2)

    visit(f"{t}/runs/", "runs")
    expect(page.locator("tbody tr[data-run]")).to_have_count(RUNS)
    expect(page.locator(f'tr[data-run="{run.pk}"]')).to_contain_text("failed")

    visit(f"{t}/runs/{run.pk}/", "run")
    expect(page.locator("#run-state")).to_contain_text("failed")
    expect_task_states(
        page,
        {
            "extract": "success",
            "transform": "success",
            "load": "failed",
            "report": "upstream failed",
            "cleanup": "success",
        },
    )
    expect(page.locator('tr[data-task="extract"]')).to_contain_text("2/3")  # the second of 3 tries
    expect(page.locator("svg.dag g.node.st-failed")).to_have_count(1)
    expect(page.locator("svg.gantt rect.bar")).not_to_have_count(0)
    expect(page.locator("#run-live")).not_to_have_attribute(
        "hx-trigger", re.compile(".")
    )  # finished

    visit(f"{t}/runs/{run.pk}/tasks/extract/", "task")
    attempts = page.locator("#attempts tbody tr")
    expect(attempts).to_have_count(2)
    expect(attempts.nth(0)).to_contain_text("failed")
    expect(attempts.nth(1)).to_contain_text("success")
    expect(page.locator("#log")).to_contain_text("try 2: fetching sales for region us")
    expect(page.locator("#log-status")).to_contain_text("finished: success")
    page.get_by_role("link", name="try 1").click()
    expect(page.locator("#log")).to_contain_text("shop API answered 503")
    watch.assert_clean()

    visit(f"{t}/backfills/", "backfills")
    backfill = page.locator("tr[data-backfill]")
    expect(backfill).to_have_count(1)
    expect(backfill).to_contain_text("daily-inventory")
    expect(backfill.locator("progress")).to_have_attribute("value", str(BACKFILL_DAYS))
    expect(backfill.locator("progress")).to_have_attribute("max", str(BACKFILL_DAYS))

    visit(f"{t}/audit/", "audit")
    actions = page.locator("main table tbody td.mono")
    for action in (
        "workflow.create",
        "workflow.update",
        "workflow.pause",
        "run.trigger",
        "backfill.create",
        "membership.create",
    ):
        expect(actions.filter(has_text=action).first).to_be_visible()

    # A phone: the lists and drawings scroll inside their own boxes, not the whole page.
    page.set_viewport_size(PHONE)
    for path, shot in (
        (f"{t}/workflows/", "workflows-phone"),
        (f"{t}/runs/{run.pk}/", "run-phone"),
    ):
        visit(path, shot)
        assert_no_horizontal_overflow(page)


def expect_task_states(page: Page, states: dict[str, str]) -> None:
    for task, state in states.items():
        expect(page.locator(f'tr[data-task="{task}"] td.state')).to_have_text(
            re.compile(rf"\b{state}$")
        )
