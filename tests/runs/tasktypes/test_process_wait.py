"""The task process's wait (runs/tasktypes/process.py): one loop in the worker's thread,
woken by the output and the process's end. Output is never lost or blocked on, a stop is
seen while the task runs, and the grace after SIGTERM still collects the task's output."""

from __future__ import annotations

import os
import threading
import time

from runs.tasktypes.process import OutputSink, run_process

ENV = {"PATH": os.environ["PATH"]}
LOOP = "while :; do sleep 0.05; done"


def test_output_larger_than_a_pipe_buffer_passes_whole() -> None:
    sink = OutputSink(10_000_000)
    result = run_process(
        ["sh", "-c", "head -c 3000000 /dev/zero; echo end"],
        env=ENV,
        cwd=None,
        timeout=30,
        sink=sink,
    )
    assert result.exit_code == 0
    output = sink.drain()
    assert len(output) == 3_000_004
    assert output.endswith(b"end\n")


def test_output_is_in_the_sink_while_the_task_runs() -> None:
    sink = OutputSink(10_000)
    seen: list[bytes] = []

    def watch() -> bool:
        seen.append(bytes(sink._pending))  # what a log flush would find now
        return False

    result = run_process(
        ["sh", "-c", "echo first; sleep 0.5; echo second"],
        env=ENV,
        cwd=None,
        timeout=30,
        sink=sink,
        should_stop=watch,
    )
    assert result.exit_code == 0
    assert b"first\n" in seen  # before the task ended: streamed, not read at the end
    assert sink.drain() == b"first\nsecond\n"


def test_a_stop_is_seen_within_a_second_and_the_grace_output_kept() -> None:
    """The task traps SIGTERM, says so and exits: its last words reach the sink."""
    sink = OutputSink(10_000)
    stop = threading.Event()
    threading.Timer(0.3, stop.set).start()
    started = time.monotonic()
    result = run_process(
        [
            "sh",
            "-c",
            "trap 'echo terminated; exit 7' TERM; echo ready; while :; do sleep 0.05; done",
        ],
        env=ENV,
        cwd=None,
        timeout=60,
        sink=sink,
        should_stop=stop.is_set,
    )
    assert result.cancelled
    assert not result.timed_out
    assert time.monotonic() - started < 1.3 + 1.0  # the stop, a second, and the trap's exit
    output = sink.drain()  # (sh may also say its `sleep` was Terminated, by the group's TERM)
    assert output.startswith(b"ready\n")
    assert output.endswith(b"terminated\n")


def test_a_short_task_takes_no_thread() -> None:
    before = threading.active_count()
    peak = 0

    def watch() -> bool:
        nonlocal peak
        peak = max(peak, threading.active_count())
        return False

    result = run_process(
        ["sh", "-c", "sleep 0.2"],
        env=ENV,
        cwd=None,
        timeout=30,
        sink=OutputSink(100),
        should_stop=watch,
    )
    assert result.exit_code == 0
    assert peak == before
