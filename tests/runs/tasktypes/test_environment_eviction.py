"""After a build, least-recently-used environments are evicted until the cache is within
its size: oldest first, never the one just built, never one a process holds with `use()`
(another process here, so its lock is a real one), nor one used in the last minute."""

from __future__ import annotations

import json
import os
import time
from pathlib import Path

from runs.tasktypes.environments import EnvironmentCache
from tests.runs.tasktypes.test_environment_support import (
    Package,
    make_cache,
    make_package,
    spawn_child,
)


def _used(cache: EnvironmentCache, package: Package, seconds_ago: float) -> None:
    when = time.time() - seconds_ago
    os.utime(cache.root / f"{package.spec.digest}.used", (when, when))


def _present(cache: EnvironmentCache, *packages: Package) -> list[bool]:
    return [(cache.root / p.spec.digest).is_dir() for p in packages]


def test_it_evicts_the_least_recently_used_but_not_the_one_in_use_nor_the_new_one(
    tmp_path: Path,
) -> None:
    held, older, newer, new = (make_package(tmp_path, version=f"1.0.{n}") for n in range(4))
    roomy = make_cache(tmp_path / "envs", held.links)
    for package in (held, older, newer):
        roomy.ensure(package.spec, lambda package=package: package.data)
    one = roomy.size_bytes() // 3
    _used(roomy, held, 4000)
    _used(roomy, older, 3000)
    _used(roomy, newer, 2000)
    holder = spawn_child("use", roomy, held, tmp_path / "unused.whl")
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline() == "held\n"
        _used(roomy, held, 4000)  # `use` touched it: it is the oldest still
        cache = make_cache(tmp_path / "envs", held.links, max_bytes=int(one * 3.5))

        env = cache.ensure(new.spec, lambda: new.data)

        assert env.built
        assert _present(cache, held, older, newer, new) == [True, False, True, True]
        assert cache.size_bytes() <= cache.max_bytes
        assert not (cache.root / f"{older.spec.digest}.used").exists()
    finally:
        holder.communicate(timeout=30)  # closing its stdin lets it go

    _used(cache, held, 1000)
    _used(cache, newer, 500)
    tighter = make_cache(tmp_path / "envs", held.links, max_bytes=int(one * 2.5))
    assert tighter.evict() == [held.spec.digest]  # released: now the oldest goes first
    assert _present(cache, held, newer, new) == [False, True, True]


def test_it_spares_what_was_used_in_the_last_minute_and_what_it_is_told_to_keep(
    tmp_path: Path,
) -> None:
    first, second = (make_package(tmp_path, version=f"2.0.{n}") for n in range(2))
    cache = make_cache(tmp_path / "envs", first.links)
    for package in (first, second):
        cache.ensure(package.spec, lambda package=package: package.data)
    tiny = make_cache(tmp_path / "envs", first.links, max_bytes=1)

    assert tiny.evict() == []  # both were just used
    _used(cache, first, 120)
    _used(cache, second, 180)
    assert tiny.evict(keep={second.spec.digest}) == [first.spec.digest]
    assert (
        tiny.size_bytes()
        == json.loads((cache.root / second.spec.digest / ".orc-env.json").read_text())["size"]
    )


def test_remove_refuses_an_environment_in_use(tmp_path: Path) -> None:
    package = make_package(tmp_path)
    cache = make_cache(tmp_path / "envs", package.links)
    cache.ensure(package.spec, lambda: package.data)
    holder = spawn_child("use", cache, package, tmp_path / "unused.whl")
    try:
        assert holder.stdout is not None
        assert holder.stdout.readline() == "held\n"
        assert not cache.remove(package.spec.digest)
    finally:
        holder.communicate(timeout=30)

    assert cache.remove(package.spec.digest)
    assert not cache.remove(package.spec.digest)  # none left
    assert _present(cache, package) == [False]
    assert cache.size_bytes() == 0
