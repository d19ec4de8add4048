"""Signing in through the login form as a member of two tenants, choosing one, switching
to the other with the switcher, and finding the way with the keyboard alone."""

from __future__ import annotations

import re

import pytest
from playwright.sync_api import Page, expect

from orchestrator.models import Tenant
from tests.portal.browser.helpers import Watch, person, screenshot, sign_in, tenant_with

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]


def flow(name: str, tags: list[str], cron: str | None = None) -> dict[str, object]:
    spec: dict[str, object] = {
        "name": name,
        "tags": tags,
        "tasks": {"extract": {"type": "noop"}, "load": {"type": "noop", "depends_on": ["extract"]}},
    }
    if cron:
        spec["schedule"] = {"cron": cron, "timezone": "Europe/Berlin"}
    return spec


def two_tenants() -> tuple[Tenant, Tenant]:
    acme = tenant_with(
        "acme",
        "Acme Analytics",
        person("acme-owner"),
        [flow("daily-sales", ["sales"], "0 2 * * *"), flow("hourly-cleanup", ["maintenance"])],
    )
    globex = tenant_with(
        "globex",
        "Globex Logistics",
        person("globex-owner"),
        [flow("fleet-telemetry", ["fleet"], "*/10 * * * *"), flow("route-planner", ["routes"])],
    )
    return acme, globex


def test_it_signs_in_chooses_a_tenant_and_switches_to_the_other(page: Page, watch: Watch) -> None:
    acme, globex = two_tenants()
    dana = person("dana", {acme: "viewer", globex: "operator"})

    page.goto("/login/")
    expect(page.get_by_role("heading", name="Sign in")).to_be_visible()
    screenshot(page, "login")
    sign_in(page, dana)

    # Two tenants: `/` is the chooser, each tenant with Dana's role in it.
    expect(page).to_have_url(re.compile(r"/$"))
    chooser = page.locator("main table tbody tr")
    expect(chooser).to_have_count(2)
    expect(chooser.filter(has_text="Acme Analytics")).to_contain_text("viewer")
    expect(chooser.filter(has_text="Globex Logistics")).to_contain_text("operator")
    screenshot(page, "tenants")

    page.get_by_role("link", name="Acme Analytics").click()
    expect(page).to_have_url(re.compile(r"/t/acme/workflows/$"))
    expect(page.locator("main")).to_contain_text("daily-sales")

    switcher = page.locator("details.switcher")
    expect(switcher.locator("summary")).to_contain_text("Acme Analytics")
    switcher.locator("summary").click()
    entries = switcher.locator(".menu-items li")
    expect(entries).to_have_count(2)
    expect(entries.filter(has_text="Acme Analytics")).to_contain_text("viewer")
    expect(entries.filter(has_text="Globex Logistics")).to_contain_text("operator")

    entries.filter(has_text="Globex Logistics").get_by_role("link").click()
    expect(page).to_have_url(re.compile(r"/t/globex/workflows/$"))
    expect(switcher.locator("summary")).to_contain_text("Globex Logistics")
    main = page.locator("main")
    expect(main).to_contain_text("fleet-telemetry")
    expect(main).to_contain_text("route-planner")
    for name in ("daily-sales", "hourly-cleanup", "Acme Analytics"):
        expect(main).not_to_contain_text(name)
    watch.assert_clean()


def test_the_keyboard_reaches_the_skip_link_and_the_navigation(page: Page, watch: Watch) -> None:
    acme, _ = two_tenants()
    sign_in(page, person("kim", {acme: "admin"}))  # one tenant: `/` opens its workflows
    expect(page).to_have_url(re.compile(r"/t/acme/workflows/$"))

    page.keyboard.press("Tab")
    focused = page.locator(":focus")
    expect(focused).to_have_text("Skip to content")
    expect(focused).to_be_in_viewport()  # shown when focused, off screen otherwise

    reached = []
    for _ in range(16):
        page.keyboard.press("Tab")
        reached.append(page.evaluate("() => document.activeElement.textContent.trim()"))
    nav = ["Workflows", "Runs", "Backfills", "Connections", "Alerts", "Team", "Audit log"]
    assert [name for name in reached if name in nav] == nav, reached

    page.locator("a.skip-link").focus()  # the skip link leads past the top bar
    page.keyboard.press("Enter")
    expect(page).to_have_url(re.compile(r"#main$"))
    page.keyboard.press("Tab")  # on from the content's start: an admin's "New workflow"
    expect(page.locator("main :focus")).to_have_text("New workflow")
    page.keyboard.press("Tab")  # then the first field of the filters
    expect(page.locator("main :focus")).to_have_attribute("name", "q")
    watch.assert_clean()
