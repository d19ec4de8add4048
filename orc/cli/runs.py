"""`orc runs ...` and `orc logs`."""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from orc.cli.common import ExitCode, OutputOption, state
from orc.cli.waiting import failures, wait_and_exit
from orc.client import ApiError, Run, TaskInstance
from orc.output import Format, Table, columns, duration, emit, info, state_counts, when

__all__ = ["logs", "register", "runs_app"]

runs_app = typer.Typer(help="Runs of the tenant's workflows.", no_args_is_help=True)

RunId = Annotated[int, typer.Argument(metavar="RUN", help="the run's id")]


def _run_row(run: Run) -> list[str]:
    return [
        str(run["id"]),
        run["workflow"],
        run["state"],
        run["trigger_source"],
        when(run["created_at"]),
        duration(run["started_at"], run["ended_at"]),
    ]


@runs_app.command("list")
def runs_list(
    ctx: typer.Context,
    workflow: Annotated[str | None, typer.Option(help="only this workflow's runs")] = None,
    run_state: Annotated[
        str | None,
        typer.Option("--state", help="queued, running, success, failed or cancelled"),
    ] = None,
    limit: Annotated[int, typer.Option(help="at most this many, newest first")] = 20,
    output: OutputOption = Format.TABLE,
) -> None:
    """Runs, newest first."""
    runs = state(ctx).client().list_runs(workflow=workflow, state=run_state, limit=limit)
    columns = ["ID", "WORKFLOW", "STATE", "SOURCE", "CREATED", "DURATION"]
    emit(output, runs, lambda: Table(columns, [_run_row(r) for r in runs]))


def _instance_name(instance: TaskInstance) -> str:
    index = instance["map_index"]
    return f"{instance['task_id']}[{index}]" if index >= 0 else instance["task_id"]


@runs_app.command("show")
def runs_show(ctx: typer.Context, run_id: RunId, output: OutputOption = Format.TABLE) -> None:
    """A run and its task instances."""
    current = state(ctx)
    client = current.client()
    run = client.get_run(run_id)
    instances = _in_order(client.list_task_instances(run_id))
    failed = failures(current, run_id, instances) if output is Format.TABLE else []

    def render() -> list[str]:
        lines = [
            f"run:        {run['id']}",
            f"workflow:   {run['workflow']} (version {run['version']})",
            f"state:      {run['state']} ({state_counts(run['tasks'])})",
            f"triggered:  {run['trigger_source']} by {run['triggered_by'] or '-'}, "
            f"{when(run['created_at'])}",
            f"duration:   {duration(run['started_at'], run['ended_at'])}",
            "",
        ]
        rows = [
            [
                _instance_name(i),
                i["state"],
                str(i["try_number"]),
                when(i["started_at"]),
                duration(i["started_at"], i["ended_at"]),
            ]
            for i in instances
        ]
        table = columns(Table(["TASK", "STATE", "TRY", "STARTED", "DURATION"], rows))
        return lines + table + (["", *failed] if failed else [])

    emit(output, {**run, "task_instances": instances}, render)


def _in_order(instances: list[TaskInstance]) -> list[TaskInstance]:
    """Tasks in the order they started (upstream first), those not started after; a mapped
    task's instances together, by index, where its first one started. Not the API's
    order (newest first)."""
    began: dict[str, tuple[bool, str, int]] = {}
    for i in instances:
        mine = (not i["started_at"], i["started_at"] or "", i["id"])
        began[i["task_id"]] = min(began.get(i["task_id"], mine), mine)
    return sorted(instances, key=lambda i: (began[i["task_id"]], i["map_index"]))


@runs_app.command("cancel")
def runs_cancel(ctx: typer.Context, run_id: RunId, output: OutputOption = Format.TABLE) -> None:
    """Stop a run: its running tasks are killed, nothing more starts."""
    run = state(ctx).client().cancel_run(run_id)
    emit(output, run, lambda: [f"run {run['id']} of {run['workflow']}: {run['state']}"])


@runs_app.command("retry")
def runs_retry(
    ctx: typer.Context,
    run_id: RunId,
    wait: Annotated[bool, typer.Option("--wait", help="wait for the run to end")] = False,
    output: OutputOption = Format.TABLE,
) -> None:
    """Run a run's failed, upstream_failed and cancelled tasks again, and what follows them."""
    current = state(ctx)
    run = current.client().retry_run(run_id)
    cleared = ", ".join(run["cleared"]) or "nothing"
    line = f"run {run['id']} of {run['workflow']}: {run['state']}; cleared {cleared}"
    if not wait:
        emit(output, run, lambda: [line])
        return
    wait_and_exit(current, run_id, output, said=line)


@runs_app.command("wait")
def runs_wait(ctx: typer.Context, run_id: RunId, output: OutputOption = Format.TABLE) -> None:
    """Wait for a run to end: exit 0 when it succeeded, 1 when not."""
    wait_and_exit(state(ctx), run_id, output)


def logs(
    ctx: typer.Context,
    run_id: RunId,
    task_id: Annotated[str, typer.Argument(metavar="TASK", help="the task's id in the spec")],
    follow: Annotated[
        bool, typer.Option("--follow", "-f", help="keep printing until the task ends")
    ] = False,
    try_number: Annotated[
        int | None, typer.Option("--try", help="this try (default: the latest, and the next)")
    ] = None,
    map_index: Annotated[
        int | None, typer.Option(help="the instance of a mapped task (0 and up)")
    ] = None,
) -> None:
    """A task's log, as it is, or followed while it grows (--follow). Following, a retried
    task's next try comes after a line on stderr. Ctrl-C stops the following only."""
    client = state(ctx).client()
    shown: int | None = None
    try:
        for page in client.follow_log(
            run_id, task_id, try_number=try_number, map_index=map_index, follow=follow
        ):
            if shown is not None and page["try_number"] != shown:
                info(f"--- try {page['try_number']} ---")
            shown = page["try_number"]
            sys.stdout.write(page["text"])
            sys.stdout.flush()
    except KeyboardInterrupt:
        raise typer.Exit(ExitCode.INTERRUPTED) from None
    except ApiError as refused:
        if map_index is None and "name one with map_index" in refused.detail:
            # A mapped task: the API's hint, said as this command takes it.
            said = refused.detail.replace("name one with map_index", "name one with --map-index")
            raise ApiError(refused.status, refused.title, said, refused.errors) from None
        raise


def register(app: typer.Typer) -> None:
    app.add_typer(runs_app, name="runs")
    app.command()(logs)
