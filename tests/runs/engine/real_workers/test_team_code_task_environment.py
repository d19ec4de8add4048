"""What a team code function gets and how its end is read, through real workers: an
environment with nothing of the worker's (only PATH, LANG, HOME and the ORCHESTRATOR_*
variables), the tenant's uid (not root), its secret kwargs masked in the log, the result
and the rendered task; `sys.exit(99)` ends it `skipped` (docs/team-code.md: the platform's
SkipTask is not importable from a package), another exit code and an exception `failed`,
the exception with its traceback in the log."""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import pytest
from django.conf import settings

from connections import services as conns
from runs.models import TaskInstance
from runs.tasktypes.sandbox import uid_for
from tests.runs.engine.helpers import Engine, attempts_of, run_to_end, states
from tests.runs.engine.real_workers.test_team_code_support import (
    TeamCode,
    attempt_log,
    team_code_worker,
    upload,
    use_team_code,
    warm_up,
)
from tests.teamcode_support import wheel_bytes
from tests.workers import Workers

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(os.geteuid() != 0, reason="the suite runs as root in CI"),
]

SECRET = "tc-Sup3r/s3cret+value-4417"
SOURCE = {
    "inward/__init__.py": """\
import os
import sys


def environment():
    return {"env": dict(os.environ), "uid": os.getuid(), "gid": os.getgid(), "cwd": os.getcwd()}


def reveal(token):
    print("the token is", token, flush=True)
    return {"token": token}


def nothing_to_do():
    print("no rows today", flush=True)
    sys.exit(99)


def give_up():
    sys.exit(3)


def explode(n):
    return _deeper(n)


def _deeper(n):
    raise ValueError(f"boom {n}")
"""
}
SPEC = {
    "name": "inward",
    "code": {"package": "inward"},
    "tasks": {
        "env": {"type": "python", "callable": "inward:environment"},
        "reveal": {
            "type": "python",
            "callable": "inward:reveal",
            "kwargs": {"token": "{{ secrets.token }}"},
        },
        "skip": {"type": "python", "callable": "inward:nothing_to_do"},
        "give_up": {"type": "python", "callable": "inward:give_up"},
        "explode": {"type": "python", "callable": "inward:explode", "kwargs": {"n": 7}},
    },
}


@pytest.fixture(scope="module")
def team_code(workers: Workers) -> Iterator[TeamCode]:
    with team_code_worker(workers) as team_code:
        yield team_code


@pytest.fixture
def team(engine: Engine, team_code: TeamCode, settings: Any) -> Engine:
    use_team_code(engine, team_code, settings)
    upload(engine, *wheel_bytes("inward", "1.0", SOURCE))
    warm_up(engine, "inward", "inward:environment")
    conns.create_secret(actor=engine.actor, tenant=engine.tenant, name="token", value=SECRET)
    return engine


def test_a_functions_environment_identity_secrets_and_ends(team: Engine) -> None:
    run = run_to_end(team, SPEC, timeout=60)

    assert states(team, run) == {
        "env": "success",
        "reveal": "success",
        "skip": "skipped",
        "give_up": "failed",
        "explode": "failed",
    }
    with team.scope():
        result: dict[str, Any] = dict(
            TaskInstance.objects.filter(run=run).values_list("task_id", "result")
        )

    seen = result["env"]
    assert sorted(seen["env"]) == [
        "HOME",
        "LANG",
        "ORCHESTRATOR_LOGICAL_DATE",
        "ORCHESTRATOR_RUN_ID",
        "ORCHESTRATOR_TASK_ID",
        "ORCHESTRATOR_TRY_NUMBER",
        "PATH",
    ]
    assert seen["env"]["HOME"] == seen["cwd"] == "/home/task"
    assert (seen["env"]["ORCHESTRATOR_RUN_ID"], seen["env"]["ORCHESTRATOR_TASK_ID"]) == (
        str(run.pk),
        "env",
    )
    tenant_uid = uid_for(team.tenant.pk, settings.TASK_SANDBOX_UIDS)
    assert seen["uid"] == seen["gid"] == tenant_uid != 0

    [reveal] = attempts_of(team, run, "reveal")
    assert attempt_log(reveal) == "the token is ***\n"
    assert result["reveal"] == {"token": "***"}
    assert reveal.rendered["kwargs"] == {"token": "***"}
    assert reveal.uses == {"secrets": ["token"]}

    [skip] = attempts_of(team, run, "skip")
    assert (skip.state, skip.exit_code) == ("skipped", 99)
    assert attempt_log(skip) == "no rows today\n"
    [give_up] = attempts_of(team, run, "give_up")
    assert (give_up.exit_code, give_up.error) == (3, "exit code 3")

    [explode] = attempts_of(team, run, "explode")
    assert explode.error == "exit code 1"
    log = attempt_log(explode)
    assert log.startswith("Traceback (most recent call last):"), log
    assert "inward/__init__.py" in log, log
    assert "in _deeper" in log, log
    assert log.rstrip().endswith("ValueError: boom 7"), log
