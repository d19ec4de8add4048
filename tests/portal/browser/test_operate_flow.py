"""Operating from the portal as a person does, with real workers: trigger a parametrised
workflow with a wrong value, read the error by its field, fix it and watch the run succeed;
retry a run that failed once its cause is fixed, then clear a task and its downstream;
and, for each role, which of these controls the workflow, run and task pages show.

Screenshots for docs/portal.md: trigger-form, confirm-retry, confirm-clear."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from django.contrib.auth.models import User
from playwright.sync_api import Page, expect

from orchestrator.actors import Actor
from orchestrator.context import tenant_scope
from orchestrator.models import Tenant
from runs.models import TaskAttempt, WorkflowRun
from runs.services import trigger_run
from tests.harness import ROLES
from tests.portal.browser.helpers import (
    Watch,
    apply,
    person,
    screenshot,
    sign_in,
    status_of,
    tenant_with,
)
from tests.workers import Workers, share_with_tasks, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

REPORT: dict[str, Any] = {
    "name": "regional-report",
    "description": "Sales of one region over the last days, published for the team",
    "params": {
        "title": {"type": "string", "required": True, "description": "The report's title"},
        "region": {
            "type": "string",
            "enum": ["eu", "us", "apac"],
            "default": "eu",
            "description": "Sales region",
        },
        "days": {
            "type": "integer",
            "minimum": 1,
            "maximum": 31,
            "default": 7,
            "description": "How many days back",
        },
        "dry_run": {"type": "boolean", "default": False, "description": "Publish nothing"},
    },
    "tasks": {
        "build": {
            "type": "shell",
            "command": [
                "sh",
                "-c",
                "echo '{{ params.title }}: {{ params.region }}, {{ params.days }} days'",
            ],
        },
        "publish": {"type": "noop", "depends_on": ["build"]},
    },
}
WAIT_S = 30


def fragile(flag: Path) -> dict[str, Any]:
    """`load` fails until `flag` exists (the fix a person makes before retrying)."""
    return {
        "name": "nightly-load",
        "tasks": {
            "extract": {"type": "noop"},
            "load": {
                "type": "shell",
                "command": ["test", "-e", str(flag)],
                "depends_on": ["extract"],
            },
            "report": {"type": "noop", "depends_on": ["load"]},
        },
    }


def ended(run_id: int) -> str | None:
    state = WorkflowRun.objects.dangerously_unscoped().get(pk=run_id).state
    return state if state in WorkflowRun.FINISHED else None


def run_id_of(page: Page) -> int:
    found = re.search(r"/runs/(\d+)/$", page.url)
    assert found, page.url
    return int(found.group(1))


@pytest.fixture
def acme(running: Workers) -> tuple[Tenant, User]:
    owner = person("olivia")
    return tenant_with("acme", "Acme Analytics", owner), owner


def test_a_wrong_param_is_shown_by_its_field_then_the_fixed_run_succeeds(
    page: Page, watch: Watch, acme: tuple[Tenant, User], running: Workers
) -> None:
    tenant, owner = acme
    apply(tenant, owner, REPORT)
    sign_in(page, person("otto", {tenant: "operator"}))
    page.goto("/t/acme/workflows/regional-report/")
    page.get_by_role("link", name="Trigger a run").click()
    expect(page).to_have_url(re.compile(r"/workflows/regional-report/trigger/$"))
    expect(page.get_by_label("days")).to_have_value("7")  # the default, filled in
    expect(page.get_by_label("region")).to_have_value("eu")

    page.get_by_label("title").fill("Weekly sales")
    page.get_by_label("region").select_option("us")
    page.get_by_label("days").fill("0")
    page.get_by_role("button", name="Trigger run").click()
    days = page.locator("#field-days")
    expect(days.locator(".field-error")).to_have_text("0 is less than the minimum of 1.0")
    expect(page.get_by_label("days")).to_have_attribute("aria-invalid", "true")
    expect(page.get_by_label("region")).to_have_value("us")  # what was typed is kept
    expect(page.get_by_label("title")).to_have_value("Weekly sales")
    expect(page.locator(".field-error")).to_have_count(1)
    assert WorkflowRun.objects.dangerously_unscoped().count() == 0
    watch.assert_clean(expected=r"status of 400 \(Bad Request\)")  # the form came back
    screenshot(page, "trigger-form")

    page.get_by_label("days").fill("14")
    page.get_by_role("button", name="Trigger run").click()
    expect(page).to_have_url(re.compile(r"/t/acme/runs/\d+/$"))
    run_id = run_id_of(page)
    expect(page.locator(".messages")).to_contain_text(f"Run #{run_id} of regional-report")
    expect(page.locator("#run-state")).to_contain_text("success", timeout=WAIT_S * 1000)
    run = WorkflowRun.objects.dangerously_unscoped().get(pk=run_id)
    assert run.params == {"title": "Weekly sales", "region": "us", "days": 14, "dry_run": False}
    assert run.trigger_source == "portal"
    page.get_by_role("link", name="build").first.click()
    expect(page.locator("#log")).to_contain_text("Weekly sales: us, 14 days")
    watch.assert_clean()


def test_a_failed_run_is_retried_once_fixed_then_a_task_is_cleared_with_its_downstream(
    page: Page, watch: Watch, acme: tuple[Tenant, User], running: Workers, tmp_path: Path
) -> None:
    tenant, owner = acme
    share_with_tasks(tenant, tmp_path, writable=False)  # the task only looks for the flag
    flag = tmp_path / "fixed"
    apply(tenant, owner, fragile(flag))
    sign_in(page, person("otto", {tenant: "operator"}))
    page.goto("/t/acme/workflows/nightly-load/trigger/")
    page.get_by_role("button", name="Trigger run").click()
    expect(page).to_have_url(re.compile(r"/t/acme/runs/\d+/$"))
    run_id = run_id_of(page)
    expect(page.locator("#run-state")).to_contain_text("failed", timeout=WAIT_S * 1000)
    assert wait_for(lambda: ended(run_id), WAIT_S, "the run to fail", running) == "failed"

    page.reload()
    page.get_by_role("link", name="Retry failed tasks").click()
    expect(page).to_have_url(re.compile(rf"/runs/{run_id}/retry/$"))
    expect(page.locator("#tasks-rerun code")).to_have_text(["load", "report"])
    expect(page.locator("#tasks-rerun")).to_contain_text("failed")
    screenshot(page, "confirm-retry")

    flag.touch()  # the fix
    page.get_by_role("button", name="Retry 2 tasks").click()
    expect(page).to_have_url(re.compile(rf"/t/acme/runs/{run_id}/$"))
    expect(page.locator(".messages")).to_contain_text(f"Run #{run_id}: retrying load, report.")
    expect(page.locator("#run-state")).to_contain_text("success", timeout=WAIT_S * 1000)
    expect(page.locator('tr[data-task="load"] td.state')).to_have_text(re.compile("success$"))

    page.locator('tr[data-task="extract"] a').click()
    page.get_by_role("link", name="Clear…").click()
    expect(page).to_have_url(re.compile(rf"/runs/{run_id}/tasks/extract/clear/$"))
    expect(page.locator("#tasks-downstream code")).to_have_text(["load", "report"])
    screenshot(page, "confirm-clear")
    page.get_by_role("button", name="Clear extract and 2 downstream tasks").click()
    expect(page.locator(".messages")).to_contain_text(
        f"Cleared extract, load, report in run #{run_id}: they run again."
    )
    wait_for(lambda: ended(run_id), WAIT_S, "the cleared run to end", running)
    page.reload()
    expect(page.locator("#run-state")).to_contain_text("success")
    tries = TaskAttempt.objects.dangerously_unscoped().filter(
        task_instance__run_id=run_id, task_instance__task_id="load"
    )
    assert list(tries.order_by("try_number").values_list("state", flat=True)) == [
        "failed",
        "success",
        "success",
    ]
    watch.assert_clean()


# --- which controls each role sees ------------------------------------------------------

BROKEN = {"name": "broken", "tasks": {"fail": {"type": "shell", "command": ["false"]}}}
# The workflow's, run's and task's controls of this module, by their accessible names.
WORKFLOW_CONTROLS = ("Trigger a run", "Pause")
RUN_CONTROLS = ("Retry failed tasks",)
TASK_CONTROLS = ("Clear…", "Mark success or failed…")


@pytest.mark.parametrize("role", ROLES)
def test_each_role_sees_only_the_controls_it_may_use(
    page: Page, watch: Watch, acme: tuple[Tenant, User], running: Workers, role: str
) -> None:
    tenant, owner = acme
    [workflow] = apply(
        tenant,
        owner,
        {"name": "broken", "tasks": {"fail": {"type": "shell", "command": ["false"]}}},
    )
    with tenant_scope([tenant]):
        run = trigger_run(actor=Actor(user=owner, source="api"), workflow=workflow).run
    wait_for(lambda: ended(run.pk), WAIT_S, "the run to fail", running)
    sign_in(page, owner if role == "owner" else person(f"{role}-user", {tenant: role}))
    shown = role != "viewer"

    def check(path: str, names: tuple[str, ...]) -> None:
        assert status_of(page, path) == 200, path
        for name in names:
            control = page.get_by_role("link", name=name, exact=True).or_(
                page.get_by_role("button", name=name, exact=True)
            )
            expect(control).to_have_count(1 if shown else 0)

    check("/t/acme/workflows/broken/", WORKFLOW_CONTROLS)
    check(f"/t/acme/runs/{run.pk}/", RUN_CONTROLS)
    check(f"/t/acme/runs/{run.pk}/tasks/fail/", TASK_CONTROLS)
    # The pages behind them answer as the controls say (the server decides either way).
    expected = 200 if shown else 403
    for path in (
        "/t/acme/workflows/broken/trigger/",
        f"/t/acme/runs/{run.pk}/retry/",
        f"/t/acme/runs/{run.pk}/tasks/fail/clear/",
        f"/t/acme/runs/{run.pk}/tasks/fail/mark/",
    ):
        assert status_of(page, path) == expected, path
    watch.assert_clean(expected="403" if not shown else None)
