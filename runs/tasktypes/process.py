"""Running a task's child process: its own process group (or its own sandbox: see
runs/tasktypes/sandbox.py), output streamed into a capped sink, everything it started killed on
timeout or cancel. No Django here."""

from __future__ import annotations

import atexit
import contextlib
import dataclasses
import functools
import json
import os
import queue
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

from runs.tasktypes.sandbox import Limits, Sandbox, Workspace, parse_status
from runs.tasktypes.supervise import encode_request, format_limits

__all__ = [
    "PRESTARTED",
    "OutputSink",
    "ProcessResult",
    "SandboxProcess",
    "last_line_result",
    "run_as",
    "run_process",
]

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
    should this process die). With one: as PID 1's child in bwrap, where `cwd` is relative
    to the task's private working directory (made, a relative one '..'-free, and removed
    here unless the caller gives its own `workspace`); `rlimits` are the sandbox's."""
    if sandbox is not None:
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
    workspace: Workspace | None,
    env: Mapping[str, str],
    cwd: str | None,
    timeout: float | None,
    sink: OutputSink,
    should_stop: Callable[[], bool],
    on_start: Callable[[int], None],
    stdin: bytes | None,
) -> ProcessResult:
    """bwrap, started as the sandbox's uid when this process is root, with the supervisor as
    its PID 1, which is then handed the task (a sandbox made ahead of it, when one is
    waiting). A timeout or a cancel sends SIGTERM to PID 1, which passes it on to every
    process inside; after the grace period, SIGKILL to bwrap's group ends the namespace and
    all in it."""
    ahead = workspace is None and stdin is None  # the caller's own workspace: made for it
    started = PRESTARTED.take(sandbox) if ahead else None
    if ahead and started is None:
        PRESTARTED.refill(sandbox)  # for the next tasks: this one starts its own
    try:
        started = started or SandboxProcess.start(sandbox, workspace, stdin=stdin is not None)
    except OSError as exc:
        return ProcessResult(
            exit_code=None,
            error=f"the task sandbox is unavailable: could not start {sandbox.bwrap!r}: {exc}",
        )
    try:
        sent = started.send(argv, env, cwd, sandbox)
        if not sent:  # it died while it waited (killed from outside): a fresh one, once
            started.close(remove=ahead)
            started = SandboxProcess.start(sandbox, workspace, stdin=stdin is not None)
            sent = started.send(argv, env, cwd, sandbox)
    except ValueError as exc:  # a NUL byte in an argument, a working directory not made
        started.close(remove=ahead)
        return ProcessResult(exit_code=None, error=f"could not start {argv[0]!r}: {exc}")
    except OSError as exc:  # no fresh one could be started, or its directory made
        started.close(remove=ahead)
        return ProcessResult(exit_code=None, error=f"the task sandbox is unavailable: {exc}")
    if not sent:
        started.close(remove=ahead)
        return ProcessResult(exit_code=None, error="the task sandbox ended before its task")
    proc = started.proc
    on_start(proc.pid)
    status: Mapping[str, Any] = {}
    timed_out = cancelled = False
    try:
        timed_out, cancelled = _wait(
            proc,
            sink,
            stdin,
            timeout,
            should_stop,
            lambda: _sandbox_init(started.info_read),
            finished=started.status_read,
        )
        status = parse_status(started.read_status())
    finally:
        if ahead:  # ended or made ready for the next task on the thread: not on this path
            again = bool(status) and not (timed_out or cancelled) and sandbox.reusable
            PRESTARTED.give_back(started, sandbox, reuse=again)
        else:
            started.close(remove=workspace is None)
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


