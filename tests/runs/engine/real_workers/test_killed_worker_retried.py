"""A worker process killed mid-task: its attempt is failed when the lease lapses, and the
task is retried on a live worker; nothing stays `running`."""

from __future__ import annotations

import os
import signal

import pytest

from runs.models import TaskAttempt, TaskInstance, WorkflowRun
from runs.services import trigger_run
from tests.runs.engine.helpers import Engine, attempts_of, states
from tests.workers import wait_for

pytestmark = pytest.mark.slow


def test_it_retries_the_try_of_a_killed_worker_after_its_lease(engine: Engine) -> None:
    # Try 1 hangs (until its worker is killed); try 2 finishes at once.
    script = 'if [ "{{ try_number }}" = "1" ]; then sleep 120; fi; echo done'
    workflow = engine.apply(
        {
            "name": "victim",
            "tasks": {
                "t": {
                    "type": "shell",
                    "command": ["sh", "-c", script],
                    "retries": 1,
                    "retry_delay": 0,
                }
            },
        }
    )
    with engine.scope():
        run = trigger_run(actor=engine.actor, workflow=workflow).run

    def first_attempt() -> TaskAttempt | None:
        with engine.scope():
            return TaskAttempt.objects.filter(task_instance__run=run, try_number=1).first()

    attempt = wait_for(first_attempt, 30, "try 1 to start", engine.workers)
    os.kill(attempt.pid, signal.SIGKILL)  # the pool process running the task

    def finished() -> bool:
        run.refresh_from_db()
        return run.state in WorkflowRun.FINISHED

    wait_for(finished, 60, "the run to finish after the lease lapsed", engine.workers)
    assert states(engine, run) == {"t": "success"}
    tries = attempts_of(engine, run, "t")
    assert [(a.try_number, a.state) for a in tries] == [(1, "failed"), (2, "success")]
    assert tries[0].error.startswith("lease expired")
    with engine.scope():
        assert not TaskInstance.objects.filter(run=run, state="running").exists()
        assert not TaskAttempt.objects.filter(task_instance__run=run, state="running").exists()
