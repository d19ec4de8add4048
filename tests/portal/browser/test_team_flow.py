"""An admin makes an API token in the portal, copies it from the page, uses it against the
live server's REST API, revokes it, and sees it refused; as a person would, in Chromium.
Screenshots: `team` and `token-created` (docs/portal.md)."""

from __future__ import annotations

import datetime as dt
import json
import re
import urllib.error
import urllib.request
from typing import Any

import pytest
from django.utils import timezone
from playwright.sync_api import Page, expect

from orchestrator import services
from orchestrator.actors import Actor
from tests.portal.browser.helpers import Watch, person, screenshot, sign_in, tenant_with

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

NIGHTLY = {
    "name": "nightly-report",
    "schedule": {"cron": "0 3 * * *", "timezone": "UTC"},
    "tasks": {"report": {"type": "shell", "command": ["true"]}},
}


def me(base_url: str, token: str) -> tuple[int, dict[str, Any]]:
    """GET /api/v1/me with the token, straight to the live server (no proxy)."""
    request = urllib.request.Request(  # noqa: S310 (the live server, on loopback)
        f"{base_url}/api/v1/me", headers={"Authorization": f"Bearer {token}"}
    )
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(request, timeout=10) as response:
            return response.status, json.loads(response.read())
    except urllib.error.HTTPError as refused:
        return refused.code, json.loads(refused.read() or b"{}")


def test_an_admin_creates_a_token_uses_it_and_revokes_it(
    page: Page, watch: Watch, live_server: Any
) -> None:
    owner = person("olga")
    acme = tenant_with("acme", "Acme Analytics", owner, [NIGHTLY])
    admin = person("ada", {acme: "admin"})
    person("val", {acme: "viewer"})
    person("otto", {acme: "operator"})
    account = services.create_service_account(
        actor=Actor.cli(), tenant=acme, name="ci", role="operator", description="GitHub Actions"
    )
    services.create_token(
        actor=Actor.cli(),
        tenant=acme,
        name="deploy from CI",
        role="operator",
        user=account.user,
        expires_at=timezone.now() + dt.timedelta(days=90),
    )
    page.context.grant_permissions(["clipboard-read", "clipboard-write"], origin=live_server.url)
    sign_in(page, admin)

    page.goto("/t/acme/team/")
    expect(page.get_by_role("heading", name="Team", exact=True)).to_be_visible()
    expect(page.locator('tr[data-member="val"]')).to_contain_text("viewer")
    expect(page.locator('tr[data-member="olga"]')).to_contain_text("above your role")
    expect(page.locator('tr[data-service-account="ci"]')).to_contain_text("operator")
    expect(page.locator('tr[data-quota="max_workflows"] .used')).to_have_text("1")

    page.locator("#tokens").get_by_role("link", name="New token").click()
    expect(page).to_have_url(re.compile(r"/t/acme/team/tokens/new/$"))
    expect(page.locator('select[name="role"] option[value="owner"]')).to_have_count(0)
    page.get_by_label("Name").fill("laptop")
    page.get_by_label("Role").select_option("editor")
    page.get_by_label("Expires in (days)").fill("30")
    page.get_by_role("button", name="Create token").click()

    once = page.locator(".once")
    expect(once).to_contain_text("the only time it is shown")
    shown = page.locator("#new-token")
    raw = shown.inner_text().strip()
    assert re.fullmatch(r"orc_[a-z0-9]{10}_[A-Za-z0-9_-]{32,128}", raw), raw
    copy = page.get_by_role("button", name="Copy")
    expect(copy).to_be_visible()  # copy.js ran: the CSP let the page's own script in
    copy.click()
    expect(once).to_contain_text("Copied.")
    assert page.evaluate("navigator.clipboard.readText()") == raw
    screenshot(page, "token-created")

    status, body = me(live_server.url, raw)
    assert status == 200
    assert body["username"] == "ada"
    assert body["token"]["role"] == "editor"
    assert body["token"]["tenant"] == "acme"

    page.get_by_role("link", name="Done: back to the team").click()
    expect(page).to_have_url(re.compile(r"/t/acme/team/#tokens$"))
    token_prefix = raw.split("_")[1]
    row = page.locator(f'tr[data-token="{token_prefix}"]')
    expect(row).to_contain_text("laptop")
    expect(row).to_contain_text("(you)")
    assert raw not in page.content()
    screenshot(page, "team")

    row.get_by_role("link", name="Revoke").click()
    expect(page.get_by_role("heading", name=re.compile("Revoke the API token"))).to_be_visible()
    page.get_by_role("button", name="Revoke laptop").click()
    expect(page.locator(".messages")).to_contain_text("revoked: it is refused from now on")
    expect(page.locator(f'tr[data-revoked-token="{token_prefix}"]')).to_have_count(1)
    assert raw not in page.content()

    status, _ = me(live_server.url, raw)
    assert status == 401
    watch.assert_clean()
