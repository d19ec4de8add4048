"""A task forked by a zygote takes everything it started with it when it times out, is
stopped (a cancel, a lost lease) or its zygote dies: a grandchild in a session of its own
and a double-forked one, both deaf to SIGTERM, are gone from the host. A zygote that died
is given back as a lost task, and started again by the registry on the next task."""

from __future__ import annotations

import ast
import os
import secrets
import signal
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from runs.tasktypes.environments import Environment
from runs.tasktypes.zygotes import Zygote, Zygotes
from tests.runs.tasktypes.test_zygote_support import (
    Output,
    Ran,
    build_environment,
    run_source,
    start_zygote,
    zygote_spec,
)
from tests.workers import sandboxed_pids

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the suite runs as root in CI")

TENANT = 4343

# Two grandchildren that ignore SIGTERM: `sleep 300.<token>1` in a session of its own and
# `sleep 300.<token>2` double-forked (its parent gone, reparented to the task's init). The
# task says so, then sleeps (or ignores SIGTERM too, with `deaf`).
SPAWN = """
import os, signal, subprocess, time

def deaf():
    signal.signal(signal.SIGTERM, signal.SIG_IGN)

subprocess.Popen(['sleep', f'300.{token}1'], start_new_session=True, preexec_fn=deaf)
if os.fork() == 0:
    os.setsid()
    if os.fork() == 0:
        deaf()
        os.execvp('sleep', ['sleep', f'300.{token}2'])
    os._exit(0)
os.wait()
if task_deaf:
    deaf()
print('spawned', flush=True)
time.sleep(300)
"""


@pytest.fixture(scope="module")
def env(tmp_path_factory: pytest.TempPathFactory) -> Environment:
    return build_environment(tmp_path_factory.mktemp("tree"))


@pytest.fixture(scope="module")
def zygote(env: Environment) -> Iterator[Zygote]:
    zygote = start_zygote(env, TENANT)
    try:
        yield zygote
    finally:
        zygote.stop()


def _token() -> str:
    return str(secrets.randbelow(10**8)).rjust(8, "0")


def _gone(token: str, timeout: float = 5) -> list[int]:
    """The grandchildren still running after `timeout` (none, when all went)."""
    deadline = time.monotonic() + timeout
    while (left := sandboxed_pids(f"300.{token}")) and time.monotonic() < deadline:
        time.sleep(0.05)
    return left


def _spawning(
    zygote: Zygote,
    token: str,
    *,
    timeout: float | None,
    stop: threading.Event | None = None,
    task_deaf: bool = False,
) -> tuple[threading.Thread, Output, list[Ran]]:
    output, ran = Output(), []
    thread = threading.Thread(
        target=lambda: ran.append(
            run_source(
                zygote,
                SPAWN,
                timeout=timeout,
                should_stop=stop.is_set if stop else lambda: False,
                output=output,
                token=token,
                task_deaf=task_deaf,
            )
        )
    )
    thread.start()
    output.wait_for("spawned")
    deadline = time.monotonic() + 5  # the double-forked one may not have exec'd yet
    while len(sandboxed_pids(f"300.{token}")) < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert len(sandboxed_pids(f"300.{token}")) == 2
    return thread, output, ran


def test_a_timeout_kills_the_task_and_everything_it_started(zygote: Zygote) -> None:
    token = _token()
    thread, output, ran = _spawning(zygote, token, timeout=2)
    thread.join(timeout=30)

    [done] = ran
    assert (done.run.timed_out, done.run.exit_code) == (True, -signal.SIGTERM), output.text
    assert _gone(token) == []


def test_a_task_deaf_to_sigterm_is_killed_after_the_grace_period(zygote: Zygote) -> None:
    token = _token()
    thread, output, ran = _spawning(zygote, token, timeout=1, task_deaf=True)
    thread.join(timeout=30)

    [done] = ran
    assert (done.run.timed_out, done.run.exit_code) == (True, -signal.SIGKILL), output.text
    assert _gone(token) == []


def test_a_stop_kills_the_task_and_everything_it_started(zygote: Zygote) -> None:
    token, stop = _token(), threading.Event()
    thread, output, ran = _spawning(zygote, token, timeout=None, stop=stop)
    stop.set()
    thread.join(timeout=30)

    [done] = ran
    assert (done.run.cancelled, done.run.exit_code) == (True, -signal.SIGTERM), output.text
    assert _gone(token) == []