@dataclass
class SandboxProcess:
    """A sandbox whose PID 1 waits for its tasks on `control` (supervise.py `--serve`), one
    after another: each task's status is a line on `status_read`, followed by `ready` once
    PID 1 has emptied what the task could write."""

    proc: subprocess.Popen[bytes]
    workspace: Workspace
    status_read: int
    info_read: int
    control: int  # the writing end; -1 once closed
    made: float  # time.monotonic() when started
    served: bool  # serves task after task (made for them, not on its caller's workspace)
    unread: bytes = b""  # read from status_read beyond the last line handed out

    @classmethod
    def start(cls, sandbox: Sandbox, workspace: Workspace | None, *, stdin: bool) -> SandboxProcess:
        space = workspace or sandbox.workspace()
        status_read, status_write = os.pipe()
        info_read, info_write = os.pipe()
        control_read, control_write = os.pipe()
        command = sandbox.serve_command(
            space=space, status_fd=status_write, info_fd=info_write, control_fd=control_read
        )
        drop: dict[str, Any] = {}
        if os.geteuid() == 0:
            command, drop = run_as(sandbox.uid, sandbox.gid, command, sandbox.init)
        try:
            proc = subprocess.Popen(
                command,
                env={"PATH": os.environ.get("PATH", os.defpath)},
                cwd="/",
                start_new_session=True,
                pass_fds=(status_write, info_write, control_read),
                stdin=subprocess.PIPE if stdin else subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                **drop,
            )
        except OSError:
            for fd in (status_read, info_read, control_write):
                os.close(fd)
            if workspace is None:
                space.remove()
            raise
        finally:
            for fd in (status_write, info_write, control_read):
                os.close(fd)
        made = time.monotonic()
        served = workspace is None and not stdin  # a task of its own: made for the next too
        return cls(proc, space, status_read, info_read, control_write, made, served)

    def send(
        self, argv: Sequence[str], env: Mapping[str, str], cwd: str | None, sandbox: Sandbox
    ) -> bool:
        """Hand PID 1 a task; False if the sandbox is gone (nothing could be sent).
        ValueError: the task cannot be sent (a NUL byte, a working directory that cannot
        be made)."""
        try:
            inside = sandbox.enter(self.workspace, cwd)
        except OSError as exc:
            raise ValueError(f"cannot make the working directory {cwd!r}: {exc.strerror}") from exc
        limits = sandbox.limits.as_dict()
        # Not served: the caller reads what the task leaves in its workspace.
        last = not (self.served and sandbox.reusable)
        request = memoryview(encode_request(list(argv), dict(env), inside, limits, last=last))
        try:
            while request:
                request = request[os.write(self.control, request) :]
        except BrokenPipeError:
            return False
        return True

    def read_line(self, wait: float | None = None) -> bytes:
        """The next line PID 1 wrote on the status descriptor (without its newline); b"" at
        its end, or when nothing came within `wait` seconds."""
        deadline = None if wait is None else time.monotonic() + wait
        while b"\n" not in self.unread:
            if deadline is not None:
                left = max(0.0, deadline - time.monotonic())
                if not select.select([self.status_read], [], [], left)[0]:
                    return b""
            chunk = os.read(self.status_read, 4096)
            if not chunk:
                line, self.unread = self.unread, b""
                return line
            self.unread += chunk
        line, _, self.unread = self.unread.partition(b"\n")
        return line

    def read_status(self) -> bytes:
        """The task's status line: there once the status descriptor was readable; b"" if
        bwrap ended without one (it could not make the sandbox, or it was killed)."""
        return self.read_line(wait=None if self.proc.returncode is None else 0.0)

    def ready(self, wait: float) -> bool:
        """Whether PID 1 emptied what the last task could write and waits for the next
        (within `wait` seconds)."""
        return self.read_line(wait) == b"ready" and self.alive()

    def alive(self) -> bool:
        return self.proc.poll() is None

    def close(self, *, remove: bool) -> None:
        """Its descriptors closed, whatever is left of it killed, its workspace removed (when
        `remove`: it made the workspace itself). A second call does nothing more."""
        if self.control >= 0:
            os.close(self.control)  # an unused sandbox: its PID 1 reads nothing and ends
            self.control = -1
        _kill_group(self.proc.pid, signal.SIGKILL)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proc.wait(timeout=5)
        for stream in (self.proc.stdout, self.proc.stdin):
            if stream is not None:
                stream.close()
        for fd in (self.status_read, self.info_read):
            if fd >= 0:
                with contextlib.suppress(OSError):
                    os.close(fd)
        self.status_read = self.info_read = -1  # closed once: the numbers may be reused
        if remove:
            with contextlib.suppress(OSError):
                self.workspace.remove()


@dataclass(frozen=True)
class _Returned:
    """A used sandbox handed back to the thread: made ready for the next task or ended."""

    process: SandboxProcess
    kind: Sandbox
    reuse: bool


