"""Fixtures of the cross-app tests: `team` (tenant A: a member and an API token per role)
and `outsider` (tenant B: an owner and a token), so every test can check isolation."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.harness import Team, allow_flush_of_append_only_tables, make_team
from tests.subprocesses import ROOT, fresh_shell_env

__all__ = [
    "allow_flush_of_append_only_tables",
    "loopback_listener",
    "migrated_var",
    "outsider",
    "team",
]


def _own_task_uids() -> None:
    """Each pytest-xdist process its own range of task uids (TASK_SANDBOX_UIDS), for its
    own workers and its in-process tasks. Each process has its own database, where tenant
    ids repeat; on a shared range two processes' tenants would run as one uid, whose
    processes the kernel counts together against the processes limit, as if two
    installations shared a host's uids (which settings.py says nothing else may use)."""
    from django.conf import settings

    worker = os.environ.get("PYTEST_XDIST_WORKER", "")
    if not worker.startswith("gw") or not worker[2:].isdigit():
        return
    first = 200_000 + 100_000 * int(worker[2:])
    uids = f"{first}-{first + 99_999}"
    os.environ["TASK_SANDBOX_UIDS"] = uids  # the workers and servers the tests start
    settings.TASK_SANDBOX_UIDS = uids


_own_task_uids()


@pytest.fixture(scope="session")
def django_db_modify_db_settings(django_db_modify_db_settings_parallel_suffix: None) -> None:
    """Each run of the suite its own test database (`test_<name>_run<pid>`, and with
    pytest-xdist `test_<name>_gw<N>_run<pid>`, one per process), so two runs on one server
    (a checkout and a CI clone) never drop each other's."""
    from django.conf import settings

    for db in settings.DATABASES.values():
        if db["ENGINE"] == "django.db.backends.sqlite3":
            continue
        test = db.setdefault("TEST", {})
        test["NAME"] = f"{test.get('NAME') or 'test_' + db['NAME']}_run{os.getpid()}"


@pytest.fixture(scope="session")
def _migrated_once(tmp_path_factory: pytest.TempPathFactory) -> Path:
    var = tmp_path_factory.mktemp("migrated-var")
    subprocess.run(
        [sys.executable, "manage.py", "migrate", "-v0"],
        cwd=ROOT,
        env=fresh_shell_env(VAR_DIR=str(var)),
        check=True,
        timeout=300,
    )
    return var


@pytest.fixture
def migrated_var(_migrated_once: Path) -> Callable[[Path], Path]:
    """Makes a directory a VAR_DIR whose SQLite database is migrated, as an installation's
    is after `manage.py migrate` (run once per test run, about 12 s, and copied)."""

    def migrated(var: Path) -> Path:
        shutil.copytree(_migrated_once, var, dirs_exist_ok=True)
        return var

    return migrated


@pytest.fixture
def team(db: None) -> Team:
    return make_team("acme")


@pytest.fixture
def loopback_listener() -> Iterator[int]:
    """A TCP server on 127.0.0.1 that accepts connections (and says nothing): its port."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    try:
        yield server.getsockname()[1]
    finally:
        server.close()


@pytest.fixture
def outsider(db: None) -> Team:
    return make_team("globex", roles=["owner"])


@pytest.fixture(autouse=True)
def _transactional_tests_can_flush(request: pytest.FixtureRequest) -> None:
    """Transactional tests end with a TRUNCATE that append-only tables would refuse."""
    marker = request.node.get_closest_marker("django_db")
    if (marker is not None and marker.kwargs.get("transaction")) or (
        "transactional_db" in request.fixturenames
    ):
        request.getfixturevalue("allow_flush_of_append_only_tables")


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """An endpoint-suite test that applies to none of its cases (no role is below a
    viewer-level endpoint's minimum) is dropped as not applicable, not reported skipped."""
    empty = [
        item
        for item in items
        if any(
            str(mark.kwargs.get("reason", "")).startswith("got empty parameter set")
            for mark in item.iter_markers("skip")
        )
    ]
    if empty:
        config.hook.pytest_deselected(items=empty)
        items[:] = [item for item in items if item not in empty]
