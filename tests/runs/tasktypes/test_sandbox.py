"""The task sandbox itself (runs/tasktypes/sandbox.py, its PID 1 compiled or
runs/tasktypes/supervise.py --init, every test over both), driven the way the executor
drives it, as root (how workers often run in containers) and from an unprivileged worker:
what a task can see and reach, that everything it started dies with it, and that its limits
hold and are named when hit."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from runs.tasktypes.process import OutputSink, ProcessResult, run_process
from runs.tasktypes.sandbox import (
    HOME,
    Limits,
    Sandbox,
    init_program,
    limit_hint,
    probe,
    uid_for,
)
from tests.subprocesses import ROOT
from tests.teamcode_support import open_up
from tests.workers import sandboxed_pids, wait_for

UID = 200_000 + 4242  # a tenant's uid as uid_for gives it (tenant 4242)
OTHER_UID = 200_000 + 4343
ENV = {"PATH": "/usr/local/bin:/usr/bin:/bin", "HOME": HOME, "LANG": "C.UTF-8"}

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the suite runs as root in CI")


@pytest.fixture(scope="module", autouse=True)
def _bwrap_works() -> None:
    problem = probe(uid=UID)
    assert problem is None, f"the sandbox must work where the suite runs: {problem}"


def compiled_init() -> str:
    path = init_program("auto")
    assert path, "make install builds the sandbox's compiled PID 1 (.venv/bin/orc-sandbox-init)"
    return path


@pytest.fixture(params=["compiled", "python"])
def pid1(request: pytest.FixtureRequest) -> str:
    """The sandbox's PID 1: the compiled one (the default where it is built), or
    supervise.py (the fallback)."""
    return compiled_init() if request.param == "compiled" else ""


@pytest.fixture
def make(tmp_path: Path, pid1: str) -> Callable[..., Sandbox]:
    root = tmp_path / "sandboxes"
    open_up(tmp_path)

    def make(uid: int = UID, **options: object) -> Sandbox:
        return Sandbox(uid=uid, root=root, init=pid1, **options)  # type: ignore[arg-type]

    return make


def sandboxed(
    sandbox: Sandbox, script: str, timeout: float | None = 30, **options: object
) -> tuple[ProcessResult, str]:
    space = sandbox.workspace()
    sink = OutputSink(1_000_000)
    try:
        result = run_process(
            ["/bin/sh", "-c", script],
            env=ENV,
            cwd=None,
            timeout=timeout,
            sink=sink,
            sandbox=sandbox,
            workspace=space,
            **options,  # type: ignore[arg-type]
        )
    finally:
        space.remove()
    return result, sink.drain().decode("utf-8", "replace")


def test_it_runs_as_the_tenants_uid_with_no_privileges(make: Callable[..., Sandbox]) -> None:
    result, out = sandboxed(
        make(),
        "id -u; id -g; id -G; grep -E '^(NoNewPrivs|CapEff|CapPrm):' /proc/self/status; "
        "echo \"fds: $(ls /proc/self/fd | tr '\\n' ' ')\"; pwd; echo $HOME",
    )
    assert result.exit_code == 0, out
    assert out.splitlines() == [
        str(UID),
        str(UID),
        str(UID),
        "CapPrm:\t0000000000000000",
        "CapEff:\t0000000000000000",
        "NoNewPrivs:\t1",
        "fds: 0 1 2 3 ",  # stdin, stdout, stderr and ls's own: nothing inherited
        HOME,
        HOME,
    ]


def test_the_tenants_uid_on_the_host_is_its_own(make: Callable[..., Sandbox]) -> None:
    """Seen from the host, the task's processes belong to the tenant's uid: neither root
    nor the worker's, so the kernel's per-uid checks (signals, files, process counts)
    apply to it."""
    marker = str(uuid.uuid4().int)[:12]
    done = threading.Event()
    outcome: list[ProcessResult] = []

    def run() -> None:
        outcome.append(sandboxed(make(), f"sleep 30.{marker}", timeout=20)[0])
        done.set()

    threading.Thread(target=run, daemon=True).start()
    pids = wait_for(lambda: sandboxed_pids(f"30.{marker}"), 10, "the task to start")
    owners = {os.stat(f"/proc/{pid}").st_uid for pid in pids}
    assert owners == {UID}
    os.kill(pids[0], 9)
    assert done.wait(10)


@pytest.fixture
def neighbour() -> Iterator[str]:
    """A process of the worker's host with a secret in its environment (as the worker has
    DATABASE_URL and SECRET_KEY in its own); the secret's value is returned."""
    half, other = uuid.uuid4().hex, uuid.uuid4().hex
    secret = f"{half}{other}"
    process = subprocess.Popen(
        ["sleep", "60"], env={"ORC_TEST_WORKER_SECRET": secret, "PATH": ENV["PATH"]}
    )
    try:
        yield secret
    finally:
        process.kill()
        process.wait()


