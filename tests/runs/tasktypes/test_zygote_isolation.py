"""Tasks forked by one zygote at the same time (the same tenant, the same package) each
have their own HOME and /tmp: neither sees the other's files, nor the zygote's socket and
task directories, not even through the other's /proc entries; each runs as the tenant's
uid without capabilities, and its directories are gone when it ends."""

from __future__ import annotations

import os
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from django.conf import settings

from runs.tasktypes.sandbox import uid_for
from runs.tasktypes.zygotes import Zygote
from tests.runs.tasktypes.test_zygote_support import (
    Output,
    Ran,
    build_environment,
    run_source,
    start_zygote,
)

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the suite runs as root in CI")

TENANT = 4242

# The first task: files in its HOME and /tmp; it stays until the test drops a file in its
# /tmp from the host (the second task has looked by then).
WRITER = """
import os, time
open('/home/task/mine.txt', 'w').write('first task only')
open('/tmp/mine.txt', 'w').write('first task only')
result = {'home': sorted(os.listdir('/home/task')), 'tmp': sorted(os.listdir('/tmp'))}
print('written', flush=True)
deadline = time.monotonic() + 30
while not os.path.exists('/tmp/done') and time.monotonic() < deadline:
    time.sleep(0.05)
"""

# The second: what it can see of the first's files, directly, by scanning, and through
# every process's /proc entries (root, cwd); and whether it reaches the zygote's socket.
PEEKER = """
import os, socket
found, denied = [], 0
for path in ('/home/task/mine.txt', '/tmp/mine.txt', '/tmp/zygote.sock', '/tmp/tasks'):
    if os.path.exists(path):
        found.append(path)
for top in ('/home', '/tmp', '/var/tmp', '/run'):
    for parent, dirs, files in os.walk(top):
        found += [os.path.join(parent, f) for f in files if f.startswith(('mine', 'zygote'))]
for pid in (p for p in os.listdir('/proc') if p.isdigit()):
    for where in ('root/home/task/mine.txt', 'root/tmp/mine.txt', 'cwd/mine.txt',
                  'root/tmp/zygote.sock'):
        try:
            os.stat(f'/proc/{pid}/{where}')
            found.append(f'/proc/{pid}/{where}')
        except PermissionError:
            denied += 1
        except OSError:
            pass
for path in [f'/proc/{p}/root/tmp/zygote.sock' for p in os.listdir('/proc') if p.isdigit()]:
    try:
        socket.socket(socket.AF_UNIX).connect(path)
        found.append('connected ' + path)
    except OSError:
        pass
status = dict(line.split(':', 1) for line in open('/proc/self/status'))
result = {
    'found': found,
    'denied': denied > 0,
    'home': sorted(os.listdir('/home/task')),
    'tmp': sorted(os.listdir('/tmp')),
    'uid': os.getuid(),
    'cwd': os.getcwd(),
    'cap_eff': status['CapEff'].strip(),
    'cap_bnd': status['CapBnd'].strip(),
}
"""


@pytest.fixture(scope="module")
def zygote(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Zygote]:
    env = build_environment(tmp_path_factory.mktemp("isolation"))
    zygote = start_zygote(env, TENANT)
    try:
        yield zygote
    finally:
        zygote.stop()


def test_two_tasks_at_once_see_neither_each_others_files_nor_the_zygote(zygote: Zygote) -> None:
    first_output = Output()
    first: list[Ran] = []
    writer = threading.Thread(
        target=lambda: first.append(run_source(zygote, WRITER, output=first_output))
    )
    writer.start()
    try:
        first_output.wait_for("written")
        second = run_source(zygote, PEEKER)
    finally:
        assert zygote.directory is not None
        [home] = Path(zygote.directory).glob("tasks/*/home/mine.txt")
        (home.parent.parent / "tmp" / "done").touch()
        writer.join(timeout=30)

    assert second.run.exit_code == 0, second.output
    seen = second.result
    assert seen["found"] == [], seen
    assert seen["denied"], "the other task's /proc entries were not even tried"
    # What is mounted under /tmp in the zygote's sandbox (here the package's environment,
    # under pytest's /tmp directory) is put back under each task's own /tmp, read-only.
    mounted = _under_tmp(zygote)
    assert (seen["home"], seen["tmp"]) == ([], mounted), seen
    assert first[0].run.exit_code == 0, first[0].output
    assert first[0].result == {"home": ["mine.txt"], "tmp": sorted(["mine.txt", *mounted])}


def _under_tmp(zygote: Zygote) -> list[str]:
    """The top directory under /tmp of the zygote's package environment, if it is there."""
    env = zygote.spec.environment
    if env is None or not str(env).startswith("/tmp/"):  # noqa: S108
        return []
    return [Path(env).parts[2]]


def test_a_task_runs_as_the_tenants_uid_in_its_home_without_capabilities(zygote: Zygote) -> None:
    seen = run_source(zygote, PEEKER).result

    assert seen["uid"] == uid_for(TENANT, settings.TASK_SANDBOX_UIDS) != 0
    assert seen["cwd"] == "/home/task"
    assert (seen["cap_eff"], seen["cap_bnd"]) == ("0000000000000000", "0000000000000000")


def test_a_tasks_directories_are_removed_when_it_ends(zygote: Zygote) -> None:
    assert zygote.directory is not None
    tasks = Path(zygote.directory) / "tasks"
    before = set(os.listdir(tasks))  # a process prepared for the next task may have one

    ran = run_source(
        zygote,
        "import os\nos.makedirs('/home/task/deep/er')\nopen('/tmp/left.txt', 'w').write('x')\n"
        "os.chmod('/home/task/deep', 0)\nresult = 'left things behind'",
    )

    assert ran.result == "left things behind", ran.output
    # The zygote reports the task's end first, then removes its directories.
    deadline = time.monotonic() + 5
    while before & set(os.listdir(tasks)) and time.monotonic() < deadline:
        time.sleep(0.02)
    assert before & set(os.listdir(tasks)) == set()
    files = [os.path.join(parent, name) for parent, _, names in os.walk(tasks) for name in names]
    assert files == []
    for name in os.listdir(tasks):  # the next task's, fresh: nothing of this one's
        assert sorted(os.listdir(tasks / name)) == ["home", "tmp"]
        assert os.listdir(tasks / name / "home") == []
        assert os.listdir(tasks / name / "tmp") == _under_tmp(zygote)  # mount points only
