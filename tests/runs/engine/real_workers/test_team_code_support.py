"""What the team code tests on real workers share (no tests here).

The engine tests' shared workers (w1, w2: conftest.py) know no package index, so a team's
tries go to a worker of their own: a tenant queue (policy `task_queue`, as a dedicated pool
would have it) consumed by one worker started with the team code settings: a local
find-links directory holding `tinydep` as its only index, its own VAR_DIR (where uploaded
wheels are stored and environments built) and its own sandbox root, so a test finds its
tasks' directories on the host. Its directories are under /var/tmp, not /tmp: see
tests/runs/tasktypes/test_zygote_paths_under_tmp.py for why that matters today.

The test process uploads into the same storage (the worker reads the wheels from it) but
builds its upload-time environments apart, so a worker builds each environment itself on
first use, and logs it."""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from orchestrator import services
from orchestrator.actors import Actor
from orchestrator.context import tenant_scope
from orchestrator.models import Tenant
from runs.models import TaskAttempt, TaskLog
from runs.packages import upload_package
from tests.harness import set_policy
from tests.runs.engine.helpers import Engine, run_to_end, states
from tests.teamcode_support import open_up, package_index
from tests.workers import Workers
from workflows.models import CodePackage

__all__ = [
    "QUEUE",
    "TeamCode",
    "attempt_log",
    "children",
    "cmdline",
    "other_tenant",
    "team_code_worker",
    "upload",
    "use_team_code",
    "warm_up",
]

QUEUE = "team-code"


@dataclass(frozen=True)
class TeamCode:
    base: Path  # everything below is removed at the end
    index: Path  # the find-links directory: tinydep's wheel
    var: Path  # the worker's VAR_DIR: var/packages (wheels), var/envs (environments)
    sandbox_root: Path  # the worker's TASK_SANDBOX_ROOT: its zygotes' and tasks' directories
    worker: subprocess.Popen[bytes]


@contextmanager
def team_code_worker(workers: Workers, concurrency: int = 3) -> Iterator[TeamCode]:
    """A worker consuming QUEUE only, with the team code settings, beside the shared ones."""
    base = Path(tempfile.mkdtemp(prefix="orc-teamcode-", dir="/var/tmp"))
    open_up(base)
    index = package_index(base)
    var, sandbox_root = base / "var", base / "sandbox"
    var.mkdir()
    sandbox_root.mkdir(mode=0o711)
    saved = workers.env
    workers.env = {
        **saved,
        "VAR_DIR": str(var),
        "PACKAGE_FIND_LINKS": str(index),
        "PACKAGE_INDEX_URL": "",
        "TASK_SANDBOX_ROOT": str(sandbox_root),
    }
    try:
        worker = workers.start_command(
            QUEUE,
            [
                "celery",
                "-A",
                "orchestrator",
                "worker",
                "-Q",
                QUEUE,
                "-n",
                f"{QUEUE}@%h",
                "--loglevel",
                "INFO",
                "--concurrency",
                str(concurrency),
                "--pool",
                "prefork",
                "--without-heartbeat",
                "--without-gossip",
                "--without-mingle",
            ],
        )
    finally:
        workers.env = saved
    try:
        yield TeamCode(base, index, var, sandbox_root, worker)
    finally:
        os.killpg(worker.pid, signal.SIGTERM)
        try:
            worker.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(worker.pid, signal.SIGKILL)
            worker.wait()
        shutil.rmtree(base, ignore_errors=True)


def use_team_code(engine: Engine, team_code: TeamCode, settings: Any) -> Engine:
    """Uploads of this test go where the worker reads them; the engine's tenant's tries go
    to the team code worker."""
    settings.PACKAGE_FIND_LINKS = [str(team_code.index)]
    settings.PACKAGE_INDEX_URL = ""
    settings.PACKAGE_ENV_DIR = team_code.base / "upload-envs"
    settings.STORAGES = {
        **settings.STORAGES,
        "packages": {
            "BACKEND": "django.core.files.storage.FileSystemStorage",
            "OPTIONS": {"location": str(team_code.var / "packages")},
        },
    }
    engine.tenant = set_policy(engine.tenant, task_queue=QUEUE)
    return engine


def warm_up(engine: Engine, package: str, function: str) -> None:
    """One task of the package, alone, so that the worker builds its environment before a
    test's parallel tasks need it (see test_team_code_versions.py: parallel tasks on a
    package's first run)."""
    spec = {
        "name": "warm-up",
        "code": {"package": package},
        "tasks": {"warm": {"type": "python", "callable": function}},
    }
    run = run_to_end(engine, spec, timeout=60)
    assert states(engine, run) == {"warm": "success"}


def other_tenant(engine: Engine, slug: str, **policy: Any) -> Tenant:
    """Another tenant of the engine's owner, its tries on the team code worker too."""
    tenant = services.create_tenant(
        actor=Actor.cli(), slug=slug, name=slug.title(), owner=engine.user, quotas={}
    )
    return set_policy(tenant, task_queue=QUEUE, **policy)


def upload(engine: Engine, filename: str, data: bytes, tenant: Tenant | None = None) -> CodePackage:
    tenant = tenant or engine.tenant
    with tenant_scope([tenant]):
        return upload_package(actor=engine.actor, tenant=tenant, filename=filename, data=data)


def attempt_log(attempt: TaskAttempt) -> str:
    return b"".join(
        TaskLog.objects.dangerously_unscoped()
        .filter(attempt=attempt)
        .order_by("offset")
        .values_list("data", flat=True)
    ).decode("utf-8", "replace")


def cmdline(pid: int) -> list[bytes]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
    except OSError:
        return []


def children(pid: int) -> list[int]:
    """The processes whose parent is `pid`."""
    found = []
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        if ppid == pid:
            found.append(int(stat.parent.name))
    return found
