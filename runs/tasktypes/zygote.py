"""The warm process of `python` tasks (docs/team-code.md): `python -m runs.tasktypes.zygote
CONFIG`, started by a worker (runs/tasktypes/zygotes.py) once per tenant and package, in the
tenant's sandbox. It imports the package's modules once, then forks a child per task, so a
task starts in a few milliseconds instead of an interpreter's start.

CONFIG is JSON: {"socket": path, "tasks": dir, "isolate": bool, "preload": [modules],
"allowed": [modules] or null}. The worker talks to it over the unix socket, one connection
per task:
- it sends a 4-byte big-endian length and that much JSON ({"callable", "kwargs", "env",
  "limits"}), with two descriptors attached (SCM_RIGHTS): where the task's output goes and
  a file for its JSON result; `{"op": "hello"}` without descriptors asks for the modules
  that failed to import;
- it may send "TERM\\n" (a timeout, a cancel: the task gets SIGTERM) and "KILL\\n", or close
  the connection (the task and everything it started are killed);
- it reads JSON lines back: {"started": pid}, then {"exit": code} or {"signal": number}.

What a task's child keeps of today's guarantees (each python task used to be a new
interpreter in a sandbox of its own):
- with `isolate` (in the sandbox), the child makes its own user, mount and PID namespaces:
  the task runs as PID 2 under an init of its own (PID 1), which passes SIGTERM on and, when
  it ends, takes everything the task started with it (double forks and setsid included);
  its HOME and /tmp are fresh directories of its own, bound over the zygote's, so it sees
  neither the socket nor another task's files; it has no capabilities (no_new_privs is the
  sandbox's). Without `isolate` (TASK_SANDBOX=off), it is a process group of its own;
- the task's limits (setrlimit), a clean environment (the one sent), its output on the
  descriptor sent (the worker masks and caps it), its result as JSON.
If the zygote dies, its sandbox ends and every task in it with it: the worker sees the
connection close without an exit and gives the try back.

Standard library only: it runs inside the sandbox, where neither Django nor the project is.
"""

from __future__ import annotations

import array
import contextlib
import ctypes
import gc
import importlib
import json
import os
import resource  # noqa: F401 (imported once here, not in each task's child: set_rlimits uses it)
import selectors
import shutil
import signal
import socket
import struct
import sys
import traceback
from typing import Any, NoReturn

from runs.tasktypes.pyrunner import call
from runs.tasktypes.supervise import set_rlimits

__all__ = ["main"]

HOME = "/home/task"
TMP = "/tmp"  # noqa: S108 (the task's own /tmp: a directory of its own bound there)
CLONE_NEWNS = 0x00020000
CLONE_NEWUSER = 0x10000000
CLONE_NEWPID = 0x20000000
MS_BIND = 0x1000
MS_REC = 0x4000
MS_PRIVATE = 1 << 18
PR_SET_PDEATHSIG = 1
PR_SET_DUMPABLE = 4
PR_CAPBSET_DROP = 24
CAPABILITY_VERSION_3 = 0x20080522
SYS_CAPSET = 126  # x86_64; other architectures: looked up below
FORWARDED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
# Python ignores these at start-up; a task gets the defaults, as an exec'd process would.
RESTORED = (signal.SIGPIPE, signal.SIGXFSZ)
MAX_REQUEST = 64 * 1024 * 1024

_libc = ctypes.CDLL(None, use_errno=True)


class Failed(Exception):
    """A task's namespace could not be made (the message says which step)."""


def _check(result: int, what: str) -> None:
    if result != 0:
        errno = ctypes.get_errno()
        raise Failed(f"{what}: {os.strerror(errno)}")


# --- the child of one task -------------------------------------------------------------------


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        written = os.write(fd, view)
        view = view[written:]


def _drop_capabilities() -> None:
    """No capability left, not even in the task's own user namespace."""
    cap = 0
    while _libc.prctl(PR_CAPBSET_DROP, cap, 0, 0, 0) == 0:
        cap += 1
    header = struct.pack("Ii", CAPABILITY_VERSION_3, 0)
    data = bytes(24)  # two empty __user_cap_data_struct: effective, permitted, inheritable
    number = SYS_CAPSET if os.uname().machine == "x86_64" else 91  # 91: aarch64's capset
    _check(_libc.syscall(number, header, data), "dropping capabilities")


