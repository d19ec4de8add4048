"""What a shell task's start costs, with and without the task sandbox: `run_process` of
`/bin/true` from this (worker-sized) process, as the executor calls it, median of
`samples` starts. The difference is the sandbox's cost to every shell and python task."""

from __future__ import annotations

import statistics
import tempfile
import time
from pathlib import Path

from django.conf import settings

from runs.tasktypes.process import OutputSink, run_process
from runs.tasktypes.sandbox import Sandbox, uid_for

__all__ = ["task_start"]

ENV = {"PATH": "/usr/bin:/bin", "LANG": "C.UTF-8"}


def task_start(samples: int = 40) -> dict[str, float]:
    sandbox = Sandbox(
        uid=uid_for(1, settings.TASK_SANDBOX_UIDS),
        root=Path(settings.TASK_SANDBOX_ROOT or Path(tempfile.gettempdir()) / "orc-sandbox"),
    )
    plain, boxed = [], []
    for _ in range(samples):
        started = time.perf_counter()
        run_process(["/bin/true"], env=ENV, cwd=None, timeout=None, sink=OutputSink(1024))
        plain.append(time.perf_counter() - started)
        space = sandbox.workspace()
        started = time.perf_counter()
        run_process(
            ["/bin/true"],
            env=ENV,
            cwd=None,
            timeout=None,
            sink=OutputSink(1024),
            sandbox=sandbox,
            workspace=space,
        )
        boxed.append(time.perf_counter() - started)
        space.remove()
    unsandboxed, sandboxed = statistics.median(plain) * 1000, statistics.median(boxed) * 1000
    return {"plain_ms": unsandboxed, "sandboxed_ms": sandboxed, "cost_ms": sandboxed - unsandboxed}