def _attack(secret: str) -> str:
    """Issue 17's attack as a script: every process's environment, command line and working
    directory, the parent's first, then the platform's files; what it finds, it prints.
    The secret (and the words it prints) are split in two, so that the script's own text,
    which it reads in its command line, never holds them."""
    first, second = secret[:32], secret[32:]
    return textwrap.dedent(
        f"""
        cat /proc/$PPID/environ 2>/dev/null | tr '\\0' '\\n'
        echo "pids: $(ls /proc | grep -E '^[0-9]+$' | tr '\\n' ' ')"
        for pid in $(ls /proc | grep -E '^[0-9]+$'); do
            cat /proc/$pid/environ /proc/$pid/cmdline 2>/dev/null | tr '\\0' '\\n'
            ls -la /proc/$pid/cwd/ 2>/dev/null
        done
        for path in {ROOT} {ROOT}/orchestrator/settings.py {ROOT}/var {ROOT}/.venv \\
                    {sys.prefix} /root /work /etc/shadow /etc/postgresql /etc/redis; do
            if [ -e "$path" ]; then echo "VIS""IBLE $path"; fi
        done
        A={first}; B={second}
        grep -rl "$A$B" /home /tmp /etc /orc /usr/local 2>/dev/null | sed 's/^/FOU''ND /'
        echo done
        """
    )


def test_the_worker_and_the_platform_are_out_of_sight(
    make: Callable[..., Sandbox], neighbour: str
) -> None:
    """The attack of issue 17: the parent's environment, working directory and command
    line, the host's processes, the project's code, settings, virtual environment and
    var/: none of it exists for the task."""
    result, out = sandboxed(make(), _attack(neighbour))
    assert result.exit_code == 0, out
    assert out.rstrip().endswith("done")
    assert neighbour not in out
    assert "VISIBLE" not in out, out
    assert "FOUND" not in out, out
    assert "DATABASE_URL" not in out
    assert "SECRET_KEY" not in out
    pids = next(line for line in out.splitlines() if line.startswith("pids: "))
    assert set(pids.split()[1:]) <= {"1", "2", "3", "4", "5", "6", "7", "8"}, pids  # its own


def test_without_the_sandbox_the_same_attack_succeeds(neighbour: str) -> None:
    """The control case: with TASK_SANDBOX=off the same script finds the neighbour's
    secret and the project's files. (So the test above can fail; and the setting is for
    single-tenant installations only, as documented.)"""
    sink = OutputSink(10_000_000)
    run_process(["/bin/sh", "-c", _attack(neighbour)], env=ENV, cwd=None, timeout=60, sink=sink)
    out = sink.drain().decode("utf-8", "replace")
    assert neighbour in out
    assert f"VISIBLE {ROOT}/orchestrator/settings.py" in out


