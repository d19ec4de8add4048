"""A task's child process, supervised:
`python -I -S supervise.py <worker pid> <rlimits> -- argv...` (`+<worker pid>` when started
under `setpriv --pdeathsig HUP`), rlimits as
`name=value,...` (e.g. `memory_mb=256,processes=20`; no JSON: importing json would cost
each task's start some milliseconds).

The worker starts tasks in a process group of their own (so a timeout or a cancel can kill
every process a task started). The catch: when the worker process itself dies (SIGKILL, the
OOM killer), nobody is left to kill that group, and the task, grandchildren included, runs
on beside the retry of the same task. This small supervisor closes that gap: it asks the
kernel for SIGHUP when its parent dies (PR_SET_PDEATHSIG), runs the task as its child in the
same group, and on that signal kills the whole group.

SIGTERM sent to the group (the worker's timeout or cancel) is ignored here: the task gets
its grace period and the worker SIGKILLs the group after it, supervisor included. The exit
status of the task is passed on unchanged (an exit code, or death by the same signal).

It also applies the task's resource limits (`rlimits`) to the task before exec: preexec_fn
is not safe in a threaded worker.

`supervise.py --init <status fd>:<rlimits> -- argv...` is the other use: PID 1 of a task's
sandbox (runs/tasktypes/sandbox.py). There it applies the limits, starts the task, reaps
every orphan, passes SIGTERM (a timeout, a cancel) on to every process of the sandbox, and
when the task ends, writes how it ended to the status descriptor and exits: the kernel then
kills whatever the task left behind in its PID namespace. PID 1 cannot die by a signal it
sends itself, so the status, not its exit code, says whether the task was killed by a
signal.

`supervise.py --serve <status fd>:<control fd>` is PID 1 of a sandbox made before its
tasks are known (runs/tasktypes/process.py, `Prestarted`), which serves one task after
another: it waits for a task's argv, environment, working directory and limits on the
control descriptor (`encode_request`) and runs it as `--init` does (its limits set in the
forked task alone: the next task has its own). When the task ends it kills and reaps
whatever the task left and reports the status; after a request marked `last` it exits,
after the others it empties what a task can write (its HOME
and /tmp, /dev/shm, /dev/mqueue, the System V IPC objects of its namespace) and writes
`ready`, or `spent` if something could not be removed, or a mount lies inside them (a
tenant's directory bound under /tmp: emptying would reach into it), and exits then. The control
descriptor's end before a request: no more tasks, and it exits quietly. The compiled PID 1
(sandbox_init.c) does the same.

Run with `-I -S` and no imports beyond the standard library, so it starts in milliseconds.
"""

from __future__ import annotations

# The C module itself: `signal` imports enum, which would cost each task's start ~5 ms.
import _signal as signal  # type: ignore[import-not-found]
import os
import sys

PR_SET_PDEATHSIG = 1
PR_SET_DUMPABLE = 4
# keyctl(2) (linux/keyctl.h), through syscall(2): the C library has no wrapper.
KEYCTL_JOIN_SESSION_KEYRING = 1
KEYCTL_CLEAR = 7
KEY_SPEC_USER_KEYRING = -4
KEY_SPEC_USER_SESSION_KEYRING = -5
SYS_KEYCTL = {"x86_64": 250, "aarch64": 219, "ppc64le": 280, "s390x": 280}
F_SETSIG = 10  # Linux's fcntl command, which the fcntl module does not name
_SERVING: list = []  # type: ignore[type-arg]  # --serve: [libc] (ctypes), once PID 1 serves tasks


def _die_with_parent(expected_parent: int, already_asked: bool) -> None:
    """`already_asked`: started through `setpriv --pdeathsig HUP`, which made the request
    before exec and spares this process importing ctypes (about 5 ms of each start)."""
    if not sys.platform.startswith("linux"):
        return
    if already_asked:
        if os.getppid() != expected_parent:  # the worker died before setpriv's request
            os.killpg(0, signal.SIGKILL)
        return
    import ctypes

    libc = ctypes.CDLL(None, use_errno=True)  # the interpreter's own symbols include libc's
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGHUP)
    if os.getppid() != expected_parent:  # the worker died before the request took effect
        os.killpg(0, signal.SIGKILL)


