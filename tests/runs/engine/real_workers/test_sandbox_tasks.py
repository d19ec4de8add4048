"""Issue 17 through real runs on real (root) workers: an editor's shell task in one tenant
tries to read the worker's secrets and another tenant's, and finds nothing; each tenant's
tasks run as its own uid; the tenant's policy sets their limits and network, and a task
over a limit fails naming it. The sandbox itself is tested directly in test_sandbox.py."""

from __future__ import annotations

import os
import textwrap

import pytest
from django.conf import settings
from django.contrib.auth.models import User

from connections import services as conns
from orchestrator import services
from orchestrator.actors import Actor
from orchestrator.models import Tenant
from runs.models import TaskInstance, TaskLog
from runs.tasktypes.sandbox import uid_for
from tests.harness import set_policy
from tests.runs.engine.helpers import Engine, attempts_of, run_to_end, states

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(os.geteuid() != 0, reason="the suite runs as root in CI"),
]

ALPHA_SECRET = "alpha-Sup3r-s3cret-value-7781"
ALPHA_PASSWORD = "alpha-db-password-5524"


def _log(engine: Engine, run: object, task: str) -> str:
    [attempt] = attempts_of(engine, run, task)
    return b"".join(
        TaskLog.objects.dangerously_unscoped()
        .filter(attempt=attempt)
        .order_by("offset")
        .values_list("data", flat=True)
    ).decode("utf-8", "replace")


def _result(engine: Engine, run: object, task: str) -> object:
    with engine.scope():
        return TaskInstance.objects.get(run=run, task_id=task).result


@pytest.fixture
def alpha(engine: Engine) -> Tenant:
    """Another tenant, with a secret and a connection password of its own."""
    owner = User.objects.create_user("alpha-owner")
    tenant = services.create_tenant(actor=Actor.cli(), slug="alpha", name="Alpha", owner=owner)
    actor = Actor(user=owner, source="api")
    conns.create_secret(actor=actor, tenant=tenant, name="token", value=ALPHA_SECRET)
    conns.create_connection(
        actor=actor,
        tenant=tenant,
        name="warehouse",
        kind="postgres",
        host="db.alpha.example",
        database="sales",
        login="alpha",
        password=ALPHA_PASSWORD,
    )
    return tenant


# What an attacker's task would try (issue 17): the worker's environment, working
# directory and command line through /proc, every process on the host, the project's
# settings and var/, then any database URL it found; each hit is printed. Words the
# assertions look for are split in the script, so its own text never holds them.
ATTACK = textwrap.dedent(
    f"""
    echo "uid $(id -u)"
    cat /proc/$PPID/environ /proc/$PPID/cmdline 2>/dev/null | tr '\\0' '\\n'
    ls -la /proc/$PPID/cwd/ 2>/dev/null
    for pid in $(ls /proc | grep -E '^[0-9]+$'); do
        cat /proc/$pid/environ 2>/dev/null | tr '\\0' '\\n'
    done
    for path in {settings.BASE_DIR}/orchestrator/settings.py {settings.VAR_DIR} \\
                {settings.BASE_DIR}/.venv /etc/postgresql; do
        [ -e "$path" ] && echo "VIS""IBLE $path"
    done
    P=postgres; grep -rhoa "$P://[^ ]*" /proc/*/environ /home /tmp /etc 2>/dev/null \\
        | sed 's/^/FOU''ND /'
    echo end
    """
)


def test_an_attackers_task_finds_no_secret_of_the_worker_or_another_tenant(
    engine: Engine, alpha: Tenant
) -> None:
    spec = {"name": "attack", "tasks": {"a": {"type": "shell", "command": ATTACK, "shell": True}}}
    run = run_to_end(engine, spec, timeout=60)
    out = _log(engine, run, "a")
    assert states(engine, run) == {"a": "success"}, out
    assert out.rstrip().endswith("end"), out
    assert out.splitlines()[0] == f"uid {uid_for(engine.tenant.pk, settings.TASK_SANDBOX_UIDS)}"
    assert engine.workers is not None
    worker_env = engine.workers.env
    for leaked in (
        "VISIBLE",
        "FOUND",
        "DATABASE_URL",
        "CELERY_BROKER_URL",
        "postgres://",
        ALPHA_SECRET,
        ALPHA_PASSWORD,
        settings.SECRET_KEY,
        worker_env["SECRET_KEY"],  # the worker's own, when this run has the built-in one
    ):
        assert leaked not in out, (leaked, out)


