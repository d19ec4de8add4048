"""A task that prints 100 MB, forks a grandchild and ignores SIGTERM: its log is capped,
its whole process group is killed at the timeout, and the worker goes on working."""

from __future__ import annotations

import secrets

import pytest
from django.conf import settings

from runs.models import TaskAttempt
from tests.runs.engine.helpers import attempts_of, states
from tests.runs.reliability.conftest import Cluster
from tests.workers import alive, sandboxed_pids, wait_for

pytestmark = pytest.mark.slow


def test_a_runaway_task_is_capped_killed_and_leaves_the_worker_healthy(
    cluster: Cluster,
) -> None:
    # The grandchild's pid in the sandbox means nothing here: it is found by its argument.
    marker = f"300.{secrets.randbelow(10**12):012d}"
    runaway = (
        "trap '' TERM; "
        f"(trap '' TERM; sleep {marker}) & "
        "head -c 100000000 /dev/zero | tr '\\0' x; "
        "sleep 300"
    )
    workflow = cluster.apply(
        {
            "name": "runaway",
            "tasks": {
                "hog": {"type": "shell", "command": cluster.body(runaway), "timeout": 3},
                "after": {
                    "type": "shell",
                    "command": cluster.body("echo fine"),
                    "depends_on": ["hog"],
                    "trigger_rule": "all_done",
                },
            },
        }
    )
    (run,) = cluster.trigger(workflow)
    grandchildren = wait_for(
        lambda: sandboxed_pids(marker), 30, "the grandchild to start", cluster.workers
    )
    cluster.wait_finished([run], 60)

    assert states(cluster, run) == {"hog": "failed", "after": "success"}
    (attempt,) = attempts_of(cluster, run, "hog")
    assert attempt.error.startswith("timed out after 3s")
    cap = settings.TASK_LOG_MAX_BYTES
    assert cap < 100_000_000
    assert cap <= attempt.log_bytes <= cap + 200  # the cap plus its one-line notice
    wait_for(
        lambda: not any(map(alive, grandchildren)) and not sandboxed_pids(marker),
        5,
        "the grandchild to be killed",
    )
    # Both workers are alive and still take work.
    assert all(p.poll() is None for p in cluster.workers.processes)
    (again,) = cluster.trigger(
        cluster.apply(
            {"name": "next", "tasks": {"ok": {"type": "shell", "command": cluster.body()}}}
        )
    )
    cluster.wait_finished([again], 30)
    assert states(cluster, again) == {"ok": "success"}
    with cluster.scope():
        assert not TaskAttempt.objects.filter(state="running").exists()