def parse_limits(text: str) -> dict[str, int]:
    pairs = (item.partition("=") for item in text.split(",") if item)
    return {name: int(value) for name, _, value in pairs}


def format_limits(limits: dict[str, int]) -> str:
    return ",".join(f"{name}={value}" for name, value in limits.items() if value)


def set_rlimits(limits: dict[str, int], extra_processes: int = 0) -> None:
    import resource  # only when needed: every import costs each task's start

    units = {
        "cpu_seconds": (resource.RLIMIT_CPU, 1),
        "memory_mb": (resource.RLIMIT_AS, 1024 * 1024),
        "open_files": (resource.RLIMIT_NOFILE, 1),
        "processes": (resource.RLIMIT_NPROC, 1),
        "file_size_mb": (resource.RLIMIT_FSIZE, 1024 * 1024),
    }
    for name, value in limits.items():
        if value:
            which, unit = units[name]
            soft = value * unit + (extra_processes if name == "processes" else 0)
            # CPU: SIGXCPU at the limit (the task's failure names it), SIGKILL a second on.
            hard = soft + 1 if name == "cpu_seconds" else soft
            resource.setrlimit(which, (soft, hard))


FORWARDED = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP)
# Python ignores these at start-up; a task must get the defaults (a pipeline's `head`
# ending `yes`, a write past the file size limit).
RESTORED = (signal.SIGPIPE, signal.SIGXFSZ)


# Below this memory limit the task is forked, its limits set in the child: PID 1 (this
# interpreter) could not live under them itself (see `_spawn`).
SPAWN_MIN_MEMORY_MB = 256


def init(
    status_fd: int,
    limits: dict[str, int],
    command: list[str],
    env: dict[str, str] | None = None,
) -> int:
    """PID 1 of a sandbox: see the module's docstring. The status written is one of
    `exit <code>`, `signal <number>`, `error <message>`. `env`: the task's environment
    (None: this process's own)."""
    os.set_inheritable(status_fd, False)
    for sig in FORWARDED:
        signal.signal(sig, lambda signum, frame: os.kill(-1, signum))
    memory = limits.get("memory_mb") or 0
    if memory and memory < SPAWN_MIN_MEMORY_MB:
        pid, failed = _fork(limits, command, env)
    else:
        pid, failed = _spawn(limits, command, env)
    return _report(status_fd, _reap_until(pid), failed)


def _reap_until(pid: int) -> int:
    """Every orphan reaped until the task `pid` ends (0: none started); its wait status."""
    status = 0
    while pid:
        try:
            reaped, status = os.waitpid(-1, 0)
        except ChildProcessError:
            break
        if reaped == pid:
            break
    return status


def _report(status_fd: int, status: int, failed: str) -> int:
    """The status line written (one write), the exit code returned."""
    if failed:
        report, code = f"error {failed}", 127
    elif os.WIFSIGNALED(status):
        report, code = f"signal {os.WTERMSIG(status)}", 128 + os.WTERMSIG(status)
    else:
        code = os.waitstatus_to_exitcode(status)
        report = f"exit {code}"
    os.write(status_fd, report.replace("\n", " ").encode()[:4095] + b"\n")
    return code


def _spawn(
    limits: dict[str, int], command: list[str], env: dict[str, str] | None
) -> tuple[int, str]:
    """The task started with posix_spawn, about a millisecond sooner than a fork of this
    interpreter and an exec. It cannot set the child's limits, so they are set on PID 1
    itself, which the child inherits (PID 1 counts towards `processes`; it uses no more
    CPU, memory, files or descriptors). (its pid, or 0 and why it could not start)"""
    set_rlimits(limits, extra_processes=1)
    for name in os.listdir("/proc/self/fd"):  # only 0, 1 and 2 pass to the task
        if int(name) > 2:
            try:  # noqa: SIM105 (importing contextlib would slow every start)
                os.set_inheritable(int(name), False)
            except OSError:
                pass  # the directory's own descriptor, closed by now
    environment = dict(os.environ) if env is None else env
    path = _find(command[0], environment.get("PATH", os.defpath))
    try:
        pid = os.posix_spawn(path, command, environment, setsigdef=(*FORWARDED, *RESTORED))
    except OSError as exc:
        return 0, f"could not start {command[0]!r}: {exc.strerror}"
    return pid, ""


