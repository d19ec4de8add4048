"""An environment found damaged (a file gone or changed, its interpreter gone, its marker
gone or garbled) is removed and rebuilt by the next ensure, and the log says why."""

from __future__ import annotations

import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.runs.tasktypes.test_environment_support import make_cache, make_package, run_in

PACKAGE_FILE = "lib/python3.11/site-packages/acme_etl/__init__.py"


def _delete_a_package_file(env: Path) -> None:
    (env / PACKAGE_FILE).unlink()


def _truncate_a_package_file(env: Path) -> None:
    (env / PACKAGE_FILE).write_text("")


def _remove_the_interpreter(env: Path) -> None:
    (env / "bin" / "python").unlink()


def _remove_the_dependency(env: Path) -> None:
    shutil.rmtree(env / "lib/python3.11/site-packages/tinydep")


def _garble_the_marker(env: Path) -> None:
    (env / ".orc-env.json").write_text("{not json")


def _remove_the_marker(env: Path) -> None:
    (env / ".orc-env.json").unlink()


@pytest.mark.parametrize(
    ("damage", "why"),
    [
        (_delete_a_package_file, f"{PACKAGE_FILE} is missing"),
        (_truncate_a_package_file, f"{PACKAGE_FILE} has 0 bytes, not "),
        (_remove_the_interpreter, "bin/python is missing or not executable"),
        (_remove_the_dependency, "lib/python3.11/site-packages/tinydep/__init__.py is missing"),
        (_garble_the_marker, "its ready marker is unreadable"),
        (_remove_the_marker, "its ready marker is missing"),
    ],
)
def test_a_damaged_environment_is_rebuilt(
    tmp_path: Path, damage: Callable[[Path], None], why: str
) -> None:
    package = make_package(tmp_path)
    cache = make_cache(tmp_path / "envs", package.links)
    env = cache.ensure(package.spec, lambda: package.data)
    damage(env.path)
    lines: list[str] = []

    again = cache.ensure(package.spec, lambda: package.data, lines.append)

    assert again.built
    assert lines[0].startswith(
        f"the environment of acme-etl 1.4.2 (sha256 {package.spec.digest[:8]}…) was damaged ({why}"
    )
    assert lines[0].endswith("): rebuilding")
    assert run_in(again.python, "import acme_etl; print(acme_etl.run())") == "42"
    assert not cache.ensure(package.spec, lambda: b"").built
    assert sorted(p.name for p in cache.root.iterdir() if p.name.startswith(".")) == [
        ".uv-cache",
        ".uv-cache.lock",
    ]  # no build or trash directory left
