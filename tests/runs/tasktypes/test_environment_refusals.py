"""What the cache refuses or fails on leaves nothing half-built behind: a wheel whose bytes
are not the package's digest, a lock naming a package the index does not have (uv's own
message is in the error), a file name or lock line that is not one."""

from __future__ import annotations

import dataclasses
import re
import time
from pathlib import Path

import pytest

from runs.tasktypes.environments import EnvironmentBuildFailed, EnvironmentCache
from runs.tasktypes.sandbox import interpreter
from tests.runs.tasktypes.test_environment_support import make_cache, make_package, uv_shim


def _leftovers(cache: EnvironmentCache) -> list[str]:
    """What a failed build may not leave: an environment, or a build or trash directory."""
    return [p.name for p in cache.root.iterdir() if p.is_dir() and p.name not in {".uv-cache"}]


def test_a_wheel_that_is_not_the_packages_digest_is_refused(tmp_path: Path) -> None:
    package = make_package(tmp_path)
    cache = make_cache(tmp_path / "envs", package.links)

    with pytest.raises(EnvironmentBuildFailed, match="refusing to install it") as failure:
        cache.ensure(package.spec, lambda: package.data + b"tampered")

    assert package.spec.digest in str(failure.value)
    assert _leftovers(cache) == []


def test_a_failing_uv_says_why_and_leaves_nothing(tmp_path: Path) -> None:
    package = make_package(tmp_path, lock=[f"nosuchpackage==1.0 --hash=sha256:{'0' * 64}"])
    cache = make_cache(tmp_path / "envs", package.links)
    lines: list[str] = []

    with pytest.raises(EnvironmentBuildFailed) as failure:
        cache.ensure(package.spec, lambda: package.data, lines.append)

    message = str(failure.value)
    assert message.startswith("installing the locked dependencies of acme-etl 1.4.2")
    assert "uv exited with" in message
    assert "nosuchpackage" in message.split("\n", 1)[1]  # uv's own words
    assert any("nosuchpackage" in line for line in lines)
    assert _leftovers(cache) == []
    assert cache.size_bytes() == 0


@pytest.mark.parametrize(
    ("change", "field"),
    [
        ({"filename": "../escape.whl"}, "filename"),
        ({"filename": "acme_etl-1.4.2.tar.gz"}, "filename"),
        ({"lock": ("--index-url https://elsewhere.example/simple",)}, "lock[0]"),
    ],
)
def test_a_spec_that_is_not_a_wheel_and_a_lock_is_refused(
    tmp_path: Path, change: dict[str, object], field: str
) -> None:
    package = make_package(tmp_path)
    cache = make_cache(tmp_path / "envs", package.links)
    spec = dataclasses.replace(package.spec, **change)

    with pytest.raises(EnvironmentBuildFailed, match="^" + re.escape(f"{field}: ")):
        cache.ensure(spec, lambda: package.data)

    assert _leftovers(cache) == []


def test_a_digest_that_is_not_one_is_refused(tmp_path: Path) -> None:
    package = make_package(tmp_path)
    cache = make_cache(tmp_path / "envs", package.links)
    spec = dataclasses.replace(package.spec, digest="../../etc")

    with pytest.raises(ValueError, match="64 lowercase hex characters"):
        cache.ensure(spec, lambda: package.data)
    with pytest.raises(ValueError, match="64 lowercase hex characters"):
        cache.remove("../../etc")


def test_a_uv_command_that_hangs_is_stopped_at_the_timeout(tmp_path: Path) -> None:
    package = make_package(tmp_path)
    shim, _ = uv_shim(tmp_path, pause=30)  # `uv venv` hangs
    cache = EnvironmentCache(
        tmp_path / "envs",
        max_bytes=10**9,
        python=interpreter(),
        index_url=None,
        find_links=[str(package.links)],
        timeout=0.5,
        uv=shim,
    )
    started = time.monotonic()

    with pytest.raises(EnvironmentBuildFailed, match=r"\(timed out after 0\.5 s\)"):
        cache.ensure(package.spec, lambda: package.data)

    assert time.monotonic() - started < 5
    assert _leftovers(cache) == []