def _find(name: str, path: str) -> str:
    """What exec would run for `name`, searched in the task's own PATH (as execvpe does;
    posix_spawnp would search this process's)."""
    if "/" in name:
        return name
    for directory in path.split(":"):
        candidate = f"{directory or '.'}/{name}"
        if os.access(candidate, os.X_OK) and not os.path.isdir(candidate):
            return candidate
    return name  # not found: posix_spawn says so


def _fork(
    limits: dict[str, int], command: list[str], env: dict[str, str] | None
) -> tuple[int, str]:
    """The task forked, its limits set in the child. (its pid, or 0 and why it could not
    start)"""
    errors, error_out = os.pipe()  # both close-on-exec: empty once exec succeeded
    pid = os.fork()
    if pid == 0:
        failed = ""
        try:
            for sig in (*FORWARDED, *RESTORED):
                signal.signal(sig, signal.SIG_DFL)
            if _SERVING:  # a session keyring of the task's own (not PID 1's, which stays)
                _keyctl(KEYCTL_JOIN_SESSION_KEYRING, 0)
            try:
                set_rlimits(limits, extra_processes=1)  # PID 1 counts too
            except (OSError, ValueError) as exc:
                failed = f"could not set the task's limits: {exc}"
                raise
            os.closerange(3, error_out)
            os.closerange(error_out + 1, 1 << 20)
            if env is None:
                os.execvp(command[0], command)  # noqa: S606 (the task's own argv)
            os.execvpe(command[0], command, env)  # noqa: S606 (the task's own argv)
        except OSError as exc:
            failed = failed or f"could not start {command[0]!r}: {exc.strerror}"
        except BaseException as exc:  # nothing may unwind into PID 1's loop
            failed = failed or f"could not start {command[0]!r}: {exc}"
        os.write(error_out, failed.encode())
        os._exit(127)
    os.close(error_out)
    failed = os.read(errors, 4096).decode("utf-8", "replace")
    os.close(errors)
    if failed:
        os.waitpid(pid, 0)
        return 0, failed
    return pid, ""


def encode_request(
    argv: list[str], env: dict[str, str], cwd: str, limits: dict[str, int], *, last: bool
) -> bytes:
    """What a `--serve` supervisor reads: `<length>\\0` and the request, NUL-separated fields,
    counts first (an argument may be empty; none may hold a NUL, which exec could not pass
    anyway). `last`: the sandbox ends after this task, nothing of it emptied (what the task
    leaves is its caller's to read); otherwise it is made ready for the next."""
    fields = [str(len(argv)), *argv, str(len(env))]
    fields += [f"{name}={value}" for name, value in env.items()]
    fields += [cwd, format_limits(limits), "last" if last else "more"]
    if any("\0" in field for field in fields):
        raise ValueError("an argument or environment value holds a NUL byte")
    request = "\0".join(fields).encode("utf-8", "surrogateescape")
    return b"%d\0" % len(request) + request


def decode_request(
    data: bytes,
) -> tuple[list[str], dict[str, str], str, dict[str, int], bool]:
    fields = data.decode("utf-8", "surrogateescape").split("\0")
    count = int(fields[0])
    argv, at = fields[1 : 1 + count], 1 + count
    count = int(fields[at])
    pairs = (item.partition("=") for item in fields[at + 1 : at + 1 + count])
    env = {name: value for name, _, value in pairs}
    at += 1 + count
    last = fields[at + 2 : at + 3] == ["last"]
    return argv, env, fields[at], parse_limits(fields[at + 1]), last


MAX_DEPTH = 256  # directories deeper than this are not emptied: the sandbox is spent
# What a task can write in its sandbox (its own HOME and /tmp, /dev/shm, /dev/mqueue).
WRITABLE = ("/home/task", "/tmp", "/dev/shm", "/dev/mqueue")  # noqa: S108


