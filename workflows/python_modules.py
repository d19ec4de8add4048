"""Which functions `python` tasks may call: those of the platform's allow-listed modules
(setting PYTHON_TASK_MODULES) and of their submodules. One rule for the spec's validation
when a workflow is applied, for the worker before it starts a task and for the runner in
the task's sandbox. Pure and self-contained: the runner imports it inside the sandbox,
where neither Django nor the rest of the project is."""

from __future__ import annotations

from collections.abc import Sequence

__all__ = ["callable_refusal", "module_allowed"]


def module_allowed(module: str, allowed: Sequence[str]) -> bool:
    """`module` is one of `allowed` or inside one (`runs.library.x` is in `runs.library`)."""
    return any(module == prefix or module.startswith(prefix + ".") for prefix in allowed)


def callable_refusal(callable_path: str, allowed: Sequence[str]) -> str | None:
    """Why a `module:function` may not be called, or None when it may."""
    module = callable_path.partition(":")[0]
    if module_allowed(module, allowed):
        return None
    accepted = ", ".join(allowed) if allowed else "none: python tasks are off"
    return (
        f"module {module!r} is not allowed for python tasks; accepted: functions of these "
        f"modules and their submodules: {accepted} (platform setting PYTHON_TASK_MODULES)"
    )