def test_another_tenants_working_directory_is_out_of_reach(
    make: Callable[..., Sandbox],
) -> None:
    """Two tenants' tasks side by side: each sees its own HOME and /tmp only, and the
    other's host directories are neither mounted nor readable by its uid."""
    alpha, beta = make(UID), make(OTHER_UID)
    space = alpha.workspace()
    sink = OutputSink(10_000)
    ready = threading.Event()
    (space.work / "secret.txt").write_text("alpha's data\n")
    os.chown(space.work / "secret.txt", UID, UID)

    def run_alpha() -> None:
        run_process(
            ["/bin/sh", "-c", "echo tmp > /tmp/alpha-tmp; cat secret.txt; sleep 3"],
            env=ENV,
            cwd=None,
            timeout=20,
            sink=sink,
            sandbox=alpha,
            workspace=space,
        )

    thread = threading.Thread(target=run_alpha, daemon=True)
    thread.start()
    wait_for(lambda: (space.tmp / "alpha-tmp").exists(), 10, "alpha's task to start")
    ready.set()
    result, out = sandboxed(
        beta,
        f"ls -a /tmp {HOME}; cat {space.work}/secret.txt {space.tmp}/alpha-tmp 2>&1; "
        f"ls {space.base} 2>&1; echo end",
    )
    thread.join(10)
    space.remove()
    assert "alpha's data" in sink.drain().decode()
    assert result.exit_code == 0, out
    assert "alpha's data" not in out, out
    assert "\ntmp\n" not in out, out
    assert out.count("No such file or directory") == 3, out
    # And on the host, beta's uid could not read alpha's directory even if it saw it.
    assert (space.base / "work").exists() is False  # removed


def test_a_setsid_child_and_a_double_fork_die_when_the_task_succeeds(
    make: Callable[..., Sandbox],
) -> None:
    # sleep takes "300.<digits>" as a number of seconds: command lines of our own to look for
    marker = str(uuid.uuid4().int)[:12]
    script = (
        f"setsid sleep 300.{marker}1 >/dev/null 2>&1 < /dev/null & "
        f"(sh -c 'sleep 300.{marker}2 >/dev/null 2>&1 &' &); "
        "sleep 0.5; echo started"
    )
    seen: list[list[int]] = []

    def watch() -> None:
        for _ in range(200):
            pids = sandboxed_pids(f"300.{marker}")
            if len(pids) == 2:
                seen.append(pids)
                return
            time.sleep(0.01)

    watcher = threading.Thread(target=watch)
    watcher.start()
    result, out = sandboxed(make(), script)
    watcher.join()
    assert (result.exit_code, out) == (0, "started\n")
    assert seen, "both escapees ran while the task did"
    wait_for(lambda: not sandboxed_pids(f"300.{marker}"), 5, "the escapees to die with the task")


def test_a_fork_bomb_fails_on_the_process_limit(make: Callable[..., Sandbox]) -> None:
    limits = Limits(processes=20)
    bomb = "import os\nwhile True: os.fork()"
    result, out = sandboxed(make(limits=limits), f"python3 -c '{bomb}'", timeout=30)
    assert result.exit_code == 1
    assert not result.timed_out
    assert "Resource temporarily unavailable" in out
    hint = limit_hint(limits, exit_code=result.exit_code, tail=out[-4000:].encode())
    assert hint == "the task most likely reached its limit processes: 20"
    # The worker is fine and the next task starts as usual.
    result, out = sandboxed(make(limits=limits), "echo next")
    assert (result.exit_code, out) == (0, "next\n")


def test_an_allocation_over_the_memory_limit_fails_naming_it(
    make: Callable[..., Sandbox],
) -> None:
    limits = Limits(memory_mb=256)
    result, out = sandboxed(make(limits=limits), "python3 -c 'x = bytearray(1024**3)'")
    assert result.exit_code == 1
    assert "MemoryError" in out
    hint = limit_hint(limits, exit_code=1, tail=out.encode())
    assert hint == (
        "the task most likely reached its limit memory_mb: 256 MB of memory (address space)"
    )
    result, out = sandboxed(make(limits=limits), "python3 -c 'x = bytearray(100 * 1024**2)'")
    assert result.exit_code == 0, out  # under the limit


def test_writing_past_the_file_size_limit_fails_naming_it(make: Callable[..., Sandbox]) -> None:
    limits = Limits(file_size_mb=1)
    result, out = sandboxed(make(limits=limits), "exec head -c 2000000 /dev/zero > big")
    assert result.exit_code == -25  # SIGXFSZ
    hint = limit_hint(limits, exit_code=result.exit_code, tail=b"")
    assert hint == "the task exceeded its limit file_size_mb: 1 MB per file"
    # A shell reports a child's death by a signal as 128 + the signal's number.
    result, out = sandboxed(make(limits=limits), "head -c 2000000 /dev/zero > big; exit $?")
    assert result.exit_code == 128 + 25
    assert limit_hint(limits, exit_code=result.exit_code, tail=b"") == hint
    result, out = sandboxed(make(limits=limits), "head -c 500000 /dev/zero > small; wc -c small")
    assert (result.exit_code, out) == (0, "500000 small\n")