def test_a_dead_zygote_gives_the_task_back_and_is_started_again(env: Environment) -> None:
    zygotes = Zygotes()
    try:
        first, started = zygotes.get("key", lambda: zygote_spec(env, TENANT))
        assert started
        assert first.process is not None
        token = _token()
        thread, output, ran = _spawning(first, token, timeout=None)
        os.killpg(first.process.pid, signal.SIGKILL)  # the zygote's sandbox, all of it
        thread.join(timeout=30)

        [done] = ran
        assert done.run.lost, output.text
        assert done.run.error == "the python runner (its zygote) died during the task"
        assert _gone(token) == []
        second, started = zygotes.get("key", lambda: zygote_spec(env, TENANT))
        assert started
        assert second is not first
        assert second.alive()
        assert run_source(second, "result = 'fine again'").result == "fine again"
        assert first.directory is None  # the dead one's workspace was removed
    finally:
        zygotes.stop()


def test_a_zygote_killed_alone_takes_its_tasks_with_it(env: Environment) -> None:
    """Only the python process (not its sandbox's init): the task still goes with it."""
    zygote = start_zygote(env, TENANT)
    try:
        token = _token()
        thread, output, ran = _spawning(zygote, token, timeout=None)
        assert zygote.process is not None
        os.kill(_zygote_python(zygote.process.pid), signal.SIGKILL)
        thread.join(timeout=30)

        [done] = ran
        assert done.run.lost, output.text
        assert _gone(token) == []
    finally:
        zygote.stop()


def _cmdline(pid: int) -> bytes:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes()
    except OSError:
        return b""


def _ppid(pid: int) -> int:
    try:
        return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])
    except (OSError, IndexError, ValueError):
        return 0


def _descendants(root: int) -> list[int]:
    children: dict[int, list[int]] = {}
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            children.setdefault(_ppid(int(entry)), []).append(int(entry))
    found, pending = [], [root]
    while pending:
        pid = pending.pop()
        found.append(pid)
        pending += children.get(pid, [])
    return found


def _zygote_python(root: int) -> int:
    """The zygote's own process under its sandbox's `root` (bwrap): `python -m
    runs.tasktypes.zygote` whose parent is the sandbox's init (the children it forked
    share its command line, not that parent)."""
    [pid] = [
        pid
        for pid in _descendants(root)
        if _cmdline(pid).split(b"\0")[1:3] == [b"-m", b"runs.tasktypes.zygote"]
        and b"--init" in _cmdline(_ppid(pid))
    ]
    return pid


LIAR = """
import os, socket, struct, time
sent = 0
for name in os.listdir('/proc/self/fd'):  # a way back to the zygote, if it had one
    try:
        sock = socket.socket(fileno=os.dup(int(name)))
        sock.send(struct.pack('i', 0))  # "exited with 0"
        sent += 1
    except OSError:
        pass
me = os.readlink('/proc/self')  # its pid as this /proc (the zygote's sandbox) counts
opened = []
for pid in [p for p in os.listdir('/proc') if p.isdigit() and p != me]:
    try:
        os.listdir(f'/proc/{pid}/fd')  # the zygote's descriptors: its worker connections
    except OSError:
        continue
    try:
        args = open(f'/proc/{pid}/cmdline', 'rb').read().split(b'\\0')
        status = dict(line.split(':', 1) for line in open(f'/proc/{pid}/status'))
        nspid = status['NSpid'].split()
    except (OSError, IndexError, KeyError):
        continue  # ended meanwhile
    if args[0] == b'/orc/init' or args[3:4] == [b'/orc/supervise.py']:
        opened.append('supervisor')
    elif len(nspid) > 1 and nspid[-1] != '1':
        opened.append('a task')  # another task's process (a leftover of an earlier test)
    elif len(nspid) == 1 and status['PPid'].strip() != '1':
        opened.append('a task child')  # a task's outer process (its status pipe only)
    else:
        opened.append('zygote or pid 1')  # the zygote, a task's PID 1: must not be
print('sent', sent, 'opened', opened, flush=True)
time.sleep(30)
"""


def test_a_task_cannot_report_its_own_end_to_escape_its_timeout(zygote: Zygote) -> None:
    began = time.monotonic()
    ran = run_source(zygote, LIAR, timeout=2)
    assert ran.run.timed_out, ran
    assert time.monotonic() - began >= 2
    # Neither a socket back to the zygote nor the zygote's (or its helpers') descriptors:
    # only the sandbox's PID 1, the supervisor, which holds nothing of the zygote's,
    # other tasks' own processes, and the zygote's children outside a task's namespace
    # (they hold a status pipe only; the connection to the zygote is their PID 1's).
    sent, _, opened = ran.output.partition(" opened ")
    assert sent.strip() == "sent 0", ran.output
    allowed = {"supervisor", "a task", "a task child"}
    assert set(ast.literal_eval(opened.strip())) <= allowed, ran.output
