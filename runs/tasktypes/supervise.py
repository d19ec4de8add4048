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

`supervise.py --init <status fd> <rlimits> -- argv...` is the other use: PID 1 of a task's
sandbox (runs/tasktypes/sandbox.py). There it applies the limits, starts the task, reaps
every orphan, passes SIGTERM (a timeout, a cancel) on to every process of the sandbox, and
when the task ends, writes how it ended to the status descriptor and exits: the kernel then
kills whatever the task left behind in its PID namespace. PID 1 cannot die by a signal it
sends itself, so the status, not its exit code, says whether the task was killed by a
signal.

Run with `-I -S` and no imports beyond the standard library, so it starts in milliseconds.
"""

from __future__ import annotations

# The C module itself: `signal` imports enum, which would cost each task's start ~5 ms.
import _signal as signal  # type: ignore[import-not-found]
import os
import sys

PR_SET_PDEATHSIG = 1


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


def init(status_fd: int, limits: dict[str, int], command: list[str]) -> int:
    """PID 1 of a sandbox: see the module's docstring. The status written is one of
    `exit <code>`, `signal <number>`, `error <message>`."""
    os.set_inheritable(status_fd, False)
    for sig in FORWARDED:
        signal.signal(sig, lambda signum, frame: os.kill(-1, signum))
    errors, error_out = os.pipe()  # both close-on-exec: empty once exec succeeded
    pid = os.fork()
    if pid == 0:
        try:
            for sig in (*FORWARDED, *RESTORED):
                signal.signal(sig, signal.SIG_DFL)
            set_rlimits(limits, extra_processes=1)  # PID 1 counts too
            os.closerange(3, error_out)
            os.closerange(error_out + 1, 1 << 20)
            os.execvp(command[0], command)  # noqa: S606 (the task's own argv)
        except OSError as exc:
            os.write(error_out, f"could not start {command[0]!r}: {exc.strerror}".encode())
        os._exit(127)
    os.close(error_out)
    failed = os.read(errors, 4096).decode("utf-8", "replace")
    status = 0
    while True:  # reap every orphan; the task's own end ends the sandbox
        try:
            reaped, status = os.waitpid(-1, 0)
        except ChildProcessError:
            break
        if reaped == pid:
            break
    if failed:
        report, code = f"error {failed}", 127
    elif os.WIFSIGNALED(status):
        report, code = f"signal {os.WTERMSIG(status)}", 128 + os.WTERMSIG(status)
    else:
        code = os.waitstatus_to_exitcode(status)
        report = f"exit {code}"
    os.write(status_fd, report.encode())
    return code


def main(argv: list[str]) -> int:
    parent, limits, separator, *command = argv
    if separator != "--" or not command:
        print(
            "usage: supervise.py <parent pid> <rlimits> -- command [args...]\n"
            "       supervise.py --init <status fd>:<rlimits> -- command [args...]",
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
