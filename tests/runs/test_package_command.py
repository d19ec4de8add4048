"""`manage.py upload_package --tenant SLUG FILE [--as USERNAME]`: the upload service from a
shell, its outcome printed (name, version, digest, locked dependencies, functions)."""

from __future__ import annotations

import hashlib
from io import StringIO
from pathlib import Path
from typing import Any

import pytest
from django.core.management import call_command
from django.core.management.base import CommandError

from tests.harness import Team, audit_count, make_user, new_audit_events
from tests.teamcode_support import use_package_index, write_wheel
from workflows.models import CodePackage

SOURCE = {"acme_etl/__init__.py": "def hello():\n    pass\n\ndef bye():\n    pass\n"}


@pytest.fixture(autouse=True)
def index(settings: Any, tmp_path: Path) -> Path:
    return use_package_index(settings, tmp_path)


def run(*args: str) -> str:
    out = StringIO()
    call_command("upload_package", *args, stdout=out)
    return out.getvalue()


def test_it_uploads_and_prints_what_was_stored(team: Team, tmp_path: Path) -> None:
    wheel = write_wheel(tmp_path / "dist", "acme-etl", "1.0", SOURCE, requires=["tinydep"])
    digest = hashlib.sha256(wheel.read_bytes()).hexdigest()
    count = audit_count(team.tenant)

    out = run("--tenant", team.slug, str(wheel), "--as", team.users["editor"].username)

    package = CodePackage.objects.dangerously_unscoped().get(tenant=team.tenant)
    [locked] = package.lock
    assert out.splitlines() == [
        "acme-etl 1.0: uploaded",
        f"digest: sha256:{digest}",
        f"wheel: acme_etl-1.0-py3-none-any.whl ({package.size} bytes)",
        "locked dependencies:",
        f"  {locked}",
        "functions:",
        "  acme_etl: bye, hello",
    ]
    assert package.uploaded_by == team.users["editor"]
    [event] = new_audit_events(team.tenant, count)
    assert (event.action, event.source, event.actor_label) == (
        "package.upload",
        "cli",
        team.users["editor"].username,
    )
    again = run("--tenant", team.slug, str(wheel))
    assert again.splitlines()[0] == "acme-etl 1.0: already uploaded (the same file): unchanged"


def test_its_errors_are_the_services(team: Team, tmp_path: Path) -> None:
    junk = tmp_path / "junk.txt"
    junk.write_text("not a package")

    with pytest.raises(CommandError) as caught:
        run("--tenant", team.slug, str(junk))

    assert str(caught.value).startswith("file: 'junk.txt' is not a package file: expected")


def test_it_names_an_unknown_tenant_user_or_file(team: Team, tmp_path: Path) -> None:
    wheel = write_wheel(tmp_path / "dist", "acme-etl", "1.0", SOURCE)
    cases = [
        (["--tenant", "nope", str(wheel)], "no tenant 'nope'"),
        (["--tenant", team.slug, str(wheel), "--as", "nobody"], "--as: no active user 'nobody'"),
        (
            ["--tenant", team.slug, str(wheel), "--as", make_user("stranger").username],
            f"--as: 'stranger' is not a member of tenant {team.slug!r}",
        ),
        (["--tenant", team.slug, str(tmp_path / "missing.whl")], "No such file or directory"),
    ]
    for args, expected in cases:
        with pytest.raises(CommandError) as caught:
            run(*args)
        assert expected in str(caught.value)
