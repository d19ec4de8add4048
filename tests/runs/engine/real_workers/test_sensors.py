"""`wait_for` sensors give their worker slot back between checks: a waiting sensor is
`scheduled` with its next check time, not a process sleeping in a worker."""

from __future__ import annotations

import datetime as dt
import time

import pytest
from django.utils import timezone

from runs.models import TaskInstance, WorkflowRun
from runs.services import cancel_run, retry_run, trigger_run
from tests.runs.engine.helpers import Engine, attempts_of, run_to_end, states
from tests.workers import wait_for

pytestmark = pytest.mark.slow


def _in(seconds: float) -> str:
    return (timezone.now() + dt.timedelta(seconds=seconds)).isoformat()


def test_it_waits_for_a_time_without_holding_a_worker(engine: Engine) -> None:
    spec = {
        "name": "wait-time",
        "tasks": {
            "wait": {"type": "wait_for", "kind": "time", "at": _in(4), "poke_interval": 1},
            "after": {"type": "noop", "depends_on": ["wait"]},
        },
    }
    run = run_to_end(engine, spec, timeout=40)
    assert states(engine, run) == {"wait": "success", "after": "success"}, [
        a.error for a in attempts_of(engine, run, "wait")
    ]
    tries = attempts_of(engine, run, "wait")
    assert [a.state for a in tries[:-1]] == ["rescheduled"] * (len(tries) - 1)
    assert len(tries) >= 2
    assert tries[-1].state == "success"
    with engine.scope():
        ti = TaskInstance.objects.get(run=run, task_id="wait")
    # The checks did not use up the task's tries: one try left over, as at the start.
    assert ti.max_tries - ti.try_number == 0


def test_it_fails_a_sensor_past_its_timeout_without_retrying(engine: Engine) -> None:
    spec = {
        "name": "wait-timeout",
        "tasks": {
            "wait": {
                "type": "wait_for",
                "kind": "time",
                "at": _in(3600),
                "poke_interval": 1,
                "timeout": 3,
                "retries": 2,
            }
        },
    }
    run = run_to_end(engine, spec, timeout=40)
    assert states(engine, run) == {"wait": "failed"}
    tries = attempts_of(engine, run, "wait")
    assert tries[-1].state == "failed"
    assert "sensor timed out after 3s of waiting" in tries[-1].error
    assert {a.state for a in tries[:-1]} == {"rescheduled"}
    assert (tries[-1].ended_at - tries[0].started_at).total_seconds() < 15


def test_it_keeps_other_tasks_running_while_100_sensors_wait(engine: Engine) -> None:
    # 2 workers with 2 slots each; 100 sensors waiting an hour must not take them.
    sensors = {
        f"wait{i}": {"type": "wait_for", "kind": "time", "at": _in(3600), "poke_interval": 600}
        for i in range(100)
    }
    waiting = engine.apply({"name": "many-sensors", "max_active_tasks": 200, "tasks": sensors})
    with engine.scope():
        sensor_run = trigger_run(actor=engine.actor, workflow=waiting, params={}).run

    def all_waiting() -> bool:
        with engine.scope():
            return (
                TaskInstance.objects.filter(
                    run=sensor_run, state="scheduled", next_attempt_at__isnull=False
                ).count()
                == 100
            )

    wait_for(all_waiting, 60, "100 sensors to make their first check", engine.workers)
    chain = {
        "one": {"type": "shell", "command": ["true"]},
        "two": {"type": "shell", "command": ["true"], "depends_on": ["one"]},
        "three": {"type": "shell", "command": ["true"], "depends_on": ["two"]},
    }
    run = run_to_end(engine, {"name": "beside-sensors", "tasks": chain}, timeout=30)
    assert states(engine, run) == {"one": "success", "two": "success", "three": "success"}
    assert set(states(engine, sensor_run).values()) == {"scheduled"}
    with engine.scope():
        cancel_run(actor=engine.actor, run=sensor_run)
        sensor_run.refresh_from_db()
    assert sensor_run.state == WorkflowRun.State.CANCELLED
    assert set(states(engine, sensor_run).values()) == {"cancelled"}


def test_it_starts_a_new_wait_when_a_cancelled_sensor_is_retried(engine: Engine) -> None:
    spec = {
        "name": "wait-again",
        "tasks": {
            "wait": {
                "type": "wait_for",
                "kind": "time",
                "at": _in(3600),
                "poke_interval": 1,
                "timeout": 4,
            }
        },
    }
    workflow = engine.apply(spec)
    with engine.scope():
        run = trigger_run(actor=engine.actor, workflow=workflow, params={}).run

    def checked() -> bool:
        return any(a.state == "rescheduled" for a in attempts_of(engine, run, "wait"))

    wait_for(checked, 30, "the sensor's first check", engine.workers)
    with engine.scope():
        cancel_run(actor=engine.actor, run=run)
    time.sleep(5)  # longer than the sensor's timeout
    before = len(attempts_of(engine, run, "wait"))
    with engine.scope():
        retry_run(actor=engine.actor, run=run)

    def checked_again() -> bool:
        return any(a.state == "rescheduled" for a in attempts_of(engine, run, "wait")[before:])

    # The old wait does not count: the retried sensor checks again instead of timing out.
    wait_for(checked_again, 30, "the retried sensor's first check", engine.workers)
    assert all(a.state != "failed" for a in attempts_of(engine, run, "wait"))
    with engine.scope():
        cancel_run(actor=engine.actor, run=run)
