"""The task types this installation executes: type name -> executor (one module each).
The app registers them with workflows' registry when ready, so the spec accepts exactly
what can run; the worker (runs.worker) looks up each try's executor here. A new task type
is a module of this package, a line here, and its model in workflows.spec."""

from __future__ import annotations

from collections.abc import Callable

from runs.tasktypes.container import run_container
from runs.tasktypes.contract import Attempt, Outcome
from runs.tasktypes.http import run_http
from runs.tasktypes.python import run_python
from runs.tasktypes.shell import run_shell
from runs.tasktypes.sql import run_sql
from runs.tasktypes.wait_for import run_wait_for

__all__ = ["EXECUTORS", "run_noop"]


def run_noop(a: Attempt) -> Outcome:
    """A task that does nothing: a join point, or a placeholder while a DAG is drawn."""
    return Outcome("success")


EXECUTORS: dict[str, Callable[[Attempt], Outcome]] = {
    "noop": run_noop,
    "shell": run_shell,
    "python": run_python,
    "http": run_http,
    "sql": run_sql,
    "container": run_container,
    "wait_for": run_wait_for,
}
