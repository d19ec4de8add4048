"""The python task: a function of the tenant's code package pinned in the workflow version
(docs/team-code.md), or, without one, of the platform's allow-listed modules
(PYTHON_TASK_MODULES). Either way it is called in a child forked by a warm process of the
tenant's (runs/tasktypes/zygote.py) in the tenant's sandbox, with the task's kwargs; its
JSON return value is the task's result."""

from __future__ import annotations

import json
import os
import sys
from typing import Any

from django.conf import settings

from runs.tasktypes.contract import Attempt, Outcome, TaskFailed
from runs.tasktypes.environments import EnvironmentBuildFailed
from runs.tasktypes.local import (
    base_env,
    process_outcome,
    task_limits,
    tenant_policy,
    tenant_sandbox,
)
from runs.tasktypes.package_store import (
    StoredWheelError,
    environment_cache,
    package_spec,
    package_wheel,
)
from runs.tasktypes.process import ProcessResult
from runs.tasktypes.sandbox import SandboxUnavailable, interpreter
from runs.tasktypes.skip import SKIP_EXIT_CODE
from runs.tasktypes.zygotes import ZYGOTES, ZygoteFailed, ZygoteSpec
from workflows.models import CodePackage
from workflows.python_modules import callable_refusal

__all__ = ["run_python"]


def run_python(a: Attempt) -> Outcome:
    task = a.task
    pinned: dict[str, str] | None = task.get("code")
    if pinned is None:
        # Checked when the workflow was applied too; the setting may have changed since.
        refusal = callable_refusal(task["callable"], settings.PYTHON_TASK_MODULES)
        if refusal is not None:
            return Outcome("failed", error=refusal, retryable=False)
    policy = tenant_policy(a)
    limits = task_limits(policy, task.get("rlimits"))
    timeout = task.get("timeout")
    try:
        sandbox = tenant_sandbox(a.ti.tenant_id, policy, python=True)
        key = (a.ti.tenant_id, pinned["digest"] if pinned else "", sandbox)
        zygote, _ = ZYGOTES.get(key, lambda: _zygote_spec(a, policy, pinned))
    except SandboxUnavailable as exc:
        raise TaskFailed(f"the task sandbox is unavailable: {exc}") from None
    except (EnvironmentBuildFailed, StoredWheelError) as exc:
        raise TaskFailed(f"the package's environment could not be built: {exc}") from None
    except ZygoteFailed as exc:
        raise TaskFailed(str(exc)) from None
    request = {
        "callable": task["callable"],
        "kwargs": task.get("kwargs", {}),
        "env": base_env(a, sandbox is not None),
        "limits": limits.as_dict(),
    }
    run = zygote.run(
        request,
        sink=a.sink,
        timeout=timeout,
        should_stop=a.should_stop,
        result_limit=settings.TASK_RESULT_MAX_BYTES * 4,
    )
    if run.lost:
        return Outcome("failed", error=f"{run.error}; the try is given back", lost=True)
    result = ProcessResult(
        exit_code=run.exit_code, timed_out=run.timed_out, cancelled=run.cancelled, error=run.error
    )
    return process_outcome(
        result, a, SKIP_EXIT_CODE, timeout, lambda: _parse_result(run.result), limits
    )


def _zygote_spec(a: Attempt, policy: dict[str, Any], pinned: dict[str, str] | None) -> ZygoteSpec:
    """How to start the tenant's zygote: from the pinned package's environment (built here
    on first use; its log goes to the attempt that waited for it), or the platform's."""
    if pinned is None:
        allowed = tuple(settings.PYTHON_TASK_MODULES)
        sandbox = tenant_sandbox(a.ti.tenant_id, policy, python=True)
        if sandbox is not None:
            return ZygoteSpec(
                python=interpreter(),
                python_path=sandbox.python_path(),
                sandbox=sandbox,
                preload=allowed,
                allowed=allowed,
            )
        return ZygoteSpec(
            python=sys.executable,
            python_path=os.pathsep.join(sys.path),
            sandbox=None,
            preload=allowed,
            allowed=allowed,
        )
    package = (
        CodePackage.objects.dangerously_unscoped()
        .filter(tenant_id=a.ti.tenant_id, digest=pinned["digest"])
        .first()
    )
    if package is None:
        raise TaskFailed(
            f"package {pinned['package']} {pinned['version']} (sha256 {pinned['digest'][:12]}) "
            "is no longer stored in this tenant",
            retryable=False,
        )
    cache = environment_cache()
    env = cache.ensure(package_spec(package), wheel=lambda: package_wheel(package), log=a.log)
    sandbox = tenant_sandbox(a.ti.tenant_id, policy, python=True, environment=str(env.path))
    return ZygoteSpec(
        python=str(env.python),
        # Unsandboxed (single-tenant installations): the runner's modules from the project.
        python_path=sandbox.python_path() if sandbox is not None else str(settings.BASE_DIR),
        sandbox=sandbox,
        preload=tuple(sorted(package.index)),
        allowed=None,
        start_timeout=settings.PACKAGE_BUILD_TIMEOUT,
        hold=lambda: cache.use(package.digest),
        environment=env.path,
    )


def _parse_result(data: bytes) -> Any:
    if len(data) > settings.TASK_RESULT_MAX_BYTES * 4:
        raise TaskFailed("the task's result is larger than the result cap")
    if not data:
        raise TaskFailed("the task left no result")
    try:
        return json.loads(data)
    except ValueError as exc:
        raise TaskFailed(f"the task's result is not JSON: {exc}") from None
