"""Task workspaces a worker killed mid-task left behind (SIGKILL, the OOM killer) are
removed at the next worker's start, task files included; a workspace in use, a fresh one
and whatever else lies in the sandbox root are not."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from runs.tasktypes.sandbox import Sandbox, sweep_workspaces
from tests.subprocesses import ROOT
from tests.teamcode_support import open_up
from tests.workers import Workers, wait_for

UID = 200_000 + 4242  # a tenant's uid as uid_for gives it

# A worker's process that made a workspace, the task wrote into it (a directory closed to
# its owner too), and the process was killed before removing it.
KILLED_MID_TASK = textwrap.dedent(
    """
    import os, signal, sys
    from pathlib import Path
    from runs.tasktypes.sandbox import Sandbox
    space = Sandbox(uid=int(sys.argv[2]), root=Path(sys.argv[1])).workspace()
    (space.work / "out").mkdir()
    (space.work / "out" / "big.csv").write_text("x" * 4096)
    (space.tmp / "scratch").write_text("y")
    os.chmod(space.work / "out", 0)
    print(space.base, flush=True)
    os.kill(os.getpid(), signal.SIGKILL)
    """
)


@pytest.fixture(autouse=True)
def _reachable_root(tmp_path: Path) -> None:
    open_up(tmp_path)


def _aged(path: Path, seconds: float = 3600) -> None:
    then = time.time() - seconds
    os.utime(path, (then, then))


def _left_by_a_killed_worker(root: Path) -> Path:
    done = subprocess.run(
        [sys.executable, "-c", KILLED_MID_TASK, str(root), str(UID)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == -9, done.stderr
    base = Path(done.stdout.strip())
    assert (base / "work" / "out").is_dir()
    return base


def test_what_a_killed_worker_left_is_removed_with_the_tasks_files(tmp_path: Path) -> None:
    base = _left_by_a_killed_worker(tmp_path)
    _aged(base)
    assert sweep_workspaces(tmp_path) == 1
    assert not base.exists()


def test_a_workspace_in_use_is_kept(tmp_path: Path) -> None:
    space = Sandbox(uid=UID, root=tmp_path).workspace()
    (space.work / "result.json").write_text("{}")
    _aged(space.base)
    assert sweep_workspaces(tmp_path) == 0
    assert (space.work / "result.json").read_text() == "{}"
    space.remove()
    assert not space.base.exists()
    space.remove()  # a second removal is harmless (and closes nothing of anyone else's)


def test_one_made_in_the_last_minute_is_left_to_its_maker(tmp_path: Path) -> None:
    base = _left_by_a_killed_worker(tmp_path)
    assert sweep_workspaces(tmp_path) == 0
    assert base.exists()
    assert sweep_workspaces(tmp_path, min_age=0) == 1


def test_nothing_else_in_the_root_is_touched(tmp_path: Path) -> None:
    (tmp_path / "etc" / "0123").mkdir(parents=True)
    outside = tmp_path.parent / f"{tmp_path.name}-outside"
    (outside / "work").mkdir(parents=True)
    (tmp_path / "task-link").symlink_to(outside)
    (tmp_path / "task-file").write_text("not a workspace")
    for path in tmp_path.iterdir():
        os.utime(path, (0, 0), follow_symlinks=False)
    assert sweep_workspaces(tmp_path) == 0
    assert sorted(p.name for p in tmp_path.iterdir()) == ["etc", "task-file", "task-link"]
    assert (outside / "work").is_dir()


@pytest.mark.slow
@pytest.mark.django_db(transaction=True)
def test_a_worker_sweeps_at_its_start(transactional_db: None, tmp_path: Path) -> None:
    base = _left_by_a_killed_worker(tmp_path)
    _aged(base)
    pool = Workers(count=1, concurrency=1, beat=False, env={"TASK_SANDBOX_ROOT": str(tmp_path)})
    pool.start()
    try:
        wait_for(lambda: not base.exists(), 30, "the left workspace removed", pool)
        log = Path(pool.logs[0]).read_text()
        assert "removed 1 task workspace(s) left by stopped workers" in log
    finally:
        pool.stop()
