"""A worker SIGKILLed while it holds a try it has not claimed yet, with 5,000 messages queued
behind it: the try is re-sent, at the front of its queue, within about a lease of the death,
and runs while the backlog is still far from drained. Before the held-tries registry
(runs/engine/holding.py) only the drained-queue re-send found such a try: here, up to
QUEUED_RESEND_MAX_SECONDS (30 minutes) later.

To catch the worker between taking the message and claiming the try, the test holds the
tenant's row locked: the claim's transaction then waits at its commit (for the attempt's
foreign key) until the worker is killed, and its connection is closed by the test, as
PostgreSQL does on its own only once it next talks to the dead client."""

from __future__ import annotations

import os
import signal
import time
from typing import Any

import psycopg2
import pytest
import redis
from django.db import connection
from django.utils import timezone

from runs.engine import holding, repair
from runs.engine.messaging import send
from runs.models import TaskAttempt, TaskInstance
from tests.harness import set_policy
from tests.runs.reliability.conftest import Cluster
from tests.workers import LEASE_SECONDS, alive, wait_for

pytestmark = pytest.mark.slow

POOL = "pool-held"
BACKLOG = 5000


def pool_worker(cluster: Cluster, name: str) -> Any:
    """A worker of the tenant's pool only, one process at a time."""
    assert cluster.workers is not None
    return cluster.workers.start_command(
        name,
        [
            "celery",
            "-A",
            "orchestrator",
            "worker",
            "-n",
            f"{name}@%h",
            "-l",
            "INFO",
            "-c",
            "1",
            "--pool",
            "prefork",
            "-Q",
            POOL,
            "--without-heartbeat",
            "--without-gossip",
            "--without-mingle",
        ],
    )


def fill(client: redis.Redis, queue_key: str) -> None:
    """BACKLOG messages behind the held try, for tries that do not exist (each costs a
    worker a claim that finds nothing): one sent as the engine sends, copied at once."""
    send((10**9, 1), queue=POOL)
    (payload,) = client.lrange(queue_key, 0, 0)
    with client.pipeline(transaction=False) as pipe:
        for _ in range(BACKLOG - 1):
            pipe.lpush(queue_key, payload)
        pipe.execute()


def lock_waiters() -> list[int]:
    """Backends of the test database waiting for a lock."""
    with connection.cursor() as cursor:
        cursor.execute(
            "SELECT pid FROM pg_stat_activity WHERE datname = current_database() "
            "AND wait_event_type = 'Lock'"
        )
        return [pid for (pid,) in cursor.fetchall()]


def test_a_dead_workers_unclaimed_try_runs_within_a_lease_under_a_backlog(
    cluster: Cluster,
) -> None:
    workers = cluster.workers
    assert workers is not None
    set_policy(cluster.tenant, task_queue=POOL)
    workflow = cluster.apply(
        {"name": "held", "tasks": {"t": {"type": "shell", "command": cluster.body()}}}
    )
    client = redis.Redis.from_url(workers.redis_url)
    # The reconciler's first look at a new broker re-sends every queued try (it cannot
    # tell a new broker from one that lost its data): let it pass before the try is queued,
    # so that only the held-tries step can send it again.
    marker = f"{workers.prefix}{repair.BROKER_MARKER}"
    wait_for(lambda: client.exists(marker), 30, "the reconciler's first pass", workers)
    (run,) = cluster.trigger(workflow)
    with cluster.scope():
        ti = TaskInstance.objects.get(run=run, task_id="t")
    assert ti.state == "queued"  # its message waits in the pool's queue: no worker yet
    queue_key = f"{workers.prefix}{POOL}"

    db = connection.settings_dict
    locker = psycopg2.connect(host=db["HOST"], port=db["PORT"], user=db["USER"], dbname=db["NAME"])
    try:
        with locker.cursor() as cursor:  # the transaction stays open until the rollback
            cursor.execute(
                "SELECT id FROM orchestrator_tenant WHERE id = %s FOR UPDATE",
                [cluster.tenant.pk],
            )
        victim = pool_worker(cluster, "victim")

        def victim_holds_it() -> str | None:
            for key in client.scan_iter(f"{workers.prefix}{holding.HELD}victim@*"):
                if client.zscore(key, f"{ti.pk}:1") is not None:
                    return key.decode()
            return None

        wait_for(victim_holds_it, 30, "the victim to take the try", workers)
        waiting = wait_for(lock_waiters, 30, "the victim's claim to wait", workers)

        pool_worker(cluster, "rescuer")  # starting meanwhile: it is slow to start
        fill(client, queue_key)
        os.killpg(victim.pid, signal.SIGKILL)
        wait_for(lambda: not alive(victim.pid), 10, "the victim to die")
        killed_at, died = time.monotonic(), timezone.now()
        with connection.cursor() as cursor:
            for pid in waiting:
                cursor.execute("SELECT pg_terminate_backend(%s)", [pid])
    finally:
        locker.rollback()
        locker.close()
    with cluster.scope():
        assert TaskInstance.objects.get(pk=ti.pk).state == "queued"  # the claim rolled back
        assert not TaskAttempt.objects.filter(task_instance_id=ti.pk).exists()

    def ran() -> tuple[float, int] | None:
        with cluster.scope():
            if TaskInstance.objects.get(pk=ti.pk).state != "success":
                return None
        return time.monotonic() - killed_at, client.llen(queue_key)

    after, backlog = wait_for(ran, 30, "the held try to run", workers)
    with cluster.scope():
        resent = (TaskInstance.objects.get(pk=ti.pk).queued_at - died).total_seconds()
    print(
        f"held try re-sent {resent:.1f}s and run {after:.1f}s after its worker died, "
        f"{backlog} messages still queued"
    )
    # Re-sent within a lease (3 s) of the last beat, plus a reconciler interval (2 s).
    assert resent < LEASE_SECONDS + 2 + 2  # and a margin for a loaded machine
    assert after < 15
    assert backlog > BACKLOG / 2, "the backlog was far from drained"
    assert cluster.executions() == {(run.pk, "t", 1): 1}
    with cluster.scope():
        assert list(
            TaskAttempt.objects.filter(task_instance_id=ti.pk).values_list("try_number", "state")
        ) == [(1, "success")]
    assert not list(client.scan_iter(f"{workers.prefix}{holding.HELD}victim@*"))
    client.close()
