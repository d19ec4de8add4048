"""Packages in the portal: the list (newest version, uploader, how many versions, search by
name) and a package's page (each version's digest, lock, functions and the workflows whose
current version runs it) for every member; the upload form for editors only, which
uploads through the service (audited as `portal`) and leads to the package's page; a
forged POST by a viewer is refused, another tenant's package is a 404, and a bad file
comes back with its error at the file field."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile
from django.test import Client

from orchestrator.actors import Actor
from orchestrator.context import tenant_scope
from orchestrator.models import AuditEvent
from runs.packages import upload_package
from tests.harness import Team, audit_count, new_audit_events, tenant_state
from tests.teamcode_support import use_package_index, wheel_bytes
from workflows.models import CodePackage
from workflows.services import apply_workflow

pytestmark = pytest.mark.django_db

SOURCE = {"acme_etl/__init__.py": "def greet(name):\n    return f'hello {name}'\n"}


@pytest.fixture(autouse=True)
def package_index(settings: Any, tmp_path: Path) -> Path:
    return use_package_index(settings, tmp_path)


def signed_in(team: Team, role: str) -> Client:
    client = Client()
    client.force_login(team.users[role])
    return client


def text_of(html: str) -> str:
    return re.sub(r"\s+", " ", re.sub(r"<[^>]+>", " ", html))


def a_wheel(
    version: str = "1.0", name: str = "acme-etl", source: dict[str, str] = SOURCE
) -> tuple[str, bytes]:
    return wheel_bytes(name, version, source, requires=["tinydep"])


# The same name and version as a_wheel's, with other contents: another file.
OTHER_SOURCE = {"acme_etl/__init__.py": "def greet(name):\n    return f'hi {name}'\n"}


def a_package(team: Team, version: str = "1.0", name: str = "acme-etl") -> CodePackage:
    filename, data = a_wheel(version, name)
    with tenant_scope([team.tenant]):
        return upload_package(actor=Actor.cli(), tenant=team.tenant, filename=filename, data=data)


def a_workflow_using(team: Team, version: str) -> None:
    spec = {
        "name": "nightly",
        "code": {"package": "acme-etl", "version": version},
        "tasks": {"hello": {"type": "python", "callable": "acme_etl:greet"}},
    }
    with tenant_scope([team.tenant]):
        apply_workflow(actor=Actor.cli(), tenant=team.tenant, data=spec)


def test_a_viewer_sees_the_packages_by_name(team: Team) -> None:
    a_package(team, "1.0")
    a_package(team, "2.0")
    a_package(team, "0.1", name="other-tool")
    response = signed_in(team, "viewer").get(f"/t/{team.slug}/packages/")
    assert response.status_code == 200
    html = response.content.decode()
    row = text_of(html.split('data-package="acme-etl"', 1)[1].split("</tr>", 1)[0])
    assert re.search(r"\bacme-etl 2\.0 ", row), row  # the newest version
    assert row.split()[-1] == "2", row  # versions
    assert 'data-package="other-tool"' in html
    assert 'id="package-upload"' not in html  # no form for a viewer
    assert f'href="/t/{team.slug}/packages/"' in html  # the nav link


def test_the_list_searches_by_name(team: Team) -> None:
    a_package(team, "1.0")
    a_package(team, "0.1", name="other-tool")
    html = signed_in(team, "viewer").get(f"/t/{team.slug}/packages/", {"q": "other"})
    assert 'data-package="other-tool"' in html.content.decode()
    assert 'data-package="acme-etl"' not in html.content.decode()


def test_a_packages_page_shows_its_versions_and_who_runs_them(team: Team) -> None:
    old, new = a_package(team, "1.0"), a_package(team, "2.0")
    a_workflow_using(team, "1.0")
    response = signed_in(team, "viewer").get(f"/t/{team.slug}/packages/acme-etl/")
    assert response.status_code == 200
    html = response.content.decode()
    for package in (old, new):
        row = html.split(f'data-version="{package.version}"', 1)[1].split("</tr>", 1)[0]
        assert package.digest[:12] in row
        assert ("nightly" in row) is (package == old)
    assert "tinydep==0.3.0" in html  # the lock
    assert "greet" in html  # the index
    assert f'href="/t/{team.slug}/workflows/nightly/"' in html
    assert 'id="package-upload"' not in html


def test_an_editor_uploads_and_lands_on_the_package(team: Team) -> None:
    client = signed_in(team, "editor")
    assert 'id="package-upload"' in client.get(f"/t/{team.slug}/packages/").content.decode()
    filename, data = a_wheel("3.0")
    count = audit_count(team.tenant)
    response = client.post(
        f"/t/{team.slug}/package-upload/", {"file": SimpleUploadedFile(filename, data)}
    )
    assert response.status_code == 302, response.content.decode()[:2000]
    assert response["Location"] == f"/t/{team.slug}/packages/acme-etl/"
    [event] = new_audit_events(team.tenant, count)
    assert (event.action, event.source) == ("package.upload", AuditEvent.Source.PORTAL)
    assert event.actor_id == team.users["editor"].pk
    page = text_of(client.get(response["Location"]).content.decode())
    assert "Uploaded acme-etl 3.0." in page


def test_a_viewers_forged_upload_is_refused(team: Team) -> None:
    filename, data = a_wheel()
    client = signed_in(team, "viewer")
    before = tenant_state(team.tenant)
    response = client.post(
        f"/t/{team.slug}/package-upload/", {"file": SimpleUploadedFile(filename, data)}
    )
    assert response.status_code == 403
    assert client.get(f"/t/{team.slug}/package-upload/").status_code == 403
    assert tenant_state(team.tenant) == before


def test_another_tenants_package_is_not_found(team: Team, outsider: Team) -> None:
    a_package(outsider)
    client = signed_in(team, "owner")
    assert client.get(f"/t/{team.slug}/packages/acme-etl/").status_code == 404
    assert client.get(f"/t/{outsider.slug}/packages/acme-etl/").status_code == 404
    assert client.get(f"/t/{outsider.slug}/packages/").status_code == 404


@pytest.mark.parametrize(
    ("filename", "data"),
    [("notes.txt", b"not a package"), ("acme_etl-1.0-py3-none-any.whl", b"not a zip")],
)
def test_a_bad_file_comes_back_with_its_error_at_the_field(
    team: Team, filename: str, data: bytes
) -> None:
    before = tenant_state(team.tenant)
    response = signed_in(team, "editor").post(
        f"/t/{team.slug}/package-upload/", {"file": SimpleUploadedFile(filename, data)}
    )
    assert response.status_code == 400
    html = response.content.decode()
    assert 'id="file-error"' in html
    assert 'aria-invalid="true"' in html
    assert tenant_state(team.tenant) == before


def test_an_upload_without_a_file_comes_back_with_its_error_at_the_field(team: Team) -> None:
    response = signed_in(team, "editor").post(f"/t/{team.slug}/package-upload/", {})
    assert response.status_code == 400
    assert 'id="file-error"' in response.content.decode()


def test_another_file_of_a_version_already_uploaded_is_said_above_the_form(team: Team) -> None:
    a_package(team, "1.0")
    filename, data = a_wheel("1.0", source=OTHER_SOURCE)
    response = signed_in(team, "editor").post(
        f"/t/{team.slug}/package-upload/", {"file": SimpleUploadedFile(filename, data)}
    )
    assert response.status_code == 409
    assert 'id="form-errors"' in response.content.decode()
