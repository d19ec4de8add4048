"""The worker's side of the python tasks' warm processes (runs/tasktypes/zygote.py): one
zygote per tenant, package digest and sandbox settings, started on first use, restarted
when it has died, stopped when idle or when more than `limit` are running, and asked to
fork a child per task. No Django here: the executor (runs/tasktypes/python.py) passes
everything in.

`ZYGOTES` is the worker process's registry (its one owner: a process-wide cache of child
processes, like a connection pool). A forked worker process starts with an empty one."""

from __future__ import annotations

import array
import atexit
import collections
import concurrent.futures
import contextlib
import json
import logging
import os
import shutil
import signal
import socket
import stat
import struct
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from runs.tasktypes.process import KILL_GRACE_SECONDS, SUPERVISOR, OutputSink, run_as
from runs.tasktypes.sandbox import TMP, Sandbox, Workspace

__all__ = ["ZYGOTES", "TaskRun", "ZygoteFailed", "ZygoteSpec", "Zygotes"]

logger = logging.getLogger(__name__)
ZYGOTE_MODULE = "runs.tasktypes.zygote"
POLL_SECONDS = 0.05


class ZygoteFailed(Exception):
    """The zygote could not be started (the message says why, with its last output)."""


@dataclass(frozen=True)
class ZygoteSpec:
    python: str  # the interpreter (a package environment's, or the platform's)
    python_path: str  # PYTHONPATH: where the runner's modules are
    sandbox: Sandbox | None  # None: TASK_SANDBOX=off
    preload: tuple[str, ...]  # modules imported once, before the first fork
    allowed: tuple[str, ...] | None  # the platform's allow-list (None: a team's package)
    start_timeout: float = 60.0
    # Held while the zygote runs (e.g. the environment cache's shared lock on its digest).
    hold: Callable[[], contextlib.AbstractContextManager[Any]] = contextlib.nullcontext
    environment: Path | None = None  # the package environment it runs from


@dataclass(frozen=True)
class TaskRun:
    exit_code: int | None  # negative: killed by that signal
    timed_out: bool = False
    cancelled: bool = False
    lost: bool = False  # the zygote died under the task (not the task's own failure)
    error: str = ""
    result: bytes = b""
    started: float = 0.0  # seconds from the request to the child's start


