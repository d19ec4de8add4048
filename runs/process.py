"""Running a task's child process: its own process group, output streamed into a capped
sink, the whole group killed on timeout or cancel. No Django here."""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["OutputSink", "ProcessResult", "run_process"]

KILL_GRACE_SECONDS = 5.0
SUPERVISOR = str(Path(__file__).with_name("supervise.py"))


class OutputSink:
    """Collects a process's output up to `limit` bytes; `drain()` hands over what came
    since the last call (thread-safe). Past the limit a single notice is added, the rest
    is read and dropped, so the child never blocks on a full pipe."""

    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.total = 0  # bytes produced by the process, kept or not
        self.kept = 0
        self._pending = bytearray()
        self._lock = threading.Lock()
        self._truncated = False

    def write(self, data: bytes) -> None:
        with self._lock:
            self.total += len(data)
            room = self.limit - self.kept
            if room > 0:
                part = data[:room]
                self._pending += part
                self.kept += len(part)
            if len(data) > room and not self._truncated:
                self._truncated = True
                notice = (
                    f"\n[output truncated: this attempt's log is capped at {self.limit} "
                    "bytes; the rest was discarded]\n"
                ).encode()
                self._pending += notice

    def unread(self, data: bytes) -> None:
        """Put drained data back in front (it could not be stored; it will be again)."""
        with self._lock:
            self._pending[:0] = data

    def drain(self) -> bytes:
        with self._lock:
            data = bytes(self._pending)
            self._pending.clear()
            return data

    @property
    def truncated(self) -> bool:
        return self._truncated


@dataclass(frozen=True)
class ProcessResult:
    exit_code: int | None
    timed_out: bool = False
    cancelled: bool = False
    error: str = ""


def _kill_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


def _pump(stream: object, sink: OutputSink) -> None:
    fd = stream.fileno()  # type: ignore[attr-defined]
    while True:
        chunk = os.read(fd, 65536)
        if not chunk:
            return
        sink.write(chunk)


def run_process(
    argv: Sequence[str],
    *,
    env: Mapping[str, str],
    cwd: str | None,
    timeout: float | None,
    sink: OutputSink,
    should_stop: Callable[[], bool] = lambda: False,
    on_start: Callable[[int], None] = lambda pid: None,
    stdin: bytes | None = None,
    rlimits: Mapping[str, Any] | None = None,
) -> ProcessResult:
    """Run argv in a new process group under `supervise.py` (which kills the group should
    this process die); wait for it, its timeout, or `should_stop()`."""
    if not _executable(argv[0] if argv else "", env.get("PATH"), cwd):
        name = argv[0] if argv else ""
        return ProcessResult(
            exit_code=None, error=f"could not start {name!r}: no such executable command"
        )
    supervised = [
        sys.executable,
        "-I",
        "-S",
        SUPERVISOR,
        str(os.getpid()),
        json.dumps(dict(rlimits or {})),
        "--",
        *argv,
    ]
    try:
        proc = subprocess.Popen(
            supervised,
            env=dict(env),
            cwd=cwd,
            start_new_session=True,
            stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
        )
    except OSError as exc:
        return ProcessResult(exit_code=None, error=f"could not start {argv[0]!r}: {exc}")
    on_start(proc.pid)
    pump = threading.Thread(target=_pump, args=(proc.stdout, sink), daemon=True)
    pump.start()
    if stdin is not None and proc.stdin is not None:
        try:
            proc.stdin.write(stdin)
            proc.stdin.close()
        except BrokenPipeError:
            pass
    # A thread blocks in waitpid, so the end of a short task is seen at once (polling
    # with a sleep would add tens of milliseconds to every task).
    exited = threading.Event()

    def wait() -> None:
        proc.wait()
        exited.set()

    waiter = threading.Thread(target=wait, daemon=True)
    waiter.start()
    deadline = time.monotonic() + timeout if timeout else None
    timed_out = cancelled = False
    while not exited.wait(0.05):
        if deadline is not None and time.monotonic() >= deadline:
            timed_out = True
        elif should_stop():
            cancelled = True
        if timed_out or cancelled:
            _terminate(proc.pid, exited)
            break
    # Grandchildren may outlive the leader and keep the pipe open: end the whole group.
    _kill_group(proc.pid, signal.SIGKILL)
    waiter.join()
    pump.join(timeout=5)
    if proc.stdout is not None:
        proc.stdout.close()
    return ProcessResult(exit_code=proc.returncode, timed_out=timed_out, cancelled=cancelled)


def _executable(name: str, path: str | None, cwd: str | None) -> bool:
    """What exec would find: a path (relative to the task's directory), or a name on PATH."""
    if not name:
        return False
    if os.sep in name:
        full = os.path.join(cwd or os.getcwd(), name)
        return os.path.isfile(full) and os.access(full, os.X_OK)
    return shutil.which(name, path=path) is not None


def _terminate(pgid: int, exited: threading.Event) -> None:
    """SIGTERM to the group, SIGKILL after a grace period if anything is left."""
    _kill_group(pgid, signal.SIGTERM)
    exited.wait(KILL_GRACE_SECONDS)
    _kill_group(pgid, signal.SIGKILL)
