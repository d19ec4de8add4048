"""Live pages: a run's page shows its task turn from running to success, and a task's page
follows its log while lines arrive, both without reloading (htmx polling the live parts):
the address stays, and so does a marker set on `window` when the page opened."""

from __future__ import annotations

import re
from typing import Any

import pytest
from django.contrib.auth.models import User
from playwright.sync_api import Page, expect

from orchestrator.actors import Actor
from orchestrator.context import tenant_scope
from orchestrator.models import Tenant
from runs.models import TaskInstance, WorkflowRun
from runs.services import trigger_run
from tests.portal.browser.helpers import Watch, apply, person, sign_in, tenant_with
from tests.workers import Workers, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

NAP = {"name": "nap", "tasks": {"nap": {"type": "shell", "command": ["sleep", "4"]}}}
LINES = 8
COUNTER = {
    "name": "counter",
    "tasks": {
        "count": {
            "type": "shell",
            "command": [
                "sh",
                "-c",
                f'for i in $(seq 1 {LINES}); do echo "line $i"; sleep 0.5; done',
            ],
        }
    },
}
MARK = "() => { window.openedOnce = 'yes'; }"
MARKED = "() => window.openedOnce"


@pytest.fixture
def acme(running: Workers) -> tuple[Tenant, User]:
    owner = person("olivia")
    return tenant_with("acme", "Acme Analytics", owner), owner


def start(acme: tuple[Tenant, User], spec: dict[str, Any], workers: Workers) -> WorkflowRun:
    """Trigger the spec's one task and wait until a worker runs it."""
    tenant, owner = acme
    [workflow] = apply(tenant, owner, spec)
    with tenant_scope([tenant]):
        run = trigger_run(actor=Actor(user=owner, source="api"), workflow=workflow).run
    task = TaskInstance.objects.dangerously_unscoped().filter(run=run)
    wait_for(lambda: task.filter(state="running").exists(), 30, f"{spec['name']} to run", workers)
    return run


def test_a_running_task_turns_to_success_without_a_reload(
    page: Page, watch: Watch, acme: tuple[Tenant, User], running: Workers
) -> None:
    sign_in(page, acme[1])
    run = start(acme, NAP, running)
    page.goto(f"/t/acme/runs/{run.pk}/")
    address = page.url
    page.evaluate(MARK)
    state = page.locator('tr[data-task="nap"] td.state')
    expect(state).to_have_text(re.compile(r"running$"))
    expect(page.locator("#run-state")).to_contain_text("running")
    expect(page.locator("svg.dag g.node.st-running")).to_have_count(1)

    expect(state).to_have_text(re.compile(r"success$"), timeout=20_000)
    expect(page.locator("#run-state")).to_contain_text("success")
    expect(page.locator("svg.dag g.node.st-success")).to_have_count(1)
    expect(page.locator("#run-live")).to_contain_text("The run has finished")
    assert page.url == address
    assert page.evaluate(MARKED) == "yes", "the page was reloaded"
    watch.assert_clean()


def test_a_task_page_follows_its_log_while_lines_arrive(
    page: Page, watch: Watch, acme: tuple[Tenant, User], running: Workers
) -> None:
    sign_in(page, acme[1])
    run = start(acme, COUNTER, running)
    page.goto(f"/t/acme/runs/{run.pk}/tasks/count/")
    address = page.url
    page.evaluate(MARK)
    log, status = page.locator("#log"), page.locator("#log-status")
    expect(status).to_contain_text("following the log live")
    expect(log).to_contain_text("line 1")
    early = log.inner_text()
    assert f"line {LINES}" not in early, "the whole log was there at once: nothing was followed"

    expect(log).to_contain_text(f"line {LINES}", timeout=20_000)
    expect(status).to_contain_text("finished: success")
    lines = [line for line in log.inner_text().splitlines() if line.strip()]
    assert lines == [f"line {i}" for i in range(1, LINES + 1)]  # each once, in order
    assert page.url == address
    assert page.evaluate(MARKED) == "yes", "the page was reloaded"
    watch.assert_clean()