def test_each_tenants_tasks_run_as_its_own_uid(engine: Engine, alpha: Tenant) -> None:
    spec = {"name": "whoami", "tasks": {"w": {"type": "shell", "command": ["id", "-u"]}}}
    run = run_to_end(engine, spec, timeout=60)
    ours = uid_for(engine.tenant.pk, settings.TASK_SANDBOX_UIDS)
    assert _result(engine, run, "w") == ours
    assert ours != uid_for(alpha.pk, settings.TASK_SANDBOX_UIDS)
    assert ours not in (0, os.getuid())


def test_a_task_over_its_tenants_memory_limit_fails_naming_it(engine: Engine) -> None:
    engine.tenant = set_policy(engine.tenant, task_limits={"memory_mb": 256})
    spec = {
        "name": "hungry",
        "tasks": {
            "eat": {"type": "shell", "command": ["python3", "-c", "x = bytearray(1024**3)"]},
            "nibble": {"type": "shell", "command": ["python3", "-c", "x = bytearray(50 << 20)"]},
        },
    }
    run = run_to_end(engine, spec, timeout=60)
    assert states(engine, run) == {"eat": "failed", "nibble": "success"}
    [attempt] = attempts_of(engine, run, "eat")
    assert attempt.error == (
        "exit code 1: the task most likely reached its limit memory_mb: 256 MB of memory "
        "(address space)"
    )


def test_a_fork_bomb_fails_on_the_process_limit_and_the_next_task_runs(engine: Engine) -> None:
    bomb = "import os\nwhile True: os.fork()"
    spec = {
        "name": "bomb",
        "tasks": {
            "bomb": {
                "type": "shell",
                "command": ["python3", "-c", bomb],
                "rlimits": {"processes": 30},
                "timeout": 60,
            },
            "after": {
                "type": "shell",
                "command": ["echo", "fine"],
                "depends_on": ["bomb"],
                "trigger_rule": "all_done",
            },
        },
    }
    run = run_to_end(engine, spec, timeout=90)
    assert states(engine, run) == {"bomb": "failed", "after": "success"}
    [attempt] = attempts_of(engine, run, "bomb")
    assert attempt.error == "exit code 1: the task most likely reached its limit processes: 30"


def test_network_none_keeps_a_tenants_tasks_off_the_workers_network(
    engine: Engine, loopback_listener: int
) -> None:
    reach = (
        f"import socket; socket.create_connection(('127.0.0.1', {loopback_listener}), timeout=3)"
    )
    spec = {"name": "net", "tasks": {"n": {"type": "shell", "command": ["python3", "-c", reach]}}}
    run = run_to_end(engine, spec, timeout=60)
    assert states(engine, run) == {"n": "success"}  # egress, the default: it connects
    engine.tenant = set_policy(engine.tenant, task_network="none")
    run = run_to_end(engine, {**spec, "description": "again"}, timeout=60)
    assert states(engine, run) == {"n": "failed"}
    assert "ConnectionRefusedError" in _log(engine, run, "n")


def test_a_python_task_runs_in_the_sandbox(engine: Engine) -> None:
    spec = {
        "name": "py",
        "tasks": {"p": {"type": "python", "callable": "runs.library:echo", "kwargs": {"a": 1}}},
    }
    run = run_to_end(engine, spec, timeout=60)
    assert states(engine, run) == {"p": "success"}
    assert _result(engine, run, "p") == {"a": 1}
