"""Retries: due times kept in the database, backoff between tries, history of every try."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.runs.engine.helpers import Engine, attempts_of, run_to_end, states
from tests.workers import share_with_tasks

pytestmark = pytest.mark.slow


def test_it_retries_with_exponential_backoff_until_success(engine: Engine, tmp_path: Path) -> None:
    share_with_tasks(engine.tenant, tmp_path)
    counter = tmp_path / "tries"
    script = f'echo x >> {counter}; [ "$(wc -l < {counter})" -ge 3 ]'
    run = run_to_end(
        engine,
        {
            "name": "flaky",
            "tasks": {
                "t": {
                    "type": "shell",
                    "command": ["sh", "-c", script],
                    "retries": 3,
                    "retry_delay": 1,
                    "retry_backoff": 2,
                }
            },
        },
        timeout=60,
    )
    assert states(engine, run) == {"t": "success"}
    tries = attempts_of(engine, run, "t")
    assert [(a.try_number, a.state) for a in tries] == [
        (1, "failed"),
        (2, "failed"),
        (3, "success"),
    ]
    assert counter.read_text().count("x") == 3  # each try ran exactly once
    first_gap = (tries[1].started_at - tries[0].ended_at).total_seconds()
    second_gap = (tries[2].started_at - tries[1].ended_at).total_seconds()
    assert first_gap >= 0.9  # retry_delay 1s, jittered by at most 10%
    assert second_gap >= 1.8  # 1s * 2^1


def test_it_fails_when_the_tries_run_out(engine: Engine) -> None:
    run = run_to_end(
        engine,
        {
            "name": "hopeless",
            "tasks": {"t": {"type": "shell", "command": ["false"], "retries": 1, "retry_delay": 0}},
        },
    )
    assert states(engine, run) == {"t": "failed"}
    assert [a.try_number for a in attempts_of(engine, run, "t")] == [1, 2]
    assert run.state == "failed"
