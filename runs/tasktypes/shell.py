"""The shell task: a command (argv, or a line for /bin/sh with `shell: true`) in the
tenant's sandbox; its result is the last line of its output (JSON when it parses)."""

from __future__ import annotations

from runs.tasktypes.contract import Attempt, Outcome
from runs.tasktypes.local import (
    TaskOutput,
    base_env,
    check_cwd,
    process_outcome,
    sandbox_or_fail,
    scratch,
    task_limits,
    tenant_policy,
)
from runs.tasktypes.process import last_line_result, run_process
from runs.tasktypes.skip import SKIP_EXIT_CODE

__all__ = ["run_shell"]


def run_shell(a: Attempt) -> Outcome:
    task = a.task
    command = task["command"]
    argv = (
        ["/bin/sh", "-c", command if isinstance(command, str) else " ".join(command)]
        if (task.get("shell"))
        else list(command)
    )
    timeout = task.get("timeout")
    sandbox = sandbox_or_fail(a, python=False)
    limits = sandbox.limits if sandbox else task_limits(tenant_policy(a), task.get("rlimits"))
    if sandbox is not None:
        check_cwd(task.get("cwd"))
    with scratch(sandbox) as scratch_dir:
        result = run_process(
            argv,
            env={**base_env(a, sandbox is not None), **task.get("env", {})},
            cwd=task.get("cwd") if sandbox else task.get("cwd") or scratch_dir,
            timeout=timeout,
            sink=a.sink,
            should_stop=a.should_stop,
            rlimits=limits.as_dict(),
            sandbox=sandbox,
        )
    tail = a.sink.tail if isinstance(a.sink, TaskOutput) else b""
    return process_outcome(
        result,
        a,
        task.get("skip_exit_code", SKIP_EXIT_CODE),
        timeout,
        lambda: last_line_result(tail),
        limits,
    )
