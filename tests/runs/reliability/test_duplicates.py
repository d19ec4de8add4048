"""Every message delivered more than once, and two reconcilers re-sending at the same
time: each try still executes exactly once."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from django.db import connection

from runs.engine import repair
from runs.models import TaskInstance, WorkflowRun
from runs.tasks import execute_task_instance
from tests.runs.reliability.conftest import Cluster

pytestmark = pytest.mark.slow

WIDTH = 20


@pytest.fixture
def cluster_env() -> dict[str, str]:
    # Every try through the broker: a worker running the next task itself (continuation)
    # would leave the duplicate-sender no queued try to see.
    return {"TASK_CONTINUE_SECONDS": "0"}


def _repeatedly(stop: threading.Event, action: Any) -> threading.Thread:
    def loop() -> None:
        try:
            while not stop.is_set():
                action()
                stop.wait(0.05)
        finally:
            connection.close()

    thread = threading.Thread(target=loop, daemon=True)
    thread.start()
    return thread


def test_duplicate_messages_and_two_reconcilers_run_each_try_once(
    cluster: Cluster, settings: Any
) -> None:
    # Any instance queued for a second counts as lost: both reconcilers re-send all the time.
    settings.QUEUED_RESEND_AFTER_SECONDS = 1
    settings.QUEUED_RESEND_MAX_SECONDS = 1
    tasks: dict[str, Any] = {"root": {"type": "shell", "command": cluster.body()}}
    for index in range(WIDTH):
        tasks[f"leaf{index}"] = {
            "type": "shell",
            "command": cluster.body("sleep 0.1"),
            "depends_on": ["root"],
        }
    tasks["join"] = {
        "type": "shell",
        "command": cluster.body(),
        "depends_on": [f"leaf{i}" for i in range(WIDTH)],
    }
    workflow = cluster.apply({"name": "fan", "tasks": tasks})
    runs = cluster.trigger(workflow, 3)

    rung: set[tuple[int, int]] = set()

    def ring_twice() -> None:
        """Each try gets two more messages once it is queued (or already claimed, when it
        went by between two looks), as a broker redelivering would."""
        with cluster.scope():
            seen = set(
                TaskInstance.objects.filter(run__in=runs, try_number__gte=1).values_list(
                    "id", "try_number"
                )
            )
        for ti_id, try_number in seen - rung:
            for _ in range(2):
                execute_task_instance.delay(ti_id, try_number)
        rung.update(seen)

    stop = threading.Event()
    helpers = [
        _repeatedly(stop, ring_twice),
        _repeatedly(stop, repair.reconcile),
        _repeatedly(stop, repair.reconcile),
    ]
    try:
        cluster.wait_finished(runs, 120)
    finally:
        stop.set()
        for thread in helpers:
            thread.join()
    ring_twice()  # the tries that ended between two looks get their duplicates late
    cluster.wait_drained(30)  # the workers have turned every duplicate away

    with cluster.scope():
        assert set(
            WorkflowRun.objects.filter(pk__in=[r.pk for r in runs]).values_list("state", flat=True)
        ) == {"success"}
        tries = set(TaskInstance.objects.filter(run__in=runs).values_list("try_number", flat=True))
    assert tries == {1}
    assert len(rung) == 3 * (WIDTH + 2), "every try got its duplicates"
    executions = cluster.executions()
    assert len(executions) == 3 * (WIDTH + 2)
    assert set(executions.values()) == {1}, "a try ran more than once"