def test_the_cpu_limit_ends_a_busy_task_naming_it(make: Callable[..., Sandbox]) -> None:
    limits = Limits(cpu_seconds=1)
    result, _ = sandboxed(make(limits=limits), "while :; do :; done", timeout=30)
    assert result.exit_code == -24  # SIGXCPU
    assert limit_hint(limits, exit_code=-24, tail=b"") == (
        "the task exceeded its limit cpu_seconds: 1"
    )


def test_network_none_cannot_reach_the_hosts_loopback(
    make: Callable[..., Sandbox], loopback_listener: int
) -> None:
    probe_script = (
        'python3 -c \'import socket; s = socket.create_connection(("127.0.0.1", '
        f'{loopback_listener}), timeout=3); print("connected")\''
    )
    result, out = sandboxed(make(network="egress"), probe_script)
    assert (result.exit_code, out) == (0, "connected\n")  # the control case
    result, out = sandboxed(make(network="none"), probe_script)
    assert result.exit_code == 1
    assert "ConnectionRefusedError" in out, out  # a loopback of its own, nothing listening
    result, out = sandboxed(make(network="none"), "tail -n +3 /proc/net/dev | cut -d: -f1")
    assert out.split() == ["lo"]


def test_a_timeout_gives_the_task_sigterm_then_kills_everything(
    make: Callable[..., Sandbox],
) -> None:
    marker = str(uuid.uuid4().int)[:12]
    script = (
        "trap 'echo got TERM' TERM; "
        f"(trap '' TERM; setsid sleep 300.{marker} & wait) & "
        "sleep 60 & wait; echo after-wait; sleep 60"
    )
    started = time.monotonic()
    result, out = sandboxed(make(), script, timeout=1)
    assert result.timed_out
    assert "got TERM" in out, out  # the grace period reached the task itself
    assert time.monotonic() - started < 15
    wait_for(lambda: not sandboxed_pids(f"300.{marker}"), 5, "the sandbox to be emptied")


def test_a_missing_command_is_reported(make: Callable[..., Sandbox]) -> None:
    space = make().workspace()
    sink = OutputSink(1000)
    try:
        result = run_process(
            ["no-such-command-here"],
            env=ENV,
            cwd=None,
            timeout=10,
            sink=sink,
            sandbox=make(),
            workspace=space,
        )
    finally:
        space.remove()
    assert result.exit_code is None
    assert result.error == "could not start 'no-such-command-here': No such file or directory"


def test_a_worker_without_bubblewrap_fails_the_task_saying_why(
    make: Callable[..., Sandbox],
) -> None:
    result, _ = sandboxed(make(bwrap="/nonexistent/bwrap"), "true")
    assert result.exit_code is None
    assert result.error.startswith(
        "the task sandbox is unavailable: could not start '/nonexistent/bwrap'"
    )
    assert probe("/nonexistent/bwrap") == (
        "'/nonexistent/bwrap' (bubblewrap) is not installed on this worker: install it "
        "(Debian/Ubuntu: apt-get install bubblewrap)"
    )


def test_uids_come_from_the_configured_range() -> None:
    assert uid_for(7, "200000-299999") == 200007
    with pytest.raises(Exception, match="holds tenant ids up to 9; widen the range"):
        uid_for(10, "300000-300009")
    with pytest.raises(Exception, match="expected first-last"):
        uid_for(1, "0-10")


STARTER = """
import os, sys
from pathlib import Path
sys.path.insert(0, {root!r})
from runs.tasktypes.process import OutputSink, run_process
from runs.tasktypes.sandbox import Sandbox, init_program
sandbox = Sandbox(uid={uid}, root=Path({sandboxes!r}), init=init_program("auto"))
space = sandbox.workspace()
sink = OutputSink(100_000)
result = run_process(["/bin/sh", "-c", {script!r}], env={env!r}, cwd=None, timeout=60,
                     sink=sink, sandbox=sandbox, workspace=space)
space.remove()
sys.stdout.write(sink.drain().decode())
print("result", result.exit_code, result.error)
"""


