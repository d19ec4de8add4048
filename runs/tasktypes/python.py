"""The python task: a callable of an allow-listed module (PYTHON_TASK_MODULES), called by
the runner (`runs.tasktypes.pyrunner`) in a child interpreter in the tenant's sandbox, with
the task's kwargs; its return value, written as JSON to a file, is the task's result."""

from __future__ import annotations

import json
import os
import stat
import sys
from typing import Any

from django.conf import settings

from runs.tasktypes.contract import Attempt, Outcome, TaskFailed
from runs.tasktypes.local import (
    base_env,
    process_outcome,
    sandbox_or_fail,
    scratch,
    task_limits,
    tenant_policy,
    workspace,
)
from runs.tasktypes.process import run_process
from runs.tasktypes.sandbox import TMP, interpreter
from runs.tasktypes.skip import SKIP_EXIT_CODE
from workflows.python_modules import callable_refusal

__all__ = ["run_python"]

RUNNER = "runs.tasktypes.pyrunner"


RESULT_NAME = "orchestrator-result.json"


def run_python(a: Attempt) -> Outcome:
    task = a.task
    allowed: list[str] = settings.PYTHON_TASK_MODULES
    # Checked when the workflow was applied too; the setting may have changed since.
    refusal = callable_refusal(task["callable"], allowed)
    if refusal is not None:
        return Outcome("failed", error=refusal, retryable=False)
    timeout = task.get("timeout")
    payload = json.dumps(
        {"callable": task["callable"], "kwargs": task.get("kwargs", {}), "allowed": allowed},
        default=str,
    ).encode()
    sandbox = sandbox_or_fail(a, python=True)
    limits = sandbox.limits if sandbox else task_limits(tenant_policy(a), None)
    space = workspace(sandbox, None)
    try:
        with scratch(sandbox) as scratch_dir:
            if sandbox is not None and space is not None:
                result_file = str(space.tmp / RESULT_NAME)
                env = {
                    **base_env(a, True),
                    "ORCHESTRATOR_RESULT_FILE": f"{TMP}/{RESULT_NAME}",
                    "PYTHONPATH": sandbox.python_path(),
                    "PYTHONNOUSERSITE": "1",
                }
                argv = [interpreter(), "-m", RUNNER]
            else:
                result_file = os.path.join(scratch_dir, RESULT_NAME)
                env = {
                    **base_env(a, False),
                    "ORCHESTRATOR_RESULT_FILE": result_file,
                    "PYTHONPATH": os.pathsep.join(sys.path),
                }
                argv = [sys.executable, "-m", RUNNER]
            result = run_process(
                argv,
                env=env,
                cwd=None if sandbox else scratch_dir,
                timeout=timeout,
                sink=a.sink,
                should_stop=a.should_stop,
                stdin=payload,
                rlimits=limits.as_dict(),
                sandbox=sandbox,
                workspace=space,
            )
            return process_outcome(
                result, a, SKIP_EXIT_CODE, timeout, lambda: _read_result(result_file), limits
            )
    finally:
        if space is not None:
            space.remove()


def _read_result(path: str) -> Any:
    """The task's JSON result. The file is the task's (its uid wrote it): never follow a
    link it may have put there instead, never read more than the cap allows."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError as exc:
        raise TaskFailed(f"the task left no readable result file: {exc.strerror}") from None
    with os.fdopen(fd, "rb") as handle:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise TaskFailed("the task's result is not a regular file")
        data = handle.read(settings.TASK_RESULT_MAX_BYTES * 4 + 1)
    try:
        return json.loads(data)
    except ValueError as exc:
        raise TaskFailed(f"the task's result is not JSON: {exc}") from None