class Prestarted:
    """Sandboxes made ahead of the next tasks with the same settings (the tenant's uid,
    network and mounts; limits are sent with the task), each serving one task after another,
    so that bwrap's namespaces, their teardown and PID 1's start (about 6 ms of CPU per
    sandbox on the 2-core machine) are paid once per sandbox, not once per task.

    DEPTH per settings: a task takes the oldest waiting. Made, made ready again and
    discarded by one daemon thread of this process: a task's sandbox goes back once its PID
    1 has emptied what the task could write (after a timeout or a cancel it is ended
    instead, and a fresh one made); one older than `Sandbox.warm_seconds` is discarded,
    used or not (so a change of /etc or of the sandbox's program reaches new ones), as are
    the settings least recently used beyond MAX_KINDS."""

    DEPTH = 2
    MAX_KINDS = 4
    READY_SECONDS = 5.0  # how long a used sandbox's PID 1 may take to empty it

    def __init__(self) -> None:
        self._ready: dict[Sandbox, list[SandboxProcess]] = {}  # oldest first
        self._lock = threading.Lock()
        self._jobs: queue.SimpleQueue[Sandbox | _Returned | threading.Event] = queue.SimpleQueue()
        self._thread: threading.Thread | None = None

    @staticmethod
    def kind(sandbox: Sandbox) -> Sandbox:
        return dataclasses.replace(sandbox, limits=Limits())

    def take(self, sandbox: Sandbox) -> SandboxProcess | None:
        if not sandbox.warm_seconds:
            return None
        while True:
            with self._lock:
                ready = self._ready.get(self.kind(sandbox)) or []
                taken = ready.pop(0) if ready else None
            if taken is None:
                return None
            if time.monotonic() - taken.made < sandbox.warm_seconds and taken.alive():
                return taken
            taken.close(remove=True)  # too old, or killed from outside

    def waiting(self, sandbox: Sandbox) -> list[SandboxProcess]:
        """Those made ahead for these settings, oldest first, left in place."""
        with self._lock:
            return list(self._ready.get(self.kind(sandbox), []))

    def __len__(self) -> int:
        with self._lock:
            return sum(len(ready) for ready in self._ready.values())

    def refill(self, sandbox: Sandbox) -> None:
        """Make up to DEPTH for the next tasks like this one (on the thread: not on this
        task's path)."""
        if sandbox.warm_seconds:
            self._submit(self.kind(sandbox))

    def give_back(self, used: SandboxProcess, sandbox: Sandbox, *, reuse: bool) -> None:
        """A task's sandbox after its end: waiting for the next task once its PID 1 says it
        is ready (`reuse`), else ended, its workspace removed, and another made; on the
        thread."""
        self._submit(_Returned(used, self.kind(sandbox), reuse))

    def _submit(self, job: Sandbox | _Returned) -> None:
        with self._lock:
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name="sandbox-prestart")
                self._thread.daemon = True
                self._thread.start()
        self._jobs.put(job)

    def forget(self) -> None:
        """In a forked child: none waiting, no thread (the parent's sandboxes and their pipes
        are the parent's to use)."""
        self._ready = {}
        self._lock = threading.Lock()
        self._jobs = queue.SimpleQueue()
        self._thread = None

    def settle(self, wait: float = 5.0) -> None:
        """Return once the thread has done what it was asked before (within `wait`)."""
        with self._lock:
            running = self._thread is not None and self._thread.is_alive()
        if running:
            done = threading.Event()
            self._jobs.put(done)
            done.wait(wait)

    def close(self) -> None:
        """Discard every waiting sandbox (at the process's exit), once the thread has done
        what it was asked before: a sandbox handed back is not left running."""
        self.settle()
        with self._lock:
            ready, self._ready = self._ready, {}
        for items in ready.values():
            for item in items:
                item.close(remove=True)

    def _run(self) -> None:
        wait: float | None = None
        while True:
            try:
                job = self._jobs.get(timeout=wait)
            except queue.Empty:
                job = None
            if isinstance(job, _Returned):
                self._recycle(job)
            elif isinstance(job, threading.Event):
                job.set()
            elif job is not None:
                self._make(job)
            wait = self._discard_stale()

    def _recycle(self, job: _Returned) -> None:
        used, kind = job.process, job.kind
        young = time.monotonic() - used.made < kind.warm_seconds
        if job.reuse and young and used.ready(self.READY_SECONDS) and self._add(kind, used):
            return
        used.close(remove=True)
        if kind.warm_seconds:  # a task of these settings just ran: another is likely
            self._make(kind)

    def _make(self, kind: Sandbox) -> None:
        while True:
            with self._lock:
                if len(self._ready.get(kind, [])) >= self.DEPTH:
                    return
            try:
                made = SandboxProcess.start(kind, None, stdin=False)
            except OSError:
                return  # the next task starts its own, and says why if it cannot
            if not self._add(kind, made):
                made.close(remove=True)
                return

    def _add(self, kind: Sandbox, item: SandboxProcess) -> bool:
        """`item` waiting for the next task of `kind`; False if DEPTH already are."""
        with self._lock:
            ready = self._ready.pop(kind, [])  # re-inserted: the most recently used
            self._ready[kind] = ready
            if len(ready) >= self.DEPTH:
                return False
            ready.append(item)
            extra = list(self._ready)[: max(0, len(self._ready) - self.MAX_KINDS)]
            evicted = [waiting for k in extra for waiting in self._ready.pop(k)]
        for waiting in evicted:
            waiting.close(remove=True)
        return True

    def _discard_stale(self) -> float | None:
        """Discard those made too long ago; how long until the next one would be."""
        now = time.monotonic()
        dropped, left = [], []
        with self._lock:
            for kind, ready in list(self._ready.items()):
                keep = [item for item in ready if now - item.made < kind.warm_seconds]
                dropped += [item for item in ready if item not in keep]
                left += [kind.warm_seconds - (now - item.made) for item in keep]
                if keep:
                    self._ready[kind] = keep
                else:
                    del self._ready[kind]
        for item in dropped:
            item.close(remove=True)
        return max(0.1, min(left)) if left else None


