"""Failures, skips and trigger rules through real workers; results and logs recorded."""

from __future__ import annotations

import pytest

from runs.models import TaskLog
from tests.runs.engine.helpers import Engine, attempts_of, run_to_end, states

pytestmark = pytest.mark.slow


def test_it_propagates_failures_and_skips_by_trigger_rule(engine: Engine) -> None:
    run = run_to_end(
        engine,
        {
            "name": "rules",
            "tasks": {
                "ok": {"type": "noop"},
                "boom": {"type": "shell", "command": ["sh", "-c", "echo about to fail; exit 3"]},
                "skip": {"type": "shell", "command": ["sh", "-c", "exit 99"]},
                "py_skip": {"type": "python", "callable": "runs.library:skip"},
                "after_boom": {"type": "noop", "depends_on": ["boom"]},
                "after_skip": {"type": "noop", "depends_on": ["skip"]},
                "cleanup": {
                    "type": "noop",
                    "depends_on": ["boom", "ok"],
                    "trigger_rule": "all_done",
                },
                "alert": {
                    "type": "noop",
                    "depends_on": ["boom", "ok"],
                    "trigger_rule": "one_failed",
                },
                "either": {
                    "type": "noop",
                    "depends_on": ["skip", "ok"],
                    "trigger_rule": "none_failed_min_one_success",
                },
                "deep": {
                    "type": "noop",
                    "depends_on": ["after_boom"],
                    "trigger_rule": "all_success",
                },
            },
        },
    )
    assert states(engine, run) == {
        "ok": "success",
        "boom": "failed",
        "skip": "skipped",
        "py_skip": "skipped",
        "after_boom": "upstream_failed",
        "after_skip": "skipped",
        "cleanup": "success",
        "alert": "success",
        "either": "success",
        "deep": "upstream_failed",
    }
    assert run.state == "failed"
    [attempt] = attempts_of(engine, run, "boom")
    assert attempt.exit_code == 3
    assert attempt.error == "exit code 3"
    with engine.scope():
        log = b"".join(bytes(c.data) for c in TaskLog.objects.filter(attempt=attempt))
    assert log == b"about to fail\n"
    assert attempt.log_bytes == len(log)


def test_it_succeeds_when_the_only_failure_is_allowed(engine: Engine) -> None:
    run = run_to_end(
        engine,
        {
            "name": "tolerant",
            "tasks": {
                "flaky": {"type": "shell", "command": ["false"], "allow_failure": True},
                "next": {"type": "noop", "depends_on": ["flaky"], "trigger_rule": "all_done"},
            },
        },
    )
    assert states(engine, run) == {"flaky": "failed", "next": "success"}
    assert run.state == "success"


def test_it_fails_a_template_error_with_a_clear_message(engine: Engine) -> None:
    run = run_to_end(
        engine,
        {
            "name": "badtemplate",
            "tasks": {"t": {"type": "shell", "command": ["echo", "{{ run.nope.deeper }}"]}},
        },
    )
    [attempt] = attempts_of(engine, run, "t")
    assert attempt.state == "failed"
    assert attempt.error.startswith("template error:")
    assert "nope" in attempt.error


RULE_OUTCOMES = {  # upstreams: one success, one failure, one skip
    "all_success": "upstream_failed",
    "all_failed": "skipped",
    "all_done": "success",
    "all_done_min_one_success": "skipped",
    "all_skipped": "skipped",
    "one_success": "success",
    "one_failed": "success",
    "one_done": "success",
    "none_failed": "upstream_failed",
    "none_failed_min_one_success": "upstream_failed",
    "none_skipped": "skipped",
    "always": "success",
}


def test_it_applies_every_trigger_rule_to_mixed_upstreams(engine: Engine) -> None:
    tasks: dict[str, dict[str, object]] = {
        "s": {"type": "noop"},
        "f": {"type": "shell", "command": ["false"]},
        # The skip comes a second after the failure; the order does not matter (all_success
        # is upstream_failed whichever comes first, unlike Airflow: docs/runs.md).
        "k": {"type": "shell", "command": ["sh", "-c", "sleep 1; exit 99"]},
    }
    for rule in RULE_OUTCOMES:
        tasks[rule] = {"type": "noop", "depends_on": ["s", "f", "k"], "trigger_rule": rule}
    run = run_to_end(engine, {"name": "every-rule", "tasks": tasks})
    got = states(engine, run)
    assert {rule: got[rule] for rule in RULE_OUTCOMES} == RULE_OUTCOMES
