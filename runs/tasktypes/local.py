"""What the task types that run a local process (shell, python) share: the tenant's sandbox
and limits, a clean environment, a private workspace, the attempt's output sink (capped,
masked, its tail kept for the result) and how the process's end becomes an `Outcome`."""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import signal
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from django.conf import settings

from orchestrator import tenancy
from runs.tasktypes.contract import Attempt, Outcome, TaskFailed
from runs.tasktypes.masking import Masker
from runs.tasktypes.process import OutputSink, ProcessResult
from runs.tasktypes.sandbox import (
    HOME,
    Limits,
    Sandbox,
    SandboxUnavailable,
    init_program,
    limit_hint,
    sweep_etc_copies,
    sweep_workspaces,
    uid_for,
)

logger = logging.getLogger(__name__)

__all__ = [
    "TaskOutput",
    "base_env",
    "check_cwd",
    "process_outcome",
    "sandbox_or_fail",
    "sandbox_root",
    "scratch",
    "sweep_sandbox_root",
    "task_limits",
    "task_sandbox",
    "tenant_policy",
    "tenant_sandbox",
]


SANDBOX_PATH = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"


def base_env(a: Attempt, sandboxed: bool) -> dict[str, str]:
    """A clean environment: nothing of the worker's (database URL, keys) reaches a task."""
    return {
        "PATH": SANDBOX_PATH if sandboxed else os.environ.get("PATH", SANDBOX_PATH),
        "LANG": "C.UTF-8",
        "HOME": HOME if sandboxed else tempfile.gettempdir(),
        "ORCHESTRATOR_RUN_ID": str(a.ti.run_id),
        "ORCHESTRATOR_TASK_ID": a.ti.task_id,
        "ORCHESTRATOR_TRY_NUMBER": str(a.ti.try_number),
        "ORCHESTRATOR_LOGICAL_DATE": a.context["logical_date"].isoformat(),
    }


def task_limits(policy: dict[str, Any], requested: dict[str, Any] | None) -> Limits:
    """The tenant's limits (its policy over the platform's defaults), lowered where the
    task's `rlimits` ask for less."""
    values: dict[str, int | None] = {}
    for key, cap in tenancy.task_limits(policy).items():
        asked = (requested or {}).get(key)
        values[key] = min(v for v in (cap, asked) if v) if (cap or asked) else None
    return Limits(**values)


@functools.cache
def _project_packages() -> tuple[str, ...]:
    base = settings.BASE_DIR
    return tuple(sorted(p.name for p in base.iterdir() if (p / "__init__.py").is_file()))


@functools.cache
def _runner_modules(allowed: tuple[str, ...]) -> tuple[tuple[str, str], ...]:
    """The python runner's module files (with the allow-list rule it shares with the spec's
    validation), and those of the allow-listed modules of `runs`: (host file, its path
    under the sandbox's module directory)."""
    root = Path(__file__).resolve().parents[2]  # the directory that holds `runs`
    names = ["runs/__init__", "runs/tasktypes/__init__", "runs/tasktypes/pyrunner"]
    names += ["runs/tasktypes/skip", "workflows/__init__", "workflows/python_modules"]
    names += ["runs/tasktypes/zygote", "runs/tasktypes/indexer", "runs/tasktypes/supervise"]
    for module in allowed:
        if module.startswith("runs."):
            names.append(module.replace(".", "/"))
    return tuple((str(root / f"{name}.py"), f"{name}.py") for name in dict.fromkeys(names))


def task_sandbox(a: Attempt, *, python: bool, environment: str | None = None) -> Sandbox | None:
    """The sandbox of the attempt's tenant, or None where the platform turned it off."""
    return tenant_sandbox(
        a.ti.tenant_id,
        tenant_policy(a),
        python=python,
        rlimits=a.task.get("rlimits"),
        environment=environment,
    )


def tenant_sandbox(
    tenant_id: int,
    policy: dict[str, Any],
    *,
    python: bool,
    rlimits: dict[str, Any] | None = None,
    environment: str | None = None,
) -> Sandbox | None:
    """A sandbox of the tenant (its uid, network, mounts and limits), or None where the
    platform turned sandboxes off. `environment`: a team code package's virtual
    environment (python only), mounted read-only instead of the worker's site-packages."""
    if settings.TASK_SANDBOX == "off":
        return None
    return Sandbox(
        uid=uid_for(tenant_id, settings.TASK_SANDBOX_UIDS),
        network=tenancy.task_network(policy),
        limits=task_limits(policy, rlimits),
        bwrap=settings.TASK_SANDBOX_BWRAP,
        root=sandbox_root(),
        readonly=tuple(settings.TASK_SANDBOX_READONLY_PATHS),
        mounts=tuple(tenancy.task_mounts(policy)),
        python=python,
        runner_modules=_runner_modules(tuple(settings.PYTHON_TASK_MODULES)) if python else (),
        hidden_packages=_project_packages() if python else (),
        environment=environment,
        warm_seconds=settings.TASK_SANDBOX_WARM_SECONDS,
        init=init_program(settings.TASK_SANDBOX_INIT),
    )


