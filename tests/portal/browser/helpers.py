"""What the browser tests share: people who sign in with a password, tenants with
workflows, signing in through the login form, a watch on what a page logs and fetches,
and the screenshots docs/portal.md shows."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from django.contrib.auth.models import User
from playwright.sync_api import ConsoleMessage, Page, Request, ViewportSize, expect

from orchestrator import services
from orchestrator.actors import Actor
from orchestrator.context import tenant_scope
from orchestrator.models import Tenant
from tests.subprocesses import ROOT
from workflows.models import Workflow
from workflows.services import apply_workflow

__all__ = [
    "DESKTOP",
    "PASSWORD",
    "PHONE",
    "SCREENSHOTS",
    "WAIT_MS",
    "Watch",
    "apply",
    "assert_no_horizontal_overflow",
    "person",
    "screenshot",
    "sign_in",
    "status_of",
    "tenant_with",
]

PASSWORD = "correct horse battery staple"
SCREENSHOTS = ROOT / "var" / "screenshots"
DESKTOP: ViewportSize = {"width": 1280, "height": 800}
PHONE: ViewportSize = {"width": 390, "height": 844}
# Playwright's own waits (expect, clicks) give up after this many milliseconds.
WAIT_MS = 15_000


def person(username: str, memberships: Mapping[Tenant, str] | None = None) -> User:
    """A user who signs in with PASSWORD, a member of each tenant with its role."""
    user = User.objects.create_user(username, password=PASSWORD)
    for tenant, role in (memberships or {}).items():
        services.add_member(actor=Actor.cli(), tenant=tenant, user=user, role=role)
    return user


def tenant_with(
    slug: str,
    name: str,
    owner: User,
    specs: Sequence[dict[str, Any]] = (),
) -> Tenant:
    """A tenant made as the CLI makes one, with the workflows of `specs` applied."""
    tenant = services.create_tenant(actor=Actor.cli(), slug=slug, name=name, owner=owner)
    apply(tenant, owner, *specs)
    return tenant


def apply(tenant: Tenant, author: User, *specs: dict[str, Any]) -> list[Workflow]:
    actor = Actor(user=author, source="api")
    with tenant_scope([tenant]):
        return [apply_workflow(actor=actor, tenant=tenant, data=s).workflow for s in specs]


def status_of(page: Page, path: str) -> int:
    """Open a page; the HTTP status it was answered with."""
    response = page.goto(path)
    assert response is not None, path
    return response.status


def sign_in(page: Page, user: User, password: str = PASSWORD) -> None:
    """Through the login form, as a person would; ends on the page `/` leads to."""
    page.goto("/login/")
    page.locator("input[name=username]").fill(user.get_username())
    page.locator("input[name=password]").fill(password)
    page.get_by_role("button", name="Sign in").click()
    expect(page).not_to_have_url(re.compile(r"/login/"), timeout=WAIT_MS)


@dataclass
class Watch:
    """Everything a page reports as wrong: console errors (a Content-Security-Policy
    violation is one: "Refused to execute inline script ..."), uncaught exceptions, and
    requests to any host but the live server's (the portal must work offline)."""

    origin: str
    errors: list[str] = field(default_factory=list)
    foreign: list[str] = field(default_factory=list)

    def attach(self, page: Page) -> Watch:
        page.on("console", self._console)
        page.on("pageerror", lambda error: self.errors.append(f"uncaught: {error}"))
        page.on("request", self._request)
        return self

    def _console(self, message: ConsoleMessage) -> None:
        if message.type == "error":
            self.errors.append(f"console: {message.text} ({message.location.get('url', '')})")

    def _request(self, request: Request) -> None:
        parts = urlsplit(request.url)
        if (
            parts.scheme in ("http", "https", "ws", "wss")
            and f"{parts.scheme}://{parts.netloc}" != self.origin
        ):
            self.foreign.append(request.url)

    def assert_clean(self, expected: str | None = None) -> None:
        """No error but those matching the `expected` pattern, no foreign request."""
        errors = [e for e in self.errors if not (expected and re.search(expected, e))]
        assert errors == [], "the browser reported:\n" + "\n".join(errors)
        assert self.foreign == [], f"requests left the live server: {self.foreign}"
        self.errors.clear()


def screenshot(page: Page, name: str) -> Path:
    """A full-page PNG for docs/portal.md: var/screenshots/<name>.png."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    path = SCREENSHOTS / f"{name}.png"
    page.screenshot(path=path, full_page=True, animations="disabled", caret="hide")
    return path


def assert_no_horizontal_overflow(page: Page) -> None:
    """The page itself does not scroll sideways: wide tables and drawings scroll inside
    their own containers."""
    widths = page.evaluate("() => [document.documentElement.scrollWidth, window.innerWidth]")
    assert widths[0] <= widths[1] + 1, (
        f"{page.url}: page {widths[0]} px wide in a {widths[1]} px window"
    )
