"""What a team code task can reach of other tasks' files, through real workers: tenant A's
task keeps a file in its HOME; tenant B's task, even with the sandbox root itself mounted
(read-only) so that it can name A's file by its host path, neither reads it nor finds it by
scanning; another task of tenant A sees neither that task's HOME and /tmp nor its zygote's
socket."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from orchestrator.context import tenant_scope
from orchestrator.models import Tenant
from runs.models import TaskInstance, WorkflowRun
from runs.services import trigger_run
from tests.runs.engine.helpers import Engine, attempts_of, states
from tests.runs.engine.real_workers.test_team_code_support import (
    TeamCode,
    attempt_log,
    other_tenant,
    team_code_worker,
    upload,
    use_team_code,
)
from tests.teamcode_support import wheel_bytes
from tests.workers import Workers, wait_for
from workflows.services import apply_workflow

# Where a task would look for another's files, inside its sandbox.
TOPS = ["/tmp", "/home", "/var/tmp"]  # noqa: S108

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(os.geteuid() != 0, reason="the suite runs as root in CI"),
]

SOURCE = {
    "snoop/__init__.py": """\
import os
import time


def stash(token):
    \"\"\"Keep a file in HOME and in /tmp until the host drops `<file>.done` beside it.\"\"\"
    home = os.path.join(os.environ["HOME"], token)
    for path in (home, os.path.join("/tmp", token)):
        with open(path, "w") as out:
            out.write("only mine")
    print("stashed", flush=True)
    deadline = time.monotonic() + 60
    while not os.path.exists(home + ".done") and time.monotonic() < deadline:
        time.sleep(0.1)
    return os.getcwd()


def peek(token, paths, tops):
    \"\"\"Try to read `paths`; look for a file named `token` under `tops`.\"\"\"
    read = {}
    for path in paths:
        try:
            with open(path) as handle:
                read[path] = handle.read()
        except OSError as exc:
            read[path] = type(exc).__name__
    found = []
    for top in tops:
        for parent, _, files in os.walk(top):
            found += [os.path.join(parent, name) for name in files if token in name]
    return {"read": read, "found": found, "tmp": sorted(os.listdir("/tmp"))}
"""
}


@pytest.fixture(scope="module")
def team_code(workers: Workers) -> Iterator[TeamCode]:
    with team_code_worker(workers) as team_code:
        yield team_code


@pytest.fixture
def team(engine: Engine, team_code: TeamCode, settings: Any) -> Engine:
    use_team_code(engine, team_code, settings)
    upload(engine, *wheel_bytes("snoop", "1.0", SOURCE))
    return engine


def task(function: str, **kwargs: Any) -> dict[str, Any]:
    return {"type": "python", "callable": f"snoop:{function}", "kwargs": kwargs}


def stashing(engine: Engine, team_code: TeamCode, token: str) -> tuple[WorkflowRun, Path]:
    """Tenant A's task, once it has stashed its file: its run and the file's host path."""
    spec = {
        "name": "stash",
        "code": {"package": "snoop"},
        "tasks": {"s": task("stash", token=token)},
    }
    workflow = engine.apply(spec)
    with engine.scope():
        run = trigger_run(actor=engine.actor, workflow=workflow).run

    def stashed() -> bool:
        attempts = attempts_of(engine, run, "s")
        return bool(attempts) and "stashed" in attempt_log(attempts[0])

    wait_for(stashed, 60, "tenant A's task to stash its file", engine.workers)
    # <sandbox root>/task-*/tmp is the zygote's /tmp, tasks/<n>/home a task's HOME.
    [host] = team_code.sandbox_root.glob(f"task-*/tmp/tasks/*/home/{token}")
    return run, host


def release(engine: Engine, run: WorkflowRun, host: Path) -> None:
    host.with_name(host.name + ".done").touch()

    def ended() -> bool:
        run.refresh_from_db()
        return run.state in WorkflowRun.FINISHED

    wait_for(ended, 60, "tenant A's task to end", engine.workers)
    assert states(engine, run) == {"s": "success"}
    with engine.scope():
        assert TaskInstance.objects.get(run=run).result == "/home/task"  # not the host path


def peek_as(engine: Engine, tenant: Tenant, token: str, paths: list[str], tops: list[str]) -> Any:
    spec = {
        "name": "peek",
        "code": {"package": "snoop"},
        "tasks": {"p": task("peek", token=token, paths=paths, tops=tops)},
    }
    with tenant_scope([tenant]):
        workflow = apply_workflow(actor=engine.actor, tenant=tenant, data=spec).workflow
        run = trigger_run(actor=engine.actor, workflow=workflow).run

    def ended() -> bool:
        run.refresh_from_db()
        return run.state in WorkflowRun.FINISHED

    wait_for(ended, 60, "the peeking task to end", engine.workers)
    with tenant_scope([tenant]):
        ti = TaskInstance.objects.get(run=run)
    assert ti.state == "success", (ti.state, run.state)
    return ti.result


def test_another_tenants_task_cannot_read_a_tasks_home_even_by_its_host_path(
    team: Engine, team_code: TeamCode
) -> None:
    root = str(team_code.sandbox_root)
    other = other_tenant(team, "beta", task_mounts=[{"path": root, "writable": False}])
    upload(team, *wheel_bytes("snoop", "1.0", SOURCE), tenant=other)
    token = f"stash-{secrets.token_hex(6)}"
    run, host = stashing(team, team_code, token)
    try:
        assert host.read_text() == "only mine"

        seen = peek_as(team, other, token, [str(host)], [root, *TOPS])
    finally:
        release(team, run, host)

    assert seen["read"] == {str(host): "PermissionError"}, seen
    assert seen["found"] == [], seen


def test_another_task_of_the_tenant_sees_neither_its_files_nor_the_zygotes_socket(
    team: Engine, team_code: TeamCode
) -> None:
    token = f"stash-{secrets.token_hex(6)}"
    run, host = stashing(team, team_code, token)
    try:
        paths = [f"/home/task/{token}", f"/tmp/{token}", "/tmp/zygote.sock"]  # noqa: S108
        seen = peek_as(team, team.tenant, token, paths, TOPS)
    finally:
        release(team, run, host)

    assert seen == {
        "read": {path: "FileNotFoundError" for path in paths},
        "found": [],
        "tmp": [],
    }
