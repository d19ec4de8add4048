"""Uploading a wheel: stored under its sha256, its dependency locked by version and hash
from the configured index, its functions indexed, one audit event; the same file again
changes nothing; other bytes under the same name and version are refused."""

from __future__ import annotations

import hashlib
import re
from pathlib import Path
from typing import Any

import pytest
from django.core.files.storage import storages

from orchestrator.actors import Actor
from orchestrator.context import tenant_scope
from orchestrator.errors import Conflict, Forbidden, Invalid
from runs.packages import package_versions, packages_of, upload_package
from runs.tasktypes.package_store import package_spec, package_wheel, wheel_path
from tests.harness import Team, audit_count, new_audit_events
from tests.teamcode_support import use_package_index, wheel_bytes
from workflows.models import CodePackage

SOURCE = {
    "acme_etl/__init__.py": "from tinydep import shout\n\ndef hello(s):\n    return shout(s)\n",
    "acme_etl/extract.py": "import os\n\ndef rows(n):\n    return list(range(n))\n\n"
    "def _private():\n    pass\n",
}


@pytest.fixture(autouse=True)
def index(settings: Any, tmp_path: Path) -> Path:
    return use_package_index(settings, tmp_path)


def upload(team: Team, filename: str, data: bytes, role: str = "editor") -> CodePackage:
    actor = Actor(user=team.users[role], source="api")
    with tenant_scope([team.tenant]):
        return upload_package(actor=actor, tenant=team.tenant, filename=filename, data=data)


def test_it_stores_locks_and_indexes_a_wheel(team: Team) -> None:
    filename, data = wheel_bytes("Acme_ETL", "1.4.2", SOURCE, requires=["tinydep>=0.2"])
    count = audit_count(team.tenant)

    package = upload(team, filename, data)

    digest = hashlib.sha256(data).hexdigest()
    assert (package.name, package.version, package.digest) == ("acme-etl", "1.4.2", digest)
    assert (package.filename, package.size, package.source_kind) == (filename, len(data), "wheel")
    assert package.source_digest == digest
    assert package.requirements == ["tinydep>=0.2"]
    [locked] = package.lock
    assert re.fullmatch(r"tinydep==0\.3\.0 --hash=sha256:[0-9a-f]{64}", locked)
    assert package.index == {"acme_etl": ["hello"], "acme_etl.extract": ["rows"]}
    assert package.uploaded_by == team.users["editor"]
    assert "tinydep==0.3.0" in package.build_log
    stored = storages["packages"]
    assert stored.exists(f"sha256/{digest[:2]}/{digest}/{filename}")
    assert wheel_path(digest, filename) == f"sha256/{digest[:2]}/{digest}/{filename}"
    assert package_wheel(package) == data
    assert package_spec(package).lock == (locked,)
    [event] = new_audit_events(team.tenant, count)
    assert (event.action, event.object_id, event.actor_label) == (
        "package.upload",
        str(package.pk),
        team.users["editor"].username,
    )
    assert event.changes["after"]["digest"] == digest
    assert event.changes["after"]["lock"] == [locked]


def test_the_same_file_again_returns_the_stored_package_and_audits_nothing(team: Team) -> None:
    filename, data = wheel_bytes("acme-etl", "1.0", SOURCE, requires=["tinydep"])
    first = upload(team, filename, data)
    count = audit_count(team.tenant)

    again = upload(team, filename, data)

    assert again.pk == first.pk
    assert audit_count(team.tenant) == count
    assert CodePackage.objects.dangerously_unscoped().filter(tenant=team.tenant).count() == 1


def test_other_bytes_for_an_uploaded_version_are_a_conflict(team: Team) -> None:
    filename, data = wheel_bytes("acme-etl", "1.0", SOURCE, requires=["tinydep"])
    first = upload(team, filename, data)
    changed = {**SOURCE, "acme_etl/extract.py": "def rows(n):\n    return [n]\n"}
    _, other = wheel_bytes("acme-etl", "1.0", changed, requires=["tinydep"])

    with pytest.raises(Conflict) as caught:
        upload(team, filename, other)

    assert caught.value.message == (
        f"acme-etl 1.0 is already uploaded (digest {first.digest}); packages are immutable: "
        "upload a new version"
    )


def test_versions_are_listed_by_name(team: Team) -> None:
    for version in ("1.0", "1.10", "1.2"):
        upload(team, *wheel_bytes("acme-etl", version, SOURCE, requires=["tinydep"]))
    upload(team, *wheel_bytes("other-pkg", "0.1", {"other_pkg.py": "def f():\n    pass\n"}))

    with tenant_scope([team.tenant]):
        newest_first = [p.version for p in packages_of(team.tenant, name="Acme_ETL")]
        by_version = [p.version for p in package_versions(team.tenant, "acme-etl")]
        names = [p.name for p in packages_of(team.tenant)]

    assert newest_first == ["1.2", "1.10", "1.0"]
    assert by_version == ["1.10", "1.2", "1.0"]
    assert names == ["acme-etl", "acme-etl", "acme-etl", "other-pkg"]


def test_a_file_over_the_size_limit_is_invalid_on_file(team: Team, settings: Any) -> None:
    filename, data = wheel_bytes("acme-etl", "1.0", SOURCE, requires=["tinydep"])
    settings.PACKAGE_MAX_BYTES = len(data) - 1

    with pytest.raises(Invalid) as caught:
        upload(team, filename, data)

    assert caught.value.errors == [
        (
            "file",
            f"the file is {len(data)} bytes; packages of at most {len(data) - 1} bytes are "
            "accepted (PACKAGE_MAX_BYTES)",
        )
    ]


def test_a_viewer_may_not_upload(team: Team) -> None:
    filename, data = wheel_bytes("acme-etl", "1.0", SOURCE, requires=["tinydep"])
    count = audit_count(team.tenant)

    with pytest.raises(Forbidden):
        upload(team, filename, data, role="viewer")

    assert audit_count(team.tenant) == count
    assert not CodePackage.objects.dangerously_unscoped().filter(tenant=team.tenant).exists()
