"""The connection `test` of a SQLite connection says nothing about files outside the
tenant's directory (<SQLITE_TASK_ROOT>/<tenant>/): an existing file and a missing one get
the same refusal, whether the path names them directly, climbs out with `..` or goes
through a symbolic link, and nothing outside the tenant's directory is looked at."""

from __future__ import annotations

import os
import sqlite3
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from connections import services as conns
from orchestrator.actors import Actor
from orchestrator.context import tenant_scope
from tests.harness import Team, send


@pytest.fixture
def layout(tmp_path: Path, settings: Any) -> dict[str, Path]:
    """root/acme/ (the tenant's), root/globex/wh.db (another's), outside/secret.db."""
    root, outside = tmp_path / "root", tmp_path / "outside"
    for folder in (root / "acme", root / "globex", outside):
        folder.mkdir(parents=True)
    for db in (root / "acme" / "own.db", root / "globex" / "wh.db", outside / "secret.db"):
        sqlite3.connect(db).close()
    settings.SQLITE_TASK_ROOT = str(root)
    return {"acme": root / "acme", "globex": root / "globex", "outside": outside}


@pytest.fixture
def looked_at(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every path this process lstat()s, stat()s, reads a link of or opens with sqlite."""
    seen: list[str] = []

    def spy(real: Callable[..., Any]) -> Callable[..., Any]:
        def call(path: Any, *args: Any, **kwargs: Any) -> Any:
            seen.append(os.fsdecode(path) if isinstance(path, str | bytes | os.PathLike) else "")
            return real(path, *args, **kwargs)

        return call

    for name in ("lstat", "stat", "readlink"):
        monkeypatch.setattr(os, name, spy(getattr(os, name)))
    monkeypatch.setattr(sqlite3, "connect", spy(sqlite3.connect))
    return seen


def probe(team: Team, database: str) -> dict[str, Any]:
    name = f"c{abs(hash(database)) % 10**8}"
    with tenant_scope([team.tenant]):
        conns.create_connection(
            actor=Actor.cli(), tenant=team.tenant, name=name, kind="sqlite", database=database
        )
    url = f"/api/v1/tenants/{team.slug}/connections/{name}/test/"
    response = send(team.tokens["owner"], "POST", url)
    assert response.status_code == 200, response.content
    body: dict[str, Any] = response.json()
    return body


@pytest.mark.django_db
def test_it_refuses_every_path_out_alike_without_looking_at_it(
    team: Team, layout: dict[str, Path], looked_at: list[str]
) -> None:
    acme, outside = layout["acme"], layout["outside"]
    (acme / "link-a").symlink_to(outside / "secret.db")
    (acme / "link-b").symlink_to(outside / "missing.db")
    (acme / "link-rel").symlink_to(Path("..") / ".." / "outside" / "secret.db")
    (acme / "dir-link").symlink_to(outside)
    paths = {
        "existing": outside / "secret.db",
        "missing": outside / "missing.db",
        "missing-dir": outside / "nowhere" / "x.db",
        "another-tenant": layout["globex"] / "wh.db",
        "dotdot-existing": acme / ".." / ".." / "outside" / "secret.db",
        "dotdot-missing": acme / ".." / ".." / "outside" / "missing.db",
        "dotdot-back-in": acme / ".." / "acme" / "own.db",
        "link-absolute": acme / "link-a",
        "link-absolute-missing": acme / "link-b",
        "link-relative": acme / "link-rel",
        "through-a-linked-dir": acme / "dir-link" / "secret.db",
        "through-a-linked-dir-missing": acme / "dir-link" / "missing.db",
    }

    answers = {case: probe(team, str(path)) for case, path in paths.items()}

    expected_tail = f"must be under {acme.resolve()}/ (platform setting SQLITE_TASK_ROOT)"
    for case, body in answers.items():
        assert body["ok"] is False, case
        assert body["message"].endswith(expected_tail), (case, body["message"])
        # Only the connection's own name differs from one answer to the next.
        assert body["message"].split(":", 1)[1] == answers["missing"]["message"].split(":", 1)[1]
    touched = [p for p in looked_at if p.startswith(str(outside)) or "globex" in p]
    assert touched == []
    assert not any("secret" in p or "missing" in p for p in looked_at)


@pytest.mark.django_db
def test_it_still_opens_the_tenants_own_files_and_links_between_them(
    team: Team, layout: dict[str, Path]
) -> None:
    acme = layout["acme"]
    (acme / "sub").mkdir()
    (acme / "sub" / "alias.db").symlink_to(Path("..") / "own.db")
    (acme / "abs-alias.db").symlink_to(acme / "own.db")

    for database in (acme / "own.db", acme / "sub" / "alias.db", acme / "abs-alias.db"):
        body = probe(team, str(database))
        assert body["ok"] is True, body

    missing = probe(team, str(acme / "not-yet.db"))
    assert missing["ok"] is False
    assert "cannot open" in missing["message"]  # inside its own directory, it may know
