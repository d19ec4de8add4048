"""Uploading source: an archive of a source tree (pyproject.toml) or an sdist is built into
a wheel with `uv build` in the tenant's sandbox (its backend is the team's code), and that
wheel is what is stored, locked and indexed."""

from __future__ import annotations

import hashlib
import zipfile
from io import BytesIO
from pathlib import Path
from typing import Any

import pytest
from django.core.files.storage import storages

from orchestrator.actors import Actor
from orchestrator.context import tenant_scope
from orchestrator.errors import Invalid
from runs.packages import upload_package
from runs.tasktypes.package_store import package_wheel
from runs.tasktypes.sandbox import uid_for
from tests.harness import Team
from tests.teamcode_support import (
    archive_tree,
    use_package_index,
    write_sdist,
    write_source_tree,
    zip_tree,
)
from workflows.models import CodePackage

SOURCE = {
    "acme_etl/__init__.py": "from tinydep import shout\n\ndef hello(s):\n    return shout(s)\n"
}


@pytest.fixture(autouse=True)
def index(settings: Any, tmp_path: Path) -> Path:
    return use_package_index(settings, tmp_path)


def upload(team: Team, filename: str, data: bytes) -> CodePackage:
    with tenant_scope([team.tenant]):
        return upload_package(actor=Actor.cli(), tenant=team.tenant, filename=filename, data=data)


def test_it_builds_a_source_tree_archive_into_a_wheel(team: Team, tmp_path: Path) -> None:
    tree = write_source_tree(tmp_path / "src", "acme-etl", "2.0", SOURCE, requires=["tinydep"])
    data = archive_tree(tree)

    package = upload(team, "acme-etl.tar.gz", data)

    assert (package.name, package.version, package.source_kind) == ("acme-etl", "2.0", "tree")
    assert package.filename == "acme_etl-2.0-py3-none-any.whl"
    assert package.source_digest == hashlib.sha256(data).hexdigest()
    wheel = package_wheel(package)
    assert package.digest == hashlib.sha256(wheel).hexdigest() != package.source_digest
    assert package.size == len(wheel)
    assert "acme_etl/__init__.py" in zipfile.ZipFile(BytesIO(wheel)).namelist()
    assert package.index == {"acme_etl": ["hello"]}
    assert [line.split()[0] for line in package.lock] == ["tinydep==0.3.0"]
    assert "build: acme-etl.tar.gz (tree)" in package.build_log


def test_a_tree_zipped_with_its_files_at_the_root_builds_too(team: Team, tmp_path: Path) -> None:
    tree = write_source_tree(tmp_path / "src", "acme-etl", "2.1", SOURCE, requires=["tinydep"])

    package = upload(team, "acme-etl-2.1.zip", zip_tree(tree, top=None))

    assert (package.version, package.source_kind, package.index) == (
        "2.1",
        "tree",
        {"acme_etl": ["hello"]},
    )


def test_it_builds_an_sdist(team: Team, tmp_path: Path) -> None:
    data = write_sdist(tmp_path / "src", "acme-etl", "3.0", SOURCE, requires=["tinydep"])

    package = upload(team, "acme_etl-3.0.tar.gz", data)

    assert (package.name, package.version, package.source_kind) == ("acme-etl", "3.0", "sdist")
    assert package.index == {"acme_etl": ["hello"]}
    assert storages["packages"].exists(
        f"sha256/{package.digest[:2]}/{package.digest}/acme_etl-3.0-py3-none-any.whl"
    )


def test_the_build_runs_as_the_tenants_uid(team: Team, tmp_path: Path, settings: Any) -> None:
    """The backend writes its uid into the wheel: the build ran in the sandbox, as the
    tenant, not as this (root) process."""
    tree = write_source_tree(tmp_path / "src", "acme-etl", "4.0", SOURCE, ["tinydep"])
    backend = tree / "_build" / "teambackend.py"
    backend.write_text(
        backend.read_text().replace(
            "    members = {}\n",
            "    members = {'acme_etl/uid.py': f'UID = {os.getuid()}\\n'.encode()}\n",
        )
    )

    package = upload(team, "acme-etl.tar.gz", archive_tree(tree))

    uid = uid_for(team.tenant.pk, settings.TASK_SANDBOX_UIDS)
    wheel = zipfile.ZipFile(BytesIO(package_wheel(package)))
    assert wheel.read("acme_etl/uid.py") == f"UID = {uid}\n".encode()


def test_a_failing_build_is_invalid_with_its_output(team: Team, tmp_path: Path) -> None:
    tree = write_source_tree(tmp_path / "src", "acme-etl", "5.0", SOURCE)
    backend = tree / "_build" / "teambackend.py"
    backend.write_text(backend.read_text() + "\nraise RuntimeError('the backend broke')\n")

    with pytest.raises(Invalid) as caught:
        upload(team, "acme-etl.tar.gz", archive_tree(tree))

    [(path, message)] = caught.value.errors
    assert path == "file"
    assert message.startswith("building a wheel from 'acme-etl.tar.gz' failed (exit code")
    assert "RuntimeError: the backend broke" in message
    assert not CodePackage.objects.dangerously_unscoped().filter(tenant=team.tenant).exists()


def test_with_sandboxes_off_it_builds_in_a_private_directory(
    team: Team, tmp_path: Path, settings: Any
) -> None:
    settings.TASK_SANDBOX = "off"
    tree = write_source_tree(tmp_path / "src", "acme-etl", "6.0", SOURCE, requires=["tinydep"])

    package = upload(team, "acme-etl.tar.gz", archive_tree(tree))

    assert (package.version, package.index) == ("6.0", {"acme_etl": ["hello"]})
