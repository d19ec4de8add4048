"""Packages over GraphQL: `packages` and `package` for members, `uploadPackage` for
editors (audited as graphql), another tenant's packages invisible, and errors about the
file at the path of the argument that carries it, `contentBase64`."""

from __future__ import annotations

import base64
import hashlib
from pathlib import Path
from typing import Any

import pytest

from orchestrator.actors import Actor
from orchestrator.context import tenant_scope
from runs.packages import upload_package
from tests.graphql_harness import MutationCase, MutationSuite
from tests.harness import Team, gql, gql_error, tenant_state
from tests.teamcode_support import use_package_index, wheel_bytes

SOURCE = {"acme_etl/__init__.py": "def greet(name):\n    return f'hello {name}'\n"}
FIELDS = """id name version digest filename size sourceKind requiresPython requirements
    lock index uploadedBy createdAt buildLog"""
UPLOAD = f"""mutation($tenant: String!, $filename: String!, $content: String!) {{
  uploadPackage(tenant: $tenant, filename: $filename, contentBase64: $content) {{ {FIELDS} }}
}}"""
PACKAGES = f"""query($tenant: String!, $name: String) {{
  packages(tenant: $tenant, name: $name) {{ {FIELDS} }}
}}"""
PACKAGE = f"""query($tenant: String!, $id: Int!) {{
  package(tenant: $tenant, id: $id) {{ {FIELDS} }}
}}"""


@pytest.fixture(autouse=True)
def package_index(settings: Any, tmp_path: Path) -> Path:
    return use_package_index(settings, tmp_path)


def a_wheel(
    version: str = "1.0", name: str = "acme-etl", source: dict[str, str] = SOURCE
) -> tuple[str, bytes]:
    return wheel_bytes(name, version, source, requires=["tinydep"])


# The same name and version as a_wheel's, with other contents: another file.
OTHER_SOURCE = {"acme_etl/__init__.py": "def greet(name):\n    return f'hi {name}'\n"}


def upload_variables(team: Team) -> dict[str, Any]:
    filename, data = a_wheel()
    return {"tenant": team.slug, "filename": filename, "content": base64.b64encode(data).decode()}


def a_package(team: Team, version: str = "1.0", name: str = "acme-etl") -> int:
    filename, data = a_wheel(version, name)
    with tenant_scope([team.tenant]):
        package = upload_package(
            actor=Actor.cli(), tenant=team.tenant, filename=filename, data=data
        )
    return package.pk


class TestPackageMutations(MutationSuite):
    cases = [MutationCase("uploadPackage", UPLOAD, upload_variables, "editor", "package.upload")]


def test_an_editor_uploads_a_package(team: Team) -> None:
    variables = upload_variables(team)
    response = gql(team.tokens["editor"], UPLOAD, variables)
    assert "errors" not in response.json(), response.json()
    package = response.json()["data"]["uploadPackage"]
    data = base64.b64decode(variables["content"])
    assert (package["name"], package["version"], package["sourceKind"]) == (
        "acme-etl",
        "1.0",
        "wheel",
    )
    assert package["digest"] == hashlib.sha256(data).hexdigest()
    assert package["index"] == {"acme_etl": ["greet"]}
    assert [line.split(" ")[0] for line in package["lock"]] == ["tinydep==0.3.0"]
    assert package["uploadedBy"] == "acme-editor"


def test_a_viewer_reads_packages(team: Team) -> None:
    first, second = a_package(team, "1.0"), a_package(team, "2.0")
    a_package(team, "0.1", name="other-tool")
    viewer = team.tokens["viewer"]
    listed = gql(viewer, PACKAGES, {"tenant": team.slug, "name": "acme-etl"}).json()
    assert "errors" not in listed, listed
    assert [int(p["id"]) for p in listed["data"]["packages"]] == [second, first]
    everything = gql(viewer, PACKAGES, {"tenant": team.slug}).json()["data"]["packages"]
    assert {p["name"] for p in everything} == {"acme-etl", "other-tool"}
    one = gql(viewer, PACKAGE, {"tenant": team.slug, "id": first}).json()
    assert "errors" not in one, one
    assert (one["data"]["package"]["version"], one["data"]["package"]["requirements"]) == (
        "1.0",
        ["tinydep"],
    )
    assert isinstance(one["data"]["package"]["buildLog"], str)


def test_a_viewer_may_not_upload(team: Team) -> None:
    before = tenant_state(team.tenant)
    response = gql(team.tokens["viewer"], UPLOAD, upload_variables(team))
    assert gql_error(response)["extensions"]["code"] == "FORBIDDEN"
    assert tenant_state(team.tenant) == before


def test_another_tenants_packages_are_invisible(team: Team, outsider: Team) -> None:
    theirs = a_package(outsider)
    owner = team.tokens["owner"]
    mine = gql(owner, PACKAGES, {"tenant": team.slug}).json()
    assert mine["data"]["packages"] == []
    through_mine = gql(owner, PACKAGE, {"tenant": team.slug, "id": theirs})
    assert gql_error(through_mine)["extensions"]["code"] == "NOT_FOUND"
    assert through_mine.json()["data"]["package"] is None
    listed = gql(owner, PACKAGES, {"tenant": outsider.slug})
    assert gql_error(listed)["extensions"]["code"] == "NOT_FOUND"


@pytest.mark.parametrize(
    ("filename", "content"),
    [
        ("acme_etl-1.0-py3-none-any.whl", "not base64!"),
        ("notes.txt", base64.b64encode(b"not a package").decode()),
        ("acme_etl-1.0-py3-none-any.whl", base64.b64encode(b"not a zip").decode()),
    ],
)
def test_a_bad_file_is_refused_at_content_base64(team: Team, filename: str, content: str) -> None:
    before = tenant_state(team.tenant)
    variables = {"tenant": team.slug, "filename": filename, "content": content}
    error = gql_error(gql(team.tokens["editor"], UPLOAD, variables))
    assert error["extensions"]["code"] == "BAD_USER_INPUT"
    assert "contentBase64" in [e["path"] for e in error["extensions"]["errors"]], error
    assert tenant_state(team.tenant) == before


def test_another_file_of_a_version_already_uploaded_is_a_conflict(team: Team) -> None:
    a_package(team, "1.0")
    filename, data = a_wheel("1.0", source=OTHER_SOURCE)
    content = base64.b64encode(data).decode()
    variables = {"tenant": team.slug, "filename": filename, "content": content}
    error = gql_error(gql(team.tokens["editor"], UPLOAD, variables))
    assert error["extensions"]["code"] == "CONFLICT"
