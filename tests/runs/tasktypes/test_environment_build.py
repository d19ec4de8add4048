"""A package's environment is built on first use with the real uv, offline: it imports the
package and its locked dependency, its scripts run after the move into place, the tenants'
uids can read it whatever the worker's umask, and the next ensure finds it ready."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import time
from pathlib import Path

from tests.runs.tasktypes.test_environment_support import make_cache, make_package, run_in


def _unexpected_read() -> bytes:
    raise AssertionError("the wheel is read only for a build")


def test_it_builds_an_environment_that_imports_the_package_and_its_dependency(
    tmp_path: Path,
) -> None:
    package = make_package(tmp_path)
    cache = make_cache(tmp_path / "envs", package.links)
    lines: list[str] = []
    previous = os.umask(0o077)  # a private worker umask: the tasks' uids must read it still
    try:
        env = cache.ensure(package.spec, lambda: package.data, lines.append)
    finally:
        os.umask(previous)

    assert env.built
    assert env.seconds > 0
    assert env.path == tmp_path / "envs" / package.spec.digest
    assert env.python == env.path / "bin" / "python"
    printed = run_in(
        env.python, "import acme_etl, tinydep, sys; print(acme_etl.run(), tinydep.__file__)"
    )
    value, where = printed.split()
    assert value == "42"
    assert where.startswith(f"{env.path}/lib/")
    assert lines[0] == (
        f"building the environment of acme-etl 1.4.2 (sha256 {package.spec.digest[:8]}…)"
    )
    assert any("tinydep==2.0" in line for line in lines)  # uv's output
    assert lines[-1].startswith("built in ")


def test_its_scripts_run_from_where_it_was_moved(tmp_path: Path) -> None:
    package = make_package(tmp_path)
    env = make_cache(tmp_path / "envs", package.links).ensure(package.spec, lambda: package.data)

    done = subprocess.run([str(env.path / "bin" / "acme")], check=False, timeout=30)

    assert done.returncode == 42  # the console script's return value is its exit status


def test_it_is_readable_by_other_uids_and_marked_ready(tmp_path: Path) -> None:
    package = make_package(tmp_path)
    cache = make_cache(tmp_path / "envs", package.links)
    previous = os.umask(0o077)
    try:
        env = cache.ensure(package.spec, lambda: package.data)
    finally:
        os.umask(previous)

    assert stat.S_IMODE(cache.root.stat().st_mode) == 0o755
    for directory, _, files in os.walk(env.path):
        assert stat.S_IMODE(os.stat(directory).st_mode) == 0o755, directory
        for name in files:
            st = os.lstat(os.path.join(directory, name))
            if not stat.S_ISLNK(st.st_mode):  # bin/python -> the base interpreter
                assert stat.S_IMODE(st.st_mode) in (0o644, 0o755), (name, oct(st.st_mode))
    marker = json.loads((env.path / ".orc-env.json").read_text())
    assert marker["digest"] == package.spec.digest
    assert (marker["name"], marker["version"]) == ("acme-etl", "1.4.2")
    assert marker["manifest"]["lib/python3.11/site-packages/acme_etl/__init__.py"] > 0
    assert marker["size"] == sum(marker["manifest"].values()) == cache.size_bytes()
    assert not [p for p in cache.root.iterdir() if p.name.startswith(".build-")]


def test_the_second_ensure_finds_it_ready_quickly(tmp_path: Path) -> None:
    package = make_package(tmp_path)
    make_cache(tmp_path / "envs", package.links).ensure(package.spec, lambda: package.data)
    cache = make_cache(tmp_path / "envs", package.links)  # another worker process's
    used = cache.root / f"{package.spec.digest}.used"
    os.utime(used, (0, 0))

    started = time.monotonic()
    env = cache.ensure(package.spec, _unexpected_read)
    first = time.monotonic() - started
    started = time.monotonic()
    for _ in range(100):
        cache.ensure(package.spec, _unexpected_read)
    each = (time.monotonic() - started) / 100

    assert not env.built
    assert env.seconds == 0.0
    assert first < 0.05
    assert each < 0.002
    assert used.stat().st_mtime > time.time() - 60  # its last use, for eviction
