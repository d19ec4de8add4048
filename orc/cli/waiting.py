"""Waiting for a run to end (`orc trigger --wait`, `orc runs wait`, `orc runs retry
--wait`): progress on stderr, the run on stdout, and an exit status that says how it ended.
Ctrl-C stops the waiting, never the run: it says so, and how to cancel it."""

from __future__ import annotations

from typing import NoReturn

import typer

from orc.cli.common import ExitCode, State
from orc.client import ClientError, Run
from orc.output import Format, Progress, duration, emit, info, state_counts

__all__ = ["wait_and_exit"]

FAILED_TASK_STATES = frozenset({"failed"})  # upstream_failed ones never ran


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
        for instance in instances:
            if instance["state"] in FAILED_TASK_STATES:
                name = instance["task_id"]
                index = instance["map_index"]
                logs: list[str | int] = ["logs", run_id, name]
                if index >= 0:
                    logs += ["--map-index", index]
                info(
                    f"task {name}{f'[{index}]' if index >= 0 else ''} {instance['state']}; "
                    f"its log: {current.command(*logs)}"
                )
    raise typer.Exit(ExitCode.RUN_FAILED)