PRESTARTED = Prestarted()  # this process's sandboxes made ahead (one owner: run_process)
atexit.register(PRESTARTED.close)
# A forked child starts with none: the sandboxes, their pipes and the thread are the parent's.
os.register_at_fork(after_in_child=PRESTARTED.forget)


@functools.cache
def _setpriv() -> str | None:
    return shutil.which("setpriv")


def run_as(
    uid: int, gid: int, command: list[str], init: str = ""
) -> tuple[list[str], dict[str, Any]]:
    """`command` run as uid:gid with no supplementary groups, from a root worker: through
    the compiled sandbox init's `--as` (`init`, its host path), or util-linux's setpriv,
    so that Popen can vfork; Popen's own user/group/extra_groups make it fork the whole
    worker, which costs a sandboxed start 8 ms in a small process and 20 ms in a
    worker-sized one (measured for issue 26). The static init starts in about a third of
    setpriv's 2 ms of CPU."""
    setpriv = _setpriv()
    # A missing bwrap is left to Popen, whose error names it (setpriv's would not).
    if shutil.which(command[0]) is None or not (init or setpriv):
        return command, {"user": uid, "group": gid, "extra_groups": []}
    if init:
        return [init, "--as", f"{uid}:{gid}", "--", *command], {}
    assert setpriv is not None
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
    finished: int | None = None,
) -> tuple[bool, bool]:
    """Pump the output, feed stdin, wait for the end, the timeout or a stop; then make
    sure nothing of the process group is left. (timed out, cancelled)

    One loop in this thread, woken by the output or the process's end (a pidfd), so a
    short task's end is seen at once and costs no thread start; it wakes at least every
    STOP_CHECK_SECONDS to ask `should_stop` (a cancel is noticed within a second).

    `finished`: a descriptor that becomes readable when the task has ended (a sandbox's
    status), before `proc` does (a sandbox serves on). Then the output already written is
    read (every process of the task has ended: it is all there), and `proc`'s output pipe
    is left open, for its next task; ending it is the caller's."""
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
    if finished is not None:
        poller.register(finished, select.POLLIN)
    deadline = time.monotonic() + timeout if timeout else None
    timed_out = cancelled = over = False
    reading = True
    kill_at: float | None = None
    try:
        while proc.returncode is None and not over:
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
                elif fd == finished:
                    over = True
        if over and proc.returncode is None:
            _drain_ready(out, sink, reading)
            return timed_out, cancelled  # the output pipe stays open: the sandbox serves on
        # Grandchildren may outlive the leader and keep the pipe open: end the whole group.
        _kill_group(proc.pid, signal.SIGKILL)
        _drain(out, sink, reading, until=time.monotonic() + 5)
        proc.stdout.close()
    except BaseException:
        proc.stdout.close()
        raise
    finally:
        os.close(ended)
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


def _drain_ready(fd: int, sink: OutputSink, reading: bool) -> None:
    """The output already in the pipe (a task that ended wrote all of its own), without
    waiting for the pipe's end; bounded, against a leftover process that writes on."""
    for _ in range(64):
        if not reading or not select.select([fd], [], [], 0)[0]:
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
