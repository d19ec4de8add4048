"""The task process runner and its supervisor, directly (no Django involved): exit statuses
pass through, resource limits apply, a timeout ends the whole group even when it ignores
SIGTERM, and the group dies with the process that started it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path
from typing import Any

from runs.tasktypes.process import OutputSink, ProcessResult, run_process
from tests.subprocesses import ROOT
from tests.workers import alive, wait_for

ENV = {"PATH": os.environ["PATH"]}


def run(
    argv: list[str], timeout: float | None = None, rlimits: dict[str, Any] | None = None
) -> tuple[ProcessResult, bytes]:
    sink = OutputSink(10_000)
    result = run_process(argv, env=ENV, cwd=None, timeout=timeout, sink=sink, rlimits=rlimits)
    return result, sink.drain()


def test_exit_codes_and_output_pass_through() -> None:
    result, output = run(["sh", "-c", "echo out; echo err >&2; exit 3"])
    assert result.exit_code == 3
    assert output == b"out\nerr\n"


def test_death_by_a_signal_passes_through_as_a_negative_code() -> None:
    result, _ = run(["sh", "-c", "kill -TERM $$"])
    assert result.exit_code == -signal.SIGTERM


def test_a_missing_command_is_reported_without_starting_anything() -> None:
    result, output = run(["no-such-command-here"])
    assert result.exit_code is None
    assert result.error == "could not start 'no-such-command-here': no such executable command"
    assert output == b""


def test_resource_limits_apply_to_the_task() -> None:
    _, output = run(["sh", "-c", "ulimit -n"], rlimits={"open_files": 77, "cpu_seconds": None})
    assert output == b"77\n"


def test_a_timeout_kills_the_group_even_when_it_ignores_sigterm(tmp_path: Path) -> None:
    pidfile = tmp_path / "grandchild"
    script = f"trap '' TERM; (trap '' TERM; sleep 60) & echo $! > {pidfile}; sleep 60"
    started = time.monotonic()
    result, _ = run(["sh", "-c", script], timeout=0.5)
    assert result.timed_out
    assert result.exit_code == -signal.SIGKILL
    assert time.monotonic() - started < 10
    grandchild = int(pidfile.read_text())
    wait_for(lambda: not alive(grandchild), 5, "the grandchild to be killed")


def test_the_task_group_dies_with_the_process_that_started_it(tmp_path: Path) -> None:
    """A worker SIGKILLed mid-task: the supervisor notices and kills the task's group."""
    pidfile = tmp_path / "grandchild"
    starter = textwrap.dedent(
        f"""
        import os, sys
        sys.path.insert(0, {str(ROOT)!r})
        from runs.tasktypes.process import OutputSink, run_process
        run_process(["sh", "-c", "sleep 60 & echo $! > {pidfile}; sleep 60"],
                    env={{"PATH": os.environ["PATH"]}}, cwd=None, timeout=None,
                    sink=OutputSink(1000))
        """
    )
    worker = subprocess.Popen([sys.executable, "-c", starter])
    deadline = time.monotonic() + 10
    while not (pidfile.exists() and pidfile.read_text().strip()):
        assert time.monotonic() < deadline, "the task did not start"
        time.sleep(0.05)
    grandchild = int(pidfile.read_text())
    assert alive(grandchild)
    worker.kill()
    worker.wait()
    wait_for(lambda: not alive(grandchild), 5, "the task to die with its worker")
