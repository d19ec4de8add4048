"""A task that prints 100 MB, forks a grandchild and ignores SIGTERM: its log is capped,
its whole process group is killed at the timeout, and the worker goes on working."""

from __future__ import annotations

from pathlib import Path

import pytest
from django.conf import settings

from runs.models import TaskAttempt
from tests.engine.helpers import attempts_of, states
from tests.reliability.conftest import Cluster
from tests.workers import alive, wait_for

pytestmark = pytest.mark.slow


def test_a_runaway_task_is_capped_killed_and_leaves_the_worker_healthy(
    cluster: Cluster,
) -> None:
    pidfile = cluster.directory / "grandchild.pid"
    runaway = (
        "trap '' TERM; "
        f"(trap '' TERM; sleep 300) & echo $! > {pidfile}; "
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
    cluster.wait_finished([run], 60)

    assert states(cluster, run) == {"hog": "failed", "after": "success"}
    (attempt,) = attempts_of(cluster, run, "hog")
    assert attempt.error.startswith("timed out after 3s")
    cap = settings.TASK_LOG_MAX_BYTES
    assert cap < 100_000_000
    assert cap <= attempt.log_bytes <= cap + 200  # the cap plus its one-line notice
    grandchild = int(Path(pidfile).read_text())
    wait_for(lambda: not alive(grandchild), 5, "the grandchild to be killed")
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
