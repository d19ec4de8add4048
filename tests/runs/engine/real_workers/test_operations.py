"""Operating runs on real workers: cancel kills, retry re-runs the failed part only,
limits and priority hold, a running task's log can be followed."""

from __future__ import annotations

import itertools
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from runs import selectors, services
from runs.models import TaskAttempt, TaskInstance, WorkflowRun
from runs.services import trigger_run
from tests.runs.engine.helpers import Engine, attempts_of, run_to_end, states
from tests.workers import share_with_tasks, wait_for

pytestmark = pytest.mark.slow


def _finished(run: WorkflowRun) -> bool:
    run.refresh_from_db()
    return run.state in WorkflowRun.FINISHED


def _alive(marker: str) -> list[str]:
    return subprocess.run(["pgrep", "-f", marker], capture_output=True, text=True).stdout.split()


def test_it_cancels_a_run_killing_its_running_task(engine: Engine) -> None:
    marker = f"60.{uuid.uuid4().int % 10**9}"
    workflow = engine.apply(
        {
            "name": "to-cancel",
            "tasks": {
                "long": {
                    "type": "shell",
                    "command": ["sh", "-c", f"sleep {marker} & sleep {marker}"],
                },
                "after": {"type": "noop", "depends_on": ["long"], "trigger_rule": "all_done"},
            },
        }
    )
    with engine.scope():
        run = trigger_run(actor=engine.actor, workflow=workflow).run
    wait_for(lambda: len(_alive(marker)) >= 2, 30, "the task's processes", engine.workers)
    with engine.scope():
        services.cancel_run(actor=engine.actor, run=run)
    wait_for(lambda: not _alive(marker), 15, "the process group to be killed", engine.workers)
    time.sleep(1)  # give anything wrongly scheduled a chance to show up
    run.refresh_from_db()
    assert run.state == "cancelled"
    assert states(engine, run) == {"long": "cancelled", "after": "cancelled"}
    [attempt] = attempts_of(engine, run, "long")
    assert attempt.state == "cancelled"
    assert attempts_of(engine, run, "after") == []


def test_it_retries_only_the_failed_part_keeping_every_try(engine: Engine, tmp_path: Path) -> None:
    share_with_tasks(engine.tenant, tmp_path, writable=False)  # the task only looks
    flag = tmp_path / "fixed"
    run = run_to_end(
        engine,
        {
            "name": "fix-me",
            "tasks": {
                "first": {"type": "noop"},
                "fragile": {
                    "type": "shell",
                    "command": ["test", "-e", str(flag)],
                    "depends_on": ["first"],
                },
                "last": {"type": "noop", "depends_on": ["fragile"]},
            },
        },
    )
    assert states(engine, run) == {
        "first": "success",
        "fragile": "failed",
        "last": "upstream_failed",
    }
    flag.touch()
    with engine.scope():
        cleared = services.retry_run(actor=engine.actor, run=run)
    assert cleared == ["fragile", "last"]
    wait_for(lambda: _finished(run), 30, "the retried run", engine.workers)
    assert run.state == "success"
    assert states(engine, run) == dict.fromkeys(["first", "fragile", "last"], "success")
    assert [(a.try_number, a.state) for a in attempts_of(engine, run, "fragile")] == [
        (1, "failed"),
        (2, "success"),
    ]
    assert [a.try_number for a in attempts_of(engine, run, "first")] == [1]


def test_it_runs_one_run_at_a_time_with_max_active_runs_1(engine: Engine) -> None:
    workflow = engine.apply(
        {
            "name": "serial",
            "max_active_runs": 1,
            "tasks": {"t": {"type": "shell", "command": ["sleep", "0.3"]}},
        }
    )
    with engine.scope():
        runs = [trigger_run(actor=engine.actor, workflow=workflow).run for _ in range(5)]
    assert [r.state for r in runs] == ["running"] + ["queued"] * 4
    wait_for(lambda: all(_finished(r) for r in runs), 60, "five runs", engine.workers)
    assert {r.state for r in runs} == {"success"}
    for earlier, later in itertools.pairwise(runs):
        assert earlier.ended_at <= later.started_at  # strictly one after another, in order


def test_it_never_runs_more_than_max_active_tasks(engine: Engine) -> None:
    tasks = {f"t{i}": {"type": "shell", "command": ["sleep", "0.5"]} for i in range(6)}
    run = run_to_end(engine, {"name": "narrow", "max_active_tasks": 2, "tasks": tasks})
    assert run.state == "success"
    with engine.scope():
        spans = list(
            TaskAttempt.objects.filter(task_instance__run=run).values_list("started_at", "ended_at")
        )
    for started, _ in spans:
        overlapping = sum(1 for s, e in spans if s <= started < e)
        assert overlapping <= 2


def test_it_starts_ready_tasks_in_priority_order(engine: Engine) -> None:
    tasks: dict[str, dict[str, object]] = {"root": {"type": "noop"}}
    priorities = {"low": -5, "mid": 0, "high": 10, "top": 50}
    for name, priority in priorities.items():
        tasks[name] = {
            "type": "shell",
            "command": ["sleep", "0.2"],
            "depends_on": ["root"],
            "priority": priority,
        }
    run = run_to_end(engine, {"name": "ranked", "max_active_tasks": 1, "tasks": tasks})
    with engine.scope():
        order = list(
            TaskInstance.objects.filter(run=run)
            .exclude(task_id="root")
            .order_by("started_at")
            .values_list("task_id", flat=True)
        )
    assert order == ["top", "high", "mid", "low"]


def test_a_client_following_a_running_task_log_gets_every_line_once(engine: Engine) -> None:
    script = "for i in $(seq 1 40); do echo line $i; sleep 0.05; done"
    workflow = engine.apply(
        {"name": "chatty", "tasks": {"t": {"type": "shell", "command": ["sh", "-c", script]}}}
    )
    with engine.scope():
        run = trigger_run(actor=engine.actor, workflow=workflow).run
    received, offset, polls = "", 0, 0
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        with engine.scope():
            ti = selectors.get_task_instance(run, "t")
            page = selectors.read_log(ti, try_number=None, offset=offset, limit=64)
        received += page["text"]
        offset = page["next_offset"]
        polls += 1
        if not page["running"] and page["try_number"] is not None and not page["text"]:
            break
        time.sleep(0.05)
    assert received == "".join(f"line {i}\n" for i in range(1, 41))
    assert polls > 3  # it was followed while running, not read once at the end


def test_it_fails_a_run_past_its_timeout_and_cancels_the_rest(engine: Engine) -> None:
    run = run_to_end(
        engine,
        {
            "name": "too-slow",
            "timeout": 2,
            "tasks": {
                "nap": {"type": "shell", "command": ["sleep", "30"]},
                "then": {"type": "noop", "depends_on": ["nap"]},
            },
        },
        timeout=30,
    )
    assert run.state == "failed"
    assert states(engine, run) == {"nap": "cancelled", "then": "cancelled"}
    assert (run.ended_at - run.started_at).total_seconds() < 15
