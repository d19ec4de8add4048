"""`orc validate` (offline) and `orc apply` (GitOps through the bulk apply endpoint): the
same checks, the same error lines and the same plan as `manage.py validate` and
`manage.py apply`, because they are the same functions (workflows.specfiles)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated, Any

import typer

from orc.cli.common import Failure, OutputOption, state
from orc.client import ApiError, ApplyFile
from orc.output import Format, emit, info

__all__ = [
    "MAX_SPEC_BYTES_DEFAULT",
    "MAX_TASKS_DEFAULT",
    "PYTHON_MODULES_DEFAULT",
    "TASK_LIMITS_DEFAULT",
    "apply",
    "register",
    "validate",
]

# What the server checks a spec against for a tenant with the platform's defaults
# (orchestrator/settings.py: PYTHON_TASK_MODULES, DEFAULT_TENANT_QUOTAS, TASK_LIMITS_DEFAULT;
# a test holds these equal to them): offline, orc validate answers as the server would
# for such a tenant.
PYTHON_MODULES_DEFAULT = "runs.library"
MAX_SPEC_BYTES_DEFAULT = 262_144
MAX_TASKS_DEFAULT = 500
TASK_LIMITS_DEFAULT = {
    "memory_mb": 4096,
    "cpu_seconds": 0,
    "processes": 512,
    "open_files": 4096,
    "file_size_mb": 10240,
}

Paths = Annotated[
    list[str],
    typer.Argument(metavar="PATHS...", help="spec files (.yaml, .yml, .json) or folders"),
]


def _spec_files(paths: list[str]) -> list[Path]:
    from workflows.specfiles import collect

    try:
        files = collect(paths)
    except FileNotFoundError as exc:
        raise Failure(str(exc)) from None
    if not files:
        raise Failure("no spec files (*.yaml, *.yml, *.json) found")
    return files


def validate(
    paths: Paths,
    python_modules: Annotated[
        str | None,
        typer.Option(
            metavar="MODULES",
            envvar="PYTHON_TASK_MODULES",
            help="modules python tasks may call, comma-separated, as the server's "
            f"PYTHON_TASK_MODULES (default: {PYTHON_MODULES_DEFAULT})",
            show_default=False,
        ),
    ] = None,
    max_spec_bytes: Annotated[
        int, typer.Option(metavar="BYTES", help="the tenant's quota max_spec_bytes", min=1)
    ] = MAX_SPEC_BYTES_DEFAULT,
    max_tasks: Annotated[
        int, typer.Option(metavar="N", help="the tenant's quota max_tasks_per_workflow", min=1)
    ] = MAX_TASKS_DEFAULT,
    output: OutputOption = Format.TABLE,
) -> None:
    """Check spec files offline, with the server's own validation: the errors, at the
    paths, that the server answers for a tenant with the default quotas and policy. A
    tenant's own policy (allowed task types, task limits) is checked when applying:
    `orc apply --dry-run` checks everything."""
    from workflows.specfiles import format_errors, load_all
    from workflows.task_types import TASK_TYPES, register_executor
    from workflows.validation import Limits

    # The server registers the task types its workers execute when it starts; offline,
    # every type of the spec is taken as runnable, as on a complete installation (a test
    # holds the server's list to that). `orc apply --dry-run` asks the server itself.
    for task_type in TASK_TYPES:
        register_executor(task_type)
    modules = [m.strip() for m in (python_modules or PYTHON_MODULES_DEFAULT).split(",")]
    limits = Limits(
        max_tasks=max_tasks,
        max_spec_bytes=max_spec_bytes,
        task_limits=TASK_LIMITS_DEFAULT,
        python_modules=[m for m in modules if m],
    )
    results = load_all(_spec_files(paths), limits)
    invalid = [item for item in results if item.valid is None]
    payload = [
        {
            "file": str(item.path),
            "valid": item.valid is not None,
            "workflow": item.valid.spec.name if item.valid else None,
            "errors": [{"path": p, "message": m} for p, m in item.errors],
        }
        for item in results
    ]

    def render() -> list[str]:
        return [
            f"{item.path}: OK ({item.valid.spec.name}, {len(item.valid.spec.tasks)} tasks)"
            for item in results
            if item.valid is not None
        ]

    emit(output, payload, render)
    if invalid:
        if output is Format.TABLE:  # else the JSON or YAML has them
            for item in invalid:
                for line in format_errors(item):
                    info(line)
        raise Failure(f"{len(invalid)} of {len(results)} files are invalid")


def _read(path: Path) -> ApplyFile:
    try:
        return {"path": str(path), "content": path.read_bytes().decode()}
    except UnicodeDecodeError as exc:
        raise Failure(f"{path}: not UTF-8 text (byte {exc.start}); specs are UTF-8") from None


def apply(
    ctx: typer.Context,
    paths: Paths,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="show what would change; change nothing")
    ] = False,
    prune: Annotated[
        bool, typer.Option("--prune", help="delete the tenant's workflows no file defines")
    ] = False,
    diff: Annotated[bool, typer.Option("--diff", help="show each change as a diff")] = False,
    source_commit: Annotated[
        str | None,
        typer.Option(
            metavar="SHA",
            help="the git commit the files come from (40 hex digits), kept on new versions",
        ),
    ] = None,
    output: OutputOption = Format.TABLE,
) -> None:
    """Apply a folder of specs to the tenant, like `kubectl apply`: every file is checked
    first, then all are applied in one transaction, or none."""
    from workflows.specfiles import format_file_errors, format_plan

    files = [_read(path) for path in _spec_files(paths)]
    client = state(ctx).client()
    try:
        plan = client.apply(files, dry_run=dry_run, prune=prune, source_commit=source_commit)
    except ApiError as exc:
        if exc.status != 400 or not any(e.get("file") for e in exc.errors):
            raise
        for line in format_file_errors([dict(e) for e in exc.errors]):
            info(line)
        raise Failure(exc.detail) from None
    changes: list[dict[str, Any]] = [dict(c) for c in plan["changes"]]
    emit(output, plan, lambda: format_plan(changes, dry_run=plan["dry_run"], diff=diff))


def register(app: typer.Typer) -> None:
    app.command()(validate)
    app.command()(apply)
