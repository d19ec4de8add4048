"""What is not an installable, importable package is refused as Invalid on "file", with
why and what would be accepted; nothing is stored and nothing audited."""

from __future__ import annotations

import io
import tarfile
import zipfile
from pathlib import Path
from typing import Any

import pytest
from django.core.files.storage import storages

from orchestrator.actors import Actor
from orchestrator.context import tenant_scope
from orchestrator.errors import Invalid
from runs.packages import upload_package
from runs.tasktypes.packages import ACCEPTED
from tests.harness import Team, audit_count
from tests.teamcode_support import use_package_index, wheel_bytes
from workflows.models import CodePackage


@pytest.fixture(autouse=True)
def index(settings: Any, tmp_path: Path) -> Path:
    return use_package_index(settings, tmp_path)


def refusal(team: Team, filename: str, data: bytes) -> str:
    """The one error of the refused upload (on "file"); checks nothing was kept."""
    count = audit_count(team.tenant)
    with tenant_scope([team.tenant]), pytest.raises(Invalid) as caught:
        upload_package(actor=Actor.cli(), tenant=team.tenant, filename=filename, data=data)
    [(path, message)] = caught.value.errors
    assert path == "file"
    assert audit_count(team.tenant) == count
    assert not CodePackage.objects.dangerously_unscoped().filter(tenant=team.tenant).exists()
    assert not storages["packages"].exists("sha256")
    return message


def a_zip(files: dict[str, str]) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w") as archive:
        for name, text in files.items():
            archive.writestr(name, text)
    return buffer.getvalue()


def test_a_zip_of_other_files_is_not_a_package(team: Team) -> None:
    data = a_zip({"notes/readme.txt": "hello", "data.csv": "a,b\n"})

    assert refusal(team, "stuff.zip", data) == (
        "'stuff.zip' holds no Python project (no pyproject.toml at its root or in its one "
        f"top directory): expected {ACCEPTED}"
    )


def test_a_file_of_another_kind_is_not_a_package(team: Team) -> None:
    assert refusal(team, "acme.rar", b"Rar!\x1a\x07") == (
        f"'acme.rar' is not a package file: expected {ACCEPTED}"
    )


def test_a_wheel_that_is_not_a_zip(team: Team) -> None:
    message = refusal(team, "acme_etl-1.0-py3-none-any.whl", b"not a zip at all")

    assert message.startswith("'acme_etl-1.0-py3-none-any.whl' is not a readable archive (a zip)")


def test_a_zip_named_as_a_wheel_without_metadata(team: Team) -> None:
    data = a_zip({"acme_etl/__init__.py": ""})

    assert refusal(team, "acme_etl-1.0-py3-none-any.whl", data) == (
        "'acme_etl-1.0-py3-none-any.whl' is not a wheel: a wheel is a zip with one "
        "*.dist-info directory holding METADATA and WHEEL"
    )


def test_a_wheel_none_of_whose_modules_imports(team: Team) -> None:
    files = {"acme_etl/__init__.py": "1 / 0\n", "acme_etl/more.py": "import nowhere_to_be_found\n"}
    filename, data = wheel_bytes("acme-etl", "1.0", files)

    assert refusal(team, filename, data) == (
        "no module of acme-etl 1.0 could be imported: acme_etl: ZeroDivisionError: division by zero"
    )


def test_a_dependency_missing_from_the_index_is_named(team: Team, index: Path) -> None:
    filename, data = wheel_bytes("acme-etl", "1.0", {"acme_etl.py": ""}, requires=["nosuchdep>=1"])

    message = refusal(team, filename, data)

    assert message.startswith(
        f"the dependencies of acme-etl could not be resolved from find-links {index}: "
    )
    assert "nosuchdep" in message


def test_a_wheel_for_another_platform(team: Team) -> None:
    tag = "cp312-cp312-win_amd64"
    filename, data = wheel_bytes("acme-etl", "1.0", {"acme_etl.py": ""}, tag=tag)

    message = refusal(team, filename, data)

    assert message.startswith(f"'{filename}' is built for {tag}, which the workers' Python 3.11")


def test_a_wheel_whose_name_disagrees_with_its_metadata(team: Team) -> None:
    _, data = wheel_bytes("acme-etl", "1.0", {"acme_etl.py": ""})

    message = refusal(team, "acme_etl-2.0-py3-none-any.whl", data)

    assert message == (
        "'acme_etl-2.0-py3-none-any.whl' names acme-etl 2.0, but its METADATA says acme-etl "
        "1.0: the file name must match"
    )


def test_an_archive_leading_out_of_its_directory(team: Team) -> None:
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w:gz") as archive:
        for name in ("acme/pyproject.toml", "acme/../../escape.txt"):
            member = tarfile.TarInfo(name)
            member.size = 2
            archive.addfile(member, io.BytesIO(b"x\n"))

    assert refusal(team, "acme.tar.gz", buffer.getvalue()) == (
        "'acme.tar.gz': 'acme/../../escape.txt' leads out of the archive ('..')"
    )