@dataclass
class Zygote:
    spec: ZygoteSpec
    process: subprocess.Popen[bytes] | None = None
    directory: Path | None = None  # host side of the zygote's socket and task directories
    workspace: Workspace | None = None
    import_errors: dict[str, str] = field(default_factory=dict)
    last_used: float = 0.0
    output: collections.deque[str] = field(default_factory=lambda: collections.deque(maxlen=40))
    _held: contextlib.ExitStack = field(default_factory=contextlib.ExitStack)
    _pipes: list[int] = field(default_factory=list)
    _socket: str = ""  # /proc/self/fd/N of the zygote's socket (see _socket_path)
    in_flight: int = 0  # tasks running in it now

    # --- life --------------------------------------------------------------------------------

    def start(self) -> None:
        spec = self.spec
        self._held.enter_context(spec.hold())
        try:
            self._launch()
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        self.last_used = time.monotonic()

    def _launch(self) -> None:
        spec = self.spec
        if spec.sandbox is not None:
            self.workspace = spec.sandbox.workspace()
            self.directory, inside = self.workspace.tmp, TMP
        else:
            self.directory = Path(tempfile.mkdtemp(prefix="orc-zygote-"))
            inside = str(self.directory)
        config = {
            "socket": f"{inside}/zygote.sock",
            "tasks": f"{inside}/tasks",
            "isolate": spec.sandbox is not None,
            "preload": list(spec.preload),
            "allowed": list(spec.allowed) if spec.allowed is not None else None,
        }
        argv = [spec.python, "-m", ZYGOTE_MODULE, json.dumps(config)]
        env = {
            "PATH": os.environ.get("PATH", "/usr/bin:/bin")
            if spec.sandbox is None
            else "/usr/bin:/bin",
            "LANG": "C.UTF-8",
            "HOME": "/home/task" if spec.sandbox is not None else str(self.directory),
            "PYTHONPATH": spec.python_path,
            "PYTHONNOUSERSITE": "1",
            "PYTHONDONTWRITEBYTECODE": "1",
        }
        if spec.sandbox is not None and self.workspace is not None:
            status_r, status_w = os.pipe()
            info_r, info_w = os.pipe()
            self._pipes = [status_r, info_r]
            drop: dict[str, Any] = {}
            try:
                command = spec.sandbox.command(
                    argv, space=self.workspace, cwd=None, status_fd=status_w, info_fd=info_w
                )
                if os.geteuid() == 0:  # as a shell task's sandbox: vforked, not forked
                    sandbox = spec.sandbox
                    command, drop = run_as(sandbox.uid, sandbox.gid, command, sandbox.init)
                self.process = _popen(
                    command,
                    env=env,
                    cwd="/",
                    start_new_session=True,
                    pass_fds=(status_w, info_w),
                    stdin=subprocess.DEVNULL,
                    stdout=subprocess.PIPE,
                    stderr=subprocess.STDOUT,
                    **drop,
                )
            except OSError as exc:
                raise ZygoteFailed(
                    f"the task sandbox is unavailable: could not start "
                    f"{spec.sandbox.bwrap!r}: {exc}"
                ) from None
            finally:
                os.close(status_w)
                os.close(info_w)
        else:
            supervised = [sys.executable, "-I", "-S", SUPERVISOR, str(os.getpid()), "", "--"]
            self.process = _popen(
                [*supervised, *argv],
                env=env,
                cwd=str(self.directory),
                start_new_session=True,
                stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
            )
        threading.Thread(target=self._read_output, daemon=True).start()

    def _read_output(self) -> None:
        process = self.process
        if process is None or process.stdout is None:
            return
        for raw in process.stdout:
            line = raw.decode("utf-8", "replace").rstrip()
            self.output.append(line)
            logger.debug("zygote %s: %s", self.spec.python, line)

    def _wait_ready(self) -> None:
        assert self.directory is not None
        assert self.process is not None
        deadline = time.monotonic() + self.spec.start_timeout
        path = str(self.directory / "zygote.sock")
        while True:
            if self.process.poll() is not None:
                time.sleep(0.05)  # let the reader take the last lines
                said = "\n".join(self.output) or "(no output)"
                raise ZygoteFailed(
                    f"the python runner exited at start (exit code {self.process.returncode}):"
                    f"\n{said}"
                )
            if os.path.exists(path):
                with contextlib.suppress(OSError):
                    socket_path = _socket_path(path)
                    try:
                        self.import_errors = _hello(socket_path)
                    except OSError:
                        os.close(int(socket_path.rsplit("/", 1)[1]))
                        raise
                    self._socket = socket_path
                    return
            if time.monotonic() > deadline:
                raise ZygoteFailed(
                    f"the python runner did not start within {self.spec.start_timeout:.0f}s"
                )
            time.sleep(0.005)

    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def stop(self) -> None:
        process, self.process = self.process, None
        if process is not None:
            with contextlib.suppress(ProcessLookupError, PermissionError):
                os.killpg(process.pid, signal.SIGKILL)
            with contextlib.suppress(Exception):
                process.wait(timeout=10)
            if process.stdout is not None:
                process.stdout.close()
        for fd in self._pipes:
            with contextlib.suppress(OSError):
                os.close(fd)
        self._pipes = []
        if self._socket:
            with contextlib.suppress(OSError):
                os.close(int(self._socket.rsplit("/", 1)[1]))
            self._socket = ""
        if self.workspace is not None:
            with contextlib.suppress(OSError):
                self.workspace.remove()
            self.workspace = None
        elif self.directory is not None:
            shutil.rmtree(self.directory, ignore_errors=True)
        self.directory = None
        self._held.close()

    # --- one task ----------------------------------------------------------------------------

    def run(
        self,
        request: dict[str, Any],
        *,
        sink: OutputSink,
        timeout: float | None,
        should_stop: Callable[[], bool],
        result_limit: int,
    ) -> TaskRun:
        assert self.directory is not None
        self.in_flight += 1
        try:
            return self._run(request, sink, timeout, should_stop, result_limit)
        finally:
            self.in_flight -= 1
            self.last_used = time.monotonic()

    def _run(
        self,
        request: dict[str, Any],
        sink: OutputSink,
        timeout: float | None,
        should_stop: Callable[[], bool],
        result_limit: int,
    ) -> TaskRun:
        begun = time.perf_counter()
        out_r, out_w = os.pipe()
        result = tempfile.TemporaryFile()  # noqa: SIM115 (closed below)
        conn = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        pump = threading.Thread(target=_pump, args=(out_r, sink), daemon=True)
        try:
            try:
                conn.connect(self._socket)
                payload = json.dumps(request, default=str).encode()
                fds = array.array("i", [out_w, result.fileno()])
                conn.sendmsg(
                    [struct.pack(">I", len(payload))],
                    [(socket.SOL_SOCKET, socket.SCM_RIGHTS, fds.tobytes())],
                )
                conn.sendall(payload)
            except OSError as exc:
                return TaskRun(None, lost=True, error=f"the python runner is gone: {exc}")
            finally:
                os.close(out_w)
            pump.start()
            replies = _Replies(conn)
            try:
                first = replies.next(deadline=time.monotonic() + 30)
            except TimeoutError:
                return TaskRun(None, lost=True, error="the python runner did not answer in 30 s")
            if first is None or "started" not in first:
                why = (first or {}).get("error", "it closed the connection")
                return TaskRun(None, lost=first is None, error=f"the task did not start: {why}")
            started = time.perf_counter() - begun
            end, timed_out, cancelled = self._wait(replies, conn, timeout, should_stop)
            if end is None:
                return TaskRun(
                    None,
                    lost=True,
                    error="the python runner (its zygote) died during the task",
                    started=started,
                )
            code = -int(end["signal"]) if "signal" in end else int(end["exit"])
            result.seek(0)
            return TaskRun(
                code,
                timed_out=timed_out,
                cancelled=cancelled,
                result=result.read(result_limit + 1),
                started=started,
            )
        finally:
            conn.close()
            if pump.is_alive():
                pump.join(timeout=5)  # the pump closes out_r at its end (never under it)
            elif pump.ident is None:  # never started
                os.close(out_r)
            result.close()

    def _wait(
        self,
        replies: _Replies,
        conn: socket.socket,
        timeout: float | None,
        should_stop: Callable[[], bool],
    ) -> tuple[dict[str, Any] | None, bool, bool]:
        """The end of the task, its timeout or a stop (then SIGTERM, and SIGKILL after the
        grace period). (its end, None if the zygote died; timed out; cancelled)"""
        deadline = time.monotonic() + timeout if timeout else None
        timed_out = cancelled = False
        while True:
            try:
                end = replies.next(deadline=time.monotonic() + POLL_SECONDS)
            except TimeoutError:
                if deadline is not None and time.monotonic() >= deadline:
                    timed_out = True
                elif should_stop():
                    cancelled = True
                else:
                    continue
                break
            return end, False, False
        with contextlib.suppress(OSError):
            conn.sendall(b"TERM\n")
        try:
            return (
                replies.next(deadline=time.monotonic() + KILL_GRACE_SECONDS),
                timed_out,
                cancelled,
            )
        except TimeoutError:
            pass
        with contextlib.suppress(OSError):
            conn.sendall(b"KILL\n")
        try:
            return replies.next(deadline=time.monotonic() + 10), timed_out, cancelled
        except TimeoutError:
            return None, timed_out, cancelled


