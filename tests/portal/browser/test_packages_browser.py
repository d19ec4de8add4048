"""Team code packages in a real browser, as people would use them. An editor opens
Packages from the menu, uploads a wheel the test built with the form's file field, and
lands on the package's page: its version, the functions a python task can call and the
dependency locked at upload. A file that is no package comes back with its error at the
field. A workflow pins the first version, a second is uploaded from the package's page,
and that page (two versions, the workflow that runs the first) is the screenshot
`packages` of docs/portal.md. A viewer sees the same pages but no upload form. Neither
page reports an error (no Content-Security-Policy violation) or reaches another host, nor
scrolls sideways on a phone."""

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
from runs.packages import upload_package
from tests.portal.browser.helpers import (
    PHONE,
    Watch,
    apply,
    assert_no_horizontal_overflow,
    person,
    screenshot,
    sign_in,
    tenant_with,
)
from tests.teamcode_support import DEPENDENCY, use_package_index, wheel_bytes, write_wheel

pytestmark = [pytest.mark.slow, pytest.mark.django_db(transaction=True)]

FIRST = {
    "acme_etl/__init__.py": "def greet(name):\n    return f'hello {name}'\n",
    "acme_etl/load.py": (
        "import tinydep\n\n"
        "def load_orders(day):\n    return {'day': day, 'rows': 1250}\n\n"
        "def shout(text):\n    return tinydep.shout(text)\n"
    ),
}
SECOND = FIRST | {
    "acme_etl/report.py": "def weekly_summary(week):\n    return {'week': week}\n",
}
NIGHTLY = {
    "name": "nightly-orders",
    "code": {"package": "acme-etl", "version": "1.0"},
    "tasks": {"load": {"type": "python", "callable": "acme_etl.load:load_orders"}},
}
LOCKED = f"{DEPENDENCY[0]}=={DEPENDENCY[1]}"


@pytest.fixture(autouse=True)
def package_index(settings: Any, tmp_path: Path) -> Path:
    """The live server runs in this process's thread: it reads the same settings."""
    return use_package_index(settings, tmp_path)


@pytest.fixture
def acme() -> tuple[Tenant, User, User]:
    """A tenant with an owner, an editor and a viewer; no package yet."""
    owner = person("olivia")
    tenant = tenant_with("acme", "Acme Analytics", owner)
    editor = person("eddie", {tenant: "editor"})
    viewer = person("vera", {tenant: "viewer"})
    return tenant, editor, viewer


def upload(page: Page, wheel: Path) -> None:
    """Choose the file in the upload form and press Upload, as a person would."""
    form = page.locator("form#package-upload")
    form.get_by_label(re.compile("A wheel")).set_input_files(wheel)
    form.get_by_role("button", name="Upload").click()


def test_an_editor_uploads_a_wheel_and_sees_what_it_offers(
    page: Page, watch: Watch, acme: tuple[Tenant, User, User], tmp_path: Path
) -> None:
    tenant, editor, _ = acme
    first = write_wheel(tmp_path / "built", "acme-etl", "1.0", FIRST, requires=["tinydep"])
    second = write_wheel(tmp_path / "built", "acme-etl", "1.1", SECOND, requires=["tinydep"])
    sign_in(page, editor)
    page.get_by_role("navigation", name="Tenant").get_by_role("link", name="Packages").click()
    expect(page).to_have_url(re.compile(r"/t/acme/packages/$"))
    expect(page.locator("h1")).to_have_text("Packages")
    expect(page.get_by_role("heading", name="No packages yet")).to_be_visible()

    page.get_by_role("link", name="Upload a package").click()
    notes = tmp_path / "notes.txt"
    notes.write_text("not a package")
    upload(page, notes)
    expect(page).to_have_url(re.compile(r"/t/acme/package-upload/$"))
    expect(page.locator("#file-error")).to_be_visible()
    expect(page.locator("#f-file")).to_have_attribute("aria-invalid", "true")
    upload(page, first)

    expect(page).to_have_url(re.compile(r"/t/acme/packages/acme-etl/$"))
    expect(page.locator(".message.success")).to_have_text("Uploaded acme-etl 1.0.")
    expect(page.locator('tr[data-version="1.0"]')).to_contain_text("wheel")
    functions = page.locator("details.package-index").first
    expect(functions).to_have_attribute("open", "")
    expect(functions.locator("dt")).to_have_text(["acme_etl", "acme_etl.load"])
    expect(functions.locator("dd")).to_have_text(["greet", "load_orders, shout"])
    lock = page.locator("details.package-lock").first
    lock.get_by_text("Dependencies locked at upload (1)").click()
    expect(lock.locator("li")).to_have_text(re.compile(rf"^{re.escape(LOCKED)} --hash=sha256:"))
    watch.assert_clean(expected=r"status of 400 \(Bad Request\)")  # the text file

    apply(tenant, editor, NIGHTLY)
    page.get_by_role("link", name="Upload a new version").click()
    upload(page, second)
    expect(page.locator(".message.success")).to_have_text("Uploaded acme-etl 1.1.")
    versions = page.locator("#version-list tbody tr")
    expect(versions).to_have_count(2)
    expect(versions.nth(0)).to_have_attribute("data-version", "1.1")
    expect(versions.nth(1)).to_contain_text("nightly-orders (load)")
    newest = page.locator("details.package-index").first
    expect(newest.locator("dd").last).to_have_text("weekly_summary")
    page.locator("details.package-lock").first.locator("summary").click()
    screenshot(page, "packages")

    page.goto("/t/acme/packages/")
    row = page.locator('tr[data-package="acme-etl"]')
    expect(row).to_contain_text("1.1")
    expect(row.locator("td.num")).to_have_text("2")
    expect(row).to_contain_text("by eddie")
    page.set_viewport_size(PHONE)
    for path in ("/t/acme/packages/", "/t/acme/packages/acme-etl/"):
        page.goto(path)
        for details in page.locator("details:not(.menu)").all():
            details.evaluate("element => { element.open = true; }")
        assert_no_horizontal_overflow(page)
    watch.assert_clean()


def test_a_viewer_sees_the_packages_but_no_upload_form(
    page: Page, watch: Watch, acme: tuple[Tenant, User, User]
) -> None:
    tenant, editor, viewer = acme
    filename, data = wheel_bytes("acme-etl", "1.0", FIRST, requires=["tinydep"])
    with tenant_scope([tenant]):
        upload_package(
            actor=Actor(user=editor, source="api"), tenant=tenant, filename=filename, data=data
        )
    sign_in(page, viewer)
    page.get_by_role("navigation", name="Tenant").get_by_role("link", name="Packages").click()
    row = page.locator('tr[data-package="acme-etl"]')
    expect(row).to_contain_text("1.0")
    expect(page.locator("form#package-upload")).to_have_count(0)
    expect(page.get_by_role("link", name=re.compile("Upload"))).to_have_count(0)

    row.get_by_role("link", name="acme-etl").click()
    expect(page).to_have_url(re.compile(r"/t/acme/packages/acme-etl/$"))
    expect(page.locator('tr[data-version="1.0"]')).to_be_visible()
    expect(page.locator("details.package-index dd").first).to_have_text("greet")
    expect(page.locator("form#package-upload")).to_have_count(0)
    expect(page.get_by_role("link", name=re.compile("Upload"))).to_have_count(0)
    watch.assert_clean()
