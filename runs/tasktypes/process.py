"""Running a task's child process: its own process group (or its own sandbox: see
runs/tasktypes/sandbox.py), output streamed into a capped sink, everything it started killed on
timeout or cancel. No Django here."""

from __future__ import annotations

import contextlib
import functools
import json
import os
import select
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

from runs.tasktypes.sandbox import Sandbox, Workspace, parse_status
from runs.tasktypes.supervise import format_limits

__all__ = ["OutputSink", "ProcessResult", "last_line_result", "run_process"]

KILL_GRACE_SECONDS = 5.0
STOP_CHECK_SECONDS = 0.05  # how often a running task's wait asks should_stop()
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
    exit_code: int | None  # negative: killed by that signal
    timed_out: bool = False
    cancelled: bool = False
    error: str = ""


def _kill_group(pgid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, sig)


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
    sandbox: Sandbox | None = None,
    workspace: Workspace | None = None,
) -> ProcessResult:
    """Run argv and wait for it, its timeout, or `should_stop()`.

    Without a sandbox: in a new process group under `supervise.py` (which kills the group
    should this process die). With one (and the `workspace` it made): as PID 1's child in
    bwrap, where `cwd` is relative to the task's private working directory; `rlimits` are
    the sandbox's."""
    if sandbox is not None:
        if workspace is None:
            raise ValueError("a sandboxed process needs its workspace")
        return _run_sandboxed(
            argv, sandbox, workspace, env, cwd, timeout, sink, should_stop, on_start, stdin
        )
    if not _executable(argv[0] if argv else "", env.get("PATH"), cwd):
        name = argv[0] if argv else ""
        return ProcessResult(
            exit_code=None, error=f"could not start {name!r}: no such executable command"
        )
    # setpriv (util-linux), where installed, asks for the parent death signal before the
    # supervisor's interpreter starts, which then need not import ctypes to ask for it.
    setpriv = _setpriv()
    supervised = [
        *([setpriv, "--pdeathsig", "HUP", "--"] if setpriv else []),
        sys.executable,
        "-I",
        "-S",
        SUPERVISOR,
        f"+{os.getpid()}" if setpriv else str(os.getpid()),
        format_limits(dict(rlimits or {})),
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
    timed_out, cancelled = _wait(proc, sink, stdin, timeout, should_stop, lambda: proc.pid)
    return ProcessResult(exit_code=proc.returncode, timed_out=timed_out, cancelled=cancelled)


def _run_sandboxed(
    argv: Sequence[str],
    sandbox: Sandbox,
    workspace: Workspace,
    env: Mapping[str, str],
    cwd: str | None,
    timeout: float | None,
    sink: OutputSink,
    should_stop: Callable[[], bool],
    on_start: Callable[[int], None],
    stdin: bytes | None,
) -> ProcessResult:
    """bwrap, started as the sandbox's uid when this process is root. A timeout or a cancel
    sends SIGTERM to the sandbox's PID 1, which passes it on to every process inside; after
    the grace period, SIGKILL to bwrap's group ends the namespace and all in it."""
    status_read, status_write = os.pipe()
    info_read, info_write = os.pipe()
    command = sandbox.command(
        argv, space=workspace, cwd=cwd, status_fd=status_write, info_fd=info_write
    )
    drop: dict[str, Any] = {}
    if os.geteuid() == 0:
        command, drop = _drop_to(sandbox.uid, sandbox.gid, command)
    try:
        proc = subprocess.Popen(
            command,
            env=dict(env),
            cwd="/",
            start_new_session=True,
            pass_fds=(status_write, info_write),
            stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            **drop,
        )
    except OSError as exc:
        for fd in (status_read, status_write, info_read, info_write):
            os.close(fd)
        return ProcessResult(
            exit_code=None,
            error=f"the task sandbox is unavailable: could not start {sandbox.bwrap!r}: {exc}",
        )
    os.close(status_write)
    os.close(info_write)
    on_start(proc.pid)
    try:
        timed_out, cancelled = _wait(
            proc, sink, stdin, timeout, should_stop, lambda: _sandbox_init(info_read)
        )
        status = parse_status(_read_all(status_read))
    finally:
        os.close(status_read)
        os.close(info_read)
    if "error" in status:
        return ProcessResult(exit_code=None, error=str(status["error"]))
    if "signal" in status:
        code: int | None = -int(status["signal"])
    elif "exit" in status:
        code = int(status["exit"])
    elif timed_out or cancelled:
        code = proc.returncode
    else:  # bwrap ended before the task began: it says why in the output
        return ProcessResult(
            exit_code=None,
            error=(
                "the task sandbox could not be made (bwrap exited with "
                f"{proc.returncode}; its message is in the log)"
            ),
        )
    return ProcessResult(exit_code=code, timed_out=timed_out, cancelled=cancelled)


@functools.cache
def _setpriv() -> str | None:
    return shutil.which("setpriv")


def _drop_to(uid: int, gid: int, command: list[str]) -> tuple[list[str], dict[str, Any]]:
    """`command` run as uid:gid with no supplementary groups, from a root worker: through
    util-linux's setpriv where it is installed, so that Popen can vfork; Popen's own
    user/group/extra_groups make it fork the whole worker, which costs a sandboxed start
    8 ms in a small process and 20 ms in a worker-sized one (measured for issue 26)."""
    setpriv = _setpriv()
    # A missing bwrap is left to Popen, whose error names it (setpriv's would not).
    if setpriv is None or shutil.which(command[0]) is None:
        return command, {"user": uid, "group": gid, "extra_groups": []}
    drop = [setpriv, f"--reuid={uid}", f"--regid={gid}", "--clear-groups", "--"]
    return [*drop, *command], {}


def _sandbox_init(info_fd: int) -> int | None:
    """The host pid of the sandbox's PID 1, from bwrap's --info-fd (None: not started)."""
    try:
        info = json.loads(_read_all(info_fd, wait=1.0) or b"{}")
    except ValueError:
        return None
    pid = info.get("child-pid")
    return int(pid) if pid else None


def _read_all(fd: int, wait: float | None = None) -> bytes:
    chunks = []
    while True:
        if wait is not None and not select.select([fd], [], [], wait)[0]:
            break
        chunk = os.read(fd, 65536)
        if not chunk:
            break
        chunks.append(chunk)
    return b"".join(chunks)


def _wait(
    proc: subprocess.Popen[bytes],
    sink: OutputSink,
    stdin: bytes | None,
    timeout: float | None,
    should_stop: Callable[[], bool],
    term_target: Callable[[], int | None],
) -> tuple[bool, bool]:
    """Pump the output, feed stdin, wait for the end, the timeout or a stop; then make
    sure nothing of the process group is left. (timed out, cancelled)

    One loop in this thread, woken by the output or the process's end (a pidfd), so a
    short task's end is seen at once and costs no thread start; it wakes at least every
    STOP_CHECK_SECONDS to ask `should_stop` (a cancel is noticed within a second)."""
    if stdin is not None and proc.stdin is not None:
        # Rare (package builds): a thread, so a child that writes before it reads all of
        # its input cannot block us both.
        threading.Thread(target=_feed, args=(proc.stdin, stdin), daemon=True).start()
    assert proc.stdout is not None
    out = proc.stdout.fileno()
    ended = _exit_fd(proc)
    poller = select.poll()
    poller.register(out, select.POLLIN)
    poller.register(ended, select.POLLIN)
    deadline = time.monotonic() + timeout if timeout else None
    timed_out = cancelled = False
    reading = True
    kill_at: float | None = None
    try:
        while proc.returncode is None:
            now = time.monotonic()
            if kill_at is None:
                if deadline is not None and now >= deadline:
                    timed_out = True
                elif should_stop():
                    cancelled = True
                if timed_out or cancelled:
                    _signal_end(proc.pid, term_target())
                    kill_at = now + KILL_GRACE_SECONDS
            elif now >= kill_at:  # the grace is over (again a second later, if need be)
                _kill_group(proc.pid, signal.SIGKILL)
                kill_at = now + 1.0
            wake = STOP_CHECK_SECONDS
            if kill_at is not None:
                wake = max(0.0, min(wake, kill_at - now))
            elif deadline is not None:
                wake = max(0.0, min(wake, deadline - now))
            for fd, _ in poller.poll(wake * 1000):
                if fd == out and reading and not _pump_once(out, sink):
                    poller.unregister(out)
                    reading = False
                elif fd == ended:
                    proc.poll()
        # Grandchildren may outlive the leader and keep the pipe open: end the whole group.
        _kill_group(proc.pid, signal.SIGKILL)
        _drain(out, sink, reading, until=time.monotonic() + 5)
    finally:
        os.close(ended)
        proc.stdout.close()
    return timed_out, cancelled


def _exit_fd(proc: subprocess.Popen[bytes]) -> int:
    """A descriptor that becomes readable when the process ends: its pidfd, or (a kernel
    older than 5.3) a pipe whose writing end a waiting thread closes."""
    try:
        return os.pidfd_open(proc.pid)
    except (AttributeError, OSError):
        readable, writable = os.pipe()

        def wait() -> None:
            proc.wait()
            os.close(writable)

        threading.Thread(target=wait, daemon=True).start()
        return readable


def _pump_once(fd: int, sink: OutputSink) -> bool:
    """Move what the pipe holds into the sink; False at its end."""
    chunk = os.read(fd, 65536)
    if chunk:
        sink.write(chunk)
    return bool(chunk)


def _drain(fd: int, sink: OutputSink, reading: bool, until: float) -> None:
    """The output left in the pipe after the end, until EOF (bounded in time)."""
    while reading:
        wait = until - time.monotonic()
        if wait <= 0 or not select.select([fd], [], [], wait)[0]:
            return
        reading = _pump_once(fd, sink)


def _feed(pipe: Any, data: bytes) -> None:
    with contextlib.suppress(BrokenPipeError, OSError):
        pipe.write(data)
        pipe.close()


def _executable(name: str, path: str | None, cwd: str | None) -> bool:
    """What exec would find: a path (relative to the task's directory), or a name on PATH."""
    if not name:
        return False
    if os.sep in name:
        full = os.path.join(cwd or os.getcwd(), name)
        return os.path.isfile(full) and os.access(full, os.X_OK)
    return shutil.which(name, path=path) is not None


def _signal_end(pgid: int, target: int | None) -> None:
    """SIGTERM to the target (a process group, or a sandbox's PID 1, which passes it on);
    the wait loop SIGKILLs the group after the grace period if anything is left."""
    if target == pgid:
        _kill_group(pgid, signal.SIGTERM)
    elif target is not None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(target, signal.SIGTERM)


def last_line_result(output: bytes) -> Any:
    """A process task's result (shell, container): its last line of output, as JSON when it
    parses."""
    lines = [line for line in output.decode("utf-8", "replace").splitlines() if line.strip()]
    if not lines:
        return None
    try:
        return json.loads(lines[-1])
    except ValueError:
        return lines[-1]