def serve(status_fd: int, control_fd: int) -> int:
    """PID 1 of a sandbox made ahead of its tasks: see the module's docstring."""
    import ctypes
    import fcntl
    import resource  # noqa: F401 (now, while nothing waits: set_rlimits needs it)

    libc = ctypes.CDLL(None, use_errno=True)
    libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)  # no task may trace PID 1 or open its fds
    _SERVING.append(libc)
    for fd in (status_fd, control_fd):
        os.set_inheritable(fd, False)
    for sig in FORWARDED:
        signal.signal(sig, _pass_on)
    modes = {}
    for path in WRITABLE:
        try:  # noqa: SIM105 (no contextlib: see the imports)
            modes[path] = os.lstat(path).st_mode & 0o7777
        except OSError:
            pass
    once = _mounts_inside(tuple(modes))
    code = 0
    while True:
        request = _read_request(control_fd)
        if request is None:
            return code
        if not request:
            os.write(status_fd, b"error the sandbox could not read its task\n")
            return 127
        argv, env, cwd, limits, last = decode_request(request)
        for fd in (0, 1, 2):  # the same open files for every task: its flags cleared
            for command in (fcntl.F_SETFL, fcntl.F_SETOWN, F_SETSIG):
                fcntl.fcntl(fd, command, 0)
        try:
            os.chdir(cwd)
        except OSError as exc:
            failed = f"cannot enter the working directory {cwd!r}: {exc.strerror}"
            code = _report(status_fd, 0, failed)
        else:
            pid, failed = _fork(limits, argv, env)
            status = _reap_until(pid)
            _end_all()  # before the status: no output of a leftover can follow it
            code = _report(status_fd, status, failed)
        if last:
            return code
        os.chdir("/")
        if once or not _tidy(modes):
            os.write(status_fd, b"spent\n")
            return code
        os.write(status_fd, b"ready\n")


def _mounts_inside(paths: tuple[str, ...]) -> bool:
    """Whether a mount lies inside one of `paths` (a tenant's directory bound under /tmp):
    the sandbox then serves one task only, since emptying them would reach into it."""
    try:
        with open("/proc/self/mountinfo") as table:
            points = [line.split()[4] for line in table if len(line.split()) > 4]
    except OSError:
        return True
    return any(point.startswith(f"{path}/") for point in points for path in paths)


def _read_request(fd: int) -> bytes | None:
    """The next request; None at the descriptor's end before one, b"" if malformed."""
    length = b""
    while (byte := os.read(fd, 1)) != b"\0":
        if not byte:
            return None if not length else b""
        if not byte.isdigit() or len(length) > 20:
            return b""
        length += byte
    wanted, chunks = int(length), []
    while wanted > 0:
        chunk = os.read(fd, min(wanted, 1 << 20))
        if not chunk:
            return b""
        chunks.append(chunk)
        wanted -= len(chunk)
    return b"".join(chunks)


def _end_all() -> None:
    """Every process of the sandbox but PID 1 killed and reaped (killed again after each one
    reaped, so that one forked meanwhile cannot slip through)."""
    while True:
        try:  # noqa: SIM105 (importing contextlib would slow every start)
            os.kill(-1, signal.SIGKILL)
        except ProcessLookupError:
            pass
        try:
            os.waitpid(-1, 0)
        except ChildProcessError:
            return


def _pass_on(signum: int, frame: object) -> None:
    """A signal to PID 1 (a timeout, a cancel) passed on to every process of the sandbox."""
    try:  # noqa: SIM105 (no contextlib: see the imports)
        os.kill(-1, signum)
    except ProcessLookupError:
        pass  # none left: the task has just ended


def _keyctl(operation: int, argument: int) -> bool:
    """keyctl(operation, argument); False if it failed for a reason other than keyctl being
    refused altogether (a seccomp profile: then no task can add a key either)."""
    import ctypes  # loaded already (serve)

    number = SYS_KEYCTL.get(os.uname().machine)
    if number is None:
        return False
    libc = _SERVING[0]
    if libc.syscall(number, operation, ctypes.c_long(argument)) == 0:
        return True
    return ctypes.get_errno() in (1, 38)  # EPERM, ENOSYS


def _tidy(modes: dict[str, int]) -> bool:
    """What the last task could write emptied for the next one; False if something is
    left."""
    try:
        return _tidy_all(modes)
    except Exception:  # whatever went wrong, the sandbox is not used again
        return False


