"""What the direct tests of the python tasks' zygote (runs/tasktypes/zygote.py, driven by
runs/tasktypes/zygotes.py, no Celery, no database) share: a team package whose one function
runs the source it is given, its environment built by the real cache, a zygote of a tenant's
sandbox started from it, and a way to run a task in it and read its output as it comes.
No tests here."""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from runs.tasktypes.environments import Environment, EnvironmentCache, PackageSpec
from runs.tasktypes.local import tenant_sandbox
from runs.tasktypes.process import OutputSink
from runs.tasktypes.sandbox import HOME, interpreter
from runs.tasktypes.zygotes import TaskRun, Zygote, ZygoteSpec
from tests.teamcode_support import open_up, wheel_bytes

__all__ = ["Output", "Ran", "build_environment", "run_source", "start_zygote", "zygote_spec"]

# The package: `probe_pkg:run(source, **kwargs)` runs `source` with the kwargs as its
# globals and returns its `result`.
PROBE = {
    "probe_pkg/__init__.py": (
        "def run(source, **kwargs):\n"
        "    namespace = dict(kwargs)\n"
        "    exec(source, namespace)\n"
        "    return namespace.get('result')\n"
    )
}
ENV = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8", "HOME": HOME}


class Output(OutputSink):
    """A task's output, kept whole, with a way to wait for a line of it."""

    def __init__(self) -> None:
        super().__init__(1 << 20)
        self.text = ""
        self._changed = threading.Condition()

    def write(self, data: bytes) -> None:
        super().write(data)
        with self._changed:
            self.text += data.decode("utf-8", "replace")
            self._changed.notify_all()

    def wait_for(self, line: str, timeout: float = 30) -> None:
        with self._changed:
            if not self._changed.wait_for(lambda: line in self.text, timeout):
                raise AssertionError(f"{line!r} not in the task's output: {self.text!r}")


@dataclass(frozen=True)
class Ran:
    run: TaskRun
    output: str

    @property
    def result(self) -> Any:
        return json.loads(self.run.result) if self.run.result else None


def build_environment(root: Path, files: Mapping[str, str] = PROBE) -> Environment:
    """The probe package's environment, built under `root/envs` (made reachable by the
    tenants' uids)."""
    root.mkdir(parents=True, exist_ok=True)
    open_up(root)
    filename, data = wheel_bytes("probe-pkg", "1.0", files)
    digest = hashlib.sha256(data).hexdigest()
    cache = EnvironmentCache(
        root / "envs",
        max_bytes=1 << 30,
        python=interpreter(),
        index_url=None,
        find_links=[],
        timeout=120,
    )
    spec = PackageSpec(digest, "probe-pkg", "1.0", filename, ())
    return cache.ensure(spec, wheel=lambda: data)


def zygote_spec(
    env: Environment, tenant_id: int, policy: dict[str, Any] | None = None
) -> ZygoteSpec:
    """How the executor starts a zygote of a package for a tenant (runs/tasktypes/python.py)."""
    sandbox = tenant_sandbox(tenant_id, policy or {}, python=True, environment=str(env.path))
    assert sandbox is not None, "these tests need the task sandbox (TASK_SANDBOX=on)"
    return ZygoteSpec(
        python=str(env.python),
        python_path=sandbox.python_path(),
        sandbox=sandbox,
        preload=("probe_pkg",),
        allowed=None,
        environment=env.path,
    )


def start_zygote(env: Environment, tenant_id: int, policy: dict[str, Any] | None = None) -> Zygote:
    zygote = Zygote(zygote_spec(env, tenant_id, policy))
    zygote.start()
    return zygote


def run_source(
    zygote: Zygote,
    source: str,
    *,
    timeout: float | None = 60,
    should_stop: Callable[[], bool] = lambda: False,
    output: Output | None = None,
    limits: dict[str, int] | None = None,
    **kwargs: Any,
) -> Ran:
    """Run `source` as one task of the zygote (kwargs: its globals)."""
    sink = output or Output()
    run = zygote.run(
        {
            "callable": "probe_pkg:run",
            "kwargs": {"source": source, **kwargs},
            "env": ENV,
            "limits": limits or {},
        },
        sink=sink,
        timeout=timeout,
        should_stop=should_stop,
        result_limit=1 << 20,
    )
    return Ran(run, sink.text)