class _Replies:
    """JSON lines from the zygote on one connection."""

    def __init__(self, conn: socket.socket) -> None:
        self.conn = conn
        self.buffer = b""
        self.closed = False

    def next(self, *, deadline: float) -> dict[str, Any] | None:
        """The next message; None when the connection closed; TimeoutError at the deadline."""
        while b"\n" not in self.buffer:
            if self.closed:
                return None
            left = deadline - time.monotonic()
            if left <= 0:
                raise TimeoutError
            self.conn.settimeout(left)
            try:
                chunk = self.conn.recv(4096)
            except TimeoutError:
                raise
            except OSError:
                chunk = b""
            if not chunk:
                self.closed = True
                continue
            self.buffer += chunk
        line, _, self.buffer = self.buffer.partition(b"\n")
        message: dict[str, Any] = json.loads(line)
        return message


def _hello(path: str) -> dict[str, str]:
    with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
        conn.settimeout(10)
        conn.connect(path)
        payload = json.dumps({"op": "hello"}).encode()
        conn.sendall(struct.pack(">I", len(payload)) + payload)
        reply = _Replies(conn).next(deadline=time.monotonic() + 10)
    if reply is None or "errors" not in reply:
        raise OSError("no answer")
    errors: dict[str, str] = reply["errors"]
    return errors


