"""Sandboxes made ahead of their task (runs/tasktypes/process.py, `Prestarted`; `--serve`
of the compiled PID 1 and of supervise.py, every test over both): the next shell task of
the same tenant and settings takes the one waiting, gets its own limits, environment,
working directory and a fresh workspace, and one that waited too long, died or was made
for other settings is never used."""

from __future__ import annotations

import os
import signal
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from runs.tasktypes.process import (
    PRESTARTED,
    OutputSink,
    ProcessResult,
    SandboxProcess,
    run_process,
)
from runs.tasktypes.sandbox import HOME, Limits, Sandbox, probe
from tests.runs.tasktypes.test_sandbox import pid1  # noqa: F401 (the fixture: both PID 1s)
from tests.workers import wait_for

UID = 200_000 + 4545
ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": HOME, "LANG": "C.UTF-8"}

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the suite runs as root in CI")


@pytest.fixture(scope="module", autouse=True)
def _bwrap_works() -> None:
    problem = probe(uid=UID)
    assert problem is None, f"the sandbox must work where the suite runs: {problem}"


@pytest.fixture(autouse=True)
def _nothing_waiting() -> Iterator[None]:
    PRESTARTED.close()
    yield
    PRESTARTED.close()


@pytest.fixture
def make(tmp_path: Path, pid1: str) -> Callable[..., Sandbox]:  # noqa: F811
    for path in (tmp_path, *tmp_path.parents):  # the tasks' uids must get through
        if not os.stat(path).st_mode & 0o001:
            os.chmod(path, os.stat(path).st_mode | 0o001)

    def make(**options: object) -> Sandbox:
        options.setdefault("warm_seconds", 60.0)
        options.setdefault("init", pid1)
        return Sandbox(uid=UID, root=tmp_path / "sandboxes", **options)  # type: ignore[arg-type]

    return make


def run(
    sandbox: Sandbox, script: str, *, cwd: str | None = None, timeout: float | None = 30
) -> tuple[ProcessResult, str, int]:
    """(result, output, bwrap's pid)"""
    sink = OutputSink(10_000_000)
    pids: list[int] = []
    result = run_process(
        ["/bin/sh", "-c", script],
        env=ENV,
        cwd=cwd,
        timeout=timeout,
        sink=sink,
        sandbox=sandbox,
        on_start=pids.append,
    )
    return result, sink.drain().decode("utf-8", "replace"), pids[0]


def workspaces(sandbox: Sandbox) -> list[Path]:
    """The task workspaces under the root (beside them: the tasks' /etc and users)."""
    return [path for path in sandbox.root.iterdir() if path.name.startswith("task-")]


def waiting(sandbox: Sandbox) -> int:
    """The pid of the sandbox the next task takes, once all made ahead are there and the
    sandboxes of the tasks before were handed back."""
    PRESTARTED.settle()
    ready = wait_for(
        lambda: (
            len(PRESTARTED.waiting(sandbox)) == PRESTARTED.DEPTH and PRESTARTED.waiting(sandbox)
        ),
        10,
        "the sandboxes made ahead",
    )
    return int(ready[0].proc.pid)


def test_it_hands_the_next_task_the_sandbox_made_ahead(make: Callable[..., Sandbox]) -> None:
    sandbox = make()
    first, out, first_pid = run(sandbox, "echo one")
    assert (first.exit_code, out) == (0, "one\n")
    ahead = waiting(sandbox)
    assert ahead != first_pid
    second, out, second_pid = run(sandbox, "echo two; exit 3")
    assert (second.exit_code, out, second_pid) == (3, "two\n", ahead)


