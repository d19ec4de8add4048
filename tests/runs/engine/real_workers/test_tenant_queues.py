"""Dedicated worker pools: a tenant whose policy names a `task_queue` has its tries run
only by the workers consuming that queue, the others' only by the shared pool; through
continuation, the reconciler's re-sends, lost leases and retries, and a policy change in
the middle of a run. The pool process of an attempt (TaskAttempt.pid) tells which worker
ran it: a child of that worker's main process."""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from django.db import transaction
from django.utils import timezone

from orchestrator import services
from orchestrator.actors import Actor
from orchestrator.context import tenant_scope
from orchestrator.models import Tenant
from runs import engine as engine_module
from runs.models import TaskAttempt, TaskInstance, WorkflowRun
from runs.services import trigger_run
from tests.harness import set_policy
from tests.runs.engine.helpers import Engine
from tests.workers import Workers, wait_for
from workflows.services import apply_workflow

pytestmark = pytest.mark.slow

QUEUE = "tenant-acme"
# The command docs/deployment.md gives for a tenant's pool, as given.
POOL_COMMAND = (
    f"celery -A orchestrator worker -Q {QUEUE} -n {QUEUE}@%h --loglevel INFO --concurrency 2"
)


@pytest.fixture(scope="module")
def dedicated(workers: Workers) -> Iterator[subprocess.Popen[bytes]]:
    """A worker consuming only the tenant's queue, besides the shared pool (w1, w2: the
    `tasks` and `housekeeping` queues) and beat of the engine tests."""
    process = workers.start_command(QUEUE, POOL_COMMAND.split())
    try:
        yield process
    finally:
        os.killpg(process.pid, signal.SIGTERM)
        try:
            process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(process.pid, signal.SIGKILL)
            process.wait()


@pytest.fixture
def acme(engine: Engine, dedicated: subprocess.Popen[bytes]) -> Tenant:
    tenant = services.create_tenant(
        actor=Actor.cli(), slug="acme", name="Acme", owner=engine.user, quotas={}
    )
    return set_queue(tenant, QUEUE)


def set_queue(tenant: Tenant, queue: str | None) -> Tenant:
    return set_policy(tenant, task_queue=queue)


def pool(worker: subprocess.Popen[bytes]) -> set[int]:
    """The pool processes of a worker: the children of its main process."""
    children = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            ppid = int(stat.read_text().rsplit(")", 1)[1].split()[1])
        except (OSError, IndexError, ValueError):
            continue
        if ppid == worker.pid:
            children.add(int(stat.parent.name))
    return children


def shared_pool(workers: Workers) -> set[int]:
    return pool(workers.named["w1"]) | pool(workers.named["w2"])


def apply(engine: Engine, tenant: Tenant, spec: dict[str, Any]) -> Any:
    with tenant_scope([tenant]):
        return apply_workflow(actor=engine.actor, tenant=tenant, data=spec).workflow


def trigger(engine: Engine, tenant: Tenant, spec: dict[str, Any]) -> WorkflowRun:
    workflow = apply(engine, tenant, spec)
    with tenant_scope([tenant]):
        return trigger_run(actor=engine.actor, workflow=workflow).run


def wait_to_end(engine: Engine, *runs: WorkflowRun) -> None:
    def ended() -> bool:
        for run in runs:
            run.refresh_from_db()
        return all(run.state in WorkflowRun.FINISHED for run in runs)

    wait_for(ended, 60, "the runs to end", engine.workers)
    assert [run.state for run in runs] == ["success"] * len(runs)


def pids(run: WorkflowRun) -> dict[str, list[int | None]]:
    """Task id -> the pid of each attempt, in try order."""
    found: dict[str, list[int | None]] = {}
    for task_id, pid in (
        TaskAttempt.objects.dangerously_unscoped()
        .filter(task_instance__run=run)
        .order_by("task_instance__task_id", "try_number")
        .values_list("task_instance__task_id", "pid")
    ):
        found.setdefault(task_id, []).append(pid)
    return found


PIPELINE: dict[str, Any] = {
    "name": "pipeline",
    "max_active_tasks": 8,
    "tasks": {
        "a": {"type": "shell", "command": ["echo", "a"]},
        **{f"n{i}": {"type": "noop", "depends_on": ["a"]} for i in range(4)},  # a batch
        "j": {"type": "shell", "command": ["echo", "j"], "depends_on": [f"n{i}" for i in range(4)]},
        "p": {
            "type": "python",
            "callable": "runs.library:echo",
            "kwargs": {"x": 1},
            "depends_on": ["j"],
        },
        "z": {"type": "noop", "depends_on": ["p"]},
    },
}


