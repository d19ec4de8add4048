"""A task's child process, supervised:
`python -I -S supervise.py <worker pid> <rlimits as JSON> -- argv...`.

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

Run with `-I -S` and no imports beyond the standard library, so it starts in milliseconds.
"""

from __future__ import annotations

import ctypes
import os
import signal
import sys

PR_SET_PDEATHSIG = 1


def _die_with_parent(expected_parent: int) -> None:
    if not sys.platform.startswith("linux"):
        return
    libc = ctypes.CDLL(None, use_errno=True)  # the interpreter's own symbols include libc's
    libc.prctl(PR_SET_PDEATHSIG, signal.SIGHUP)
    if os.getppid() != expected_parent:  # the worker died before the request took effect
        os.killpg(0, signal.SIGKILL)


def _set_rlimits(limits: str) -> None:
    import json  # only when needed: every import costs each task's start
    import resource

    units = {
        "cpu_seconds": (resource.RLIMIT_CPU, 1),
        "memory_mb": (resource.RLIMIT_AS, 1024 * 1024),
        "open_files": (resource.RLIMIT_NOFILE, 1),
        "processes": (resource.RLIMIT_NPROC, 1),
    }
    for name, value in json.loads(limits).items():
        if value is not None:
            which, unit = units[name]
            resource.setrlimit(which, (value * unit, value * unit))


def main(argv: list[str]) -> int:
    parent, limits, separator, *command = argv
    if separator != "--" or not command:
        print("usage: supervise.py <parent pid> <rlimits> -- command [args...]", file=sys.stderr)
        return 2
    _die_with_parent(int(parent))
    pid = os.fork()
    if pid == 0:
        try:
            if limits != "{}":
                _set_rlimits(limits)
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
    sys.exit(main(sys.argv[1:]))
