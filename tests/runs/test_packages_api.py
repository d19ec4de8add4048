"""/api/v1/tenants/{tenant}/packages/: members list and read the tenant's packages and
download their wheels, editors upload them (multipart, field `file`); uploads are audited,
invalid files are 400 at `file`, a version uploaded twice is 409, and packages are
immutable (no update, no delete)."""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import pytest
from django.core.files.uploadedfile import SimpleUploadedFile

from orchestrator import tokens
from orchestrator.actors import Actor
from orchestrator.context import tenant_scope
from runs.packages import upload_package
from tests.harness import (
    EndpointCase,
    EndpointSuite,
    Team,
    api,
    assert_problem,
    audit_count,
    new_audit_events,
    send,
    tenant_state,
)
from tests.teamcode_support import use_package_index, wheel_bytes

PACKAGES = "/api/v1/tenants/{tenant}/packages/"
PACKAGE = PACKAGES + "{id}/"
SOURCE = {"acme_etl/__init__.py": "def greet(name):\n    return f'hello {name}'\n"}


@pytest.fixture(autouse=True)
def package_index(settings: Any, tmp_path: Path) -> Path:
    return use_package_index(settings, tmp_path)


def a_wheel(
    version: str = "1.0", name: str = "acme-etl", source: dict[str, str] = SOURCE
) -> tuple[str, bytes]:
    return wheel_bytes(name, version, source, requires=["tinydep"])


# The same name and version as a_wheel's, with other contents: another file.
OTHER_SOURCE = {"acme_etl/__init__.py": "def greet(name):\n    return f'hi {name}'\n"}


def a_package(team: Team, version: str = "1.0", name: str = "acme-etl") -> dict[str, str]:
    filename, data = a_wheel(version, name)
    with tenant_scope([team.tenant]):
        package = upload_package(
            actor=Actor.cli(), tenant=team.tenant, filename=filename, data=data
        )
    return {"id": str(package.pk)}


def upload(token: str, slug: str, filename: str, data: bytes) -> Any:
    return api(token).post(
        PACKAGES.format(tenant=slug), {"file": SimpleUploadedFile(filename, data)}
    )


class TestPackagesEndpoint(EndpointSuite):
    cases = [
        EndpointCase("list", "GET", PACKAGES, "viewer"),
        EndpointCase("retrieve", "GET", PACKAGE, "viewer", setup=a_package),
        EndpointCase("download", "GET", PACKAGE + "download/", "viewer", setup=a_package),
    ]


def test_it_uploads_a_wheel_and_answers_with_the_package(team: Team) -> None:
    filename, data = a_wheel()
    count = audit_count(team.tenant)
    response = upload(team.tokens["editor"], team.slug, filename, data)
    assert response.status_code == 201, response.content
    body = response.json()
    assert {k: body[k] for k in ("name", "version", "filename", "source_kind")} == {
        "name": "acme-etl",
        "version": "1.0",
        "filename": filename,
        "source_kind": "wheel",
    }
    assert body["digest"] == hashlib.sha256(data).hexdigest()
    assert body["size"] == len(data)
    assert body["requirements"] == ["tinydep"]
    assert [line.split(" ")[0] for line in body["lock"]] == ["tinydep==0.3.0"]
    assert body["index"] == {"acme_etl": ["greet"]}
    assert body["uploaded_by"] == "acme-editor"
    assert body["created_at"]
    assert "build_log" not in body
    [event] = new_audit_events(team.tenant, count)
    assert (event.action, event.source, event.actor_id) == (
        "package.upload",
        "api",
        team.users["editor"].pk,
    )
    assert event.token_prefix == tokens.parse(team.tokens["editor"])
    assert event.request_id == response["X-Request-ID"]


def test_a_viewer_lists_and_reads_packages_newest_first(team: Team) -> None:
    first = a_package(team, "1.0")
    second = a_package(team, "2.0")
    other = a_package(team, "0.1", name="other-tool")
    viewer = team.tokens["viewer"]
    listed = api(viewer).get(PACKAGES.format(tenant=team.slug)).json()["results"]
    assert [p["id"] for p in listed] == [int(other["id"]), int(second["id"]), int(first["id"])]
    assert all("build_log" not in p for p in listed)
    named = api(viewer).get(PACKAGES.format(tenant=team.slug), {"name": "acme-etl"}).json()
    assert [(p["name"], p["version"]) for p in named["results"]] == [
        ("acme-etl", "2.0"),
        ("acme-etl", "1.0"),
    ]
    one = api(viewer).get(PACKAGE.format(tenant=team.slug, **second))
    assert one.status_code == 200, one.content
    assert (one.json()["version"], one.json()["uploaded_by"]) == ("2.0", None)
    assert isinstance(one.json()["build_log"], str)


