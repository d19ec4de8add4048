"""Alerts as people set them up in a browser: an admin makes a webhook channel to a real
receiver on 127.0.0.1, copies its signing secret from the one page that shows it, presses
Test and reads the receiver's answer; an editor (who sees no channel controls) makes a
rule, first forgetting its channel. The screenshots `alerts` and `channel-test` are the
ones docs/portal.md shows."""

from __future__ import annotations

import re
from typing import Any

import pytest
from playwright.sync_api import Page, expect

from notifications import services, transports
from orchestrator.actors import Actor
from orchestrator.context import tenant_scope
from tests.notifications.servers import HttpReceiver, http_receiver
from tests.portal.browser.helpers import Watch, person, screenshot, sign_in, tenant_with

__all__ = ["http_receiver"]  # the receiver fixture, for the test here

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

DAILY_SALES = {
    "name": "daily-sales",
    "tags": ["nightly"],
    "schedule": {"cron": "0 2 * * *", "timezone": "UTC"},
    "tasks": {"load": {"type": "noop"}},
}


@pytest.fixture(autouse=True)
def _loopback_allowed(settings: Any) -> None:
    """The receiver listens on 127.0.0.1, which the network guard refuses unless allowed
    (the live server runs in this process, so it reads the same settings)."""
    settings.NOTIFY_ALLOWED_HOSTS = ["127.0.0.1"]


def test_an_admin_tests_a_webhook_and_an_editor_routes_failures_to_it(
    page: Page, watch: Watch, http_receiver: HttpReceiver
) -> None:
    owner = person("olga")
    acme = tenant_with("acme", "Acme Analytics", owner, [DAILY_SALES])
    admin, editor = person("ada", {acme: "admin"}), person("ed", {acme: "editor"})
    with tenant_scope([acme]):
        services.create_channel(
            actor=Actor.cli(),
            tenant=acme,
            name="data-team-mail",
            kind="email",
            description="the data team's list",
            recipients=["data@acme.example"],
        )

    sign_in(page, admin)
    page.goto("/t/acme/alerts/")
    page.get_by_role("link", name="New channel").click()
    page.locator("input[name=name]").fill("lake-hook")
    page.locator("select[name=kind]").select_option("webhook")
    page.locator("input[name=description]").fill("the lake's ingest endpoint")
    page.locator("input[name=url]").fill(http_receiver.url("/ingest/s3cr3t-path"))
    page.get_by_role("button", name="Create channel").click()

    once = page.locator(".once code.secret")
    expect(once).to_have_text(re.compile(r"^whsec_"))
    secret = once.inner_text()
    page.get_by_role("link", name="Done: back to channels").click()
    expect(page.locator("tr[data-channel=lake-hook]")).to_contain_text("http://127.0.0.1:")
    assert "s3cr3t-path" not in page.content()
    assert secret not in page.content()
    screenshot(page, "alerts")

    page.get_by_role("link", name="Edit lake-hook").click()
    page.get_by_role("button", name="Send a test message").click()
    expect(page.locator(".messages")).to_contain_text(
        "Test message to lake-hook sent: HTTP 200 from 127.0.0.1"
    )
    [post] = http_receiver.wait(1)
    assert post.path == "/ingest/s3cr3t-path"
    assert transports.verify(secret, post.headers, post.body)
    assert "s3cr3t-path" not in page.content()
    screenshot(page, "channel-test")
    watch.assert_clean()

    page.context.clear_cookies()
    sign_in(page, editor)
    page.goto("/t/acme/alerts/")
    expect(page.locator("tr[data-channel=lake-hook]")).to_be_visible()
    expect(page.get_by_role("link", name="New channel")).to_have_count(0)
    expect(page.get_by_role("button", name="Test lake-hook")).to_have_count(0)
    page.get_by_role("link", name="Rules", exact=True).click()
    page.get_by_role("link", name="New rule").click()
    page.locator("input[name=name]").fill("nightly-failures")
    page.locator("input[name=event_types][value='sla.missed']").check()
    page.locator("input[name=tags]").fill("nightly")
    page.locator("input[name=quiet_period]").fill("15m")
    page.get_by_role("button", name="Create rule").click()

    expect(page.locator("#f-channels-error")).to_contain_text("name at least one channel")
    expect(page.locator("input[name=name]")).to_have_value("nightly-failures")
    expect(page.locator("input[name=event_types][value='run.failed']")).to_be_checked()
    expect(page.locator("input[name=event_types][value='sla.missed']")).to_be_checked()
    page.locator("input[name=channels][value='lake-hook']").check()
    page.get_by_role("button", name="Create rule").click()

    expect(page.locator(".messages")).to_contain_text("Rule nightly-failures created.")
    rule = page.locator("tr[data-rule=nightly-failures]")
    expect(rule).to_contain_text("sla.missed")
    expect(rule).to_contain_text("lake-hook")
    expect(rule).to_contain_text("15m")
    watch.assert_clean(expected="status of 400")
