"""Two worker processes asked for the same package's environment at once (a workflow's
parallel python tasks, on its first run on a host): one builds it, the other waits for the
build. The builder then starts its zygote, which holds the environment's shared lock for
as long as it runs (so eviction spares it). The waiter must get the environment as soon as
the build is done, not when the builder's zygote stops (up to its idle timeout, 10 min).
Two caches over one directory stand for the two processes: flock locks of separate opens
conflict like those of separate processes."""

from __future__ import annotations

import dataclasses
import hashlib
import os
import threading
import time
from pathlib import Path

import pytest

from runs.tasktypes.environments import Environment, EnvironmentCache, PackageSpec
from runs.tasktypes.sandbox import interpreter
from runs.tasktypes.zygotes import Zygote
from tests.runs.tasktypes.test_zygote_support import PROBE, run_source, zygote_spec
from tests.teamcode_support import open_up, wheel_bytes

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="the suite runs as root in CI")

TENANT = 4545
BUILD_SECONDS = 1.0


def _cache(root: Path) -> EnvironmentCache:
    return EnvironmentCache(
        root,
        max_bytes=1 << 30,
        python=interpreter(),
        index_url=None,
        find_links=[],
        timeout=30,
    )


def test_a_worker_waiting_for_a_build_is_not_held_up_by_the_builders_zygote(
    tmp_path: Path,
) -> None:
    open_up(tmp_path)
    filename, data = wheel_bytes("probe-pkg", "1.0", PROBE)
    spec = PackageSpec(hashlib.sha256(data).hexdigest(), "probe-pkg", "1.0", filename, ())
    builder, waiter = _cache(tmp_path / "envs"), _cache(tmp_path / "envs")
    building = threading.Event()
    zygotes: list[Zygote] = []
    waited: list[Environment] = []

    def slow_wheel() -> bytes:
        building.set()
        time.sleep(BUILD_SECONDS)  # long enough for the waiter to be waiting
        return data

    def build_and_start() -> None:
        env = builder.ensure(spec, wheel=slow_wheel)
        held = dataclasses.replace(zygote_spec(env, TENANT), hold=lambda: builder.use(spec.digest))
        zygote = Zygote(held)
        zygote.start()
        zygotes.append(zygote)

    first = threading.Thread(target=build_and_start)
    first.start()
    assert building.wait(30)
    second = threading.Thread(target=lambda: waited.append(waiter.ensure(spec, wheel=lambda: data)))
    begun = time.monotonic()
    second.start()
    try:
        first.join(timeout=60)
        assert zygotes, "the builder's zygote did not start"
        second.join(timeout=10 + BUILD_SECONDS)
        took = time.monotonic() - begun
        assert not second.is_alive(), (
            f"the waiter still waits {took:.1f} s on: the builder's zygote holds the lock"
        )
        [env] = waited
        assert not env.built
        assert run_source(zygotes[0], "result = 'running meanwhile'").result == "running meanwhile"
    finally:
        for zygote in zygotes:
            zygote.stop()  # releases the shared lock: a waiter still waiting gets it now
        second.join(timeout=60)
