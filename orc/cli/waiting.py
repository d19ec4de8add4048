"""Waiting for a run to end (`orc trigger --wait`, `orc runs wait`, `orc runs retry
--wait`): progress on stderr, the run on stdout, and an exit status that says how it ended.
Ctrl-C stops the waiting, never the run: it says so, and how to cancel it."""

from __future__ import annotations

from typing import NoReturn

import typer

from orc.cli.common import ExitCode, State
from orc.client import ClientError, Run, TaskInstance
from orc.output import Format, Progress, duration, emit, info, state_counts

__all__ = ["failures", "wait_and_exit"]

FAILED_TASK_STATES = frozenset({"failed"})  # upstream_failed ones never ran
FAILURES_SHOWN = 10  # failed instances whose error is shown
ERROR_SHOWN = 300  # characters of the first line of an error


def wait_and_exit(current: State, run_id: int, output: Format, said: str = "") -> NoReturn:
    """Wait for the run, having first `said` what started it (on stderr: the run exists
    from there on, so Ctrl-C from then on gets the advice)."""
    client = current.client()

    def show(run: Run) -> None:
        progress.update(f"run {run['id']} {run['state']}: {state_counts(run['tasks'])}")

    try:
        if said:
            info(said)
        with Progress() as progress:
            run = client.wait_for_run(run_id, on_change=show)
    except KeyboardInterrupt:
        info(
            f"\ninterrupted: run {run_id} goes on without you; "
            f"cancel it with: {current.command('runs', 'cancel', run_id)}"
        )
        raise typer.Exit(ExitCode.INTERRUPTED) from None
    emit(
        output,
        run,
        lambda: [
            f"run {run['id']} of {run['workflow']}: {run['state']} in "
            f"{duration(run['started_at'], run['ended_at'])} ({state_counts(run['tasks'])})"
        ],
    )
    if run["state"] == "success":
        raise typer.Exit(ExitCode.OK)
    if output is Format.TABLE:
        try:
            instances = client.list_task_instances(run_id)
        except ClientError:  # the run's outcome is known: its exit code, not this one's, counts
            instances = []
        for line in failures(current, run_id, instances):
            info(line)
    raise typer.Exit(ExitCode.RUN_FAILED)


def failures(current: State, run_id: int, instances: list[TaskInstance]) -> list[str]:
    """A line per failed task instance (the first FAILURES_SHOWN): its last try's error,
    which is all there is of a failure that came before any output (a map over too long
    a list, a missing connection), and how to read its log."""
    failed = [i for i in instances if i["state"] in FAILED_TASK_STATES]
    lines = []
    for instance in failed[:FAILURES_SHOWN]:
        name, index = instance["task_id"], instance["map_index"]
        logs: list[str | int] = ["logs", run_id, name]
        if index >= 0:
            logs += ["--map-index", index]
        shown = f"{name}[{index}]" if index >= 0 else name
        said = _first_line(instance.get("error") or "")
        lines.append(
            f"task {shown} {instance['state']}{f': {said}' if said else ''}; "
            f"its log: {current.command(*logs)}"
        )
    if len(failed) > FAILURES_SHOWN:
        lines.append(f"... and {len(failed) - FAILURES_SHOWN} more failed task instances")
    return lines


def _first_line(error: str) -> str:
    first = error.strip().splitlines()[0] if error.strip() else ""
    return first if len(first) <= ERROR_SHOWN else first[: ERROR_SHOWN - 3] + "..."