def _tidy_all(modes: dict[str, int]) -> bool:
    import ctypes  # loaded already (serve)

    libc = _SERVING[0]
    clean = True
    for path, mode in modes.items():
        try:
            os.chmod(path, mode)
            for name in os.listxattr(path, follow_symlinks=False):
                if name.startswith(("user.", "system.posix_acl_")):
                    os.removexattr(path, name, follow_symlinks=False)
            clean = _empty(path) and clean
        except OSError:
            clean = False
    for keyring in (KEY_SPEC_USER_KEYRING, KEY_SPEC_USER_SESSION_KEYRING):
        clean = _keyctl(KEYCTL_CLEAR, keyring) and clean
    kinds = (("shm", "shmctl"), ("sem", "semctl"), ("msg", "msgctl"))
    for name, call in kinds:
        try:
            with open(f"/proc/sysvipc/{name}") as listing:
                ids = [int(line.split()[1]) for line in listing.readlines()[1:] if line.split()]
        except FileNotFoundError:
            continue
        except (OSError, ValueError, IndexError):
            return False
        for ipc_id in ids:  # IPC_RMID is 0; semctl takes a semaphore number before it
            args = (ipc_id, 0, 0) if name == "sem" else (ipc_id, 0, None)
            if getattr(libc, call)(*args) != 0 and ctypes.get_errno() not in (22, 43):
                clean = False  # neither EINVAL nor EIDRM: it is still there
    return clean


def _empty(path: str, depth: int = 0) -> bool:
    """Everything inside `path` removed (a directory the task closed to itself is opened
    first); False if something is left, or the tree is deeper than MAX_DEPTH."""
    if depth > MAX_DEPTH:
        return False
    clean = True
    with os.scandir(path) as entries:
        names = [entry.name for entry in entries]
    for name in names:
        full = os.path.join(path, name)
        try:
            os.unlink(full)
            continue
        except IsADirectoryError:
            pass
        except OSError:
            clean = False
            continue
        try:
            os.chmod(full, 0o700, follow_symlinks=False)
            clean = _empty(full, depth + 1) and clean
            os.rmdir(full)
        except OSError:
            clean = False
    return clean


def main(argv: list[str]) -> int:
    if argv[:1] == ["--serve"] and len(argv) == 2:
        status_fd, _, control_fd = argv[1].partition(":")
        return serve(int(status_fd), int(control_fd))
    parent, limits, separator, *command = argv
    if separator != "--" or not command:
        print(
            "usage: supervise.py <parent pid> <rlimits> -- command [args...]\n"
            "       supervise.py --init <status fd>:<rlimits> -- command [args...]\n"
            "       supervise.py --serve <status fd>:<control fd>",
            file=sys.stderr,
        )
        return 2
    if parent == "--init":
        status_fd, _, limits = limits.partition(":")
        return init(int(status_fd), parse_limits(limits), command)
    # "+<pid>": the parent death signal is already asked for (see _die_with_parent).
    _die_with_parent(int(parent.lstrip("+")), already_asked=parent.startswith("+"))
    pid = os.fork()
    if pid == 0:
        try:
            for sig in RESTORED:
                signal.signal(sig, signal.SIG_DFL)
            if limits:
                set_rlimits(parse_limits(limits))
            os.execvp(command[0], command)  # noqa: S606 (the task's own argv, as the spec says)
        except OSError as exc:
            print(f"could not start {command[0]!r}: {exc}", file=sys.stderr)
            os._exit(127)
    signal.signal(signal.SIGHUP, lambda signum, frame: os.killpg(0, signal.SIGKILL))
    signal.signal(signal.SIGTERM, lambda signum, frame: None)
    while True:
        try:
            _, status = os.waitpid(pid, 0)
            break
        except ChildProcessError:
            return 1
    if os.WIFSIGNALED(status):
        sig = os.WTERMSIG(status)
        if sig not in (signal.SIGKILL, signal.SIGSTOP):
            signal.signal(sig, signal.SIG_DFL)
        os.kill(os.getpid(), sig)
    return os.waitstatus_to_exitcode(status)


if __name__ == "__main__":
    code = main(sys.argv[1:])
    sys.stderr.flush()
    os._exit(code)  # no interpreter teardown: it would delay the task's end by milliseconds
