"""Editing a workflow in Chromium as a person does: open it, press Edit, make three
mistakes in its spec, Check, see each at its line and path, fix them and add a task,
Check again, read the diff against the current version, Apply, and land on the
workflow's page at its new version. The screenshots `editor-errors` and `editor-diff`
are the ones docs/portal.md shows."""

from __future__ import annotations

import re
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from orchestrator.context import tenant_scope
from orchestrator.models import AuditEvent
from tests.portal.browser.helpers import Watch, person, screenshot, sign_in, tenant_with
from workflows.models import Workflow

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

REPORT: dict[str, Any] = {
    "name": "weekly-report",
    "description": "Builds the week's sales report and publishes it for the team",
    "tags": ["sales", "reports"],
    "schedule": {"cron": "0 6 * * 1", "timezone": "Europe/Berlin"},
    "params": {"region": {"type": "string", "enum": ["eu", "us"], "default": "eu"}},
    "tasks": {
        "extract": {
            "type": "shell",
            "command": ["sh", "-c", "echo extracting {{ params.region }}"],
            "retries": 2,
        },
        "summarise": {
            "type": "python",
            "callable": "runs.library:echo",
            "kwargs": {"region": "{{ params.region }}"},
            "depends_on": ["extract"],
        },
        "publish": {"type": "noop", "depends_on": ["summarise"]},
    },
}


def line_of(text: str, line: str) -> int:
    return text.splitlines().index(line) + 1


def test_edit_a_spec_with_mistakes_then_fix_and_apply_it(page: Page, watch: Watch) -> None:
    owner = person("olga")
    tenant = tenant_with("northwind", "Northwind", owner, [REPORT])
    editor = person("edith", {tenant: "editor"})
    sign_in(page, editor)

    page.goto("/t/northwind/workflows/weekly-report/")
    page.get_by_role("link", name="Edit", exact=True).click()
    expect(page).to_have_url(re.compile(r"/workflows/weekly-report/edit/$"))
    spec = page.locator("#editor-spec")
    current = spec.input_value()
    assert "    retries: 2\n" in current

    # Three mistakes: a bad type, an unknown field, and a cycle back from publish.
    broken = current.replace(
        "    retries: 2\n",
        "    retries: twice\n    colour: blue\n    depends_on:\n    - publish\n",
    )
    spec.fill(broken)
    page.get_by_role("button", name="Check").click()
    errors = page.locator("#editor-errors")
    expect(errors).to_contain_text("3 problems to fix")
    for line, path in (
        (line_of(broken, "    retries: twice"), "tasks.extract.retries"),
        (line_of(broken, "    colour: blue"), "tasks.extract.colour"),
        (line_of(broken, "    depends_on:"), "tasks.extract.depends_on"),
    ):
        expect(errors).to_contain_text(re.compile(rf"line {line}\s*,\s*{re.escape(path)}:"))
    expect(errors).to_contain_text("cycle:")
    expect(spec).to_have_value(broken)  # what was typed is kept
    screenshot(page, "editor-errors")
    watch.assert_clean(expected=r"status of 400 \(Bad Request\)")  # the answer to errors

    # Fixed, and a task added.
    fixed = current.replace("    retries: 2\n", "    retries: 3\n").replace(
        "tasks:\n", "tasks:\n  archive:\n    type: noop\n    depends_on:\n    - publish\n", 1
    )
    spec.fill(fixed)
    page.get_by_role("button", name="Check").click()
    preview = page.locator("#editor-preview")
    expect(preview).to_contain_text("version 1 → version 2")
    expect(preview.locator("tr.chg td.b")).to_contain_text(["retries: 3"])
    expect(preview.locator("tr.add td.b").first).to_contain_text("archive:")
    expect(page.locator("#editor-errors")).to_have_count(0)
    screenshot(page, "editor-diff")

    page.get_by_role("button", name="Apply as version 2").click()
    expect(page).to_have_url(re.compile(r"/t/northwind/workflows/weekly-report/$"))
    expect(page.locator(".messages")).to_contain_text("Workflow weekly-report: version 2 applied.")
    expect(page.locator(".page-head")).to_contain_text("version 2")
    watch.assert_clean()

    with tenant_scope([tenant]):
        workflow = Workflow.objects.get(name="weekly-report")
        assert workflow.current_version is not None
        assert workflow.current_version.number == 2
        assert "archive" in workflow.current_version.spec["tasks"]
    event = AuditEvent.objects.dangerously_unscoped().get(action="workflow.update")
    assert (event.source, event.actor_id) == ("portal", editor.pk)
