"""Team code tasks that end badly, through real workers: the zygote killed under a task
gives the try back (one lost try) and is started again for the next; a task over its
memory limit (its tenant's `task_limits`) fails naming the limit; a
timeout and a cancel kill the task and everything it started, a grandchild in a session of
its own and a double-forked one, both deaf to SIGTERM."""

from __future__ import annotations

import os
import secrets
import signal
from collections.abc import Iterator
from typing import Any

import pytest
from django.conf import settings

from runs import operations
from runs.models import TaskAttempt, TaskInstance, WorkflowRun
from runs.services import trigger_run
from runs.tasktypes.sandbox import uid_for
from tests.harness import set_policy
from tests.runs.engine.helpers import Engine, attempts_of, run_to_end, states
from tests.runs.engine.real_workers.test_team_code_support import (
    TeamCode,
    attempt_log,
    children,
    cmdline,
    team_code_worker,
    upload,
    use_team_code,
    warm_up,
)
from tests.teamcode_support import wheel_bytes
from tests.workers import Workers, sandboxed_pids, wait_for

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(os.geteuid() != 0, reason="the suite runs as root in CI"),
]

SOURCE = {
    "rough/__init__.py": """\
import os
import signal
import subprocess
import time


def ready():
    return "ready"


def nap():
    tries = int(os.environ["ORCHESTRATOR_TRY_NUMBER"])
    if tries == 1:
        print("napping", flush=True)
        time.sleep(300)
    return {"try": tries}


def eat(mb):
    block = bytearray(mb * 1024 * 1024)
    return len(block) // (1024 * 1024)


def _deaf():
    signal.signal(signal.SIGTERM, signal.SIG_IGN)


def spawn(token):
    subprocess.Popen(["sleep", f"300.{token}1"], start_new_session=True, preexec_fn=_deaf)
    if os.fork() == 0:
        os.setsid()
        if os.fork() == 0:
            _deaf()
            os.execvp("sleep", ["sleep", f"300.{token}2"])
        os._exit(0)
    os.wait()
    print("spawned", flush=True)
    time.sleep(300)
"""
}


@pytest.fixture(scope="module")
def team_code(workers: Workers) -> Iterator[TeamCode]:
    with team_code_worker(workers) as team_code:
        yield team_code


@pytest.fixture
def team(engine: Engine, team_code: TeamCode, settings: Any) -> Engine:
    use_team_code(engine, team_code, settings)
    filename, data = wheel_bytes("rough", "1.0", SOURCE)
    upload(engine, filename, data)
    warm_up(engine, "rough", "rough:ready")
    return engine


def python(function: str, **task: Any) -> dict[str, Any]:
    return {"type": "python", "callable": f"rough:{function}", **task}


def trigger(engine: Engine, spec: dict[str, Any]) -> WorkflowRun:
    workflow = engine.apply({"code": {"package": "rough"}, **spec})
    with engine.scope():
        return trigger_run(actor=engine.actor, workflow=workflow).run


def running_attempt(engine: Engine, run: WorkflowRun, says: str) -> TaskAttempt:
    """The run's running attempt, once its log says `says`."""

    def found() -> TaskAttempt | None:
        with engine.scope():
            attempt = TaskAttempt.objects.filter(task_instance__run=run, state="running").first()
        return attempt if attempt is not None and says in attempt_log(attempt) else None

    attempt: TaskAttempt = wait_for(found, 60, f"a running attempt saying {says!r}", engine.workers)
    return attempt


def ended(run: WorkflowRun) -> bool:
    run.refresh_from_db()
    return run.state in WorkflowRun.FINISHED


def test_a_zygote_killed_under_a_task_gives_the_try_back_and_starts_again(team: Engine) -> None:
    run = trigger(team, {"name": "nap", "tasks": {"nap": python("nap")}})
    attempt = running_attempt(team, run, "napping")
    uid = str(uid_for(team.tenant.pk, settings.TASK_SANDBOX_UIDS)).encode()
    # The zygote: the pool process's child `bwrap ... python -m runs.tasktypes.zygote`, in
    # the tenant's sandbox (the pool process may run other tenants' zygotes too).
    [zygote] = [
        pid
        for pid in children(attempt.pid or 0)
        if b"runs.tasktypes.zygote" in cmdline(pid) and b"--uid\0" + uid in b"\0".join(cmdline(pid))
    ]
    os.kill(zygote, signal.SIGKILL)

    wait_for(lambda: ended(run), 60, "the run to end", team.workers)
    assert run.state == "success"
    first, second = attempts_of(team, run, "nap")
    assert (first.state, first.error) == (
        "failed",
        "the python runner (its zygote) died during the task; the try is given back",
    )
    assert "napping" in attempt_log(first)
    assert second.state == "success"
    with team.scope():
        ti = TaskInstance.objects.get(run=run)
    assert (ti.lost_tries, ti.try_number, ti.result) == (1, 2, {"try": 2})


LIMIT_ERROR = (
    "exit code 1: the task most likely reached its limit memory_mb: 200 MB of memory "
    "(address space)"
)


def test_a_task_over_its_tenants_memory_limit_fails_naming_it(team: Engine) -> None:
    team.tenant = set_policy(team.tenant, task_limits={"memory_mb": 200})
    spec = {
        "name": "hungry",
        "code": {"package": "rough"},
        "tasks": {
            "eat": python("eat", kwargs={"mb": 1024}),
            "nibble": python("eat", kwargs={"mb": 20}),
        },
    }

    run = run_to_end(team, spec, timeout=60)

    assert states(team, run) == {"eat": "failed", "nibble": "success"}
    [attempt] = attempts_of(team, run, "eat")
    assert attempt.error == LIMIT_ERROR, attempt_log(attempt)
    assert "MemoryError" in attempt_log(attempt)
    with team.scope():
        assert TaskInstance.objects.get(run=run, task_id="nibble").result == 20


def _spawned(engine: Engine, token: str) -> list[int]:
    """The two grandchildren, once both run (host pids)."""
    return wait_for(  # type: ignore[no-any-return]
        lambda: len(pids := sandboxed_pids(f"300.{token}")) == 2 and pids,
        60,
        "the task's grandchildren",
        engine.workers,
    )


def _gone(engine: Engine, token: str) -> None:
    wait_for(
        lambda: not sandboxed_pids(f"300.{token}"),
        10,
        "the task's grandchildren to be killed",
        engine.workers,
    )


def test_a_timeout_kills_the_task_and_everything_it_started(team: Engine) -> None:
    token = str(secrets.randbelow(10**8)).rjust(8, "0")
    run = trigger(
        team,
        {"name": "timeout", "tasks": {"t": python("spawn", kwargs={"token": token}, timeout=2)}},
    )
    _spawned(team, token)

    wait_for(lambda: ended(run), 60, "the run to end", team.workers)
    [attempt] = attempts_of(team, run, "t")
    assert (attempt.state, attempt.error) == (
        "failed",
        "timed out after 2s; the process group was killed",
    )
    assert "spawned" in attempt_log(attempt)
    _gone(team, token)


def test_a_cancel_kills_the_task_and_everything_it_started(team: Engine) -> None:
    token = str(secrets.randbelow(10**8)).rjust(8, "0")
    run = trigger(
        team, {"name": "cancel", "tasks": {"t": python("spawn", kwargs={"token": token})}}
    )
    _spawned(team, token)

    assert operations.cancel(run.pk).state == "cancelled"

    _gone(team, token)
    [attempt] = attempts_of(team, run, "t")
    assert attempt.state == "cancelled"
    assert states(team, run) == {"t": "cancelled"}
