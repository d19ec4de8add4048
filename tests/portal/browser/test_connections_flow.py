"""Connections, variables and secrets in a real browser, as a person would use them.

An admin sets a secret through its form, and a workflow's shell task echoes it. The
task's log in the portal shows the mask instead of the value, and so does every page on
the way. The admin also creates an http connection in the form and presses its test
button, which reaches a real server on 127.0.0.1. The screenshots `connections`,
`secret-form` and `connection` are saved for docs/portal.md."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator

import pytest
from django.contrib.auth.models import User
from playwright.sync_api import Page, expect

from connections import services as connections
from orchestrator.actors import Actor
from orchestrator.context import tenant_scope
from orchestrator.models import Tenant
from runs.models import WorkflowRun
from runs.services import trigger_run
from runs.tasktypes.masking import MASK
from tests.harness import set_policy
from tests.portal.browser.helpers import Watch, apply, person, screenshot, sign_in, tenant_with
from tests.runs.tasktypes.test_netguard import LocalServer, serve
from tests.workers import Workers, wait_for

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

SECRET = "k-7Hq2-portal-Secret-value"
ECHO = {
    "name": "echo-token",
    "tasks": {
        "echo": {
            "type": "shell",
            "command": ["sh", "-c", 'echo "token is $EXPORT_TOKEN"; echo done'],
            "env": {"EXPORT_TOKEN": "{{ secrets.export_token }}"},
        }
    },
}


@pytest.fixture
def acme() -> tuple[Tenant, User]:
    """A tenant with a few connections and variables (for the list's screenshot)."""
    owner = person("olivia")
    tenant = tenant_with("acme", "Acme Analytics", owner)
    actor = Actor(user=owner, source="api")
    with tenant_scope([tenant]):
        connections.create_connection(
            actor=actor,
            tenant=tenant,
            name="warehouse",
            kind="postgres",
            host="warehouse.db.internal",
            database="analytics",
            login="loader",
            password="not-shown-anywhere",
            extra={"sslmode": "require"},
            description="The analytics warehouse",
        )
        connections.create_variable(
            actor=actor, tenant=tenant, name="region", value="eu", description="Sales region"
        )
        connections.create_variable(
            actor=actor, tenant=tenant, name="report_recipients", value="sales@example.com"
        )
    return tenant, owner


@pytest.fixture
def http_server() -> Iterator[LocalServer]:
    yield from serve(LocalServer())


def test_a_secret_set_in_the_portal_is_masked_in_the_task_log(
    page: Page, watch: Watch, acme: tuple[Tenant, User], running: Workers
) -> None:
    tenant, owner = acme
    sign_in(page, owner)
    page.get_by_role("navigation", name="Tenant").get_by_role("link", name="Connections").click()
    expect(page.locator("h1")).to_have_text("Connections, variables and secrets")
    page.get_by_role("link", name="New secret").click()

    page.get_by_label("Name").fill("export_token")
    page.get_by_label("Value", exact=True).fill(SECRET)
    page.get_by_label("Description").fill("Token of the export API")
    page.get_by_label("Description").blur()
    screenshot(page, "secret-form")
    page.get_by_role("button", name="Set secret").click()

    expect(page.locator(".message.success")).to_have_text("Secret 'export_token' set.")
    row = page.locator('tr[data-secret="export_token"]')
    expect(row).to_contain_text("Token of the export API")
    expect(row).to_contain_text("write-only, never shown")
    assert SECRET not in page.content()
    screenshot(page, "connections")

    row.get_by_role("link", name="Replace").click()
    expect(page.locator("#value-help")).to_contain_text("Leave empty to keep the current value")
    assert SECRET not in page.content()

    [workflow] = apply(tenant, owner, ECHO)
    with tenant_scope([tenant]):
        run = trigger_run(actor=Actor(user=owner, source="api"), workflow=workflow).run
    finished = WorkflowRun.objects.dangerously_unscoped().filter(pk=run.pk, state="success")
    wait_for(finished.exists, 60, "the echo run to succeed", running)

    page.goto(f"/t/acme/runs/{run.pk}/tasks/echo/")
    log = page.locator("#log")
    expect(log).to_contain_text(f"token is {MASK}")
    expect(log).to_contain_text("done")
    assert SECRET not in page.content()
    page.goto("/t/acme/audit/?action=secret.")
    events = page.locator("main table").first
    expect(events).to_contain_text("secret.create")
    expect(events).to_contain_text("portal")
    assert SECRET not in page.content()
    watch.assert_clean()


def test_an_admin_creates_an_http_connection_and_tests_it(
    page: Page, watch: Watch, acme: tuple[Tenant, User], http_server: LocalServer
) -> None:
    tenant, owner = acme
    set_policy(tenant, http_allowed_hosts=["127.0.0.1"])
    sign_in(page, owner)
    page.goto("/t/acme/connections/")
    page.get_by_role("link", name="New connection").click()

    page.get_by_label("Name").fill("Local API")  # a name the service refuses: upper case
    page.get_by_label("Kind").select_option("http")
    page.get_by_label("Host").fill("127.0.0.1")
    page.get_by_label("Port").fill(str(http_server.port))
    page.get_by_label("Login").fill("robot")
    page.get_by_label("Password").fill("pa55-Local-word")
    page.get_by_label("Extra (JSON)").fill(json.dumps({"scheme": "http"}))
    page.get_by_role("button", name="Create connection").click()

    expect(page.locator("#name-error")).to_contain_text("is not a valid name")
    expect(page.get_by_label("Host")).to_have_value("127.0.0.1")  # what was typed stays
    expect(page.get_by_label("Password")).to_have_value("")  # but never a password
    page.get_by_label("Name").fill("local-api")
    page.get_by_label("Password").fill("pa55-Local-word")
    page.get_by_label("Extra (JSON)").fill(json.dumps({"scheme": "http"}))
    page.get_by_role("button", name="Create connection").click()

    expect(page.locator(".message.success")).to_have_text("Connection 'local-api' created.")
    expect(page.locator("#password-state")).to_have_text("set")
    page.get_by_role("button", name="Test the connection").click()
    answer = page.locator(".message.connection-test")
    expect(answer).to_have_text(re.compile(r"^Reached local-api: HTTP 404 in \d+ ms \(tested at "))
    assert http_server.seen[0]["headers"]["Authorization"].startswith("Basic ")
    assert "pa55-Local-word" not in page.content()
    screenshot(page, "connection")
    watch.assert_clean(expected=r"status of 400 \(Bad Request\)")  # the refused name