def test_a_task_gets_its_own_limits_environment_and_directory(
    make: Callable[..., Sandbox],
) -> None:
    sandbox = make()
    run(sandbox, "true")
    ahead = waiting(sandbox)
    limited = make(limits=Limits(open_files=64, file_size_mb=3))
    result, out, pid = run(
        limited,
        'ulimit -n; ulimit -f; pwd; echo "$HOME $LANG"; echo $$',
        cwd="data/in",
    )
    assert pid == ahead  # made with other limits: limits travel with the task
    assert result.exit_code == 0, out
    assert out.splitlines() == [
        "64",
        str(3 * 1024 * 1024 // 512),
        f"{HOME}/data/in",
        f"{HOME} C.UTF-8",
        "2",
    ]


def test_each_task_has_a_fresh_workspace(make: Callable[..., Sandbox]) -> None:
    sandbox = make()
    result, out, _ = run(sandbox, "echo left > $HOME/note; echo t > /tmp/t; ls $HOME /tmp")
    assert result.exit_code == 0, out
    waiting(sandbox)
    result, out, _ = run(sandbox, "ls -A $HOME /tmp")
    assert result.exit_code == 0
    assert "note" not in out
    assert "t\n" not in out
    # The used workspaces are removed (on the thread); only those waiting are left.
    wait_for(
        lambda: len(workspaces(sandbox)) == PRESTARTED.DEPTH,
        10,
        "used workspaces removed",
    )


def test_the_task_output_is_complete_when_it_ends(make: Callable[..., Sandbox]) -> None:
    sandbox = make()
    run(sandbox, "true")
    waiting(sandbox)
    result, out, _ = run(sandbox, "head -c 300000 /dev/zero | tr '\\0' x; echo; echo end")
    assert result.exit_code == 0
    assert out == "x" * 300_000 + "\nend\n"


def test_a_timeout_still_ends_the_task(make: Callable[..., Sandbox]) -> None:
    sandbox = make()
    run(sandbox, "true")
    waiting(sandbox)
    started = time.monotonic()
    result, _, _ = run(sandbox, "sleep 60", timeout=1)
    assert result.timed_out
    assert time.monotonic() - started < 10


def test_one_unused_too_long_is_discarded(make: Callable[..., Sandbox]) -> None:
    sandbox = make(warm_seconds=0.5)
    run(sandbox, "true")
    pid = waiting(sandbox)
    wait_for(lambda: len(PRESTARTED) == 0, 10, "the unused sandbox discarded")
    # Taken out of the list first, then killed, reaped and its workspace removed: all done
    # once the thread has finished that pass (a busy machine showed the gap).
    PRESTARTED.settle()
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)  # reaped: it is gone, not a zombie
    assert workspaces(sandbox) == []
    result, out, second = run(sandbox, "echo fresh")
    assert (result.exit_code, out) == (0, "fresh\n")
    assert second != pid


def test_one_that_died_while_waiting_is_replaced(make: Callable[..., Sandbox]) -> None:
    sandbox = make()
    run(sandbox, "true")
    pid = waiting(sandbox)
    ready = PRESTARTED.waiting(sandbox)[0]
    os.killpg(pid, signal.SIGKILL)
    wait_for(lambda: ready.proc.poll() is not None, 5, "the waiting sandbox killed")
    result, out, second = run(sandbox, "echo alive")
    assert (result.exit_code, out) == (0, "alive\n")
    assert second != pid


def test_other_settings_never_take_it(make: Callable[..., Sandbox]) -> None:
    sandbox = make()
    run(sandbox, "true")
    ahead = waiting(sandbox)
    offline = make(network="none")
    result, out, pid = run(offline, "cat /proc/net/dev | grep -c :")
    assert result.exit_code == 0
    assert pid != ahead
    assert out.strip() == "1"  # loopback only: a sandbox of its own settings


def test_a_missing_directory_or_command_is_named(make: Callable[..., Sandbox]) -> None:
    sandbox = make()
    result, _, _ = run(sandbox, "true", cwd="/no/such/dir")
    assert result.error == (
        "cannot enter the working directory '/no/such/dir': No such file or directory"
    )
    waiting(sandbox)
    sink = OutputSink(1000)
    result = run_process(
        ["no-such-command"], env=ENV, cwd=None, timeout=30, sink=sink, sandbox=sandbox
    )
    assert result.error == "could not start 'no-such-command': No such file or directory"


def test_a_small_memory_limit_is_set_in_the_task_alone(make: Callable[..., Sandbox]) -> None:
    sandbox = make(limits=Limits(memory_mb=64))
    result, out, _ = run(sandbox, "ulimit -v")
    assert (result.exit_code, out) == (0, f"{64 * 1024}\n")


def test_a_nul_byte_is_refused(make: Callable[..., Sandbox]) -> None:
    sandbox = make()
    sink = OutputSink(1000)
    result = run_process(
        ["/bin/echo", "a\0b"], env=ENV, cwd=None, timeout=30, sink=sink, sandbox=sandbox
    )
    assert result.error == (
        "could not start '/bin/echo': an argument or environment value holds a NUL byte"
    )


# --- one sandbox, task after task ------------------------------------------------------------


@pytest.fixture
def one_deep(monkeypatch: pytest.MonkeyPatch) -> None:
    """One sandbox waiting per settings: the next task takes the one the last task used."""
    monkeypatch.setattr(PRESTARTED, "DEPTH", 1)


def back_in_wait(sandbox: Sandbox, pid: int) -> None:
    PRESTARTED.settle()
    wait_for(
        lambda: [item.proc.pid for item in PRESTARTED.waiting(sandbox)] == [pid],
        10,
        "the used sandbox waiting again",
    )


