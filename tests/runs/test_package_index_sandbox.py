"""Indexing imports the team's code, so it runs in the tenant's sandbox: as the tenant's
uid, with none of this process's environment variables (its database URL, its keys)."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest

from orchestrator.actors import Actor
from orchestrator.context import tenant_scope
from orchestrator.errors import Invalid
from runs.packages import upload_package
from tests.harness import Team
from tests.teamcode_support import use_package_index, wheel_bytes

# Refuses to import where it could see the worker's secrets or act as the worker's uid.
GUARDED = """\
import os

if os.getuid() == {worker} or "DATABASE_URL" in os.environ or "SECRET_KEY" in os.environ:
    raise RuntimeError(f"not sandboxed: uid {{os.getuid()}}, variables {{sorted(os.environ)}}")


def guarded():
    return True
"""


@pytest.fixture(autouse=True)
def index(settings: Any, tmp_path: Path) -> Path:
    return use_package_index(settings, tmp_path)


def test_the_package_is_imported_as_the_tenant_without_the_workers_variables(
    team: Team, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("SECRET_KEY", "a-secret-of-the-worker")
    monkeypatch.setenv("DATABASE_URL", os.environ.get("DATABASE_URL", "postgres://x"))
    guarded = GUARDED.format(worker=os.getuid())
    filename, data = wheel_bytes("acme-guard", "1.0", {"acme_guard/__init__.py": guarded})

    with tenant_scope([team.tenant]):
        package = upload_package(
            actor=Actor.cli(), tenant=team.tenant, filename=filename, data=data
        )

    assert package.index == {"acme_guard": ["guarded"]}


def test_the_control_case_unsandboxed_the_guard_refuses(
    team: Team, settings: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With sandboxes off (single-tenant installations) the indexer still gets a clean
    environment, but runs as the worker's uid: the guard sees that and refuses."""
    settings.TASK_SANDBOX = "off"
    guarded = GUARDED.format(worker=os.getuid())
    filename, data = wheel_bytes("acme-guard", "1.0", {"acme_guard/__init__.py": guarded})

    with tenant_scope([team.tenant]), pytest.raises(Invalid) as caught:
        upload_package(actor=Actor.cli(), tenant=team.tenant, filename=filename, data=data)

    assert caught.value.errors == [
        (
            "file",
            "no module of acme-guard 1.0 could be imported: acme_guard: RuntimeError: not "
            f"sandboxed: uid {os.getuid()}, variables ['HOME', 'LANG', 'PATH']",
        )
    ]