def test_a_tenants_tries_run_on_its_pool_and_the_others_on_the_shared_pool(
    engine: Engine, acme: Tenant
) -> None:
    theirs = trigger(engine, acme, PIPELINE)
    ours = trigger(engine, engine.tenant, PIPELINE)
    wait_to_end(engine, theirs, ours)
    dedicated_pool = pool(engine.workers.named[QUEUE])  # type: ignore[union-attr]
    shared = shared_pool(engine.workers)  # type: ignore[arg-type]
    assert dedicated_pool
    assert shared
    assert not dedicated_pool & shared
    for run, expected, other in ((theirs, dedicated_pool, shared), (ours, shared, dedicated_pool)):
        ran = pids(run)
        assert set(ran) == set(PIPELINE["tasks"])
        every = {pid for tries in ran.values() for pid in tries}
        assert every <= expected, (run, ran, expected)
        assert not every & other


def test_the_reconciler_resends_a_lost_try_to_the_queue_of_its_tenant(
    engine: Engine, acme: Tenant
) -> None:
    """`queued` with no message anywhere (lost in a broker flush, say): re-sent by the
    reconciler of the engine tests' beat, each to the right pool."""
    single = {"name": "single", "tasks": {"t": {"type": "shell", "command": ["true"]}}}
    lost = []
    for tenant in (engine.tenant, acme):
        workflow = apply(engine, tenant, single)
        with tenant_scope([tenant]), transaction.atomic():
            run = engine_module.create_run(workflow=workflow, params={}, source="api", user_id=None)
            WorkflowRun.objects.dangerously_unscoped().filter(pk=run.pk).update(
                state="running", started_at=timezone.now()
            )
            TaskInstance.objects.dangerously_unscoped().filter(run=run).update(
                state="queued", try_number=1, queued_at=timezone.now() - dt.timedelta(hours=1)
            )
        lost.append(run)
    wait_to_end(engine, *lost)
    (ours_pid,), (theirs_pid,) = (pids(run)["t"] for run in lost)
    assert ours_pid in shared_pool(engine.workers)  # type: ignore[arg-type]
    assert theirs_pid in pool(engine.workers.named[QUEUE])  # type: ignore[union-attr]


SLOW_CHAIN: dict[str, Any] = {
    "name": "slow",
    "tasks": {
        # Short enough that `b`, queued when it ends, is kept for continuation (within
        # TASK_CONTINUE_SECONDS of the delivery); long enough to change the policy meanwhile.
        "a": {"type": "shell", "command": ["sleep", "1"]},
        "b": {"type": "shell", "command": ["echo", "b"], "depends_on": ["a"]},
        "c": {"type": "noop", "depends_on": ["b"]},
    },
}


@pytest.mark.parametrize("to_dedicated", [True, False])
def test_a_policy_change_moves_the_next_tries_and_continuation_never_crosses(
    engine: Engine, acme: Tenant, to_dedicated: bool
) -> None:
    acme = set_queue(acme, None if to_dedicated else QUEUE)
    run = trigger(engine, acme, SLOW_CHAIN)

    def a_running() -> bool:
        return TaskAttempt.objects.dangerously_unscoped().filter(task_instance__run=run).exists()

    wait_for(a_running, 30, "a to start", engine.workers)
    set_queue(acme, QUEUE if to_dedicated else None)
    wait_to_end(engine, run)
    dedicated_pool = pool(engine.workers.named[QUEUE])  # type: ignore[union-attr]
    shared = shared_pool(engine.workers)  # type: ignore[arg-type]
    old, new = (shared, dedicated_pool) if to_dedicated else (dedicated_pool, shared)
    ran = pids(run)
    assert ran["a"][0] in old
    assert ran["b"][0] in new, ran  # not run on by a's worker, although kept for it
    assert ran["c"][0] in new


def test_a_try_lost_with_its_worker_is_retried_on_the_tenants_pool(
    engine: Engine, acme: Tenant
) -> None:
    script = 'if [ "{{ try_number }}" = "1" ]; then sleep 120; fi; echo done'
    run = trigger(
        engine,
        acme,
        {
            "name": "victim",
            "tasks": {"t": {"type": "shell", "command": ["sh", "-c", script], "retries": 1}},
        },
    )

    def first_attempt() -> TaskAttempt | None:
        return TaskAttempt.objects.dangerously_unscoped().filter(task_instance__run=run).first()

    attempt = wait_for(first_attempt, 30, "try 1 to start", engine.workers)
    assert attempt.pid in pool(engine.workers.named[QUEUE])  # type: ignore[union-attr]
    os.kill(attempt.pid, signal.SIGKILL)  # the pool process running it
    wait_to_end(engine, run)
    tries = list(
        TaskAttempt.objects.dangerously_unscoped()
        .filter(task_instance__run=run)
        .order_by("try_number")
    )
    assert [(a.try_number, a.state) for a in tries] == [(1, "failed"), (2, "success")]
    assert tries[0].error.startswith("lease expired")
    assert tries[1].pid in pool(engine.workers.named[QUEUE])  # type: ignore[union-attr]