def _private_namespaces(task_dir: str) -> None:
    """A user, mount and PID namespace of the task's own (the next fork is its PID 1)."""
    uid, gid = os.getuid(), os.getgid()
    _check(_libc.unshare(CLONE_NEWUSER | CLONE_NEWNS | CLONE_NEWPID), "unshare")
    for name, text in (("setgroups", "deny"), ("uid_map", f"{uid} {uid} 1")):
        with open(f"/proc/self/{name}", "w") as out:
            out.write(text)
    with open("/proc/self/gid_map", "w") as out:
        out.write(f"{gid} {gid} 1")
    _check(_libc.mount(None, b"/", None, MS_REC | MS_PRIVATE, None), "making mounts private")
    for source, target in ((f"{task_dir}/home", HOME), (f"{task_dir}/tmp", TMP)):  # noqa: S108
        _bind_over(source, target)


def _submounts(target: str) -> list[str]:
    """The outermost mount points below `target` (a package's environment or a tenant's
    mount under /tmp, say), from /proc/self/mountinfo."""
    points: list[str] = []
    with open("/proc/self/mountinfo") as info:
        for line in info:
            point = line.split()[4].encode().decode("unicode_escape")  # \040 is a space
            if point.startswith(target + "/"):
                points.append(point)
    outermost: list[str] = []
    for point in sorted(set(points), key=len):
        if not any(point.startswith(outer + "/") for outer in outermost):
            outermost.append(point)
    return outermost


def _bind_over(source: str, target: str) -> None:
    """Bind `source` over `target`, then put back what was mounted below `target`: the
    bind would hide it (it keeps its read-only flag, its content and its place)."""
    kept = [(point, os.open(point, os.O_PATH)) for point in _submounts(target)]
    _check(
        _libc.mount(source.encode(), target.encode(), None, MS_BIND | MS_REC, None),
        f"binding {target}",
    )
    for point, fd in kept:
        os.makedirs(point, exist_ok=True)
        _check(
            _libc.mount(
                f"/proc/self/fd/{fd}".encode(), point.encode(), None, MS_BIND | MS_REC, None
            ),
            f"binding {point} again",
        )
        os.close(fd)


def _run_task(request: dict[str, Any], out_fd: int, result_fd: int, home: str) -> int:
    """In the process that is the task: its descriptors, environment, limits; then call."""
    os.dup2(out_fd, 1)
    os.dup2(out_fd, 2)
    if out_fd > 2:
        os.close(out_fd)
    sys.stdout = open(1, "w", buffering=1, encoding="utf-8", errors="backslashreplace")  # noqa: SIM115
    sys.stderr = open(2, "w", buffering=1, encoding="utf-8", errors="backslashreplace")  # noqa: SIM115
    for sig in (*FORWARDED, *RESTORED, signal.SIGCHLD):
        signal.signal(sig, signal.SIG_DFL)
    os.environ.clear()
    os.environ.update(request.get("env", {}))
    os.chdir(home)
    try:
        set_rlimits(dict(request.get("limits", {})))
    except (OSError, ValueError) as exc:
        print(f"could not set the task's limits: {exc}", file=sys.stderr)
        return 2
    return call(request, lambda text: _write_all(result_fd, text.encode()))


def _exit_like(status: int) -> NoReturn:
    """End this process the way `status` (a wait status) says: the same code or signal."""
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        with contextlib.suppress(OSError, ValueError):
            signal.signal(sig, signal.SIG_DFL)
        os.kill(os.getpid(), sig)
    os._exit(os.waitstatus_to_exitcode(status) if os.WIFEXITED(status) else 128)


def _init(ctl: socket.socket, allowed: list[str] | None, status_w: int) -> NoReturn:
    """PID 1 of the task's namespace: start the task's process (which waits for its
    request), pass SIGTERM on to every process in the namespace, reap orphans, report how
    the task ended on `status_w`."""
    try:
        _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)  # its parent killed: all die
        _drop_capabilities()
        for sig in FORWARDED:
            signal.signal(sig, lambda signum, frame: os.kill(-1, signum))
        task = os.fork()
    except BaseException as exc:
        _fail_when_asked(ctl, allowed, exc)
    if task == 0:
        os.close(status_w)
        _task(ctl, allowed, HOME)
    status = 0
    while True:
        try:
            pid, status = os.waitpid(-1, 0)
        except ChildProcessError:
            break
        except InterruptedError:
            continue
        if pid == task:
            break
    _report(ctl, status)
    _write_all(status_w, struct.pack("i", status))
    os._exit(0)


