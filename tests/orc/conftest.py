"""Fixtures of the `orc` tests: the session's server (tests/orc/support.py says what it
holds) and a user's home and environment per test."""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from tests.orc.support import DEV_SPECS, SETUP, UNTHROTTLED, OrcServer
from tests.subprocesses import ROOT, die_with_parent, free_port, fresh_shell_env

__all__ = [
    "StartingServer",
    "dev_env",
    "dev_workflows",
    "home",
    "pytest_collection_modifyitems",
    "server",
]


def _healthy(base: str) -> bool:
    try:
        with urllib.request.urlopen(f"{base}/healthz", timeout=2) as answer:  # noqa: S310
            return bool(answer.status == 200)
    except OSError:
        return False


def _stop(process: subprocess.Popen[bytes]) -> None:
    if process.poll() is None:
        os.killpg(process.pid, signal.SIGTERM)
    try:
        process.wait(timeout=5)  # tasks still running are of no interest any more
    except subprocess.TimeoutExpired:
        os.killpg(process.pid, signal.SIGKILL)
        process.wait()


class StartingServer:
    """The service in its embedded mode, started in a thread, so that the tests that need
    no server run while it migrates (they run first: see pytest_collection_modifyitems).
    Tasks run unsandboxed (TASK_SANDBOX=off): these tests are about the client, and the
    sandbox has its own; team code resolves against an empty local index (no network)."""

    def __init__(self, var: Path) -> None:
        (var / "index").mkdir()
        env = fresh_shell_env(
            VAR_DIR=str(var),
            DEBUG="0",
            SECRET_KEY=secrets.token_urlsafe(40),
            ALLOWED_HOSTS="127.0.0.1",
            LOG_LEVEL="WARNING",
            TASK_SANDBOX="off",
            PACKAGE_INDEX_URL="",
            PACKAGE_FIND_LINKS=str(var / "index"),
            **UNTHROTTLED,
        )
        env.pop("CELERY_KEY_PREFIX", None)
        self.made = OrcServer(f"http://127.0.0.1:{free_port()}", env, {})
        self.log = var / "server.log"
        self.process: subprocess.Popen[bytes] | None = None
        self.failure: BaseException | None = None
        self.up, self.stopping = threading.Event(), threading.Event()
        self.thread = threading.Thread(target=self._run, name="orc-test-server", daemon=True)
        self.thread.start()

    def _run(self) -> None:
        """Start it, then stay: the server dies with the thread that started it
        (die_with_parent is the thread's, not the process's)."""
        try:
            self._start()
        except BaseException as exc:  # raised again in the test that waits for the server
            self.failure = exc
        self.up.set()
        self.stopping.wait()

    def _start(self) -> None:
        migrated = self.made.manage("migrate", "-v0")
        assert migrated.code == 0, str(migrated)
        # The server starts while the tenants and tokens are made: both need only tables.
        port = self.made.base.rsplit(":", 1)[1]
        with self.log.open("wb") as out:
            self.process = subprocess.Popen(
                [sys.executable, "manage.py", "standalone", "--no-migrate", "--port", port],
                cwd=ROOT,
                env=self.made.env,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                preexec_fn=die_with_parent,
            )
        setup = self.made.manage("shell", "-c", SETUP)
        assert setup.code == 0, str(setup)
        self.made.tokens.update(json.loads(setup.out.strip().splitlines()[-1]))
        deadline = time.monotonic() + 120
        while not _healthy(self.made.base):
            assert self.process.poll() is None, self.log.read_text()[-5000:]
            assert time.monotonic() < deadline, f"no server in 120 s:\n{self.log.read_text()}"
            time.sleep(0.1)

    def ready(self) -> OrcServer:
        self.up.wait()
        if self.failure is not None:
            raise self.failure
        return self.made

    def stop(self) -> None:
        self.up.wait()
        if self.process is not None:
            _stop(self.process)
        self.stopping.set()
        self.thread.join()


NEEDS_SERVER = pytest.StashKey[bool]()


@pytest.fixture(scope="session", autouse=True)
def _starting_server(
    request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[StartingServer | None]:
    """Starts the server with the first orc test, if any selected test needs it."""
    if not request.config.stash.get(NEEDS_SERVER, True):
        yield None
        return
    starting = StartingServer(tmp_path_factory.mktemp("orc-server"))
    yield starting
    starting.stop()


@pytest.fixture(scope="session")
def server(_starting_server: StartingServer | None) -> OrcServer:
    """The session's server, once it answers, with its tenants and tokens."""
    assert _starting_server is not None
    return _starting_server.ready()


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """The orc tests that need no server first, while it starts (if any needs one)."""
    here = Path(__file__).parent
    slots = [i for i, item in enumerate(items) if here in Path(str(item.path)).parents]
    ours = [items[i] for i in slots]
    ours.sort(key=lambda item: "server" in getattr(item, "fixturenames", ()))
    for slot, item in zip(slots, ours, strict=True):
        items[slot] = item
    config.stash[NEEDS_SERVER] = any("server" in getattr(i, "fixturenames", ()) for i in ours)


@pytest.fixture
def home(tmp_path: Path) -> Path:
    folder = tmp_path / "home"
    folder.mkdir()
    return folder


@pytest.fixture
def dev_env(server: OrcServer, home: Path) -> dict[str, str]:
    """An owner of tenant `dev`, configured by the environment."""
    return server.orc_env(home)


@pytest.fixture(scope="session")
def dev_workflows(server: OrcServer) -> list[str]:
    """DEV_SPECS applied to the `dev` tenant over REST (not with orc: what orc does is
    under test); their names."""
    headers = {
        "Authorization": f"Bearer {server.tokens['dev:owner']}",
        "Content-Type": "application/yaml",
    }
    for name, text in DEV_SPECS.items():
        answer = httpx.put(
            f"{server.base}/api/v1/tenants/dev/workflows/{name}/", content=text, headers=headers
        )
        assert answer.status_code in (200, 201), answer.text
    return list(DEV_SPECS)