def sandbox_root() -> Path:
    """Where the worker makes task workspaces (and the sandboxes' /etc): TASK_SANDBOX_ROOT."""
    return Path(settings.TASK_SANDBOX_ROOT or Path(tempfile.gettempdir()) / "orc-sandbox")


def sweep_sandbox_root() -> tuple[int, int]:
    """At a worker's start: remove from TASK_SANDBOX_ROOT what no live worker holds, the
    task workspaces a worker killed mid-task left (its task's files included) and the
    copies of /etc that the host no longer matches. Returns how many of each."""
    root = sandbox_root()
    workspaces, copies = sweep_workspaces(root), sweep_etc_copies(root)
    if workspaces:
        logger.info("removed %d task workspace(s) left by stopped workers", workspaces)
    if copies:
        logger.info("removed %d copy(ies) of /etc no worker uses", copies)
    return workspaces, copies


def check_cwd(cwd: str | None) -> None:
    """A relative working directory stays inside the task's own (it is made there)."""
    if cwd and not cwd.startswith("/") and ".." in Path(cwd).parts:
        raise TaskFailed(f"cwd {cwd!r}: a relative working directory may not contain '..'")


def process_outcome(
    result: ProcessResult,
    a: Attempt,
    skip_code: int,
    timeout: int | None,
    value: Callable[[], Any],
    limits: Limits | None = None,
) -> Outcome:
    if result.error:
        return Outcome("failed", error=result.error)
    if result.timed_out:
        return Outcome(
            "failed",
            exit_code=result.exit_code,
            error=f"timed out after {timeout}s; the process group was killed",
        )
    if result.cancelled:
        return Outcome(
            "failed",
            exit_code=result.exit_code,
            error="stopped: the attempt was cancelled or lost its lease",
        )
    if result.exit_code == 0:
        return Outcome("success", exit_code=0, result=value())
    if result.exit_code == skip_code:
        return Outcome("skipped", exit_code=result.exit_code)
    code = result.exit_code
    how = f"killed by signal {signal.Signals(-code).name}" if code and code < 0 else ""
    error = how or f"exit code {code}"
    tail = a.sink.tail if isinstance(a.sink, TaskOutput) else b""
    hint = limit_hint(limits, exit_code=code, tail=tail) if limits else None
    return Outcome("failed", exit_code=code, error=f"{error}: {hint}" if hint else error)


class TaskOutput(OutputSink):
    """The attempt's sink: remembers the last bytes written (for the shell result) and masks
    secret values on the way out. A value split between two drains is caught by holding the
    last raw bytes back until the next drain (or the final one), and never cutting inside
    a value."""

    def __init__(self, limit: int, masker: Masker | None = None) -> None:
        super().__init__(limit)
        self.tail = b""
        self.masker = masker or Masker()
        self._held = b""

    def write(self, data: bytes) -> None:
        if self.kept + len(data) > self.limit:
            # The cap cuts this chunk: mask it first, or half a value would be kept.
            data = self.masker.mask_bytes(data)
        super().write(data)
        self.tail = (self.tail + data)[-settings.TASK_RESULT_MAX_BYTES :]

    def drain(self, final: bool = False) -> bytes:
        raw = self._held + super().drain()
        cut = len(raw) if final else max(0, len(raw) - max(0, self.masker.longest - 1))
        cut = self.masker.safe_cut(raw, cut)
        self._held = raw[cut:]
        return self.masker.mask_bytes(raw[:cut])

    def unread(self, data: bytes) -> None:
        super().unread(data + self._held)
        self._held = b""


def scratch(sandbox: Sandbox | None) -> contextlib.AbstractContextManager[str]:
    """An unsandboxed task's scratch directory; a sandboxed one has its workspace."""
    if sandbox is not None:
        return contextlib.nullcontext("")
    return tempfile.TemporaryDirectory(prefix="orc-task-")


def tenant_policy(a: Attempt) -> dict[str, Any]:
    policy: dict[str, Any] = a.ti.run.workflow.tenant.policy
    return policy


def sandbox_or_fail(a: Attempt, *, python: bool) -> Sandbox | None:
    try:
        return task_sandbox(a, python=python)
    except SandboxUnavailable as exc:
        raise TaskFailed(f"the task sandbox is unavailable: {exc}") from None