def _await_request(
    ctl: socket.socket, allowed: list[str] | None
) -> tuple[dict[str, Any], int, int] | None:
    """Wait for the zygote to hand this prepared process its task: the request and its
    output and result descriptors. None: the zygote is gone (no task will come)."""
    try:
        body, fds = _receive(ctl, timeout=None)
    except (OSError, ValueError):
        return None
    if len(fds) != 2:
        return None
    request = json.loads(body)
    request["allowed"] = allowed
    return request, fds[0], fds[1]


def _task(ctl: socket.socket, allowed: list[str] | None, home: str) -> NoReturn:
    """The process that becomes the task (never returns). It keeps no way back to the
    zygote: its end is reported by its PID 1 (or, without a sandbox, seen by the zygote's
    wait), never by the task itself, which could lie about it."""
    try:
        asked = _await_request(ctl, allowed)
        ctl.close()
        if asked is None:
            os._exit(0)
        _libc.prctl(PR_SET_DUMPABLE, 1, 0, 0, 0)  # its own again (see main)
        request, out_fd, result_fd = asked
        code = 1
        try:
            code = _run_task(request, out_fd, result_fd, home)
        finally:
            _flush_and_exit(code)
    finally:
        os._exit(126)


def _report(ctl: socket.socket, status: int) -> None:
    """How the task ended (a wait status), to the zygote; the first report counts."""
    with contextlib.suppress(OSError):
        ctl.send(struct.pack("i", status))


def _fail_when_asked(ctl: socket.socket, allowed: list[str] | None, exc: BaseException) -> NoReturn:
    """The task's process could not be prepared: say so in its log when it is asked for."""
    asked = _await_request(ctl, allowed)
    if asked is not None:
        with contextlib.suppress(OSError):
            os.write(asked[1], f"the task's process could not be made: {exc}\n".encode())
    os._exit(126)


def _flush_and_exit(code: int) -> NoReturn:
    for stream in (sys.stdout, sys.stderr):
        with contextlib.suppress(Exception):
            stream.flush()
    os._exit(code)


def _close_others(keep: set[int]) -> None:
    """Close every descriptor above stderr but `keep` (the task gets no other)."""
    low = 3
    for fd in sorted(keep):
        if fd >= low:
            os.closerange(low, fd)
            low = fd + 1
    os.closerange(low, 1 << 20)


def _prepare(ctl_fd: int, allowed: list[str] | None, task_dir: str, isolate: bool) -> NoReturn:
    """A process prepared for the next task, before it is asked for (never returns): the
    zygote forks it after each task starts, so a task's request finds its namespaces made
    and its PID 1 running, and only has to be handed over (`ctl`: the zygote's socket)."""
    _close_others({ctl_fd})
    ctl = socket.socket(fileno=ctl_fd)
    try:
        os.setsid()
        _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)  # the zygote gone: so is this
        if not isolate:
            _task(ctl, allowed, f"{task_dir}/home")
        # Its own /proc files must be writable to map its user namespace: dumpable for
        # that moment only (the zygote is not: see main).
        _libc.prctl(PR_SET_DUMPABLE, 1, 0, 0, 0)
        _private_namespaces(task_dir)
        _libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)
        status_r, status_w = os.pipe()
        init = os.fork()
    except BaseException as exc:
        _fail_when_asked(ctl, allowed, exc)
    if init == 0:
        os.close(status_r)
        _init(ctl, allowed, status_w)
    os.close(status_w)
    ctl.close()
    for sig in FORWARDED:
        signal.signal(sig, lambda signum, frame: os.kill(init, signal.SIGTERM))
    raw = b""
    while len(raw) < 4:
        try:
            chunk = os.read(status_r, 4 - len(raw))
        except InterruptedError:
            continue
        if not chunk:
            break
        raw += chunk
    if len(raw) < 4:  # the init was killed (SIGKILL): the task with it
        os.kill(os.getpid(), signal.SIGKILL)
    # No wait for the init's end: the namespace's teardown (the kernel killing what the
    # task left) need not delay the task's reported end; the sandbox's PID 1 reaps it.
    _exit_like(struct.unpack("i", raw)[0])


# --- the zygote's loop -----------------------------------------------------------------------