def _starter(tmp_path: Path, script: str, uid: int = UID) -> list[str]:
    open_up(tmp_path)
    sandboxes = tmp_path / "unprivileged"
    sandboxes.mkdir(mode=0o777)
    os.chmod(sandboxes, 0o777)  # noqa: S103 (the unprivileged worker makes its sandboxes here)
    code = STARTER.format(root=str(ROOT), uid=uid, sandboxes=str(sandboxes), script=script, env=ENV)
    return [sys.executable, "-c", code]


def test_a_worker_killed_mid_task_leaves_nothing_running(tmp_path: Path) -> None:
    marker = str(uuid.uuid4().int)[:12]
    script = f"setsid sleep 300.{marker}1 & sleep 300.{marker}2"
    worker = subprocess.Popen(_starter(tmp_path, script), stdout=subprocess.PIPE)
    wait_for(lambda: len(sandboxed_pids(f"300.{marker}")) == 2, 10, "the task to start")
    worker.kill()
    worker.wait()
    wait_for(lambda: not sandboxed_pids(f"300.{marker}"), 5, "the task to die with its worker")


def test_an_unprivileged_worker_sandboxes_its_tasks_too(tmp_path: Path) -> None:
    """A worker that is not root (uid 65534 here): the task still gets its own PID
    namespace, mount view and limits, and cannot see the worker; its uid inside is the
    tenant's, mapped onto the worker's own on the host (docs/task-types.md)."""
    marker = f"worker-secret-{uuid.uuid4().hex}"
    script = (
        "id -u; ls /proc | grep -cE '^[0-9]+$'; "
        "for p in $(ls /proc | grep -E '^[0-9]+$'); do cat /proc/$p/environ 2>/dev/null; done; "
        f"ls {ROOT} 2>&1 | head -1; setsid sleep 300 & echo ok"
    )
    argv = [
        "setpriv",
        "--reuid=65534",
        "--regid=65534",
        "--clear-groups",
        "--",
        *_starter(tmp_path, script),
    ]
    done = subprocess.run(
        argv,
        capture_output=True,
        timeout=60,
        env={**os.environ, "ORC_TEST_WORKER_SECRET": marker},
        check=False,
    )
    out = done.stdout.decode()
    assert done.returncode == 0, done.stderr.decode()
    lines = out.splitlines()
    assert lines[0] == str(UID)
    assert int(lines[1]) <= 4  # PID 1, the shell, ls, grep
    assert marker not in out
    assert f"ls: cannot access '{ROOT}': No such file or directory" in out
    assert lines[-2:] == ["ok", "result 0 "]


def test_the_setting_chooses_the_pid_1(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """auto: the compiled one that make install builds, else supervise.py; python:
    supervise.py; a path: that program, refused with what to do when it is not one."""
    built = compiled_init()
    assert Path(built) == Path(sys.prefix) / "bin" / "orc-sandbox-init"
    assert init_program("python") == ""
    assert init_program(built) == built
    monkeypatch.setattr(sys, "prefix", str(tmp_path))  # an environment without it
    assert init_program.__wrapped__("auto") == ""
    missing = tmp_path / "no-init"
    with pytest.raises(Exception, match="is not an executable file: build it with `make install`"):
        init_program(str(missing))


def test_the_compiled_pid_1_reports_as_supervise_py_does(make: Callable[..., Sandbox]) -> None:
    """Exit codes, deaths by a signal and a task that cannot start read the same whichever
    PID 1 ran them (runs/tasktypes/sandbox_init.c against supervise.py)."""
    sandbox = make()
    outcomes = [sandboxed(sandbox, script)[0] for script in ("exit 7", "kill -TERM $$")]
    assert [o.exit_code for o in outcomes] == [7, -15]
    space = sandbox.workspace()
    try:
        result = run_process(
            ["./not-executable"],
            env=ENV,
            cwd=None,
            timeout=30,
            sink=OutputSink(1000),
            sandbox=sandbox,
            workspace=space,
        )
    finally:
        space.remove()
    assert result.error == "could not start './not-executable': No such file or directory"
