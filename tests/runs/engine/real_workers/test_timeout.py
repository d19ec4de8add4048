"""A task's timeout kills its whole process group, grandchildren included."""

from __future__ import annotations

import subprocess
import uuid

import pytest

from tests.runs.engine.helpers import Engine, attempts_of, run_to_end, states

pytestmark = pytest.mark.slow


def _alive(marker: str) -> list[str]:
    found = subprocess.run(["pgrep", "-f", marker], capture_output=True, text=True)
    return found.stdout.split()


def test_it_kills_the_process_group_on_timeout(engine: Engine) -> None:
    marker = f"60.{uuid.uuid4().int % 10**9}"  # a sleep duration no other process uses
    command = f"sleep {marker} & sleep {marker}"
    run = run_to_end(
        engine,
        {
            "name": "slow",
            "tasks": {"t": {"type": "shell", "command": ["sh", "-c", command], "timeout": 2}},
        },
        timeout=40,
    )
    assert states(engine, run) == {"t": "failed"}
    [attempt] = attempts_of(engine, run, "t")
    assert attempt.error == "timed out after 2s; the process group was killed"
    assert (attempt.ended_at - attempt.started_at).total_seconds() < 15
    assert _alive(marker) == []