def _receive(conn: socket.socket, timeout: float | None = 30) -> tuple[bytearray, list[int]]:
    conn.settimeout(timeout)
    size_of_fds = socket.CMSG_SPACE(2 * array.array("i").itemsize)
    head, ancillary, _, _ = conn.recvmsg(4, size_of_fds)
    fds = array.array("i")
    for level, kind, data in ancillary:
        if level == socket.SOL_SOCKET and kind == socket.SCM_RIGHTS:
            fds.frombytes(data[: len(data) - (len(data) % fds.itemsize)])
    while 0 < len(head) < 4:
        more = conn.recv(4 - len(head))
        if not more:
            break
        head += more
    if len(head) < 4:
        raise ValueError("the request ended early")
    (length,) = struct.unpack(">I", head)
    if length > MAX_REQUEST:
        raise ValueError("the request is too large")
    body = bytearray(length)  # received in place: no copy of the request is left behind
    view, got = memoryview(body), 0
    try:
        while got < length:
            n = conn.recv_into(view[got:])
            if not n:
                raise ValueError("the request ended early")
            got += n
    except BaseException:
        body[:] = bytes(length)
        for fd in fds:
            with contextlib.suppress(OSError):
                os.close(fd)
        raise
    conn.settimeout(None)
    return body, list(fds)


