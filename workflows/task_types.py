"""The registry of task types: the one source for what the spec accepts (workflows.spec)
and what this installation can run (the engine registers its executors here)."""

from __future__ import annotations

from orchestrator.task_types import TASK_TYPES
from workflows.spec import TASK_MODELS

__all__ = ["TASK_TYPES", "is_runnable", "register_executor", "runnable_kinds", "runnable_types"]

assert tuple(TASK_MODELS) == TASK_TYPES, "workflows.spec and orchestrator.task_types disagree"

_runnable: set[str] = set()
_kinds: dict[str, tuple[str, ...]] = {}


def register_executor(task_type: str, kinds: tuple[str, ...] | None = None) -> None:
    """Called by the engine for each task type it can execute (for a type with kinds, such
    as wait_for, only the kinds it can run)."""
    if task_type not in TASK_TYPES:
        raise ValueError(f"unknown task type {task_type!r}")
    _runnable.add(task_type)
    if kinds is not None:
        _kinds[task_type] = kinds


def runnable_kinds(task_type: str) -> tuple[str, ...] | None:
    """The kinds of a type that can run here; None when every kind can."""
    return _kinds.get(task_type)


def is_runnable(task_type: str) -> bool:
    return task_type in _runnable


def runnable_types() -> list[str]:
    return [t for t in TASK_TYPES if t in _runnable]
