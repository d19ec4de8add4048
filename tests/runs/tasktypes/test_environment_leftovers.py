"""What a crashed build left (its build directory, older than the timeout, its digest's
lock free; a half-removed environment) goes at the next build; a build still in progress
elsewhere keeps its directory; uv's own cache is emptied once past a quarter of the size."""

from __future__ import annotations

import os
import time
from pathlib import Path

from tests.runs.tasktypes.test_environment_support import (
    make_cache,
    make_package,
    spawn_child,
)


def _aged(path: Path, seconds: float) -> Path:
    path.mkdir(parents=True)
    (path / "env").mkdir()
    when = time.time() - seconds
    os.utime(path, (when, when))
    return path


def test_a_crashed_builds_leftovers_go_at_the_next_build(tmp_path: Path) -> None:
    crashed, building, new = (make_package(tmp_path, version=f"3.0.{n}") for n in range(3))
    cache = make_cache(tmp_path / "envs", crashed.links)
    cache.ensure(building.spec, lambda: building.data)
    holder = spawn_child("use", cache, building, tmp_path / "unused.whl")  # its lock is held
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline() == "held\n"
        stale = _aged(cache.root / f".build-{crashed.spec.digest}-x1", 3600)
        in_progress = _aged(cache.root / f".build-{building.spec.digest}-x2", 3600)
        recent = _aged(cache.root / f".build-{crashed.spec.digest}-x3", 1)
        trash = _aged(cache.root / f".trash-{crashed.spec.digest}-x4", 1)

        cache.ensure(new.spec, lambda: new.data)

        assert [p.exists() for p in (stale, in_progress, recent, trash)] == [
            False,
            True,
            True,
            False,
        ]
    finally:
        holder.communicate(timeout=30)


def test_uvs_cache_is_emptied_once_past_its_share(tmp_path: Path) -> None:
    first, second = (make_package(tmp_path, version=f"4.0.{n}") for n in range(2))
    roomy = make_cache(tmp_path / "envs", first.links)
    roomy.ensure(first.spec, lambda: first.data)
    uv_cache = roomy.root / ".uv-cache"
    assert any(path.is_file() for path in uv_cache.rglob("*"))  # the wheels uv unpacked

    tiny = make_cache(tmp_path / "envs", first.links, max_bytes=1000)
    env = tiny.ensure(second.spec, lambda: second.data)

    assert env.built
    assert not uv_cache.exists()
    assert [p.name for p in tiny.root.iterdir() if p.name.startswith(".trash-")] == []