def _pump(fd: int, sink: OutputSink) -> None:
    """The task's output into its sink, until every process holding the pipe is gone;
    then the pipe is closed here, by its only reader."""
    try:
        while chunk := os.read(fd, 65536):
            sink.write(chunk)
    except OSError:
        pass
    finally:
        os.close(fd)


def _socket_path(path: str) -> str:
    """A path to the zygote's socket that a tenant cannot redirect: its directory is the
    tenant's, so the name could later be a link to any socket of the host. The inode is
    opened once, as it is now (not following a link), and connected to through /proc."""
    fd = os.open(path, os.O_PATH | os.O_NOFOLLOW | os.O_CLOEXEC)
    if not stat.S_ISSOCK(os.fstat(fd).st_mode):
        os.close(fd)
        raise OSError(f"{path} is not a socket")
    return f"/proc/self/fd/{fd}"


def _popen(argv: list[str], **options: Any) -> subprocess.Popen[bytes]:
    """Start a zygote from the launcher thread, which lives as long as this process: the
    kernel's parent-death signal (bwrap's --die-with-parent, the supervisor's) follows
    the parent *thread*, so a zygote started by a short-lived thread would die with it."""
    return _launcher().submit(lambda: subprocess.Popen(argv, **options)).result()


_launchers: dict[int, concurrent.futures.ThreadPoolExecutor] = {}


def _launcher() -> concurrent.futures.ThreadPoolExecutor:
    """One launcher thread per process (a forked worker process makes its own)."""
    pid = os.getpid()
    if pid not in _launchers:
        _launchers.clear()
        _launchers[pid] = concurrent.futures.ThreadPoolExecutor(
            max_workers=1, thread_name_prefix="zygote-launcher"
        )
    return _launchers[pid]


class Zygotes:
    """The zygotes of this worker process, by key."""

    def __init__(self, limit: int = 8, idle_seconds: float = 600.0) -> None:
        self.limit = limit
        self.idle_seconds = idle_seconds
        self._running: dict[Hashable, Zygote] = {}
        self._lock = threading.Lock()
        self._starting: dict[Hashable, threading.Lock] = {}

    def get(self, key: Hashable, make_spec: Callable[[], ZygoteSpec]) -> tuple[Zygote, bool]:
        """The running zygote of `key`, started (from `make_spec()`) if there is none or
        it has died. (the zygote, whether this call started it)"""
        with self._lock:
            stale = self._stale(keep=key)
            zygote = self._running.get(key)
            starting = self._starting.setdefault(key, threading.Lock())
        for old in stale:
            old.stop()
        if zygote is not None and zygote.alive():
            return zygote, False
        with starting:
            with self._lock:
                zygote = self._running.get(key)
                if zygote is not None and zygote.alive():
                    return zygote, False
            if zygote is not None:  # it died: its task (if any) was given back
                logger.warning("the python runner %s died; starting it again", key)
                zygote.stop()
            fresh = Zygote(make_spec())
            fresh.start()
            with self._lock:
                self._running[key] = fresh
                stale = self._stale(keep=key)
            for old in stale:
                old.stop()
            return fresh, True

    def _stale(self, keep: Hashable) -> list[Zygote]:
        """Zygotes to stop: idle too long, and the least recently used beyond the limit."""
        now = time.monotonic()
        others = sorted(
            ((k, z) for k, z in self._running.items() if k != keep and not z.in_flight),
            key=lambda item: item[1].last_used,
        )
        stale = [k for k, z in others if now - z.last_used > self.idle_seconds]
        excess = len(self._running) - len(stale) - self.limit
        stale += [k for k, _ in others if k not in stale][: max(0, excess)]
        return [self._running.pop(k) for k in stale]

    def stop(self, predicate: Callable[[Hashable], bool] = lambda key: True) -> int:
        with self._lock:
            keys = [k for k in self._running if predicate(k)]
            zygotes = [self._running.pop(k) for k in keys]
        for zygote in zygotes:
            zygote.stop()
        return len(zygotes)

    def forget(self) -> None:
        """In a forked child: the parent's zygotes are not this process's to use or stop."""
        self._running = {}
        self._lock = threading.Lock()
        self._starting = {}


ZYGOTES = Zygotes()
os.register_at_fork(after_in_child=ZYGOTES.forget)
atexit.register(ZYGOTES.stop)