def test_a_viewer_may_not_upload(team: Team) -> None:
    filename, data = a_wheel()
    before = tenant_state(team.tenant)
    assert_problem(upload(team.tokens["viewer"], team.slug, filename, data), 403)
    assert tenant_state(team.tenant) == before


def test_another_tenants_package_is_not_found(team: Team, outsider: Team) -> None:
    theirs = a_package(outsider)
    owner = team.tokens["owner"]
    for url in (PACKAGE, PACKAGE + "download/"):
        assert_problem(api(owner).get(url.format(tenant=team.slug, **theirs)), 404)
        assert_problem(api(owner).get(url.format(tenant=outsider.slug, **theirs)), 404)
    listed = api(owner).get(PACKAGES.format(tenant=team.slug)).json()["results"]
    assert listed == []


@pytest.mark.parametrize(
    ("filename", "data"),
    [
        ("notes.txt", b"not a package"),
        ("acme_etl-1.0-py3-none-any.whl", b"not a zip"),
    ],
)
def test_a_bad_file_is_refused_at_the_field_file(team: Team, filename: str, data: bytes) -> None:
    before = tenant_state(team.tenant)
    body = assert_problem(upload(team.tokens["editor"], team.slug, filename, data), 400, "file")
    assert body["errors"][0]["message"]
    assert tenant_state(team.tenant) == before


def test_an_upload_without_a_file_is_refused_at_the_field_file(team: Team) -> None:
    response = api(team.tokens["editor"]).post(PACKAGES.format(tenant=team.slug), {})
    assert_problem(response, 400, "file")


def test_a_json_body_is_not_an_upload(team: Team) -> None:
    response = send(team.tokens["editor"], "POST", PACKAGES.format(tenant=team.slug), {})
    assert_problem(response, 415)


def test_another_file_of_a_version_already_uploaded_is_a_conflict(team: Team) -> None:
    a_package(team, "1.0")
    filename, data = a_wheel("1.0", source=OTHER_SOURCE)
    before = tenant_state(team.tenant)
    assert_problem(upload(team.tokens["editor"], team.slug, filename, data), 409)
    assert tenant_state(team.tenant) == before


def test_the_same_file_again_answers_the_stored_package_and_changes_nothing(team: Team) -> None:
    filename, data = a_wheel()
    first = upload(team.tokens["editor"], team.slug, filename, data)
    assert first.status_code == 201, first.content
    before = tenant_state(team.tenant)
    again = upload(team.tokens["editor"], team.slug, filename, data)
    assert again.status_code == 200, again.content
    assert again.json() == first.json()
    assert tenant_state(team.tenant) == before


def test_packages_are_immutable(team: Team) -> None:
    url = PACKAGE.format(tenant=team.slug, **a_package(team))
    before = tenant_state(team.tenant)
    for method in ("PUT", "PATCH", "DELETE"):
        assert_problem(send(team.tokens["owner"], method, url, {}), 405)
    assert tenant_state(team.tenant) == before


def test_the_download_is_the_stored_wheel(team: Team) -> None:
    filename, data = a_wheel()
    created = upload(team.tokens["editor"], team.slug, filename, data).json()
    url = PACKAGE.format(tenant=team.slug, id=created["id"]) + "download/"
    for accept in ("*/*", "application/octet-stream"):
        response = api(team.tokens["viewer"], Accept=accept).get(url)
        assert response.status_code == 200, response.content
        assert response["Content-Type"] == "application/octet-stream"
        assert response["Content-Disposition"] == f'attachment; filename="{filename}"'
        assert response.content == data
        assert hashlib.sha256(response.content).hexdigest() == created["digest"]


def test_a_file_past_the_size_limit_is_refused(team: Team, settings: Any) -> None:
    filename, data = a_wheel()
    settings.PACKAGE_MAX_BYTES = len(data) - 1
    before = tenant_state(team.tenant)
    assert_problem(upload(team.tokens["editor"], team.slug, filename, data), 400, "file")
    far_past = data + b"\0" * 70_000  # past the limit by more than a multipart's overhead
    assert_problem(upload(team.tokens["editor"], team.slug, filename, far_past), 413)
    assert tenant_state(team.tenant) == before
