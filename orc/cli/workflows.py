"""`orc workflows ...`, `orc trigger` and `orc backfill`."""

from __future__ import annotations

from typing import Annotated, Any

import typer

from orc.cli.common import OutputOption, parse_params, state
from orc.cli.waiting import wait_and_exit
from orc.client import Backfill, BackfillDryRun, Run, Workflow
from orc.output import Format, Table, emit, info, when

__all__ = ["backfill", "register", "trigger", "workflows_app"]

workflows_app = typer.Typer(help="The tenant's workflows.", no_args_is_help=True)

WorkflowName = Annotated[str, typer.Argument(metavar="WORKFLOW", help="the workflow's name")]

Params = Annotated[
    list[str] | None,
    typer.Option(
        "--param",
        "-p",
        metavar="KEY=VALUE",
        help="a run param; a value that reads as JSON (3, true, [1, 2]) is sent as that, "
        "anything else as a string",
    ),
]


def _schedule(workflow: Workflow) -> str:
    version = workflow["current_version"]
    schedule = (version["spec"] if version else {}).get("schedule") or {}
    if not schedule:
        return "-"
    if schedule.get("cron"):
        return f"{schedule['cron']} ({schedule.get('timezone', 'UTC')})"
    return "datasets" if schedule.get("datasets") else "-"


def _version(workflow: Workflow) -> str:
    return str(workflow["current_version"]["number"]) if workflow["current_version"] else "-"


@workflows_app.command("list")
def workflows_list(
    ctx: typer.Context,
    tag: Annotated[str | None, typer.Option(help="only workflows with this tag")] = None,
    search: Annotated[str | None, typer.Option(help="in names and descriptions")] = None,
    output: OutputOption = Format.TABLE,
) -> None:
    """The tenant's workflows."""
    workflows = state(ctx).client().list_workflows(tag=tag, search=search)
    rows = [
        [
            w["name"],
            _version(w),
            "yes" if w["paused"] else "no",
            _schedule(w),
            ",".join(w["tags"]) or "-",
            when(w["updated_at"]),
        ]
        for w in workflows
    ]
    columns = ["NAME", "VERSION", "PAUSED", "SCHEDULE", "TAGS", "UPDATED"]
    emit(output, workflows, lambda: Table(columns, rows))


@workflows_app.command("show")
def workflows_show(
    ctx: typer.Context, name: WorkflowName, output: OutputOption = Format.TABLE
) -> None:
    """A workflow, with its current version's spec."""
    workflow = state(ctx).client().get_workflow(name)

    def render() -> list[str]:
        version = workflow["current_version"]
        lines = [
            f"name:         {workflow['name']}",
            f"description:  {workflow['description'] or '-'}",
            f"tags:         {', '.join(workflow['tags']) or '-'}",
            f"paused:       {'yes' if workflow['paused'] else 'no'}",
            f"schedule:     {_schedule(workflow)}",
        ]
        if version is not None:
            author = version["author"] or "-"
            lines.append(
                f"version:      {version['number']} (by {author}, {when(version['created_at'])})"
            )
            import yaml

            spec = yaml.safe_dump(version["spec"], sort_keys=False, allow_unicode=True)
            lines += ["", *spec.rstrip("\n").splitlines()]
        return lines

    emit(output, workflow, render)


def _set_paused(ctx: typer.Context, name: str, paused: bool, output: Format) -> None:
    client = state(ctx).client()
    workflow = client.pause_workflow(name) if paused else client.unpause_workflow(name)
    word = "paused" if paused else "unpaused"
    emit(output, workflow, lambda: [f"workflow {workflow['name']} {word}"])


@workflows_app.command("pause")
def workflows_pause(
    ctx: typer.Context, name: WorkflowName, output: OutputOption = Format.TABLE
) -> None:
    """Stop the workflow's schedule and triggers (runs going on go on)."""
    _set_paused(ctx, name, True, output)


@workflows_app.command("unpause")
def workflows_unpause(
    ctx: typer.Context, name: WorkflowName, output: OutputOption = Format.TABLE
) -> None:
    """Let the workflow's schedule and triggers start runs again."""
    _set_paused(ctx, name, False, output)


def run_line(run: Run) -> str:
    return f"run {run['id']} of {run['workflow']} (version {run['version']}): {run['state']}"


def trigger(
    ctx: typer.Context,
    workflow: WorkflowName,
    param: Params = None,
    force: Annotated[
        bool, typer.Option("--force", help="trigger even though the workflow is paused")
    ] = False,
    wait: Annotated[
        bool,
        typer.Option("--wait", help="wait for the run to end; the exit status says how it ended"),
    ] = False,
    idempotency_key: Annotated[
        str | None,
        typer.Option(
            metavar="KEY",
            help="repeat-safe key: the same key and params within 24 h give the same run "
            "(default: a fresh one)",
        ),
    ] = None,
    output: OutputOption = Format.TABLE,
) -> None:
    """Start a run of WORKFLOW. With --wait: exit 0 when it succeeds, 1 when it fails or is
    cancelled; Ctrl-C stops waiting, not the run."""
    current = state(ctx)
    run = current.client().trigger_run(
        workflow, parse_params(param), force=force, idempotency_key=idempotency_key
    )
    if not wait:
        emit(output, run, lambda: [run_line(run)])
        return
    wait_and_exit(current, run["id"], output, said=run_line(run))


def _intervals(plan: BackfillDryRun) -> Table:
    rows = [
        [
            when(i["logical_date"]),
            f"{when(i['data_interval_start'])} .. {when(i['data_interval_end'])}",
            i["action"],
            str(i["run"]) if i["run"] is not None else "-",
        ]
        for i in plan["intervals"]
    ]
    return Table(["LOGICAL DATE", "INTERVAL", "ACTION", "RUN"], rows)


def backfill(
    ctx: typer.Context,
    workflow: WorkflowName,
    start: Annotated[
        str, typer.Option(help="first logical date: 2026-01-01 (its whole day) or ISO 8601")
    ],
    end: Annotated[str, typer.Option(help="last logical date, inclusive, as --start")],
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="list the intervals; create nothing")
    ] = False,
    reprocess: Annotated[
        str | None,
        typer.Option(help="none (skip intervals that have a run), failed or all"),
    ] = None,
    max_active_runs: Annotated[int | None, typer.Option(help="runs of it at once")] = None,
    reverse: Annotated[bool, typer.Option("--reverse", help="newest interval first")] = False,
    param: Params = None,
    output: OutputOption = Format.TABLE,
) -> None:
    """Run WORKFLOW for every logical date of its schedule from --start to --end."""
    answer = (
        state(ctx)
        .client()
        .create_backfill(
            workflow,
            start,
            end,
            dry_run=dry_run,
            reprocess=reprocess,
            max_active_runs=max_active_runs,
            reverse=reverse,
            params=parse_params(param),
        )
    )
    if "intervals" in answer:
        plan: BackfillDryRun = answer  # type: ignore[assignment]
        info(f"{plan['total']} intervals; nothing was created (dry run)")
        emit(output, plan, lambda: _intervals(plan))
        return
    made: Backfill = answer  # type: ignore[assignment]
    progress: dict[str, Any] = made["progress"]
    emit(
        output,
        made,
        lambda: [
            f"backfill {made['id']} of {made['workflow']}: {made['state']}, "
            f"{progress.get('total', 0)} intervals"
        ],
    )


def register(app: typer.Typer) -> None:
    app.add_typer(workflows_app, name="workflows")
    app.command()(trigger)
    app.command()(backfill)