class Zygote:
    def __init__(self, config: dict[str, Any]) -> None:
        self.isolate = bool(config.get("isolate"))
        self.tasks_dir = config["tasks"]
        self.allowed = config.get("allowed")
        self.errors: dict[str, str] = {}
        for module in config.get("preload", []):
            try:
                importlib.import_module(module)
            except BaseException as exc:
                self.errors[module] = "".join(traceback.format_exception_only(exc)).strip()
        self.selector = selectors.DefaultSelector()
        # pid -> (the worker's connection, the task's control socket, its directory)
        self.running: dict[int, tuple[socket.socket, socket.socket, str]] = {}
        self.leftovers: dict[int, str] = {}  # ended, not yet reaped: pid -> task directory
        self.counter = 0
        os.makedirs(self.tasks_dir, mode=0o700, exist_ok=True)
        self.listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        with contextlib.suppress(FileNotFoundError):
            os.unlink(config["socket"])
        self.listener.bind(config["socket"])
        self.listener.listen(64)
        self.wakeup_r, wakeup_w = os.pipe()
        os.set_blocking(self.wakeup_r, False)
        os.set_blocking(wakeup_w, False)
        signal.set_wakeup_fd(wakeup_w)
        signal.signal(signal.SIGCHLD, lambda signum, frame: None)
        self.selector.register(self.listener, selectors.EVENT_READ, "accept")
        self.selector.register(self.wakeup_r, selectors.EVENT_READ, "reap")
        self.spare: tuple[int, socket.socket, str] | None = None
        # What was imported stays out of the collector's reach: a child's collection would
        # otherwise write to every object's header, copying the zygote's pages one by one.
        gc.freeze()
        self._make_spare()

    def serve(self) -> None:
        while True:
            for key, _ in self.selector.select():
                if key.data == "accept":
                    self._accept()
                elif key.data == "reap":
                    with contextlib.suppress(BlockingIOError):
                        while os.read(self.wakeup_r, 512):
                            pass
                    self._reap()
                elif isinstance(key.data, tuple):
                    self._ended(key.data[1])
                else:
                    self._control(key.fileobj, key.data)  # type: ignore[arg-type]

    def _accept(self) -> None:
        conn, _ = self.listener.accept()
        fds: list[int] = []
        body = bytearray()
        try:
            body, fds = _receive(conn)
            if not fds:
                if json.loads(body) != {"op": "hello"}:
                    raise ValueError("expected a task's request with its descriptors")
                self._reply(conn, {"pid": os.getpid(), "errors": self.errors})
                conn.close()
                return
            if len(fds) != 2:
                raise ValueError("a task needs its output and result descriptors")
            self._start(conn, body, fds[0], fds[1])
        except (OSError, ValueError) as exc:
            for fd in fds:
                with contextlib.suppress(OSError):
                    os.close(fd)
            with contextlib.suppress(OSError):
                self._reply(conn, {"error": str(exc)})
            conn.close()
        finally:
            # The request holds the task's rendered kwargs and environment, secrets
            # included: the zygote never parses it and wipes it, so no later fork has it.
            body[:] = bytes(len(body))

    def _make_spare(self) -> None:
        """Fork the process the next task will run in (see `_prepare`)."""
        self.counter += 1
        task_dir = os.path.join(self.tasks_dir, str(self.counter))
        for part in ("", "home", "tmp"):
            os.mkdir(os.path.join(task_dir, part), 0o700)
        mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
        pid = os.fork()
        if pid == 0:
            signal.set_wakeup_fd(-1)
            _prepare(theirs.detach(), self.allowed, task_dir, self.isolate)
        theirs.close()
        self.spare = (pid, mine, task_dir)

    def _start(self, conn: socket.socket, body: bytearray, out_fd: int, result_fd: int) -> None:
        fds = array.array("i", [out_fd, result_fd]).tobytes()
        for _ in range(2):  # a prepared process that died meanwhile: prepare another
            if self.spare is None:
                self._make_spare()
            assert self.spare is not None
            pid, ctl, task_dir = self.spare
            self.spare = None
            try:
                ctl.sendmsg(
                    [struct.pack(">I", len(body))], [(socket.SOL_SOCKET, socket.SCM_RIGHTS, fds)]
                )
                ctl.sendall(body)
                break
            except OSError:
                ctl.close()
                with contextlib.suppress(ProcessLookupError):
                    os.kill(pid, signal.SIGKILL)
                _remove(task_dir)
        else:
            raise OSError("no process could be prepared for the task")
        os.close(out_fd)
        os.close(result_fd)
        self.running[pid] = (conn, ctl, task_dir)
        self.selector.register(conn, selectors.EVENT_READ, pid)
        self.selector.register(ctl, selectors.EVENT_READ, ("ended", pid))
        self._reply(conn, {"started": pid})
        self._make_spare()  # the next task's, off this one's way

    def _control(self, conn: socket.socket, pid: int) -> None:
        try:
            data = conn.recv(64)
        except OSError:
            data = b""
        if pid not in self.running:
            return
        if data.startswith(b"TERM"):
            self._signal(pid, signal.SIGTERM)
        else:  # KILL, or the worker closed the connection (gave up, or died)
            self._signal(pid, signal.SIGKILL)
            if not data:
                self.selector.unregister(conn)

    def _signal(self, pid: int, sig: int) -> None:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            if self.isolate:
                os.kill(pid, sig)  # the child passes SIGTERM on; SIGKILL ends its namespace
            else:
                os.killpg(pid, sig)

    def _ended(self, pid: int) -> None:
        """The task (or its PID 1) reported its end on the control socket."""
        entry = self.running.get(pid)
        if entry is None:
            return
        try:
            raw = entry[1].recv(4)
        except OSError:
            raw = b""
        if len(raw) == 4:
            self._finish(pid, struct.unpack("i", raw)[0])
        else:  # closed without a report (killed): its process's end will tell
            self.selector.unregister(entry[1])

    def _reap(self) -> None:
        while True:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                return
            if pid == 0:
                return
            if self.spare is not None and pid == self.spare[0]:  # it died unused
                self.spare[1].close()
                _remove(self.spare[2])
                self.spare = None
                continue
            if pid in self.running:
                self._finish(pid, status)
            if not self.isolate:  # whatever the task left in its group goes with it
                with contextlib.suppress(ProcessLookupError, PermissionError):
                    os.killpg(pid, signal.SIGKILL)
            task_dir = self.leftovers.pop(pid, None)
            if task_dir is not None:
                _remove(task_dir)

    def _finish(self, pid: int, status: int) -> None:
        """Tell the worker how the task ended (once); its directory goes when it is reaped."""
        conn, ctl, task_dir = self.running.pop(pid)
        self.leftovers[pid] = task_dir
        self._signal(pid, signal.SIGKILL)  # whatever the task left running ends with it
        if os.WIFSIGNALED(status):
            report: dict[str, int] = {"signal": os.WTERMSIG(status)}
        else:
            report = {"exit": os.waitstatus_to_exitcode(status)}
        for sock in (conn, ctl):
            with contextlib.suppress(KeyError, ValueError):
                self.selector.unregister(sock)
        with contextlib.suppress(OSError):
            self._reply(conn, report)
        conn.close()
        ctl.close()

    @staticmethod
    def _reply(conn: socket.socket, message: dict[str, Any]) -> None:
        conn.sendall(json.dumps(message).encode() + b"\n")


def _remove(path: str) -> None:
    """A task's directories; it may have closed some to itself (chmod 000)."""
    for parent, dirs, _ in os.walk(path):
        for name in dirs:
            full = os.path.join(parent, name)
            if not os.path.islink(full):
                with contextlib.suppress(OSError):
                    os.chmod(full, 0o700)
    shutil.rmtree(path, ignore_errors=True)


def main() -> None:
    config = json.loads(sys.argv[1])
    for sig in RESTORED:
        signal.signal(sig, signal.SIG_DFL)
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)  # a worker gone mid-reply is not our death
    # Not dumpable: a task (same uid) cannot open this process's descriptors (the worker
    # connections, the listening socket) or memory through /proc. Inherited by the
    # prepared processes and their PID 1; each task's own process is made dumpable again.
    _libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)
    Zygote(config).serve()


if __name__ == "__main__":
    main()
