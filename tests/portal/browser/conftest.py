"""The portal in a real browser: Debian's Chromium, driven by pytest-playwright, against
pytest-django's live server (which serves the static files too), with real worker
processes where runs must run.

Chromium is the system's (/usr/bin/chromium: `.ci/run` and `make test` install it as
root), never one Playwright downloads, as the machine has no internet. Without it these
tests are skipped, except in CI (`BROWSER_TESTS=required`, or `CI` set), where they fail.

Playwright's sync API keeps an asyncio loop running on the main thread while it is
started, and Django refuses ORM calls where a loop runs (SynchronousOnlyOperation). So
the plugin's session-wide Playwright and browser are overridden here to live only as long
as this package's tests, and while they live the ORM is told to allow it
(DJANGO_ALLOW_ASYNC_UNSAFE): the tests' ORM calls are plain blocking calls on the main
thread, and the loop never runs anything at the same time as they do.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from playwright.sync_api import Browser, Page, Playwright, expect, sync_playwright

from runs.periodic import ensure_periodic_tasks
from tests.portal.browser.helpers import DESKTOP, WAIT_MS, Watch
from tests.workers import Workers, publishing_to

__all__ = [
    "browser",
    "browser_context_args",
    "browser_type_launch_args",
    "fast_passwords",
    "playwright",
    "running",
    "watch",
    "workers",
]

CHROMIUM = Path("/usr/bin/chromium")
# Headless, and quiet on the network: the machine's closed network makes Chromium's own
# background connections (updates, sync, QUIC probes) fail and log errors otherwise.
CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def chromium_required() -> bool:
    return os.environ.get("BROWSER_TESTS") == "required" or bool(os.environ.get("CI"))


@pytest.fixture(scope="package")
def browser_type_launch_args(pytestconfig: pytest.Config) -> dict[str, Any]:
    if not CHROMIUM.exists():
        reason = f"Chromium is not installed at {CHROMIUM}: apt-get install -y chromium"
        if chromium_required():
            pytest.fail(reason)
        pytest.skip(reason)
    return {
        "executable_path": str(CHROMIUM),
        "args": CHROMIUM_ARGS,
        "headless": not pytestconfig.getoption("--headed"),
        "slow_mo": pytestconfig.getoption("--slowmo"),
    }


@pytest.fixture(scope="package")
def playwright() -> Iterator[Playwright]:
    with pytest.MonkeyPatch.context() as patch:
        patch.setenv("DJANGO_ALLOW_ASYNC_UNSAFE", "true")
        driver = sync_playwright().start()
        try:
            expect.set_options(timeout=WAIT_MS)
            yield driver
        finally:
            driver.stop()


@pytest.fixture(scope="package")
def browser(playwright: Playwright, browser_type_launch_args: dict[str, Any]) -> Iterator[Browser]:
    """One Chromium for every test of the package; each test gets a context of its own
    (the plugin's `context` and `page`), so no cookie passes from one test to the next."""
    browser = playwright.chromium.launch(**browser_type_launch_args)
    yield browser
    browser.close()


@pytest.fixture(scope="package")
def browser_context_args(live_server: Any) -> dict[str, Any]:
    """Pages open at 1280x800 on the live server: `page.goto("/login/")`. Asking for the
    live server makes every browser test a transactional one (pytest-django)."""
    return {"base_url": live_server.url, "viewport": DESKTOP}


@pytest.fixture(autouse=True)
def fast_passwords(settings: Any) -> None:
    """Hash the test users' passwords cheaply: the default hasher spends about a second
    on each user made and each sign-in. The live server's thread reads the same settings."""
    settings.PASSWORD_HASHERS = ["django.contrib.auth.hashers.MD5PasswordHasher"]


@pytest.fixture
def watch(page: Page, live_server: Any) -> Watch:
    """Errors the page reports and requests to other hosts, for `watch.assert_clean()`."""
    return Watch(live_server.url).attach(page)


@pytest.fixture(scope="package")
def workers(django_db_setup: None, django_db_blocker: Any) -> Iterator[Workers]:
    """Two worker processes (two slots each) and a beat, shared by the package's tests
    that run workflows; stopped when they are done, as their reconciler would otherwise
    act on other tests' runs."""
    with django_db_blocker.unblock():
        pool = Workers(count=2, concurrency=2)
        pool.start()
    try:
        with publishing_to(pool):
            yield pool
    finally:
        pool.stop()


@pytest.fixture
def running(workers: Workers) -> Workers:
    """The workers, with the reconciler's beat entry back (a test's flush removes it)."""
    ensure_periodic_tasks()
    return workers
