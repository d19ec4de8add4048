"""The tasks' /etc (runs/tasktypes/sandbox.py, `prepared_etc`): one read-only copy of the
host's ETC_PATHS entries, bound as one mount, with the task's own passwd and group over
it; shown as a bind would show the host's files, made again when they change, and left
to the per-file binds where a task has a mount of its own inside /etc."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from runs.tasktypes import sandbox as sandbox_module
from runs.tasktypes.sandbox import ETC_PATHS, Sandbox, prepared_etc, sweep_etc_copies
from tests.runs.tasktypes.test_sandbox import make, pid1, sandboxed  # noqa: F401 (fixtures)
from tests.subprocesses import ROOT

# A worker process that used a copy of a changed host /etc, then stopped.
USED_BY_ANOTHER = """
import sys
from pathlib import Path
from runs.tasktypes import sandbox
sandbox.ETC_SOURCE = sys.argv[2]
sandbox.ETC_PATHS = ("hosts",)
print(sandbox.prepared_etc(Path(sys.argv[1])))
"""

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the suite runs as root in CI")


@pytest.fixture
def host_etc(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """A made-up host /etc: a file, a directory with a link inside, a root-only directory,
    and a top-level link to a file elsewhere."""
    etc = tmp_path / "host-etc"
    (etc / "ssl" / "certs").mkdir(parents=True)
    (etc / "hosts").write_text("127.0.0.1 localhost\n")
    (etc / "ssl" / "certs" / "ca.pem").write_text("CERT\n")
    (etc / "ssl" / "certs" / "link.pem").symlink_to("ca.pem")
    (etc / "ssl" / "private").mkdir(mode=0o700)
    (etc / "ssl" / "private" / "key.pem").write_text("KEY\n")
    os.chmod(etc / "ssl" / "private" / "key.pem", 0o600)
    zone = tmp_path / "zoneinfo-UTC"
    zone.write_text("TZif\n")
    (etc / "localtime").symlink_to(zone)
    monkeypatch.setattr(sandbox_module, "ETC_SOURCE", str(etc))
    monkeypatch.setattr(sandbox_module, "ETC_PATHS", ("hosts", "ssl", "localtime", "missing"))
    monkeypatch.setattr(sandbox_module, "_ETC_COPIES", {})
    held: dict[Path, int] = {}
    monkeypatch.setattr(sandbox_module, "_ETC_HELD", held)
    yield etc
    for fd in held.values():
        os.close(fd)


def test_the_copy_shows_what_binds_would(host_etc: Path, tmp_path: Path) -> None:
    copy = prepared_etc(tmp_path / "root")
    assert sorted(os.listdir(copy)) == ["group", "hosts", "localtime", "passwd", "ssl"]
    assert (copy / "hosts").read_text() == "127.0.0.1 localhost\n"
    # A top-level link is followed (as a bind of it would be); links inside stay links.
    assert not (copy / "localtime").is_symlink()
    assert (copy / "localtime").read_text() == "TZif\n"
    assert os.readlink(copy / "ssl" / "certs" / "link.pem") == "ca.pem"
    # What only root may read stays so; the placeholders are empty, for the task's own.
    assert os.stat(copy / "ssl" / "private").st_mode & 0o777 == 0o700
    assert os.stat(copy / "ssl" / "private" / "key.pem").st_mode & 0o777 == 0o600
    assert (copy / "passwd").read_text() == (copy / "group").read_text() == ""
    assert os.stat(copy).st_mode & 0o777 == 0o755


def test_a_change_on_the_host_makes_a_new_copy(
    host_etc: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "root"
    first = prepared_etc(root)
    (host_etc / "hosts").write_text("10.0.0.1 db\n")
    assert prepared_etc(root) == first  # compared again only ETC_RECHECK_SECONDS later
    monkeypatch.setattr(sandbox_module, "ETC_RECHECK_SECONDS", 0.0)
    second = prepared_etc(root)
    assert second != first
    assert (second / "hosts").read_text() == "10.0.0.1 db\n"
    assert (first / "hosts").read_text() == "127.0.0.1 localhost\n"  # a sandbox may use it
    assert prepared_etc(root) == second  # nothing changed: the same copy
    assert sorted(p.name for p in (root / "etc").iterdir()) == sorted([first.name, second.name])


def test_a_task_sees_the_hosts_files_read_only_and_its_own_user(
    make: Callable[..., Sandbox],  # noqa: F811 (the fixture)
) -> None:
    result, out = sandboxed(
        make(),
        "cat /etc/hosts; echo ---; id -un; id -gn; echo ---; ls /etc; echo ---; "
        "touch /etc/x 2>/dev/null || echo read-only",
    )
    assert result.exit_code == 0, out
    hosts, user, listed, written = out.split("---\n")
    expected = {n for n in ETC_PATHS if os.path.exists(f"/etc/{n}")} | {"passwd", "group"}
    assert hosts == Path("/etc/hosts").read_text()
    assert (user, set(listed.split()), written) == ("task\ntask\n", expected, "read-only\n")


def test_a_mount_inside_etc_keeps_the_binds_one_by_one(
    make: Callable[..., Sandbox],  # noqa: F811 (the fixture)
) -> None:
    """A read-only path of the platform's inside /etc that the copy does not hold needs a
    writable /etc to make its mount point: there the ETC_PATHS entries are bound one by
    one, as before the copy."""
    own = Path(f"/etc/orc-test-{uuid.uuid4().hex[:8]}")
    own.mkdir(mode=0o755)
    try:
        (own / "tool.conf").write_text("mine\n")
        os.chmod(own / "tool.conf", 0o644)
        sandbox = make(readonly=(str(own),))
        result, out = sandboxed(sandbox, f"cat {own}/tool.conf; id -un; cat /etc/hosts")
    finally:
        shutil.rmtree(own)
    assert (result.exit_code, out) == (0, "mine\ntask\n" + Path("/etc/hosts").read_text())


def _aged(path: Path) -> None:
    os.utime(path, (time.time() - 3600, time.time() - 3600))


def test_copies_no_live_process_holds_are_swept(
    host_etc: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """This process holds the copies it used (its sandboxes may bind them); a copy only a
    stopped worker used, and one a worker killed while copying left, go."""
    root = tmp_path / "root"
    monkeypatch.setattr(sandbox_module, "ETC_RECHECK_SECONDS", 0.0)
    first = prepared_etc(root)
    (host_etc / "hosts").write_text("10.0.0.1 db\n")
    second = prepared_etc(root)
    done = subprocess.run(  # another worker's process, since stopped, used a third
        [sys.executable, "-c", USED_BY_ANOTHER, str(root), str(host_etc)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    third = Path(done.stdout.strip())
    half = root / "etc" / ".new-x1y2z3"
    (half / "ssl").mkdir(parents=True)
    for path in (first, second, third, half):
        _aged(path)
    assert sweep_etc_copies(root) == 2
    assert sorted(p.name for p in (root / "etc").iterdir()) == sorted([first.name, second.name])
    assert (first / "hosts").read_text() == "127.0.0.1 localhost\n"


def test_a_swept_copy_is_made_again_when_needed(
    host_etc: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    root = tmp_path / "root"
    copy = prepared_etc(root)
    os.close(sandbox_module._ETC_HELD.pop(copy))  # as if this process had not used it
    _aged(copy)
    assert sweep_etc_copies(root) == 1
    monkeypatch.setattr(sandbox_module, "_ETC_COPIES", {})
    assert prepared_etc(root) == copy
    assert (copy / "hosts").read_text() == "127.0.0.1 localhost\n"
    _aged(copy)
    assert sweep_etc_copies(root) == 0  # held again
