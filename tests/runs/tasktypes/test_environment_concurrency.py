"""Two worker processes that need the same new environment at once build it once: the
second waits on the digest's lock and finds it ready, and says so in its log."""

from __future__ import annotations

import json
import time
from pathlib import Path

from tests.runs.tasktypes.test_environment_support import (
    count_commands,
    make_cache,
    make_package,
    run_in,
    spawn_child,
    uv_shim,
)


def test_two_processes_build_the_same_environment_once(tmp_path: Path) -> None:
    package = make_package(tmp_path)
    wheel = tmp_path / "package.whl"
    wheel.write_bytes(package.data)
    shim, commands = uv_shim(tmp_path, pause=0.5)  # the first build lasts half a second
    cache = make_cache(tmp_path / "envs", package.links, uv=shim)

    first = spawn_child("ensure", cache, package, wheel)
    deadline = time.monotonic() + 30
    while count_commands(commands, "venv") == 0:  # the first is building
        assert time.monotonic() < deadline, "the first process never started its build"
        time.sleep(0.01)
    second = spawn_child("ensure", cache, package, wheel)
    outputs = [child.communicate(timeout=60)[0] for child in (first, second)]

    assert [child.returncode for child in (first, second)] == [0, 0]
    results = [json.loads(output) for output in outputs]
    assert [result["built"] for result in results] == [True, False]
    assert count_commands(commands, "venv") == 1
    assert count_commands(commands, "pip") == 2  # the lock, then the wheel: once each
    assert any(line.startswith("waited ") for line in results[1]["log"])
    env = make_cache(tmp_path / "envs", package.links).ensure(package.spec, lambda: b"")
    assert run_in(env.python, "import acme_etl; print(acme_etl.run())") == "42"