# Left by a task through Python (Debian's, in /usr): what the shell cannot set.
LEAVE_BY_PYTHON = """
import ctypes, os, platform
os.setxattr("/home/task", "user.left", b"yes")
os.setxattr("/tmp", "user.left", b"yes")
os.set_blocking(1, False)
libc = ctypes.CDLL(None, use_errno=True)
KEYRINGS = (-4, -5, -3)  # user, user session, session keyrings
keyctl = {"x86_64": 250, "aarch64": 219}[platform.machine()]
add_key = {"x86_64": 248, "aarch64": 217}[platform.machine()]
for keyring in KEYRINGS:
    libc.syscall(add_key, b"user", b"left", b"secret", 6, ctypes.c_long(keyring))
found = [libc.syscall(keyctl, 10, ctypes.c_long(k), b"user", b"left", 0) > 0 for k in KEYRINGS]
print("found", found)
"""

# request_key looks in the task's own session keyring; KEYCTL_SEARCH (10) in the user's
# and the user session keyrings, which outlive a session.
LOOK_BY_PYTHON = """
import ctypes, os, platform
print("xattrs", os.listxattr("/home/task"), os.listxattr("/tmp"))
print("blocking", os.get_blocking(1))
libc = ctypes.CDLL(None, use_errno=True)
request_key = {"x86_64": 249, "aarch64": 218}[platform.machine()]
keyctl = {"x86_64": 250, "aarch64": 219}[platform.machine()]
print("keys", [libc.syscall(request_key, b"user", b"left", None, 0) > 0]
      + [libc.syscall(keyctl, 10, ctypes.c_long(k), b"user", b"left", 0) > 0 for k in (-4, -5)])
"""

LEAVE_EVERYTHING = """
echo home > $HOME/note; mkdir -p $HOME/deep/er; chmod 000 $HOME/deep
echo tmp > /tmp/t; mkdir -p /tmp/closed/inside; touch /tmp/closed/inside/f; chmod 000 /tmp/closed
echo shm > /dev/shm/segment; touch /dev/mqueue/queue
ipcmk -M 4096 >/dev/null; ipcmk -S 2 >/dev/null; ipcmk -Q >/dev/null
setsid sleep 300 & (sleep 1; echo LATE) &
chmod 000 $HOME
export LEFT=yes
echo done
"""

LOOK_AROUND = """
echo "env: ${LEFT:-unset}"
ls -A /home/task /tmp /dev/shm /dev/mqueue
echo "mode: $(stat -c %a /home/task) $(stat -c %a /tmp)"
ipcs | grep -c '^0x' || true
for p in /proc/[0-9]*; do cat $p/comm; done | grep -c sleep || true
sleep 1.5; echo two
"""


@pytest.mark.usefixtures("one_deep")
def test_the_next_task_finds_nothing_of_the_last(make: Callable[..., Sandbox]) -> None:
    sandbox = make()
    run(sandbox, "true")
    pid = waiting(sandbox)
    first, out, first_pid = run(sandbox, LEAVE_EVERYTHING)
    assert (first.exit_code, out, first_pid) == (0, "done\n", pid), out
    back_in_wait(sandbox, pid)
    second, out, second_pid = run(sandbox, LOOK_AROUND)
    assert second_pid == pid  # the same sandbox: bwrap and PID 1 made once
    assert second.exit_code == 0, out
    assert out.splitlines() == [
        "env: unset",
        "/dev/mqueue:",
        "",
        "/dev/shm:",  # noqa: S108 (the sandbox's own)
        "",
        "/home/task:",
        "",
        "/tmp:",  # noqa: S108 (the sandbox's own)
        "mode: 700 700",
        "0",  # no System V IPC object is left
        "0",  # no process of the last task (nor its late output above)
        "two",
    ]


@pytest.mark.usefixtures("one_deep")
def test_limits_are_the_tasks_own_in_a_sandbox_used_again(
    make: Callable[..., Sandbox],
) -> None:
    run(make(), "true")
    pid = waiting(make())
    result, out, used = run(make(limits=Limits(open_files=64, processes=3)), "ulimit -n; ulimit -p")
    assert (result.exit_code, used) == (0, pid), out
    assert out.split() == ["64", "4"]  # PID 1 counts towards the processes
    back_in_wait(make(), pid)
    result, out, used = run(make(), "ulimit -n; for i in 1 2 3 4 5; do true & done; wait")
    assert (result.exit_code, used) == (0, pid), out
    assert out.strip() != "64"


@pytest.mark.usefixtures("one_deep")
def test_only_home_tmp_and_the_ipc_directories_are_writable(
    make: Callable[..., Sandbox],
) -> None:
    sandbox = make()
    script = (
        "for p in /x /dev/x /orc/x /home/x /etc/x /home/task/x /tmp/x /dev/shm/x; do"
        ' touch $p 2>/dev/null && echo "$p"; done; true'
    )
    result, out, _ = run(sandbox, script)
    assert result.exit_code == 0
    assert out.split() == ["/home/task/x", "/tmp/x", "/dev/shm/x"]  # noqa: S108 (inside)


@pytest.mark.usefixtures("one_deep")
def test_a_timed_out_or_old_sandbox_is_not_used_again(make: Callable[..., Sandbox]) -> None:
    sandbox = make()
    run(sandbox, "true")
    pid = waiting(sandbox)
    result, _, used = run(sandbox, "sleep 60", timeout=1)
    assert result.timed_out
    assert used == pid
    fresh = wait_for(
        lambda: [item.proc.pid for item in PRESTARTED.waiting(sandbox) if item.proc.pid != pid],
        10,
        "another sandbox made instead",
    )
    with pytest.raises(ProcessLookupError):
        os.kill(pid, 0)  # the one that timed out is gone
    aging = make(warm_seconds=1.5)
    run(aging, "true")
    pid = waiting(aging)
    result, _, used = run(aging, "sleep 1.6")  # older than warm_seconds when it ends
    assert (result.exit_code, used) == (0, pid)
    result, _, used = run(aging, "true")
    assert result.exit_code == 0
    assert used not in (pid, *fresh)


@pytest.mark.usefixtures("one_deep")
@pytest.mark.parametrize("asked", ["by the worker", "by PID 1 alone"])
def test_a_sandbox_with_a_mount_inside_tmp_serves_one_task(
    make: Callable[..., Sandbox], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, asked: str
) -> None:
    """Emptying /tmp would reach into the tenant's directory bound under it: such a sandbox
    is never used again, and the tenant's files stay. PID 1 checks it too, whatever the
    worker asks."""
    shared = tmp_path / "shared"
    shared.mkdir(mode=0o777)
    os.chown(shared, UID, UID)
    sandbox = make(mounts=((str(shared), True),))
    assert not sandbox.reusable
    if asked == "by PID 1 alone":
        monkeypatch.setattr(Sandbox, "reusable", property(lambda self: True))
    result, out, first = run(sandbox, f"echo kept > {shared}/file; mkdir {shared}/dir")
    assert result.exit_code == 0, out
    PRESTARTED.settle()
    result, out, second = run(sandbox, f"cat {shared}/file; ls {shared}")
    assert (result.exit_code, out) == (0, "kept\ndir\nfile\n")
    assert second != first
    assert (shared / "file").read_text() == "kept\n"


def test_the_status_of_a_last_task_is_read_after_its_sandbox_ended(
    make: Callable[..., Sandbox],
) -> None:
    """A sandbox that serves one task ends right after its status: read all the same."""
    sandbox = make()
    started = SandboxProcess.start(sandbox, sandbox.workspace(), stdin=False)
    try:
        assert started.send(["/bin/sh", "-c", "exit 7"], ENV, None, sandbox)
        assert started.proc.wait(timeout=10) == 7
        assert started.read_status() == b"exit 7"
    finally:
        started.close(remove=True)


@pytest.mark.usefixtures("one_deep")
def test_keys_attributes_and_descriptor_flags_do_not_carry_over(
    make: Callable[..., Sandbox],
) -> None:
    sandbox = make()
    run(sandbox, "true")
    pid = waiting(sandbox)
    result, out, used = run(sandbox, f"/usr/bin/python3 -I -c '{LEAVE_BY_PYTHON}' && echo left")
    # The keys are there to be found (in each keyring) before the task ends.
    assert (result.exit_code, out, used) == (0, "found [True, True, True]\nleft\n", pid), out
    back_in_wait(sandbox, pid)
    result, out, used = run(sandbox, f"/usr/bin/python3 -I -c '{LOOK_BY_PYTHON}'")
    assert (result.exit_code, used) == (0, pid), out
    assert out.splitlines() == ["xattrs [] []", "blocking True", "keys [False, False, False]"]


@pytest.mark.usefixtures("one_deep")
def test_the_working_directory_is_made_without_following_a_link(
    make: Callable[..., Sandbox], tmp_path: Path
) -> None:
    """What a tenant's process may have put in a used sandbox's HOME (through a descriptor
    of it kept from an earlier task) cannot turn the worker's own making of a task's
    working directory (as root here) against the host."""
    sandbox = make()
    run(sandbox, "true")
    waiting(sandbox)
    target = tmp_path / "host-only"
    target.mkdir(mode=0o755)
    ready = PRESTARTED.waiting(sandbox)[0]
    os.symlink(target, ready.workspace.work / "x")
    sink = OutputSink(1000)
    result = run_process(["pwd"], env=ENV, cwd="x/y", timeout=30, sink=sink, sandbox=sandbox)
    assert result.error == (
        "could not start 'pwd': cannot make the working directory 'x/y': "
        "Not a directory"  # a link, not followed
    )
    assert not ready.alive()  # not used again
    assert list(target.iterdir()) == []
    assert os.stat(target).st_uid == 0
